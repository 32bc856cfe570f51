"""GPCCA: fuzzy macrostates from Schur vectors (inner simplex algorithm + crispness optimisation).

The mathematics follows Röblitz & Weber (2013) and Reuter et al. (2018, 2019), as implemented in
pyGPCCA: the memberships are ``chi = X A`` for the ``eta``-orthonormal Schur vectors ``X`` (first column
constant) and a feasible rotation matrix ``A``. The inner simplex algorithm (ISA) picks ``m`` vertex
states and gives the start ``A = X[vertices]^-1``; Nelder–Mead then maximises the crispness
``trace(diag(1 / A[0]) A^T A) / m`` over ``A[1:, 1:]``, the first row and column being fixed by
feasibility (non-negativity and partition of unity).
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass

import numpy as np
from scipy import sparse
from scipy.optimize import fmin

from ._schur import splits_pair
from ._support import ColumnMax
from ._threads import single_blas_thread

__all__ = [
    "GPCCAResult",
    "coarse_grain",
    "coarse_stationary",
    "fill_rotation",
    "gpcca_memberships",
    "index_search",
    "min_chi",
    "objective",
    "optimize_gpcca",
]

logger = logging.getLogger(__name__)
_EPS = np.finfo(np.float64).eps


def index_search(x: np.ndarray) -> np.ndarray:
    """The inner simplex algorithm: indices of ``m`` states that span a simplex around the rows of ``x``."""
    n, m = x.shape
    if n < m:
        raise ValueError(f"Cannot find a {m}-vertex simplex among {n} states.")
    spread = np.ptp(x, axis=0)
    if not np.isclose(1.0 + spread[0], 1.0, rtol=1e-6):
        raise ValueError("The first Schur vector is not constant; the Schur vectors are not sorted correctly.")
    if np.any(spread[1:] <= 1e-6):
        raise ValueError(
            f"{int(np.sum(spread[1:] <= 1e-6))} Schur vector(s) after the first are constant: the chain has "
            "more closed classes than can be separated. Check the kernel for disconnected cells."
        )
    ortho = x.copy()
    index = np.zeros(m, dtype=np.int64)
    index[0] = int(np.argmax(np.linalg.norm(ortho, axis=1)))
    ortho -= ortho[index[0]]
    for j in range(1, m):
        temp = ortho[index[j - 1]].copy()
        ortho -= np.outer(ortho @ temp, temp)
        dist = np.linalg.norm(ortho, axis=1)
        index[j] = int(np.argmax(dist))
        ortho /= dist[index[j]]
    return index


def fill_rotation(rot: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Complete ``rot[1:, 1:]`` to a feasible rotation matrix (rows of ``x @ rot`` >= 0 and summing to 1)."""
    rot = rot.copy()
    rot[1:, 0] = -rot[1:, 1:].sum(axis=1)
    rot[0, :] = np.max(-(x[:, 1:] @ rot[1:, :]), axis=0)
    rot /= rot[0, :].sum()
    return rot


def objective(alpha: np.ndarray, x: np.ndarray) -> float:
    """``m - trace(diag(1 / A[0]) A^T A)`` for the rotation matrix completed from ``alpha = A[1:, 1:].ravel()``."""
    m = x.shape[1]
    rot = np.zeros((m, m))
    rot[1:, 1:] = alpha.reshape(m - 1, m - 1)
    rot = fill_rotation(rot, x)
    return float(m - np.sum((rot**2).sum(axis=0) / rot[0, :]))


def _objective_fast(alpha: np.ndarray, m: int, colmax: ColumnMax) -> float:
    rot = np.zeros((m, m))
    rot[1:, 1:] = alpha.reshape(m - 1, m - 1)
    rot[1:, 0] = -rot[1:, 1:].sum(axis=1)
    rot[0, :] = colmax(rot[1:, :])
    rot /= rot[0, :].sum()
    return float(m - np.sum((rot**2).sum(axis=0) / rot[0, :]))


