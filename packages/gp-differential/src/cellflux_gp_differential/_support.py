"""The support-matched gene distance: each condition's GP read where that condition has cells.

At a landmark ``p`` the fold change is usually ``f_2(p) - f_1(p)``. Where only one condition has cells
near ``p`` (a region the planted or real DE genes themselves move one condition into, measured on
diffusion components of the simulator: at 2,000 cells, seed 0, 99% of the 20 nearest neighbours of the
late DE-lineage cells of condition 2 are of condition 2), the other condition's value is an
extrapolation of its GP, which with the long expression length scale is confident but wrong: there
condition 1's GP returns about 1.1 for lineage genes that are at about 3 in both conditions' own cells,
so every gene that varies along the displaced branch looks as differential as the planted genes. Its
posterior variance does not flag it (at most 13 times the median, at landmarks in the displaced branch).

Here condition ``j`` is read at ``r_j(p)``: at ``p`` itself where it is *present* -- its share of the
:data:`PRESENCE_NEIGHBOURS` pooled cells nearest to ``p`` is at least :data:`PRESENCE_THRESHOLD` of its
share of all cells -- and otherwise at its *support point*, the mean of its :data:`SUPPORT_NEIGHBOURS`
cells nearest to ``p``:

``d_g(p) = f_2,g(r_2(p)) - f_1,g(r_1(p))``, ``v_g(p) = s_g (c_1(r_1(p)) + c_2(r_2(p))) + b_1,g + b_2,g``

with ``c_j`` the GP posterior variance (gene independent, noise ``sigma^2``), ``s_g`` the gene's noise
scale (residual variance over ``sigma^2``, as the calibrated distance) and ``b_j,g`` the between-sample
variances (with samples) at the reading points. The gene statistic is the Mahalanobis distance of ``d_g``
under the diagonal covariance ``diag(v_g)``: ``sqrt(sum_p d_g(p)^2 / v_g(p))``.

Why the gate: reading a present condition at its support point instead of ``p`` adds ``grad f . (r_2 -
r_1)`` to every gene with spatial structure, which the permuted null genes lack: measured at 2,000 cells
(seed 0, PCA) 210 non-planted genes called at 5% tail FDR instead of 34 with the gate (the AUROC barely
moves). Why diagonal: the two conditions are read at different points, the posterior covariance of the
long-length-scale GPs is numerically singular (smallest eigenvalues ~1e-16 of ~3) and the components of
``d_g`` along its near-null directions dominate the full-covariance distance (measured: AUROC 0.77-0.92
for any jitter up to 1e-2). The parameters were chosen on 2,000 cells, seed 0 only
(``benchmarks/de_accuracy.py``).

Cost: nearest-neighbour queries and two predictions at ``m`` points; no ``m x m`` matrix.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from scipy.spatial import cKDTree
from tqdm.auto import tqdm

if TYPE_CHECKING:
    from ._expression import DifferentialExpression

__all__ = [
    "PRESENCE_NEIGHBOURS",
    "PRESENCE_THRESHOLD",
    "SUPPORT_NEIGHBOURS",
    "diagonal_distance",
    "presence",
    "reading_points",
    "support_points",
    "supported_distances",
]

#: Cells of a condition whose mean is its support point of a landmark (chosen on 2,000 cells, seed 0).
SUPPORT_NEIGHBOURS = 3
#: Pooled cells nearest to a point among which a condition's presence is measured.
PRESENCE_NEIGHBOURS = 30
#: A condition is present at a point when its local share is at least this part of its overall share
#: (chosen on 2,000 cells, seed 0; a 4-fold local depletion still counts as present).
PRESENCE_THRESHOLD = 0.25


def support_points(cells: np.ndarray, points: np.ndarray, k: int = SUPPORT_NEIGHBOURS) -> np.ndarray:
    """The mean of the ``k`` cells of ``cells`` nearest to every row of ``points`` (exact, k-d tree).

    Parameters
    ----------
    cells
        ``(n_cells, n_features)`` one condition's cells.
    points
        ``(m, n_features)`` points (landmarks).
    k
        Neighbours averaged (at most the number of cells).

    Returns
    -------
    ``(m, n_features)`` support points.
    """
    cells = np.asarray(cells, dtype=np.float64)
    points = np.asarray(points, dtype=np.float64)
    if cells.ndim != 2 or points.ndim != 2 or cells.shape[1] != points.shape[1]:
        raise ValueError(f"cells {cells.shape} and points {points.shape} must be 2-D with the same number of features.")
    if not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}.")
    k = int(min(k, cells.shape[0]))
    _, idx = cKDTree(cells).query(points, k=list(range(1, k + 1)), workers=-1)
    return cells[idx].mean(axis=1)


def presence(cells1: np.ndarray, cells2: np.ndarray, points: np.ndarray, k: int = PRESENCE_NEIGHBOURS) -> np.ndarray:
    """Each condition's share of the ``k`` pooled cells nearest to every point over its share of all cells.

    Returns
    -------
    ``(m, 2)``: 1 where the neighbourhood mirrors the overall mix, 0 where the condition has no cell.
    """
    cells1, cells2 = np.asarray(cells1, dtype=np.float64), np.asarray(cells2, dtype=np.float64)
    pooled = np.vstack([cells1, cells2])
    if not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}.")
    k = int(min(k, pooled.shape[0]))
    _, idx = cKDTree(pooled).query(np.asarray(points, dtype=np.float64), k=list(range(1, k + 1)), workers=-1)
    share2 = (idx >= cells1.shape[0]).mean(axis=1)
    overall2 = cells2.shape[0] / pooled.shape[0]
    return np.column_stack([(1.0 - share2) / (1.0 - overall2), share2 / overall2])


def reading_points(
    cells1: np.ndarray,
    cells2: np.ndarray,
    points: np.ndarray,
    *,
    k: int = SUPPORT_NEIGHBOURS,
    presence_k: int = PRESENCE_NEIGHBOURS,
    threshold: float = PRESENCE_THRESHOLD,
) -> tuple[np.ndarray, np.ndarray]:
    """Where each condition's GP is read for every point: the point where present, else its support point.

    Returns
    -------
    ``(r_1, r_2)``, each ``(m, n_features)``.
    """
    points = np.asarray(points, dtype=np.float64)
    present = presence(cells1, cells2, points, presence_k) >= threshold
    return tuple(
        np.where(present[:, [j]], points, support_points(cells, points, k)) for j, cells in enumerate((cells1, cells2))
    )


def diagonal_distance(diff: np.ndarray, variance: np.ndarray, *, eps: float = 1e-12) -> np.ndarray:
    """``sqrt(sum_p diff[p, g]^2 / variance[p, g])`` per column (variance broadcast, floored at ``eps``)."""
    diff = np.asarray(diff, dtype=np.float64)
    return np.sqrt(np.sum(diff * diff / np.maximum(np.asarray(variance, dtype=np.float64), eps), axis=0))


def supported_distances(
    model: DifferentialExpression,
    cells1: np.ndarray,
    cells2: np.ndarray,
    points: np.ndarray | None = None,
    *,
    k: int = SUPPORT_NEIGHBOURS,
    presence_k: int = PRESENCE_NEIGHBOURS,
    threshold: float = PRESENCE_THRESHOLD,
    gene_batch: int = 256,
    progress: bool = False,
) -> np.ndarray:
    """Support-matched distance of every gene (see the module docstring) from a fitted model.

    Parameters
    ----------
    model
        A fitted :class:`~cellflux_gp_differential.DifferentialExpression` (its own models, not
        external predictors: the noise scale needs the residuals).
    cells1, cells2
        The cells each condition was fitted on.
    points
        Points of the distance; default the model's landmarks.
    k
        Cells per support point.
    presence_k, threshold
        A condition is read at the point itself where its share of the ``presence_k`` nearest pooled cells
        is at least ``threshold`` times its overall share (``threshold=numpy.inf``: always at its support
        point; ``0``: always at the point, i.e. the diagonal calibrated distance).
    gene_batch
        Genes per batch of the between-sample variances (with samples).
    progress
        Progress bar over those batches.

    Returns
    -------
    ``(n_genes,)`` distances.
    """
    model._require()
    m1, m2 = model.model1, model.model2
    if points is None:
        points = m1.landmarks if m1.landmarks is not None else model.computed_landmarks
    if points is None:
        raise ValueError("No landmarks; pass points=.")
    s1, s2 = reading_points(cells1, cells2, points, k=k, presence_k=presence_k, threshold=threshold)
    diff = np.asarray(m2.predict(s2, progress=False)) - np.asarray(m1.predict(s1, progress=False))
    scale = model.noise_variance() / float(m1.predictor.sigma) ** 2
    if scale.shape[0] != diff.shape[1]:
        raise ValueError(f"The models predict {diff.shape[1]} genes but have {scale.shape[0]} noise scales.")
    posterior = np.asarray(m1.covariance(s1, diag=True)) + np.asarray(m2.covariance(s2, diag=True))
    variance = posterior[:, None] * scale[None, :]
    if model.use_sample_variance and (m1.has_sample_variance or m2.has_sample_variance):
        n_genes = diff.shape[1]
        starts = range(0, n_genes, max(1, gene_batch))
        for start in tqdm(starts, disable=not progress or len(starts) < 2, desc="sample variance"):
            genes = np.arange(start, min(start + gene_batch, n_genes))
            for m, s in ((m1, s1), (m2, s2)):
                f = m.sample_variance_factors(s, genes)
                if f is not None:  # (genes, m, S): the diagonal of F F^T per gene
                    variance[:, genes] += np.einsum("gms,gms->mg", f, f)
    return diagonal_distance(diff, variance, eps=model.eps)
