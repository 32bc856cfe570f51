"""A small kNN graph, moments and PCA for data without a preprocessing library (the simulator, tests)."""

from __future__ import annotations

import numpy as np
from scipy import sparse
from scipy.spatial import cKDTree

__all__ = ["knn_connectivities", "moments", "pca"]


def pca(X: np.ndarray, n_components: int, *, seed: int = 0) -> np.ndarray:
    """Principal component scores of the centred ``X`` (dense), by randomized SVD."""
    X = np.asarray(X, dtype=np.float64)
    X = X - X.mean(axis=0)
    n_components = min(n_components, min(X.shape) - 1)
    rng = np.random.default_rng(seed)
    sketch = X @ rng.standard_normal((X.shape[1], n_components + 10))
    for _ in range(4):
        sketch, _ = np.linalg.qr(X @ (X.T @ sketch))
    Q, _ = np.linalg.qr(sketch)
    U, s, _ = np.linalg.svd(Q.T @ X, full_matrices=False)
    scores = (Q @ U[:, :n_components]) * s[:n_components]
    signs = np.sign(scores[np.abs(scores).argmax(axis=0), np.arange(n_components)])
    return scores * signs


def knn_connectivities(Y: np.ndarray, n_neighbors: int) -> tuple[sparse.csr_matrix, sparse.csr_matrix]:
    """Symmetric Gaussian connectivities and distances of the ``n_neighbors``-NN graph (self excluded).

    Each cell's kernel width is the distance to its farthest neighbour (an adaptive Gaussian kernel,
    as in scanpy's ``method='gauss'``); the connectivities are symmetrised by the maximum.
    """
    Y = np.asarray(Y, dtype=np.float64)
    n = Y.shape[0]
    k = min(n_neighbors, n - 1)
    dist, idx = cKDTree(Y).query(Y, k=k + 1)
    dist, idx = dist[:, 1:], idx[:, 1:]
    sigma = np.maximum(dist[:, -1], 1e-12)
    rows = np.repeat(np.arange(n), k)
    weights = np.exp(-(dist.ravel() ** 2) / (sigma[rows] * sigma[idx.ravel()]))
    W = sparse.csr_matrix((weights, (rows, idx.ravel())), shape=(n, n))
    conn = W.maximum(W.T).tocsr()
    D = sparse.csr_matrix((dist.ravel(), (rows, idx.ravel())), shape=(n, n))
    conn.sort_indices()
    D.sort_indices()
    return conn, D


def moments(connectivities: sparse.spmatrix, X: np.ndarray | sparse.spmatrix) -> tuple[np.ndarray, np.ndarray]:
    """First moment and centred second moment of ``X`` over each cell's neighbourhood (itself included).

    As scVelo's ``get_moments``: the binarised graph with a unit diagonal, rows normalised (weights in
    float32, as scVelo stores them).
    """
    C = sparse.csr_matrix(connectivities, dtype=np.float64)
    A = (C > 0).astype(np.float64).tolil()
    A.setdiag(1.0)
    A = A.tocsr()
    A.data[:] = 1.0
    degree = np.asarray(A.sum(axis=1)).ravel()
    A.data = np.repeat((1.0 / degree).astype(np.float32).astype(np.float64), np.diff(A.indptr))
    Xd = X.toarray() if sparse.issparse(X) else np.asarray(X, dtype=np.float64)
    mean = A @ Xd
    second = A @ (Xd * Xd) - mean * mean
    return mean, second
