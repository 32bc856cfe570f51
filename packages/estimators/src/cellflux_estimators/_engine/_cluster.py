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
        if total > 0:
            # what ``rng.choice(len(x), p=closest / total)`` draws (same generator calls), without its checks
            cdf = np.cumsum(closest / total)
            cdf /= cdf[-1]
            idx = int(np.searchsorted(cdf, rng.random(), side="right"))
        else:
            idx = rng.integers(len(x))
        centers[j] = x[idx]
        closest = np.minimum(closest, _sq_dist(x, x2, centers[j : j + 1])[:, 0])
    return centers


def _argmin_last(d: np.ndarray) -> np.ndarray:
    """``np.argmin(d, axis=-1)`` (first minimum on ties) for a short last axis, by comparisons of whole slices."""
    best, arg = d[..., 0].copy(), np.zeros(d.shape[:-1], dtype=np.int64)
    for j in range(1, d.shape[-1]):
        lower = d[..., j] < best
        best[lower] = d[..., j][lower]
        arg[lower] = j
    return arg


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
    n, x2 = len(x), (x**2).sum(axis=1)
    rng = np.random.default_rng(seed)
    # the seeds one restart after the other (the same generator calls as restarts run in turn), then Lloyd's
    # iterations for all restarts at once: one stacked product per iteration, restarts frozen once converged
    centers = np.stack([_plus_plus(x, x2, k, rng) for _ in range(n_init)])
    labels = np.full((n_init, n), -1, dtype=np.int64)
    dist = np.zeros((n_init, n, k))
    active = np.arange(n_init)
    offsets = np.arange(n_init)[:, None] * k
    for it in range(max_iter):
        c = centers[active]
        d = np.maximum(x2[None, :, None] - 2.0 * np.matmul(x[None], c.transpose(0, 2, 1)) + (c**2).sum(2)[:, None], 0.0)
        new = _argmin_last(d)
        dist[active] = d
        moved = np.any(new != labels[active], axis=1) | (it == 0)
        active = active[moved]
        if not len(active):
            break
        labels[active] = new[moved]
        # per-restart, per-column bincounts: the same sequential sums as ``np.add.at(sums, labels, x)``
        flat = (labels[active] + offsets[: len(active)]).ravel()
        counts = np.bincount(flat, minlength=len(active) * k).reshape(len(active), k)
        sums = np.stack(
            [np.bincount(flat, weights=np.tile(col, len(active)), minlength=len(active) * k) for col in x.T], axis=1
        ).reshape(len(active), k, -1)
        keep = counts > 0  # an emptied cluster keeps its centre
        upd = centers[active]
        upd[keep] = sums[keep] / counts[keep][:, None]
        centers[active] = upd
    inertia = np.take_along_axis(dist, labels[:, :, None], axis=2)[:, :, 0].sum(axis=1)
    return labels[int(np.argmin(inertia))]


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

    Raises
    ------
    ValueError
        If ``x`` has a non-finite value (NaN or infinite): it would make every distance to its row meaningless.
    """
    x = np.asarray(x, dtype=np.float64)
    bad = ~np.isfinite(x).reshape(len(x), -1).all(axis=1)
    if bad.any():
        raise ValueError(
            f"{int(bad.sum())} of the {len(x)} rows to cluster have values that are not finite (NaN or inf), "
            f"e.g. row {int(np.flatnonzero(bad)[0])}; remove or impute them first."
        )
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

        if len(x) < 2:  # no graph to partition: one cluster (or none)
            return np.zeros(len(x), dtype=np.int64)
        k = min(n_neighbors, len(x) - 1)
        _, idx = cKDTree(x).query(x, k=k + 1)
        edges = {(min(i, j), max(i, j)) for i, row in enumerate(idx) for j in row[1:] if i != j}
        graph = ig.Graph(n=len(x), edges=sorted(edges))
        part = leidenalg.find_partition(
            graph, leidenalg.RBConfigurationVertexPartition, resolution_parameter=resolution, seed=seed
        )
        return np.asarray(part.membership, dtype=np.int64)
    raise ValueError(f"method={method!r} is not supported; use 'kmeans' or 'leiden'.")
