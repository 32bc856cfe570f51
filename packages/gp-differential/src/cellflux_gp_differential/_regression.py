"""Gaussian-process regression of many genes at once: mellon's landmark FunctionEstimator, vectorised.

The model is mellon's :class:`~mellon.FunctionEstimator` with fixed landmarks ``u`` (a subset-of-regressors
GP): with ``A = Lp^{-1} K_uf`` and ``L_B L_B^T = A A^T / sigma^2 + I``, the weights of all genes are
``Lp^{-T} L_B^{-T} L_B^{-1} A Y / sigma^2`` -- one factorisation shared by every gene, the genes being
right-hand sides. ``A A^T`` and ``A Y`` are accumulated over padded cell batches, so memory is
``O(m^2 + m * n_genes)`` whatever the number of cells. The posterior covariance is gene independent,
``k(x, x') - a^T a' + (L_B^{-1} a)^T (L_B^{-1} a')`` with ``a = Lp^{-1} k_u(x)``.

Every fit also records each gene's residual sum of squares ``|y - mean(x)|^2`` over the training cells
and the trace of the smoother ("hat") matrix ``tr(H) = m - |L_B^{-1}|_F^2``, so the per-gene noise
variance ``RSS / (n - tr H)`` (:meth:`RegressionPredictor.noise_variance`) costs no pass over the cells:
``RSS = y^T y - 2 w^T K Y + (Lp^T w)^T (A A^T) (Lp^T w)`` from the accumulated ``A A^T``, ``K Y`` and the
per-gene ``y^T y``.

Optionally (``obs_variance=True``) the leave-one-out squared residuals ``r^2 / (1 - h)^2`` (``h`` the
leverage of each cell) are smoothed by a second GP with the same factorisation, as mellon's
``obs_variance``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
from scipy import sparse

from ._batching import iter_batches, map_batches
from ._jax import DEFAULT_JITTER, as_f64, cholesky_jitter, matern52

__all__ = ["RegressionPredictor", "Design", "fit_regression", "landmark_design"]

logger = logging.getLogger(__name__)

#: Cells per accumulation batch.
CELL_BATCH = 2048


@dataclass(frozen=True)
class Design:
    """What all GPs on one set of landmarks share: the landmarks, length scale, ``Lp^{-1}``."""

    landmarks: np.ndarray
    ls: float
    Linv: np.ndarray
    jitter: float


def landmark_design(landmarks: np.ndarray, ls: float, jitter: float = DEFAULT_JITTER) -> Design:
    """Factorise the landmark kernel matrix once."""
    u = as_f64(landmarks)
    Lp = np.asarray(cholesky_jitter(matern52(u, u, ls), jitter))
    Linv = _lower_inverse(Lp)
    return Design(u, float(ls), Linv, float(jitter))


def _accumulate(xb, yb, maskb, u, Linv, ls, with_gram: bool = True):
    """Upper triangle of ``A A^T`` (``None`` unless ``with_gram``) and ``K Y`` of one padded cell batch.

    ``A = Lp^{-1} K_u,b``. BLAS rather than XLA: a triangular ``trmm`` for ``A`` and a symmetric ``syrk``
    for ``A A^T`` (half the flops of dense products; XLA's float64 CPU matrix products are also slower
    than OpenBLAS'). ``K Y`` rather than ``A Y``: the triangular factors are applied once, after the
    accumulation (:func:`_apply_gram_inverse`).
    """
    K = np.asarray(matern52(u, xb, ls)) * maskb[None, :]
    gram = _gram_upper(_lower_times(Linv, K)) if with_gram else None
    return gram, K @ yb


def _apply_gram_inverse(M: np.ndarray, KY: np.ndarray, sigma2: float) -> np.ndarray:
    """Weights ``M^T M K Y / sigma^2`` (``M = L_B^{-1} Lp^{-1}`` lower triangular): two ``trmm``."""
    return np.ascontiguousarray(_lower_times(M, _lower_times(M, KY, alpha=1.0 / sigma2), transpose=True))


def _loo_residuals(xb, yb, maskb, u, M, weights, ls, sigma2):
    K = np.asarray(matern52(u, xb, ls))
    pred = K.T @ weights
    h = np.sum(_lower_times(M, K) ** 2, axis=0) / sigma2
    r2 = (yb - pred) ** 2 / ((1.0 - h) ** 2)[:, None]
    return (K * maskb[None, :]) @ r2


def _predict_batch(xb, u, weights, ls):
    return np.asarray(matern52(xb, u, ls)) @ weights


def _lower_inverse(L: np.ndarray) -> np.ndarray:
    """Inverse of a lower-triangular ``L`` (LAPACK ``trtri``: a third of the flops of solving ``L X = I``)."""
    from scipy.linalg.lapack import dtrtri

    inv, info = dtrtri(np.asfortranarray(L), lower=1)
    if info != 0:
        raise np.linalg.LinAlgError(f"Triangular inverse failed (LAPACK info {info}).")
    return np.tril(inv)


def _lower_times(T: np.ndarray, K: np.ndarray, *, transpose: bool = False, alpha: float = 1.0) -> np.ndarray:
    """``alpha T @ K`` (``alpha T^T @ K`` with ``transpose``) for a lower-triangular ``T`` by BLAS ``trmm``.

    Half the flops of a dense product. Row-major (C-ordered) operands are passed as their column-major
    transposes, so nothing is copied into Fortran order on the way in; the result is C-ordered when
    ``K`` is.
    """
    from scipy.linalg.blas import dtrmm

    t = int(transpose)
    if T.flags.f_contiguous:
        A, lower, trans = T, 1, 0
    else:  # T.T is column-major and upper triangular
        A, lower, trans = np.ascontiguousarray(T).T, 0, 1
    if K.flags.f_contiguous:
        return dtrmm(alpha, A, K, lower=lower, trans_a=trans ^ t)
    # (op(T) K)^T = K^T op(T)^T: multiply the column-major K^T from the right
    return dtrmm(alpha, A, np.ascontiguousarray(K).T, side=1, lower=lower, trans_a=trans ^ (1 - t)).T


def _symmetric_from_upper(upper: np.ndarray) -> np.ndarray:
    """The symmetric matrix whose upper triangle ``upper`` holds (what ``syrk`` fills; the rest is ignored)."""
    upper = np.triu(upper)
    return upper + np.triu(upper, k=1).T


def _gram_upper(a: np.ndarray, *, transpose: bool = False, alpha: float = 1.0) -> np.ndarray:
    """Upper triangle of ``alpha a a^T`` (``alpha a^T a`` with ``transpose``) by ``syrk``, without copies."""
    from scipy.linalg.blas import dsyrk

    if a.flags.f_contiguous:
        return dsyrk(alpha, a, trans=int(transpose))
    return dsyrk(alpha, np.ascontiguousarray(a).T, trans=int(not transpose))


def _variance_batch(xb, u, Linv, M, ls):
    K = np.asarray(matern52(u, xb, ls))
    a, c = _lower_times(Linv, K), _lower_times(M, K)
    return 1.0 - np.sum(a * a, axis=0) + np.sum(c * c, axis=0)


def _covariance_full(x, u, Linv, M, ls):
    K = np.asarray(matern52(u, x, ls))
    a, c = _lower_times(Linv, K), _lower_times(M, K)
    upper = np.asarray(matern52(x, x, ls)) - _gram_upper(a, transpose=True) + _gram_upper(c, transpose=True)
    return _symmetric_from_upper(upper)


def _dense_rows(y, start: int, stop: int, size: int) -> np.ndarray:
    block = y[start:stop]
    block = block.toarray() if sparse.issparse(block) else np.asarray(block)
    out = np.zeros((size, block.shape[1]), dtype=np.float64)
    out[: stop - start] = block
    return out


def _cell_batches(x: np.ndarray, y, design: Design, size: int):
    n = x.shape[0]
    for start, stop in iter_batches(n, size):
        xb = np.zeros((size, x.shape[1]))
        xb[: stop - start] = x[start:stop]
        mask = np.zeros(size)
        mask[: stop - start] = 1.0
        yield xb, _dense_rows(y, start, stop, size), mask


@dataclass
class RegressionPredictor:
    """A fitted multi-gene GP; mirrors the parts of :class:`mellon.Predictor` kompot uses.

    Attributes
    ----------
    design
        The shared landmark factorisation.
    weights
        ``(m, n_genes)``: ``mean(x) = k(x, landmarks) @ weights``.
    M
        ``L_B^{-1} Lp^{-1}`` for the posterior covariance.
    sigma
        Noise standard deviation.
    n_obs
        Cells fitted.
    variance_weights
        ``(m, n_genes)`` weights of the smoothed squared LOO residuals, or ``None``.
    batch_size
        Rows per prediction batch.
    residual_ss
        ``(n_genes,)`` residual sums of squares of the training cells, or ``None``.
    hat_trace
        Trace of the smoother matrix (effective number of parameters), or ``None``.
    """

    design: Design
    weights: np.ndarray
    M: np.ndarray
    sigma: float
    n_obs: int
    variance_weights: np.ndarray | None = None
    batch_size: int | None = None
    _LBinv: np.ndarray | None = field(default=None, repr=False)
    residual_ss: np.ndarray | None = None
    hat_trace: float | None = None

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

    def mean(self, x: np.ndarray, progress: bool = False) -> np.ndarray:
        """Smoothed expression ``(n_points, n_genes)`` at ``x``."""
        u, w, ls = self.design.landmarks, self.weights, self.design.ls
        return map_batches(
            lambda xb: _predict_batch(xb, u, w, ls),
            self._check(x),
            batch_size=self.batch_size,
            progress=progress,
            desc="expression",
        )[0]

    __call__ = mean

    def covariance(self, x: np.ndarray, diag: bool = True) -> np.ndarray:
        """Posterior variance ``(n_points,)`` at ``x`` (gene independent), or the full covariance matrix."""
        x = self._check(x)
        d = self.design
        if not diag:
            return _covariance_full(x, d.landmarks, d.Linv, self.M, d.ls)
        return map_batches(
            lambda xb: _variance_batch(xb, d.landmarks, d.Linv, self.M, d.ls), x, batch_size=self.batch_size
        )[0]

    def obs_variance(self, x: np.ndarray) -> np.ndarray:
        """Smoothed observation (aleatoric) variance ``(n_points, n_genes)`` at ``x``."""
        if self.variance_weights is None:
            raise ValueError("The predictor was fitted without obs_variance=True.")
        u, w, ls = self.design.landmarks, self.variance_weights, self.design.ls
        return map_batches(lambda xb: _predict_batch(xb, u, w, ls), self._check(x), batch_size=self.batch_size)[0]

    def loo_residuals_squared(self, x: np.ndarray, y, cell_batch: int = CELL_BATCH) -> np.ndarray:
        """Leave-one-out squared residuals ``r^2 / (1 - h)^2`` of the training cells ``x``/``y``."""
        x = self._check(x)
        d = self.design
        out = []
        size = min(cell_batch, max(256, -(-x.shape[0] // 256) * 256))
        for (start, stop), (xb, yb, _) in zip(
            iter_batches(x.shape[0], size), _cell_batches(x, y, d, size), strict=True
        ):
            K = np.asarray(matern52(d.landmarks, xb, d.ls))
            pred = K.T @ self.weights
            h = np.sum(_lower_times(self.M, K) ** 2, axis=0) / self.sigma**2
            out.append(((yb - pred) ** 2 / ((1 - h) ** 2)[:, None])[: stop - start])
        return np.concatenate(out)


def fit_regression(
    x: np.ndarray,
    y,
    design: Design,
    *,
    sigma: float = 1.0,
    obs_variance: bool = False,
    batch_size: int | None = None,
    cell_batch: int = CELL_BATCH,
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

    Returns
    -------
    The fitted :class:`RegressionPredictor`.
    """
    x = as_f64(x)
    n = x.shape[0]
    size = min(cell_batch, max(256, -(-n // 256) * 256))
    m, g = design.landmarks.shape[0], y.shape[1]
    AAt, KY, YY = np.zeros((m, m)), np.zeros((m, g)), np.zeros(g)
    for xb, yb, mask in _cell_batches(x, y, design, size):
        a, b = _accumulate(xb, yb, mask, design.landmarks, design.Linv, design.ls)
        AAt += a
        KY += b
        YY += np.einsum("ij,ij->j", yb, yb)  # padded rows are zero
    sigma2 = float(sigma) ** 2
    B = np.triu(AAt) / sigma2 + np.eye(m)
    LB = _cholesky_upper_stored(B)
    LBinv = _lower_inverse(LB)
    M = np.tril(_lower_times(LBinv, design.Linv))
    weights = _apply_gram_inverse(M, KY, sigma2)
    predictor = RegressionPredictor(design, weights, M, float(sigma), n, batch_size=batch_size, _LBinv=LBinv)
    predictor.residual_ss, predictor.hat_trace = _residual_statistics(AAt, KY, YY, weights, design.Linv, LBinv)
    if obs_variance:
        KR = np.zeros((m, g))
        for xb, yb, mask in _cell_batches(x, y, design, size):
            KR += _loo_residuals(xb, yb, mask, design.landmarks, M, weights, design.ls, sigma2)
        predictor.variance_weights = _apply_gram_inverse(M, KR, sigma2)
    return predictor


def _residual_statistics(
    AAt_upper: np.ndarray, KY: np.ndarray, YY: np.ndarray, weights: np.ndarray, Linv: np.ndarray, LBinv: np.ndarray
) -> tuple[np.ndarray, float]:
    """Residual sums of squares ``(n_genes,)`` and ``tr H`` from the accumulated statistics (no cell pass).

    ``sum_i (y_i - k_i^T w)^2 = y^T y - 2 w^T K Y + v^T (A A^T) v`` with ``v = Lp^T w`` (``K K^T = Lp A A^T
    Lp^T``), and ``tr H = tr(B^{-1} A A^T) / sigma^2 = m - tr(B^{-1}) = m - |L_B^{-1}|_F^2``.
    """
    from scipy.linalg import solve_triangular

    gram = _symmetric_from_upper(AAt_upper)
    v = solve_triangular(Linv, weights, lower=True, trans="T")  # Lp^T w = Linv^{-T} w
    rss = YY - 2.0 * np.einsum("ij,ij->j", weights, KY) + np.einsum("ij,ij->j", v, gram @ v)
    hat_trace = float(LBinv.shape[0] - np.sum(LBinv * LBinv))
    return np.maximum(rss, 0.0), hat_trace


def _cholesky_upper_stored(B: np.ndarray) -> np.ndarray:
    """Lower Cholesky factor of the symmetric ``B`` of which only the upper triangle is filled (LAPACK)."""
    from scipy.linalg.lapack import dpotrf

    U, info = dpotrf(np.asfortranarray(B), lower=0, clean=1)
    if info != 0:
        raise np.linalg.LinAlgError(f"Cholesky factorisation failed (LAPACK info {info}).")
    return np.ascontiguousarray(U.T)


def smooth_with(design: Design, predictor: RegressionPredictor, x: np.ndarray, r2: np.ndarray) -> np.ndarray:
    """Weights of a GP on ``r2`` using ``predictor``'s factorisation (cells ``x`` must be its training cells)."""
    x = as_f64(x)
    size = min(CELL_BATCH, max(256, -(-x.shape[0] // 256) * 256))
    m = design.landmarks.shape[0]
    KR = np.zeros((m, r2.shape[1]))
    for xb, rb, mask in _cell_batches(x, r2, design, size):
        KR += _accumulate(xb, rb, mask, design.landmarks, design.Linv, design.ls, with_gram=False)[1]
    return _apply_gram_inverse(predictor.M, KR, predictor.sigma**2)
