"""Data-driven GP parameters: neighbour distances, intrinsic dimension, prior mean, length scale, landmarks.

The prior mean and intrinsic dimension follow mellon (:func:`mellon.parameters.compute_mu`,
:func:`mellon.parameters.compute_d_factal`); nearest-neighbour distances are exact (a k-d tree instead of
mellon's approximate NN-descent, which needs a numba compilation in every fresh process).
"""

from __future__ import annotations

import logging

import numpy as np
from scipy.spatial import cKDTree
from scipy.special import gammaln

from ._threefry import choice_without_replacement

__all__ = [
    "canonical_order",
    "default_length_scale",
    "fractal_dimension",
    "mellon_length_scale",
    "landmarks_kmeans",
    "nn_distances",
    "prior_mean",
]

logger = logging.getLogger(__name__)

#: Share of the median pairwise distance used as the default length scale (see default_length_scale).
LS_PAIRWISE_FRACTION = 0.2
_LS_SUBSAMPLE = 2000


def nn_distances(x: np.ndarray, k: int = 1) -> np.ndarray:
    """Distance of every row of ``x`` to its ``k``-th nearest other row (exact, k-d tree).

    Duplicated points get the smallest positive distance in the data, so that logarithms stay finite.
    """
    tree = cKDTree(x)
    dist, _ = tree.query(x, k=k + 1, workers=-1)
    d = dist[:, k]
    positive = d[d > 0]
    if positive.size == 0:
        raise ValueError("All cells have identical coordinates; a density cannot be estimated.")
    return np.where(d > 0, d, positive.min())


def fractal_dimension(x: np.ndarray, k: int = 10, n: int = 500, seed: int = 432) -> float:
    """Average local fractal dimension of ``x`` around ``n`` sampled cells (mellon's ``d_method="fractal"``).

    Same sample (JAX's ``PRNGKey(seed)``), neighbourhoods and log-log regression as
    :func:`mellon.parameters.compute_d_factal`, computed in closed form with numpy instead of a vmapped
    least-squares solve (which costs seconds of compilation in every fresh process); the sample is
    JAX's, drawn by :func:`._threefry.choice_without_replacement` without compiling JAX's permutation
    (0.3 s per cell count in a fresh process).
    """
    import jax

    n_cells = x.shape[0]
    if n < n_cells:
        threefry = getattr(jax.config, "jax_default_prng_impl", "threefry2x32") == "threefry2x32"
        if threefry and getattr(jax.config, "jax_threefry_partitionable", False):  # JAX's defaults since 0.5
            idx = choice_without_replacement(seed, n_cells, n)
        else:
            idx = np.asarray(jax.random.choice(jax.random.PRNGKey(seed), n_cells, shape=(n,), replace=False))
        query = x[idx]
    else:
        query = x
    k = min(k, n_cells)
    _, neighbours = cKDTree(x).query(query, k=k, workers=-1)
    points = x[neighbours]
    i, j = np.triu_indices(k, k=1)
    dist = np.sort(np.linalg.norm(points[:, i, :] - points[:, j, :], axis=-1), axis=-1)
    log_d = np.log(np.maximum(dist, np.finfo(float).tiny))
    log_rank = np.log(np.arange(1, len(i) + 1))
    xc = log_d - log_d.mean(axis=1, keepdims=True)
    yc = log_rank - log_rank.mean()
    slopes = (xc @ yc) / np.sum(xc * xc, axis=1)
    return float(np.mean(slopes))


def prior_mean(nn: np.ndarray, d: float, k: int = 1) -> float:
    """Mellon's GP prior mean of the log density: 1st percentile of the nearest-neighbour MLE minus 10.

    With ``nn`` the ``k``-th neighbour distances the MLE gains ``log k``.
    """
    mle = np.log(k) + gammaln(d / 2 + 1) - (d / 2) * np.log(np.pi) - d * np.log(nn)
    return float(np.quantile(mle, 0.01) - 10.0)


def mellon_length_scale(nn: np.ndarray) -> float:
    """Mellon's length scale: ``exp(mean(log nn) + 3)``, about 20 times the typical neighbour distance."""
    return float(np.exp(np.log(nn).mean() + 3.0))


def canonical_order(x: np.ndarray) -> np.ndarray:
    """Row indices of ``x`` sorted by its coordinates (first column, then the second, ...).

    Random draws of cells made in this order depend on the cells only, not on the order they come in
    (identical rows are interchangeable), so a reordered AnnData gets the same landmarks and length scale.
    """
    return np.lexsort(np.asarray(x).T[::-1])


def default_length_scale(x: np.ndarray, *, seed: int = 0) -> float:
    """A data-driven length scale that works on PCA as well as on diffusion components.

    :data:`LS_PAIRWISE_FRACTION` times the median pairwise distance between (up to 2,000 sampled) cells.
    It follows the extent of the data rather than the nearest-neighbour distance, which in many
    dimensions is dominated by noise -- the reason mellon's ``20 x nn`` times kompot's ``ls_factor=10``
    over-smooths on 20 principal components yet suits diffusion components.
    """
    from scipy.spatial.distance import pdist

    n = x.shape[0]
    rng = np.random.default_rng(seed)
    sample = x if n <= _LS_SUBSAMPLE else x[canonical_order(x)[rng.choice(n, _LS_SUBSAMPLE, replace=False)]]
    ls = float(np.median(pdist(sample))) * LS_PAIRWISE_FRACTION
    if not np.isfinite(ls) or ls <= 0:
        raise ValueError("Could not derive a length scale from the data (degenerate coordinates); pass ls=.")
    return ls


def landmarks_kmeans(x: np.ndarray, n_landmarks: int, random_state: int | None, *, n_iter: int = 10) -> np.ndarray:
    """``n_landmarks`` k-means centroids of ``x`` (all of ``x`` when ``n_landmarks >= len(x)``).

    Like mellon's landmarks (k-means centroids), but with a random-cell initialisation and ``n_iter``
    Lloyd iterations in chunked matrix products: seconds instead of minutes for thousands of
    landmarks (scikit-learn's k-means++ seeding is quadratic in the number of centres). The starting
    cells are drawn in :func:`canonical_order`, so the centroids do not depend on the order of the cells
    (up to the rounding of the cluster sums).
    """
    x = np.asarray(x, dtype=np.float64)
    n = x.shape[0]
    if n_landmarks >= n:
        return x.copy()
    rng = np.random.default_rng(42 if random_state is None else random_state)
    centres = x[canonical_order(x)[rng.choice(n, n_landmarks, replace=False)]]
    chunk = max(1, int(2e7 // n_landmarks))
    scores = np.empty((min(chunk, n), n_landmarks))
    labels = np.empty(n, dtype=np.int64)
    for _ in range(n_iter):
        cc = np.sum(centres * centres, axis=1)
        minus_twice = -2.0 * centres.T  # exact (a power of two): the scores are |c|^2 - 2 x.c, as before
        for start in range(0, n, chunk):
            block = x[start : start + chunk]
            out = scores[: len(block)]
            np.matmul(block, minus_twice, out=out)
            out += cc
            labels[start : start + chunk] = np.argmin(out, axis=1)
        counts = np.bincount(labels, minlength=n_landmarks)
        # per-coordinate sums of each cluster's cells (bincount adds in cell order, as np.add.at did)
        sums = np.column_stack([np.bincount(labels, weights=x[:, j], minlength=n_landmarks) for j in range(x.shape[1])])
        filled = counts > 0
        centres[filled] = sums[filled] / counts[filled, None]
    return centres
