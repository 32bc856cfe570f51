"""Gaussian-process regression of many genes at once: mellon's landmark FunctionEstimator, vectorised.

The model is mellon's :class:`~mellon.FunctionEstimator` with fixed landmarks ``u`` (a subset-of-regressors
GP). Everything is computed in the whitened basis ``a(x) = Lp^{-1} k_u(x)`` (``Lp Lp^T = K_uu + jitter``):
with ``A = Lp^{-1} K_uf`` and ``L_B L_B^T = B = A A^T / sigma^2 + I``, the mean of every gene is
``mean(x) = a(x)^T c`` with the coefficients ``c = L_B^{-T} L_B^{-1} A Y / sigma^2`` -- one factorisation
shared by every gene, the genes being right-hand sides. ``A A^T`` and ``A Y`` are accumulated over padded
cell batches, so memory is ``O(m^2 + m * n_genes)`` whatever the number of cells. The posterior covariance
is gene independent, ``k(x, x') - a^T a' + (L_B^{-1} a)^T (L_B^{-1} a')``.

Why the whitened basis: ``|a(x)| <= 1`` and ``B >= I``, so every product with the genes (``A Y``, ``a^T c``,
and the coefficient solves with ``|L_B^{-1}| <= 1``) is well conditioned, unlike the kernel-basis weights
``Lp^{-T} c`` (whose entries grow like ``1 / sqrt(jitter)`` and cancel). That makes single precision safe
for those products -- the bulk of the flops, ``n x m x n_genes`` -- with ``precision="mixed"`` (the
default): measured at 3,500 cells x 1,100 genes, the smoothed expression moves by at most 6e-6 and the
fold changes by 3e-5 of their largest value (tests bound them at 2e-5 and 1e-4). ``Lp^{-1}`` and the
whitening of the cells, ``A A^T``, the Cholesky factorisations, the ``1 - |a|^2`` part of the posterior
variances and the Mahalanobis solves stay in double precision.
``precision="double"`` computes everything in double precision.

Every fit also records each gene's residual sum of squares over the training cells and the trace of the
smoother ("hat") matrix ``tr(H) = m - |L_B^{-1}|_F^2``, so the per-gene noise variance
``RSS / (n - tr H)`` (:meth:`RegressionPredictor.noise_variance`) costs no pass over the cells:
``RSS = y^T y - |z|^2 - sigma^2 |c|^2`` with ``z = L_B^{-1} A Y / sigma``.

Optionally (``obs_variance=True``) the leave-one-out squared residuals ``r^2 / (1 - h)^2`` (``h`` the
leverage of each cell) are smoothed by a second GP with the same factorisation, as mellon's
``obs_variance``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import cached_property

import numpy as np
from scipy import sparse

from . import _blas
from ._batching import iter_batches, map_batches
from ._jax import DEFAULT_JITTER, as_f64, cholesky_jitter, matern52

__all__ = ["PRECISIONS", "RegressionPredictor", "Design", "check_precision", "fit_regression", "landmark_design"]

logger = logging.getLogger(__name__)

#: Cells per accumulation batch.
CELL_BATCH = 2048
#: Precisions of the products with the genes: ``"mixed"`` (single precision for ``A Y`` and ``a^T c``,
#: double for the rest) and ``"double"``.
PRECISIONS = ("mixed", "double")
#: The whitened cross-kernel of the training cells is kept between the fit's two passes (obs variance)
#: when it and the expression take at most this many bytes; otherwise it is recomputed.
CACHE_BYTES = 512 * 2**20


def check_precision(precision: str) -> bool:
    """Whether ``precision`` asks for single-precision products (``"mixed"``); a clear error otherwise."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}.")
    return precision == "mixed"


@dataclass(frozen=True)
class Design:
    """What all GPs on one set of landmarks share: the landmarks, length scale, ``Lp^{-1}`` (and ``Lp``)."""

    landmarks: np.ndarray
    ls: float
    Linv: np.ndarray
    jitter: float
    Lp: np.ndarray | None = None


