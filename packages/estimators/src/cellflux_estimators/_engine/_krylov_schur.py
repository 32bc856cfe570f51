"""Krylov–Schur (Stewart 2001) for the dominant invariant subspace of a sparse matrix, in numpy.

ARPACK (``scipy.sparse.linalg.eigs``) stops when every wanted Ritz *vector* has converged, which on the
bunched spectra of large, slowly mixing chains (eigenvalues ``1, 1 - 3e-6, ..., 0.99993``) means separating
eigenvectors from each other across tiny gaps. GPCCA only needs the *invariant subspace* of the ``k``
dominant eigenvalues (any orthonormal basis of it; the Schur form is recomputed by Rayleigh–Ritz afterwards).
Here the Krylov decomposition ``A V_m = V_m S + v_{m+1} b^T`` is restarted in Krylov–Schur form (real Schur
form of ``S``, wanted eigenvalues first, complex pairs kept whole) and convergence is declared when the
residual of the whole leading ``k``-dimensional partial Schur form, ``||b^T Z_k||``, is below
``tol * ||S||``: the subspace is then invariant to that accuracy, whatever the gaps inside it.

Orthogonalisation is classical Gram–Schmidt (level-2 BLAS over the basis held as rows), repeated only when
cancellation is detected (the DGKS criterion): on large chains reading the basis is what costs the time.
Memory is ``(m + 1) n`` floats.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from scipy import linalg, sparse

from ._sort_schur import Which, sort_schur

__all__ = ["KrylovSchurResult", "krylov_schur"]

logger = logging.getLogger(__name__)

#: Re-orthogonalise when Gram–Schmidt leaves less than this fraction of the vector's norm.
DGKS = 0.7071


@dataclass(frozen=True)
class KrylovSchurResult:
    """An orthonormal basis of the dominant invariant subspace and how it was obtained.

    Attributes
    ----------
    basis
        ``(n, k)``, orthonormal columns spanning the invariant subspace (``k`` may exceed the request by one
        to keep a complex pair whole).
    residual
        ``||A Q - Q T||_2`` estimate from the Krylov decomposition, relative to ``||S||``.
    n_matvecs
        Number of products with the matrix.
    n_restarts
        Number of restarts.
    converged
        Whether the residual reached the tolerance.
    """

    basis: np.ndarray
    residual: float
    n_matvecs: int
    n_restarts: int
    converged: bool


def _keep_pairs(t: np.ndarray, p: int) -> int:
    """``p`` enlarged by one if position ``p`` would cut a 2x2 block of the quasi-triangular ``t``."""
    if 0 < p < t.shape[0] and t[p, p - 1] != 0.0:
        return p + 1
    return p


def krylov_schur(
    a: sparse.spmatrix,
    k: int,
    *,
    which: Which = "LR",
    m: int | None = None,
    tol: float = 1e-12,
    maxiter: int = 100_000,
    v0: np.ndarray | None = None,
    seed: int = 0,
) -> KrylovSchurResult:
    """Orthonormal basis of the invariant subspace of the ``k`` dominant eigenvalues of ``a``.

    Parameters
    ----------
    a
        Square sparse (or dense) matrix ``(n, n)``, real.
    k
        Dimension of the wanted subspace (enlarged by one if it would split a complex pair).
    which
        ``"LR"`` (largest real part) or ``"LM"`` (largest modulus).
    m
        Krylov subspace size per cycle (default ``max(2 k + 1, 40)``, at most ``n - 1``).
    tol
        Relative residual of the partial Schur form to reach.
    maxiter
        Largest number of matrix products.
    v0
        Start vector (random if ``None``).
    seed
        Seed of the random start vector.

    Returns
    -------
    The :class:`KrylovSchurResult`.
    """
    n = a.shape[0]
    m = min(n - 1, m if m is not None else max(2 * k + 1, 40))
    if not 1 <= k < m:
        raise ValueError(f"Krylov–Schur needs 1 <= k < m < n, got k={k}, m={m}, n={n}.")
    v = np.zeros((m + 1, n))
    b = np.zeros((m + 1, m))  # a V_m = V_{m+1} b
    start = np.random.default_rng(seed).random(n) + 0.5 if v0 is None else np.asarray(v0, dtype=np.float64)
    v[0] = start / np.linalg.norm(start)
    p, n_mv, n_restarts = 0, 0, 0
    residual, kk = np.inf, k
    while True:
        for j in range(p, m):
            w = a @ v[j]
            n_mv += 1
            basis = v[: j + 1]
            norm0 = float(np.linalg.norm(w))
            h = basis @ w
            w -= h @ basis
            beta = float(np.linalg.norm(w))
            if beta < DGKS * norm0:  # cancellation: orthogonalise again (Daniel–Gragg–Kaufman–Stewart)
                h2 = basis @ w
                w -= h2 @ basis
                h += h2
                beta = float(np.linalg.norm(w))
            b[: j + 1, j] = h
            b[j + 1, j] = beta
            if beta < 1e-14 * max(1.0, float(np.abs(h).max())):
                # invariant subspace found: continue with a fresh random direction orthogonal to the basis
                w = np.random.default_rng(seed + n_mv).standard_normal(n)
                for _ in range(2):
                    w -= (basis @ w) @ basis
                beta = float(np.linalg.norm(w))
                b[j + 1, j] = 0.0
            v[j + 1] = w / beta
        s = b[:m, :m]
        t, z = linalg.schur(s, output="real")
        t, z = sort_schur(t, z, m, which)
        kk = _keep_pairs(t, k)
        coupling = b[m, :m] @ z
        scale = max(1.0, float(np.abs(t).max()))
        residual = float(np.linalg.norm(coupling[:kk])) / scale
        if residual <= tol or n_mv >= maxiter:
            break
        # keep the wanted part plus about half of the rest (a thick restart), pairs whole
        p = _keep_pairs(t, min(m - 1, kk + max((m - kk) // 2, 1)))
        if p >= m:
            p = _keep_pairs(t, kk)
        v[:p] = z[:, :p].T @ v[:m]
        v[p] = v[m]
        b[:] = 0.0
        b[:p, :p] = t[:p, :p]
        b[p, :p] = coupling[:p]
        n_restarts += 1
    q = z[:, :kk].T @ v[:m]
    converged = residual <= tol
    if not converged:
        logger.warning(
            "Krylov–Schur stopped after %d matrix products with relative residual %.3g > tol=%.1g.",
            n_mv,
            residual,
            tol,
        )
    return KrylovSchurResult(
        basis=np.ascontiguousarray(q.T), residual=residual, n_matvecs=n_mv, n_restarts=n_restarts, converged=converged
    )
