"""Clustering cells in eigenvector space for CFLARE: k-means (scipy) or Leiden (optional packages)."""

from __future__ import annotations

import importlib.util
from typing import Literal

import numpy as np
from scipy.cluster.vq import kmeans2
from scipy.spatial import cKDTree

__all__ = ["cluster_rows", "leiden_available"]


def leiden_available() -> bool:
    """Whether the optional ``leidenalg`` and ``igraph`` packages are installed."""
    return importlib.util.find_spec("leidenalg") is not None and importlib.util.find_spec("igraph") is not None


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
        ``"kmeans"`` (k-means++ start, seeded) or ``"leiden"`` on a kNN graph (needs ``leidenalg`` and ``igraph``).
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
        best_labels, best_inertia = None, np.inf
        rng = np.random.default_rng(seed)
        for _ in range(10):
            centroids, labels = kmeans2(x, n_clusters, minit="++", seed=rng, iter=50)
            inertia = ((x - centroids[labels]) ** 2).sum()
            if inertia < best_inertia:
                best_labels, best_inertia = labels, inertia
        _, relabelled = np.unique(best_labels, return_inverse=True)
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