def landmark_design(landmarks: np.ndarray, ls: float, jitter: float = DEFAULT_JITTER) -> Design:
    """Factorise the landmark kernel matrix once."""
    u = as_f64(landmarks)
    Lp = np.asarray(cholesky_jitter(matern52(u, u, ls), jitter))
    Linv = _lower_inverse(Lp)
    return Design(u, float(ls), Linv, float(jitter), Lp)


def whiten(design: Design, x: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """``a = Lp^{-1} k_u(x)``, ``(m, n_points)`` (columns of ``mask == 0`` zeroed), double precision.

    Column-major: the column of each point is contiguous (its transpose is a row-major
    ``(n_points, m)`` array, whose rows can be gathered cheaply). At the landmarks themselves
    (``x is design.landmarks``) no product is needed: ``Lp^{-1} K_uu = Lp^{-1} (Lp Lp^T - jitter I) =
    Lp^T - jitter Lp^{-1}``.
    """
    if x is design.landmarks and mask is None and design.Lp is not None:
        out = np.array(design.Lp.T, order="F")
        out -= design.jitter * design.Linv
        return out
    Kt = np.asarray(matern52(x, design.landmarks, design.ls))  # (n_points, m), row-major
    if mask is not None:
        Kt = Kt * mask[:, None]
    return _lower_times(design.Linv, Kt.T)  # Kt.T is column-major: trmm straight on it


def times_genes(a: np.ndarray, Y: np.ndarray, single: bool, *, transpose: bool = False) -> np.ndarray:
    """``a @ Y`` (``a^T @ Y`` with ``transpose``) in double precision, or in single when ``single``.

    By SciPy's BLAS without the GIL (:mod:`._blas`), like every other product of the engine: NumPy's
    ``matmul`` runs on a second OpenBLAS whose idle threads spin against SciPy's.

    ``a`` is a whitened cross-kernel (entries of columns of norm at most 1) and ``Y`` expression or
    coefficients, so single precision loses only about ``1e-7`` relative (see the module notes).
    """
    left = a.T if transpose else a
    if single:
        return _blas.matmul(left, Y, dtype=np.float32).astype(np.float64)
    return _blas.matmul(left, Y)


def _solve_coefficients(LBinv: np.ndarray, AY: np.ndarray, sigma2: float, single: bool = False) -> np.ndarray:
    """``L_B^{-T} L_B^{-1} A Y / sigma^2``: two triangular products.

    Single precision with ``single`` (``|L_B^{-1}| <= 1``); used for the observation-variance coefficients,
    which enter only variances.
    """
    if single:
        LBinv, AY = LBinv.astype(np.float32), AY.astype(np.float32)
    out = _lower_times(LBinv, _lower_times(LBinv, AY, alpha=1.0 / sigma2), transpose=True)
    return np.ascontiguousarray(out, dtype=np.float64)


def _lower_inverse(L: np.ndarray) -> np.ndarray:
    """Inverse of a lower-triangular ``L`` (LAPACK ``trtri``: a third of the flops of solving ``L X = I``)."""
    inv = np.array(L, dtype=np.float64, order="F")  # the one copy; trtri reads and writes the lower triangle
    info = _blas.trtri(inv, lower=True)
    if info != 0:
        raise np.linalg.LinAlgError(f"Triangular inverse failed (LAPACK info {info}).")
    for j in range(1, inv.shape[0]):  # zero the strictly upper triangle, column by column (contiguous)
        inv[:j, j] = 0.0
    return inv


def _lower_times(
    T: np.ndarray, K: np.ndarray, *, transpose: bool = False, alpha: float = 1.0, overwrite: bool = False
) -> np.ndarray:
    """``alpha T @ K`` (``alpha T^T @ K`` with ``transpose``) for a lower-triangular ``T`` by BLAS ``trmm``.

    Half the flops of a dense product; single precision (``strmm``) when both operands are float32;
    without the GIL (:mod:`._blas`). Row-major (C-ordered) operands are passed as their column-major
    transposes, so nothing is copied into Fortran order on the way in; the result is C-ordered when ``K``
    is. ``overwrite``: ``K`` is a temporary of the caller's and may hold the result (no copy of it).
    """
    dtype = np.float32 if T.dtype == np.float32 and K.dtype == np.float32 else np.float64
    t = bool(transpose)
    if T.flags.f_contiguous and T.dtype == dtype:
        A, lower, trans = T, True, False
    else:  # T.T is column-major and upper triangular
        A, lower, trans = np.ascontiguousarray(T, dtype=dtype).T, False, True
    in_place = overwrite and K.dtype == dtype and K.flags.writeable
    if K.flags.f_contiguous:
        B = K if in_place else np.array(K, dtype=dtype, order="F")
        return _blas.trmm(A, B, alpha=alpha, lower=lower, trans=trans ^ t)
    # (op(T) K)^T = K^T op(T)^T: multiply the column-major K^T from the right
    rows = np.ascontiguousarray(K, dtype=dtype)  # K itself when already C-ordered, else a copy of ours
    B = rows.T if rows is not K or in_place else np.array(rows.T, order="F")
    return _blas.trmm(A, B, alpha=alpha, lower=lower, trans=not (trans ^ t), right=True).T


def _symmetric_from_upper(upper: np.ndarray) -> np.ndarray:
    """The symmetric matrix whose upper triangle ``upper`` holds (what ``syrk`` fills; the rest is ignored)."""
    upper = np.triu(upper)
    return upper + np.triu(upper, k=1).T


def _gram_upper(
    a: np.ndarray, *, transpose: bool = False, alpha: float = 1.0, out: np.ndarray | None = None
) -> np.ndarray:
    """Upper triangle of ``alpha a a^T`` (``alpha a^T a`` with ``transpose``) by ``syrk``, without copies.

    ``out``: a column-major matrix the product is added to, in place (returned); otherwise a new
    column-major matrix whose strictly lower triangle is zero.
    """
    a = np.asarray(a, dtype=np.float64)
    if a.flags.f_contiguous:
        operand, trans = a, bool(transpose)
    else:
        operand, trans = np.ascontiguousarray(a).T, not transpose
    size = a.shape[1] if transpose else a.shape[0]
    if out is None:
        return _blas.syrk(operand, np.zeros((size, size), order="F"), alpha=alpha, trans=trans)
    if not out.flags.f_contiguous:
        raise ValueError("out must be column-major (Fortran order).")
    return _blas.syrk(operand, out, alpha=alpha, beta=1.0, trans=trans)


def _column_sq(a: np.ndarray) -> np.ndarray:
    """Squared norms of the columns of ``a`` (accumulated in double precision)."""
    return np.einsum("ij,ij->j", a, a, dtype=np.float64)


def posterior_variance(
    a: np.ndarray,
    LBinv: np.ndarray,
    single: bool = False,
    a_single: np.ndarray | None = None,
    a_sq: np.ndarray | None = None,
) -> np.ndarray:
    """Posterior variance ``1 - |a|^2 + |L_B^{-1} a|^2`` of the points whose whitened columns ``a`` holds.

    ``1 - |a|^2`` (the part the landmarks do not explain) is always formed in double precision
    (``a_sq``: the squared column norms, if already known from the double-precision ``a``); with
    ``single`` the sum of squares ``|L_B^{-1} a|^2`` (no cancellation) uses a single-precision ``trmm``
    (``a_single``: ``a`` in single precision, if already converted).
    """
    if single:
        low = a.astype(np.float32) if a_single is None else a_single
        c = _lower_times(LBinv.astype(np.float32, copy=False), low)
    else:
        c = _lower_times(LBinv, a)
    return 1.0 - (_column_sq(a) if a_sq is None else a_sq) + _column_sq(c)


def _dense_rows(y, start: int, stop: int, size: int) -> np.ndarray:
    """Rows ``start:stop`` of ``y`` as a dense float64 array padded with zero rows to ``size`` (read only)."""
    block = y[start:stop]
    block = block.toarray() if sparse.issparse(block) else np.asarray(block, dtype=np.float64)
    if size == stop - start:
        return block  # a view of a dense y: nothing to pad, no copy
    out = np.zeros((size, block.shape[1]), dtype=np.float64)
    out[: stop - start] = block
    return out


def _cell_batches(x: np.ndarray, y, size: int):
    n = x.shape[0]
    for start, stop in iter_batches(n, size):
        xb = np.zeros((size, x.shape[1]))
        xb[: stop - start] = x[start:stop]
        mask = np.zeros(size)
        mask[: stop - start] = 1.0
        yield xb, _dense_rows(y, start, stop, size), mask


def _batch_size(n: int, cell_batch: int) -> int:
    return min(cell_batch, max(256, -(-n // 256) * 256))


@dataclass
class RegressionPredictor:
    """A fitted multi-gene GP; mirrors the parts of :class:`mellon.Predictor` kompot uses.

    Attributes
    ----------
    design
        The shared landmark factorisation.
    coef
        ``(m, n_genes)`` coefficients in the whitened basis: ``mean(x) = (Lp^{-1} k_u(x))^T coef``.
    LBinv
        ``L_B^{-1}`` for the posterior covariance.
    sigma
        Noise standard deviation.
    n_obs
        Cells fitted.
    variance_coef
        ``(m, n_genes)`` coefficients of the smoothed squared LOO residuals, or ``None``.
    batch_size
        Rows per prediction batch.
    residual_ss
        ``(n_genes,)`` residual sums of squares of the training cells, or ``None``.
    hat_trace
        Trace of the smoother matrix (effective number of parameters), or ``None``.
    precision
        ``"mixed"`` or ``"double"`` (see the module notes).
    """

    design: Design
    coef: np.ndarray
    LBinv: np.ndarray
    sigma: float
    n_obs: int
    variance_coef: np.ndarray | None = None
    batch_size: int | None = None
    residual_ss: np.ndarray | None = None
    hat_trace: float | None = None
    precision: str = "mixed"

    @property
    def landmarks(self) -> np.ndarray:
        """The landmarks."""
        return self.design.landmarks

    @property
    def ls(self) -> float:
        """The length scale."""
        return self.design.ls

    @property
    def n_input_features(self) -> int:
        """Number of features of the cell-state representation."""
        return self.design.landmarks.shape[1]

    @property
    def single(self) -> bool:
        """Whether products with the genes run in single precision."""
        return self.precision == "mixed"

    @cached_property
    def LBinv_single(self) -> np.ndarray:
        """``L_B^{-1}`` in single precision (the leverages and posterior variances with ``"mixed"``)."""
        return self.LBinv.astype(np.float32)

    @cached_property
    def weights(self) -> np.ndarray:
        """``(m, n_genes)`` kernel-basis weights ``Lp^{-T} coef``: ``mean(x) = k(x, landmarks) @ weights``."""
        return np.ascontiguousarray(_lower_times(self.design.Linv, self.coef, transpose=True))

    def _check(self, x: np.ndarray) -> np.ndarray:
        x = as_f64(x)
        if x.ndim != 2 or x.shape[1] != self.n_input_features:
            raise ValueError(f"Expected points with {self.n_input_features} features, got shape {x.shape}.")
        return x

    def noise_variance(self) -> np.ndarray:
        """Per-gene noise variance ``RSS / (n - tr H)`` of the fit (residual variance, smoother-dof corrected).

        Under the GP with kernel ``s_g k`` and noise ``s_g sigma^2`` the posterior mean is the same for every
        ``s_g`` and the posterior covariance is ``s_g`` times the unit one; ``s_g = RSS / ((n - tr H)
        sigma^2)`` is the usual residual estimate of that scale. Returned in expression units (``s_g
        sigma^2``), at least ``1e-12``.
        """
        if self.residual_ss is None or self.hat_trace is None:
            raise ValueError("The predictor was fitted without residual statistics.")
        dof = max(float(self.n_obs) - float(self.hat_trace), 1.0)
        return np.maximum(self.residual_ss / dof, 1e-12)

    def _values(self, x: np.ndarray, coef: np.ndarray, progress: bool = False, desc: str | None = None) -> np.ndarray:
        single = self.single
        return map_batches(
            lambda xb: times_genes(whiten(self.design, xb), coef, single, transpose=True),
            self._check(x),
            batch_size=self.batch_size,
            progress=progress,
            desc=desc,
        )[0]

    def mean(self, x: np.ndarray, progress: bool = False) -> np.ndarray:
        """Smoothed expression ``(n_points, n_genes)`` at ``x``."""
        return self._values(x, self.coef, progress, "expression")

    __call__ = mean

    def covariance(self, x: np.ndarray, diag: bool = True) -> np.ndarray:
        """Posterior variance ``(n_points,)`` at ``x`` (gene independent), or the full covariance matrix."""
        x = self._check(x)
        d = self.design
        if diag:
            return map_batches(lambda xb: posterior_variance(whiten(d, xb), self.LBinv), x, batch_size=self.batch_size)[
                0
            ]
        a = whiten(d, x)
        c = _lower_times(self.LBinv, a)
        upper = np.asarray(matern52(x, x, d.ls)) - _gram_upper(a, transpose=True) + _gram_upper(c, transpose=True)
        return _symmetric_from_upper(upper)

    def obs_variance(self, x: np.ndarray) -> np.ndarray:
        """Smoothed observation (aleatoric) variance ``(n_points, n_genes)`` at ``x``."""
        if self.variance_coef is None:
            raise ValueError("The predictor was fitted without obs_variance=True.")
        return self._values(x, self.variance_coef)

    def loo_residuals_squared(self, x: np.ndarray, y, cell_batch: int = CELL_BATCH) -> np.ndarray:
        """Leave-one-out squared residuals ``r^2 / (1 - h)^2`` of the training cells ``x``/``y``."""
        x = self._check(x)
        size = _batch_size(x.shape[0], cell_batch)
        out = []
        for (start, stop), (xb, yb, _) in zip(iter_batches(x.shape[0], size), _cell_batches(x, y, size), strict=True):
            out.append(_loo_batch(whiten(self.design, xb), yb, self)[: stop - start])
        return np.concatenate(out)


def _loo_batch(A: np.ndarray, yb: np.ndarray, p: RegressionPredictor) -> np.ndarray:
    """``r^2 / (1 - h)^2`` of one batch (whitened cross-kernel ``A``, expression ``yb``)."""
    pred = times_genes(A, p.coef, p.single, transpose=True)
    # leverages: sums of squares (no cancellation), single precision with "mixed"
    h = _column_sq(_lower_times(p.LBinv_single, A.astype(np.float32)) if p.single else _lower_times(p.LBinv, A))
    h /= p.sigma**2
    return (yb - pred) ** 2 / ((1.0 - h) ** 2)[:, None]


def fit_regression(
    x: np.ndarray,
    y,
    design: Design,
    *,
    sigma: float = 1.0,
    obs_variance: bool = False,
    batch_size: int | None = None,
    cell_batch: int = CELL_BATCH,
    precision: str = "mixed",
    whitened: np.ndarray | None = None,
) -> RegressionPredictor:
    """Fit the GPs of all columns of ``y`` on the cells ``x`` with the landmark ``design``.

    Parameters
    ----------
    x
        ``(n, n_features)`` cell states.
    y
        ``(n, n_genes)`` expression, dense or scipy sparse.
    design
        From :func:`landmark_design`.
    sigma
        Noise standard deviation.
    obs_variance
        Also smooth the LOO squared residuals (per-gene noise surface).
    batch_size
        Rows per prediction batch of the returned predictor.
    cell_batch
        Cells per accumulation batch (padded; memory ``cell_batch x n_genes``).
    precision
        ``"mixed"`` (single-precision products with the genes) or ``"double"``.
    whitened
        ``whiten(design, x)``, ``(m, n)``, if the caller already has it (it is then used, not recomputed).

    Returns
    -------
    The fitted :class:`RegressionPredictor`.
    """
    single = check_precision(precision)
    x = as_f64(x)
    n = x.shape[0]
    size = _batch_size(n, cell_batch)
    m, g = design.landmarks.shape[0], y.shape[1]
    n_batches = -(-n // size)
    keep = obs_variance and n_batches * size * (m + g) * 8 <= CACHE_BYTES
    cache = []
    AAt, AY, YY = np.zeros((m, m), order="F"), np.zeros((m, g)), np.zeros(g)
    if whitened is not None and whitened.shape != (m, n):
        raise ValueError(f"whitened has shape {whitened.shape}, expected {(m, n)}.")

    def batches():
        if whitened is None:
            for xb, yb, mask in _cell_batches(x, y, size):
                yield whiten(design, xb, mask), yb
        else:
            for start, stop in iter_batches(n, size):
                yield whitened[:, start:stop], _dense_rows(y, start, stop, stop - start)

    for A, yb in batches():
        _gram_upper(A, out=AAt)
        AY += times_genes(A, yb, single)
        YY += _column_sq(yb)  # padded rows are zero
        if keep:
            cache.append((A, yb))
    sigma2 = float(sigma) ** 2
    LBinv = _inverse_cholesky_of_b(AAt, sigma2)
    # z = L_B^{-1} A Y / sigma and the coefficients L_B^{-T} z / sigma: products with the genes, so in
    # single precision with "mixed" (|L_B^{-1}| <= 1, see the module notes)
    LBt = LBinv.astype(np.float32) if single else LBinv
    z = _lower_times(LBt, AY.astype(LBt.dtype), alpha=1.0 / float(sigma), overwrite=True)
    coef = np.ascontiguousarray(_lower_times(LBt, z, transpose=True, alpha=1.0 / float(sigma)), dtype=np.float64)
    predictor = RegressionPredictor(design, coef, LBinv, float(sigma), n, batch_size=batch_size, precision=precision)
    # RSS = y^T y - |z|^2 - sigma^2 |coef|^2 (module notes); tr H = m - |L_B^{-1}|_F^2
    predictor.residual_ss = np.maximum(YY - _column_sq(z) - sigma2 * _column_sq(coef), 0.0)
    predictor.hat_trace = float(m - np.sum(LBinv * LBinv))
    if obs_variance:
        AR = np.zeros((m, g))
        for A, yb in cache if keep else batches():
            AR += times_genes(A, _loo_batch(A, yb, predictor), single)  # padded columns of A are zero
        predictor.variance_coef = _solve_coefficients(LBinv, AR, sigma2, single)
    return predictor


def upper_cholesky_in_place(C: np.ndarray, diagonal: float, what: str = "Cholesky factorisation") -> np.ndarray:
    """Upper Cholesky factor ``U`` (``U^T U = C + diagonal I``) of a column-major ``C``, in place (LAPACK).

    Only the upper triangle of ``C`` is read (``syrk`` fills no more); ``C`` is overwritten with ``U``
    (strictly lower part zeroed). ``what`` names the matrix in the error raised when it is not positive
    definite.
    """
    if not C.flags.f_contiguous:
        raise ValueError("C must be column-major (Fortran order).")
    C.flat[:: C.shape[0] + 1] += diagonal
    info = _blas.potrf(C)
    if info != 0:
        raise np.linalg.LinAlgError(f"{what} failed: not positive definite (LAPACK info {info}).")
    return C


def _inverse_cholesky_of_b(AAt: np.ndarray, sigma2: float) -> np.ndarray:
    """``L_B^{-1}`` for ``B = A A^T / sigma^2 + I`` from the upper triangle of ``A A^T`` (overwritten).

    LAPACK in place on the column-major ``AAt``: ``B = U^T U`` (:func:`upper_cholesky_in_place`),
    ``U^{-1}`` (``trtri``), and ``L_B^{-1} = U^{-T}`` returned as a row-major view -- no copies of the
    ``m x m`` matrices.
    """
    B = AAt if AAt.flags.f_contiguous else np.asfortranarray(AAt)
    B *= 1.0 / sigma2
    U = upper_cholesky_in_place(B, 1.0)
    info = _blas.trtri(U)
    if info != 0:
        raise np.linalg.LinAlgError(f"Triangular inverse failed (LAPACK info {info}).")
    return U.T  # the strictly lower part of U (hence of U^{-1}) is zero: clean=1


def smooth_with(predictor: RegressionPredictor, x: np.ndarray, r2: np.ndarray) -> np.ndarray:
    """Coefficients of a GP on ``r2`` using ``predictor``'s factorisation (``x`` must be its training cells)."""
    x = as_f64(x)
    design = predictor.design
    size = _batch_size(x.shape[0], CELL_BATCH)
    AR = np.zeros((design.landmarks.shape[0], r2.shape[1]))
    for xb, rb, mask in _cell_batches(x, r2, size):
        AR += times_genes(whiten(design, xb, mask), rb, predictor.single)
    return _solve_coefficients(predictor.LBinv, AR, predictor.sigma**2, predictor.single)
