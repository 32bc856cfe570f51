"""Eigendecomposition of a transition matrix (left and right eigenvectors) and the eigengap."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy import linalg, sparse
from scipy.sparse import linalg as splinalg

from ._schur import DENSE_MAX
from ._threads import single_blas_thread

__all__ = ["Eigendecomposition", "eigendecomposition", "eigengap", "stationary_distribution"]

logger = logging.getLogger(__name__)


def eigengap(eigenvalues: np.ndarray, alpha: float = 1.0) -> int:
    """Index of the eigengap: ``argmax_i (l_i - l_{i+1}) - alpha (1 - l_i)`` over real parts sorted descending.

    The number of states suggested by the gap is the returned index + 1.
    """
    ev = np.sort(np.real(np.asarray(eigenvalues)))[::-1]
    if len(ev) < 2:
        raise ValueError("The eigengap needs at least 2 eigenvalues.")
    gap, eps = ev[:-1] - ev[1:], (1.0 - ev)[:-1]
    return int(np.argmax(gap - alpha * eps))


@dataclass(frozen=True)
class Eigendecomposition:
    """Top eigenvalues and eigenvectors of a transition matrix, sorted by real part (descending).

    Attributes
    ----------
    eigenvalues
        Complex eigenvalues ``(k,)``.
    left, right
        Left and right eigenvectors ``(n, k)`` (``None`` with ``only_evals``).
    stationary
        Stationary distribution from the first left eigenvector (``None`` with ``only_evals``).
    eigengap
        See :func:`eigengap`.
    which, alpha
        Parameters used.
    """

    eigenvalues: np.ndarray
    left: np.ndarray | None
    right: np.ndarray | None
    stationary: np.ndarray | None
    eigengap: int
    which: str
    alpha: float


def _eigs(mat: sparse.csr_matrix, k: int, which: str, seed: int, tol: float) -> tuple[np.ndarray, np.ndarray]:
    n = mat.shape[0]
    if k >= n - 1:
        if n > DENSE_MAX:
            raise ValueError(f"k={k} eigenvectors of a {n}-state chain need k < n - 1 for the sparse solver.")
        vals, vecs = linalg.eig(mat.toarray())
        return vals, vecs
    v0 = np.random.default_rng(seed).random(n) + 0.5
    with single_blas_thread():
        return splinalg.eigs(mat, k=k, which=which, v0=v0, tol=tol)


def eigendecomposition(
    matrix: sparse.csr_matrix,
    k: int = 20,
    *,
    which: Literal["LR", "LM"] = "LR",
    alpha: float = 1.0,
    only_evals: bool = False,
    seed: int = 0,
    tol: float = 1e-12,
) -> Eigendecomposition:
    """Top ``k`` eigenvalues (and left/right eigenvectors) of ``matrix`` with ARPACK.

    Parameters
    ----------
    matrix
        Row-stochastic transition matrix.
    k
        Number of eigenvalues.
    which
        ``"LR"`` or ``"LM"`` (ARPACK's selection).
    alpha
        Weight of the deviation from 1 in the :func:`eigengap`.
    only_evals
        Skip the eigenvectors.
    seed
        Seed of the start vector.
    tol
        ARPACK tolerance.

    Returns
    -------
    The :class:`Eigendecomposition`.
    """
    if which not in ("LR", "LM"):
        raise ValueError(f"which={which!r} is not supported; use 'LR' or 'LM'.")
    mat = sparse.csr_matrix(matrix)
    vals, left = _eigs(sparse.csr_matrix(mat.T), k, which, seed, tol)
    order = np.lexsort((-vals.imag, -np.round(vals.real, 12)))[:k]
    vals, left = vals[order], left[:, order]
    gap = eigengap(vals, alpha)
    if only_evals:
        return Eigendecomposition(vals, None, None, None, gap, which, alpha)
    rvals, right = _eigs(mat, k, which, seed, tol)
    rorder = np.lexsort((-rvals.imag, -np.round(rvals.real, 12)))[:k]
    right = right[:, rorder]
    pi = np.abs(left[:, 0].real)
    pi /= pi.sum()
    return Eigendecomposition(vals, left, right, pi, gap, which, alpha)


def stationary_distribution(matrix: sparse.csr_matrix, *, seed: int = 0, tol: float = 1e-12) -> np.ndarray:
    """Stationary distribution of an irreducible chain: the dominant left eigenvector (ARPACK), normalised."""
    v0 = np.random.default_rng(seed).random(matrix.shape[0]) + 0.5
    with single_blas_thread():
        _, vec = splinalg.eigs(sparse.csr_matrix(matrix.T), k=1, which="LM", v0=v0, tol=tol)
    pi = np.abs(vec[:, 0].real)
    return pi / pi.sum()
