"""A small, dependency-free transition matrix for examples and tests (until cellflux-kernels is installed)."""

from __future__ import annotations

import numpy as np
from scipy import sparse
from scipy.spatial import cKDTree

__all__ = ["knn_transition_matrix"]


def knn_transition_matrix(
    coords: np.ndarray, time: np.ndarray, *, n_neighbors: int = 30, bias: float = 5.0, backflow: float = 0.05
) -> sparse.csr_matrix:
    """A forward-biased kNN random walk: a pseudotime kernel in miniature.

    Weights are ``exp(-(d / mean d)^2) * sigmoid(bias * dt / sd(t))`` over the ``n_neighbors`` nearest
    neighbours (``dt`` = neighbour's time minus the cell's), plus ``backflow`` times the reversed edges so the
    chain stays irreducible; rows are normalised.

    Parameters
    ----------
    coords
        Cell coordinates (e.g. PCA), ``(n, d)``.
    time
        A pseudotime per cell.
    n_neighbors
        Neighbours per cell.
    bias
        Strength of the forward bias.
    backflow
        Weight of reversed edges.

    Returns
    -------
    Row-stochastic CSR matrix ``(n, n)``.
    """
    coords = np.asarray(coords, dtype=np.float64)
    time = np.asarray(time, dtype=np.float64)
    n = len(coords)
    k = min(n_neighbors, n - 1)
    dist, idx = cKDTree(coords).query(coords, k=k + 1)
    dist, idx = dist[:, 1:], idx[:, 1:]
    dt = (time[idx] - time[:, None]) / (np.std(time) + 1e-12)
    w = np.exp(-((dist / (dist.mean() + 1e-12)) ** 2)) / (1.0 + np.exp(-bias * dt))
    rows = np.repeat(np.arange(n), k)
    mat = sparse.csr_matrix((w.ravel() + 1e-12, (rows, idx.ravel())), shape=(n, n))
    mat = sparse.csr_matrix(mat + backflow * mat.T)
    sums = np.asarray(mat.sum(axis=1)).ravel()
    return sparse.csr_matrix(sparse.diags(1.0 / sums) @ mat)