def gpcca_memberships(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """Optimised GPCCA memberships for the Schur vectors ``x`` (shape ``(n, m)``).

    Returns
    -------
    ``chi`` (n, m), the rotation matrix (m, m) and the crispness in ``[0, 1]``.
    """
    m = x.shape[1]
    if m < 2:
        raise ValueError("GPCCA needs at least 2 Schur vectors.")
    index = index_search(x)
    cond = np.linalg.cond(x[index, :])
    if cond >= 1.0 / _EPS:
        raise ValueError(f"The simplex vertices are degenerate (condition number {cond:.3g}); try another n_states.")
    rot = np.linalg.pinv(x[index, :])
    alpha0 = rot[1:, 1:].ravel()
    colmax = ColumnMax(-x[:, 1:])
    with single_blas_thread():
        alpha, fopt, *_ = fmin(_objective_fast, alpha0, args=(m, colmax), full_output=True, disp=False)
    rot[1:, 1:] = alpha.reshape(m - 1, m - 1)
    rot = fill_rotation(rot, x)
    chi = x @ rot
    if np.any(chi < 0.0):
        if np.any(chi < -1e4 * _EPS):
            raise ValueError(f"The memberships have significantly negative entries (min {chi.min():.3g}).")
        chi[chi < 0.0] = 0.0
        chi /= chi.sum(axis=1, keepdims=True)
    crispness = (m - fopt) / m
    return chi, rot, float(crispness)


def min_chi(x: np.ndarray, m_min: int, m_max: int) -> np.ndarray:
    """The minChi indicator (minimum of the ISA memberships) for each ``m`` in ``[m_min, m_max]``."""
    out = []
    for m in range(m_min, m_max + 1):
        xm = x[:, :m]
        out.append(float(np.min(xm @ np.linalg.pinv(xm[index_search(xm), :]))))
    return np.asarray(out)


def coarse_stationary(coarse_t: np.ndarray) -> np.ndarray:
    """Stationary distribution of the coarse-grained chain: its left eigenvector for the eigenvalue closest to 1.

    When ``chi`` spans an invariant subspace of ``P`` (as GPCCA's memberships do), ``P_c`` is similar to the
    Schur form restricted to that subspace and ``chi^T pi`` is exactly this vector, so the fine stationary
    distribution — an expensive, slowly converging eigenproblem on large chains — is not needed.
    """
    vals, vecs = np.linalg.eig(coarse_t.T)
    v = np.real(vecs[:, int(np.argmin(np.abs(vals - 1.0)))])
    v = v / v.sum()
    return np.clip(v, 0.0, None) / np.clip(v, 0.0, None).sum()


def coarse_grain(matrix: sparse.spmatrix, eta: np.ndarray, chi: np.ndarray) -> np.ndarray:
    """``P_c = (chi^T D chi)^-1 (chi^T D P chi)`` with ``D = diag(eta)``; never densifies ``P``."""
    w = np.linalg.pinv(chi.T @ (chi * eta[:, None]))
    a = (chi * eta[:, None]).T @ (matrix @ chi)
    return w @ a


@dataclass(frozen=True)
class GPCCAResult:
    """The outcome of :func:`optimize_gpcca`.

    Attributes
    ----------
    n_states
        The chosen number of macrostates.
    memberships
        ``chi``, shape ``(n, n_states)``.
    rotation
        The rotation matrix.
    crispness
        Crispness of each tried number of states (negative where the clustering was invalid, 0 where skipped).
    tried
        The numbers of states tried.
    coarse_T
        Coarse-grained transition matrix.
    coarse_init
        Coarse-grained input distribution ``chi^T eta``.
    coarse_stat
        Coarse-grained stationary distribution ``chi^T pi`` (``None`` when not asked for).
    """

    n_states: int
    memberships: np.ndarray
    rotation: np.ndarray
    crispness: np.ndarray
    tried: np.ndarray
    coarse_T: np.ndarray
    coarse_init: np.ndarray
    coarse_stat: np.ndarray | None


def optimize_gpcca(
    matrix: sparse.spmatrix,
    schur_vectors: np.ndarray,
    eigenvalues: np.ndarray,
    n_states: int | tuple[int, int],
    *,
    eta: np.ndarray | None = None,
    stationary: np.ndarray | None = None,
    coarse_stationary_from_coarse: bool = False,
    n_closed: int = 1,
) -> GPCCAResult:
    """Run GPCCA for one number of states or pick the crispest in a range ``(min, max)``.

    Parameters
    ----------
    matrix
        The transition matrix.
    schur_vectors, eigenvalues
        From :func:`~._schur.partial_schur`.
    n_states
        An integer, or ``(min, max)`` inclusive.
    eta
        Input distribution (uniform if ``None``).
    stationary
        Stationary distribution, for the coarse stationary distribution ``chi^T pi``.
    coarse_stationary_from_coarse
        Without ``stationary``, take the coarse stationary distribution from the coarse-grained chain
        (:func:`coarse_stationary`; for irreducible chains).
    n_closed
        Number of closed classes of the chain: fewer states than that are invalid.

    Returns
    -------
    The :class:`GPCCAResult`.
    """
    n, n_vec = schur_vectors.shape
    if isinstance(n_states, (int, np.integer)):
        lo = hi = int(n_states)
    else:
        lo, hi = (int(v) for v in n_states)
        if lo >= hi:
            raise ValueError(f"The range of n_states must have min < max, got {n_states!r}.")
    if lo < 2:
        raise ValueError(f"GPCCA needs n_states >= 2, got {lo}.")
    if hi > n_vec:
        raise ValueError(
            f"n_states={hi} needs {hi} Schur vectors, but only {n_vec} were computed. "
            f"Recompute with compute_schur(n_components={hi + 1})."
        )
    eta = np.full(n, 1.0 / n) if eta is None else eta
    results, crisp = [], []
    for m in range(lo, hi + 1):
        if splits_pair(eigenvalues, m):
            if lo == hi:
                raise ValueError(
                    f"n_states={m} would split a pair of complex-conjugate eigenvalues; "
                    f"use n_states={m + 1} or {m - 1}."
                )
            crisp.append(0.0)
            results.append(None)
            continue
        chi, rot, c = gpcca_memberships(schur_vectors[:, :m])
        n_meta = int(np.count_nonzero(chi.sum(axis=0)))
        if m > n_meta:
            warnings.warn(f"{m} macrostates requested, but the chain only has {n_meta}.", UserWarning, stacklevel=2)
            c = -c
        elif m < n_closed:
            warnings.warn(
                f"{m} macrostates are fewer than the {n_closed} closed classes of the chain.", UserWarning, stacklevel=2
            )
            c = -c
        crisp.append(c)
        results.append((chi, rot))
    crisp_arr = np.asarray(crisp)
    if not np.any(crisp_arr > 0):
        raise ValueError(f"GPCCA found no valid clustering for n_states in [{lo}, {hi}]; try other numbers.")
    best = int(np.argmax(crisp_arr))
    chi, rot = results[best]
    m = lo + best
    coarse_t = coarse_grain(matrix, eta, chi)
    if stationary is not None:
        coarse_stat = chi.T @ stationary
    elif coarse_stationary_from_coarse:
        coarse_stat = coarse_stationary(coarse_t)
    else:
        coarse_stat = None
    return GPCCAResult(
        n_states=m,
        memberships=chi,
        rotation=rot,
        crispness=crisp_arr,
        tried=np.arange(lo, hi + 1),
        coarse_T=coarse_t,
        coarse_init=chi.T @ eta,
        coarse_stat=coarse_stat,
    )
