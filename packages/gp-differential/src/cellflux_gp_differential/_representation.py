"""Cell-state representations the GP models run on: principal components and diffusion components.

Small, dependency-light versions of what scanpy/palantir provide, for examples, tests and benchmarks.
"""

from __future__ import annotations

import numpy as np
from scipy import sparse

__all__ = ["diffusion_components", "pca"]


def log_normalize(counts, target_sum: float = 1e4) -> np.ndarray:
    """``log1p`` of counts scaled to ``target_sum`` per cell (dense float64)."""
    x = counts.toarray() if sparse.issparse(counts) else np.asarray(counts)
    x = np.asarray(x, dtype=np.float64)
    totals = x.sum(axis=1, keepdims=True)
    totals[totals == 0] = 1.0
    return np.log1p(x / totals * target_sum)


def pca(x: np.ndarray, n_comps: int = 20, *, seed: int = 0) -> np.ndarray:
    """Top ``n_comps`` principal-component scores of ``x`` (centred, randomised SVD)."""
    from sklearn.utils.extmath import randomized_svd

    x = np.asarray(x, dtype=np.float64)
    centred = x - x.mean(axis=0)
    n_comps = min(n_comps, min(x.shape) - 1)
    u, s, _ = randomized_svd(centred, n_comps, random_state=seed)
    return u * s


def diffusion_components(x: np.ndarray, n_comps: int = 10, *, k: int = 30) -> np.ndarray:
    """Diffusion-map eigenvectors 1..``n_comps`` (the trivial one dropped) of an adaptive kNN Gaussian kernel.

    Palantir's construction: bandwidth of each cell the distance to its ``k // 3``-th neighbour, kernel
    ``exp(-d^2 / sigma_i^2)`` symmetrised, eigenvectors of the random-walk matrix.
    """
    from scipy.sparse.linalg import eigsh
    from scipy.spatial import cKDTree

    x = np.asarray(x, dtype=np.float64)
    n = x.shape[0]
    k = min(k, n - 1)
    dist, idx = cKDTree(x).query(x, k=k + 1, workers=-1)
    sigma = np.maximum(dist[:, max(1, k // 3)], 1e-12)
    rows = np.repeat(np.arange(n), k + 1)
    w = np.exp(-((dist / sigma[:, None]) ** 2)).ravel()
    W = sparse.csr_matrix((w, (rows, idx.ravel())), shape=(n, n))
    W = W + W.T
    deg = np.asarray(W.sum(axis=1)).ravel()
    d_half = sparse.diags(1.0 / np.sqrt(deg))
    S = d_half @ W @ d_half
    vals, vecs = eigsh(S, k=n_comps + 1, which="LA", v0=np.ones(n) / np.sqrt(n))
    order = np.argsort(vals)[::-1]
    vecs = (d_half @ vecs[:, order]).astype(np.float64)
    vecs /= np.linalg.norm(vecs, axis=0, keepdims=True)
    return vecs[:, 1 : n_comps + 1]
