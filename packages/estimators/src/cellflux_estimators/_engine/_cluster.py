"""Clustering cells in eigenvector space for CFLARE: k-means (own, vectorised) or Leiden (optional packages)."""

from __future__ import annotations

import importlib.util
from typing import Literal

import numpy as np
from scipy.spatial import cKDTree

__all__ = ["cluster_rows", "kmeans", "leiden_available"]


def leiden_available() -> bool:
    """Whether the optional ``leidenalg`` and ``igraph`` packages are installed."""
    return importlib.util.find_spec("leidenalg") is not None and importlib.util.find_spec("igraph") is not None


def _sq_dist(x: np.ndarray, x2: np.ndarray, centers: np.ndarray) -> np.ndarray:
    return np.maximum(x2[:, None] - 2.0 * x @ centers.T + (centers**2).sum(axis=1)[None, :], 0.0)


def _plus_plus(x: np.ndarray, x2: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    centers = np.empty((k, x.shape[1]))
    centers[0] = x[rng.integers(len(x))]
    closest = _sq_dist(x, x2, centers[:1])[:, 0]
    for j in range(1, k):
        total = closest.sum()
        idx = rng.choice(len(x), p=closest / total) if total > 0 else rng.integers(len(x))
        centers[j] = x[idx]
        closest = np.minimum(closest, _sq_dist(x, x2, centers[j : j + 1])[:, 0])
    return centers


def kmeans(x: np.ndarray, k: int, *, n_init: int = 10, max_iter: int = 100, seed: int = 0) -> np.ndarray:
    """Lloyd's k-means with k-means++ starts; the labels of the run with the lowest inertia.

    Parameters
    ----------
    x
        Points ``(n, d)``.
    k
        Number of clusters.
    n_init
        Number of seeded restarts.
    max_iter
        Lloyd iterations per restart (stops earlier when the labels no longer change).
    seed
        Random seed.

    Returns
    -------
    Labels in ``[0, k)``, shape ``(n,)``.
    """
    x = np.asarray(x, dtype=np.float64)
    x2 = (x**2).sum(axis=1)
    rng = np.random.default_rng(seed)
    best, best_inertia = None, np.inf
    for _ in range(n_init):
        centers = _plus_plus(x, x2, k, rng)
        labels = None
        for _ in range(max_iter):
            d = _sq_dist(x, x2, centers)
            new = np.argmin(d, axis=1)
            if labels is not None and np.array_equal(new, labels):
                break
            labels = new
            counts = np.bincount(labels, minlength=k)
            sums = np.zeros_like(centers)
            np.add.at(sums, labels, x)
            keep = counts > 0  # an emptied cluster keeps its centre
            centers[keep] = sums[keep] / counts[keep, None]
        inertia = float(d[np.arange(len(x)), labels].sum())
        if inertia < best_inertia:
            best, best_inertia = labels, inertia
    return best


def cluster_rows(
    x: np.ndarray,
    *,
    method: Literal["kmeans", "leiden"] = "kmeans",
    n_clusters: int | None = None,
    n_neighbors: int = 20,
    resolution: float = 0.1,
    seed: int = 0,
) -> np.ndarray:
    """Cluster the rows of ``x``; returns integer labels from 0.

    Parameters
    ----------
    x
        Points, shape ``(n, d)``.
    method
        ``"kmeans"`` (:func:`kmeans`: k-means++ starts, seeded) or ``"leiden"`` on a kNN graph (needs
        ``leidenalg`` and ``igraph``).
    n_clusters
        Number of k-means clusters.
    n_neighbors
        Neighbours of the kNN graph (Leiden).
    resolution
        Leiden resolution.
    seed
        Random seed.

    Returns
    -------
    Labels, shape ``(n,)``.
    """
    x = np.asarray(x, dtype=np.float64)
    if method == "kmeans":
        if n_clusters is None or n_clusters < 1:
            raise ValueError(f"k-means needs n_clusters >= 1, got {n_clusters!r}.")
        if len(x) < n_clusters:
            raise ValueError(f"Only {len(x)} cells are left to cluster into {n_clusters} clusters; lower `percentile`.")
        labels = kmeans(x, n_clusters, seed=seed)
        _, relabelled = np.unique(labels, return_inverse=True)
        return relabelled
    if method == "leiden":
        if not leiden_available():
            raise ImportError(
                "method='leiden' needs the optional packages leidenalg and igraph "
                "(`pip install leidenalg igraph`); or use method='kmeans'."
            )
        import igraph as ig
        import leidenalg

        k = min(n_neighbors, len(x) - 1)
        _, idx = cKDTree(x).query(x, k=k + 1)
        edges = {(min(i, j), max(i, j)) for i, row in enumerate(idx) for j in row[1:] if i != j}
        graph = ig.Graph(n=len(x), edges=sorted(edges))
        part = leidenalg.find_partition(
            graph, leidenalg.RBConfigurationVertexPartition, resolution_parameter=resolution, seed=seed
        )
        return np.asarray(part.membership, dtype=np.int64)
    raise ValueError(f"method={method!r} is not supported; use 'kmeans' or 'leiden'.")
