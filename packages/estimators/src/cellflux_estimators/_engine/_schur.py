"""Partial real Schur decomposition of a row-stochastic matrix, without PETSc/SLEPc.

``method="krylov"`` runs our Krylov–Schur iteration (:func:`~._krylov_schur.krylov_schur`) on the sparse
matrix until the *invariant subspace* of the dominant eigenvalues has converged (ARPACK would also wait for
every eigenvector inside it to separate from its neighbours, which on large, slowly mixing chains costs ~40%
more products), then computes the real Schur form of the projected matrix (Rayleigh–Ritz), sorted with
:func:`~._sort_schur.sort_schur`. Memory is ``O(nnz + n m)`` with ``m`` the Krylov subspace size.
``method="dense"`` computes the full real Schur form with LAPACK, only below :data:`DENSE_MAX` states.

As in GPCCA [Reuter18]_, the matrix is first weighted by the input distribution ``eta``
(``P_bar = D^(1/2) P D^(-1/2)``, ``D = diag(eta)``) and the returned Schur vectors ``X`` are
``eta``-orthonormal (``X.T @ diag(eta) @ X = I``) with a constant first column of ones.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy import linalg, sparse
from scipy.linalg import lapack

from ._krylov_schur import krylov_schur
from ._sort_schur import Which, schur_eigenvalues, sort_key, sort_schur
from ._threads import single_blas_thread

__all__ = [
    "DENSE_MAX",
    "AUTO_DENSE_MAX",
    "SchurResult",
    "default_tol",
    "eta_orthonormalize",
    "partial_schur",
    "splits_pair",
]

logger = logging.getLogger(__name__)

#: Above this many states a dense decomposition is refused (it would need n x n dense memory).
DENSE_MAX = 2_000
#: Smallest Krylov subspace size (per restart cycle) of the Krylov method.
NCV_MIN = 60
#: Default limit on matrix products of the Krylov method.
MAXITER = 200_000
#: Default ``tol`` up to this many states; above it :data:`LARGE_TOL` (see :func:`default_tol`).
LARGE_N = 20_000
#: Default ``tol`` above :data:`LARGE_N` states.
LARGE_TOL = 1e-10
#: ``method="auto"`` uses the dense decomposition up to this many states.
AUTO_DENSE_MAX = 300


@dataclass(frozen=True)
class SchurResult:
    """A partial real Schur decomposition ``P X = X R``.

    Attributes
    ----------
    vectors
        ``X``, shape ``(n, k)``: ``eta``-orthonormal Schur vectors, first column constant 1.
    matrix
        ``R``, shape ``(k, k)``: quasi-upper-triangular real Schur form.
    eigenvalues
        The ``k`` eigenvalues (complex), sorted by ``which``, descending.
    which
        The sorting criterion.
    method
        ``"krylov"`` or ``"dense"``.
    residual
        ``||P X - X R||_F / ||X||_F``, with ``X`` the Euclidean-orthonormal basis before the ``eta`` scaling.
    """

    vectors: np.ndarray
    matrix: np.ndarray
    eigenvalues: np.ndarray
    which: str
    method: str
    residual: float


def splits_pair(eigenvalues: np.ndarray, k: int, tol: float = 1e-12) -> bool:
    """Whether keeping the first ``k`` of ``eigenvalues`` cuts a complex-conjugate pair in two."""
    if k <= 0 or k >= len(eigenvalues):
        return False
    head = eigenvalues[:k]
    last = head[-1]
    if abs(last.imag) <= tol:
        return False
    n_pos = int(np.sum(head.imag > tol))
    n_neg = int(np.sum(head.imag < -tol))
    return n_pos != n_neg


def _weighted(matrix: sparse.csr_matrix, eta: np.ndarray | None) -> sparse.csr_matrix:
    if eta is None:
        return matrix
    s = np.sqrt(eta)
    return sparse.csr_matrix(sparse.diags(s) @ matrix @ sparse.diags(1.0 / s))


def _select(values: np.ndarray, k: int, which: Which, tol: float) -> tuple[np.ndarray, int]:
    """Indices of the top eigenvalues, sorted, and ``k`` enlarged so no conjugate pair is split."""
    order = np.lexsort((-values.imag, -np.round(sort_key(values, which), 12)))
    values = values[order]
    if splits_pair(values, k, tol):
        logger.info(
            "Using %d Schur vectors would split a pair of complex-conjugate eigenvalues; using n_components=%d.",
            k,
            k + 1,
        )
        k += 1
    return order[:k], k


def partial_schur(
    matrix: sparse.spmatrix,
    k: int,
    *,
    which: Which = "LR",
    method: Literal["krylov", "dense", "auto"] = "auto",
    eta: np.ndarray | None = None,
    tol: float | None = None,
    maxiter: int | None = None,
    ncv: int | None = None,
    seed: int = 0,
) -> SchurResult:
    """Compute the ``k`` dominant real Schur vectors of a row-stochastic sparse matrix.

    Parameters
    ----------
    matrix
        Row-stochastic transition matrix, shape ``(n, n)``.
    k
        Number of Schur vectors; increased by one (with a log message) if it would split a complex pair.
    which
        ``"LR"`` (largest real part) or ``"LM"`` (largest magnitude).
    method
        ``"krylov"`` (sparse, any size), ``"dense"`` (LAPACK, up to :data:`DENSE_MAX` states) or ``"auto"``.
    eta
        Input distribution over states (uniform if ``None``).
    tol
        Relative residual ``||P_bar Q - Q R|| / ||R||`` of the partial Schur form at which the Krylov method
        stops; the subspace is then accurate to about ``tol / gap`` (gap: between the ``k``-th and next
        eigenvalue). Default (:func:`default_tol`): ``1e-12``, ``1e-10`` above 20,000 states.
    maxiter, ncv
        Largest number of matrix products and Krylov subspace size per restart (default ``max(2 k + 1, 40)``).
    seed
        Seed of the Krylov start vector (results are reproducible).

    Returns
    -------
    The decomposition as a :class:`SchurResult`.
    """
    mat = sparse.csr_matrix(matrix, dtype=np.float64)
    n = mat.shape[0]
    if which not in ("LR", "LM"):
        raise ValueError(f"which={which!r} is not supported; use 'LR' or 'LM'.")
    if not isinstance(k, (int, np.integer)) or k < 2:
        raise ValueError(f"n_components must be an integer >= 2, got {k!r}.")
    if k >= n:
        raise ValueError(f"n_components={k} must be smaller than the number of states ({n}).")
    if eta is None:
        eta_w = None
        eta = np.full(n, 1.0 / n)
    else:
        eta = np.asarray(eta, dtype=np.float64)
        if eta.shape != (n,) or np.any(eta <= 0) or not np.isclose(eta.sum(), 1.0):
            raise ValueError("initial_distribution must be a positive vector of length n_cells summing to 1.")
        eta_w = eta
    tol = default_tol(n) if tol is None else float(tol)
    if method == "auto":
        method = "dense" if n <= AUTO_DENSE_MAX or k + 2 >= n - 1 else "krylov"
    pbar = _weighted(mat, eta_w)
    imag_tol = 1e-10
    if method == "dense":
        if n > DENSE_MAX:
            raise ValueError(
                f"method='dense' densifies the {n} x {n} matrix; it is allowed up to {DENSE_MAX} states. "
                "Use method='krylov' (sparse)."
            )
        t_full, z_full = linalg.schur(pbar.toarray(), output="real")
        values = schur_eigenvalues(t_full)  # in the order of the diagonal
        idx, k = _select(values, k, which, imag_tol)
        select = np.zeros(n, dtype=np.int32)
        select[idx] = 1
        # move the selected cluster to the top in one LAPACK call, then sort inside the small block
        t_full, z_full, *_, info = lapack.dtrsen(select, t_full, z_full, job="N")
        if info != 0:
            raise np.linalg.LinAlgError(f"Reordering the Schur form failed (LAPACK dtrsen info={info}).")
        t, z_small = sort_schur(t_full[:k, :k], np.eye(k), k, which)
        basis, r = z_full[:, :k] @ z_small, t
    elif method == "krylov":
        v0 = np.random.default_rng(seed).random(n) + 0.5
        m = min(n - 1, ncv if ncv is not None else max(2 * k + 1, NCV_MIN))
        with single_blas_thread():
            ks = krylov_schur(pbar, k, which=which, m=m, tol=tol, maxiter=maxiter or MAXITER, v0=v0)
        if ks.basis.shape[1] > k:
            logger.info(
                "Using %d Schur vectors would split a pair of complex-conjugate eigenvalues; using n_components=%d.",
                k,
                ks.basis.shape[1],
            )
            k = ks.basis.shape[1]
        basis = ks.basis
        projected = basis.T @ (pbar @ basis)
        t_small, z_small = linalg.schur(projected, output="real")
        t, z_small = sort_schur(t_small, z_small, k, which)
        basis, r = basis @ z_small, t
    else:
        raise ValueError(f"method={method!r} is not supported; use 'krylov', 'dense' or 'auto'.")
    residual = float(np.linalg.norm(pbar @ basis - basis @ r) / np.sqrt(k))
    eigenvalues = schur_eigenvalues(r)
    vectors = eta_orthonormalize(basis, eta)
    return SchurResult(
        vectors=vectors, matrix=r, eigenvalues=eigenvalues, which=which, method=method, residual=residual
    )


def default_tol(n: int) -> float:
    """Default tolerance of the Krylov method for ``n`` states.

    ``1e-12``, or :data:`LARGE_TOL` above :data:`LARGE_N` states: large chains have bunched leading eigenvalues,
    and ``1e-10`` still gives Schur vectors accurate to ``1e-10 / gap``, far below what macrostates and fate
    probabilities resolve.
    """
    return LARGE_TOL if n > LARGE_N else 1e-12


def eta_orthonormalize(q: np.ndarray, eta: np.ndarray) -> np.ndarray:
    """Turn an orthonormal basis ``q`` of an invariant subspace of ``P_bar`` into GPCCA's Schur vectors ``X``.

    The first column of the result is constant 1 and ``X.T @ diag(eta) @ X = I``. The constant vector must
    lie in the subspace (the eigenvalue 1 must be among the computed ones).
    """
    m = q.shape[1]
    sqrt_eta = np.sqrt(eta)
    coef = q.T @ sqrt_eta
    off = np.linalg.norm(q @ coef - sqrt_eta)
    if off > 1e-6:
        raise ValueError(
            "The constant vector is not in the computed invariant subspace (distance "
            f"{off:.2e}): the eigenvalue 1 is not among the dominant ones. Is the matrix row-stochastic, "
            "and is `which` right?"
        )
    cols = q.copy()
    # the column most aligned with the constant vector is replaced by it (it is the constant Schur vector
    # when one exists); the first column takes its place, as in GPCCA
    swap = int(np.argmax(np.abs(coef)))
    if swap != 0:
        cols[:, swap] = cols[:, 0]
    cols[:, 0] = sqrt_eta
    out = np.empty_like(cols)
    for j in range(m):
        v = cols[:, j].copy()
        for i in range(j):
            v -= (out[:, i] @ v) * out[:, i]
        norm = np.linalg.norm(v)
        if norm < 1e-12:
            raise np.linalg.LinAlgError("The Schur vectors are linearly dependent; the decomposition is degenerate.")
        out[:, j] = v / norm
    x = out / sqrt_eta[:, None]
    x[:, 0] = 1.0
    return x
