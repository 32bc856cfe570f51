"""Gene trends along pseudotime per lineage: a penalised B-spline smoother (P-splines) weighted by fates.

For lineage ``l`` every gene's trend solves ``min_b sum_i w_il (x_ig - B_i b)^2 + lam ||D2 b||^2`` with a cubic
B-spline basis ``B`` on the pseudotime and second-order difference penalty ``D2`` (Eilers & Marx 1996). All genes
share one ``(K x K)`` system per lineage, so fitting thousands of genes costs one factorisation.
The smoothing ``lam`` is chosen by generalised cross-validation (shared over genes) unless given.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import linalg, sparse
from scipy.interpolate import BSpline

__all__ = ["TrendResult", "bspline_basis", "fit_trends"]


def bspline_basis(t: np.ndarray, n_knots: int, lo: float, hi: float, degree: int = 3) -> sparse.csr_matrix:
    """Cubic B-spline design matrix (sparse) with ``n_knots`` equally spaced interior knots on ``[lo, hi]``."""
    inner = np.linspace(lo, hi, n_knots)
    step = inner[1] - inner[0]
    knots = np.r_[lo - step * np.arange(degree, 0, -1), inner, hi + step * np.arange(1, degree + 1)]
    return sparse.csr_matrix(BSpline.design_matrix(np.clip(t, lo, hi), knots, degree))


@dataclass(frozen=True)
class TrendResult:
    """Smoothed trends: ``values[l]`` is ``(n_points, n_genes)`` on ``grid`` with standard errors ``se[l]``."""

    grid: np.ndarray
    values: list[np.ndarray]
    se: list[np.ndarray]
    lam: list[float]


def fit_trends(
    x: np.ndarray | sparse.spmatrix,
    time: np.ndarray,
    weights: np.ndarray,
    *,
    n_knots: int = 8,
    n_points: int = 200,
    lam: float | None = None,
    weight_threshold: float = 0.01,
) -> TrendResult:
    """Fit every gene's trend for every lineage.

    Parameters
    ----------
    x
        Expression, cells x genes.
    time
        Pseudotime of each cell.
    weights
        Fate probabilities, cells x lineages (the weight of each cell in each lineage's fit).
    n_knots
        Interior knots of the B-spline basis.
    n_points
        Points of the output grid.
    lam
        Smoothing penalty; chosen by GCV if ``None``.
    weight_threshold
        Weights below this are set to 0 (cells that do not go that way).

    Returns
    -------
    The :class:`TrendResult`.
    """
    time = np.asarray(time, dtype=np.float64)
    if not np.all(np.isfinite(time)):
        raise ValueError("The pseudotime has NaN or infinite values.")
    weights = np.asarray(weights, dtype=np.float64)
    if weights.ndim == 1:
        weights = weights[:, None]
    lo, hi = float(time.min()), float(time.max())
    if hi <= lo:
        raise ValueError("The pseudotime is constant; trends need a varying time.")
    basis = bspline_basis(time, n_knots, lo, hi)
    k = basis.shape[1]
    d2 = np.diff(np.eye(k), n=2, axis=0)
    pen = d2.T @ d2
    grid = np.linspace(lo, hi, n_points)
    gb = bspline_basis(grid, n_knots, lo, hi).toarray()
    xs = sparse.csr_matrix(x) if sparse.issparse(x) else np.asarray(x, dtype=np.float64)
    values, ses, lams = [], [], []
    for j in range(weights.shape[1]):
        w = np.where(weights[:, j] >= weight_threshold, weights[:, j], 0.0)
        if w.sum() <= 0:
            raise ValueError(f"Lineage {j} has no cells with weight >= {weight_threshold}.")
        bw = basis.multiply(w[:, None]).tocsr()
        btwb = (basis.T @ bw).toarray()
        btwx = bw.T @ xs
        btwx = btwx.toarray() if sparse.issparse(btwx) else np.asarray(btwx)
        chosen = lam if lam is not None else _gcv(basis, bw, btwb, btwx, pen, xs, w)
        a = btwb + chosen * pen + 1e-10 * np.eye(k)
        coef = linalg.solve(a, btwx, assume_a="pos")
        fitted = basis @ coef
        resid = _weighted_sq(xs, fitted, w)
        edf = np.trace(linalg.solve(a, btwb, assume_a="pos"))
        sigma2 = resid / max(w.sum() - edf, 1.0)
        ainv = linalg.inv(a)
        cov = ainv @ btwb @ ainv
        lever = np.einsum("ij,jk,ik->i", gb, cov, gb)
        values.append(gb @ coef)
        ses.append(np.sqrt(np.outer(lever, sigma2)))
        lams.append(float(chosen))
    return TrendResult(grid=grid, values=values, se=ses, lam=lams)


def _weighted_sq(x, fitted: np.ndarray, w: np.ndarray) -> np.ndarray:
    if sparse.issparse(x):
        xx = np.asarray(x.multiply(x).T @ w).ravel()
        cross = np.asarray(x.multiply(fitted * w[:, None]).sum(axis=0)).ravel()
        return xx - 2 * cross + (fitted**2 * w[:, None]).sum(axis=0)
    return ((x - fitted) ** 2 * w[:, None]).sum(axis=0)


def _gcv(basis, bw, btwb, btwx, pen, xs, w) -> float:
    k = btwb.shape[0]
    best, best_score = 1.0, np.inf
    scale = np.trace(btwb) / max(np.trace(pen), 1e-12)
    for lam in scale * np.logspace(-4, 2, 13):
        a = btwb + lam * pen + 1e-10 * np.eye(k)
        coef = linalg.solve(a, btwx, assume_a="pos")
        fitted = basis @ coef
        rss = _weighted_sq(xs, fitted, w).sum()
        edf = np.trace(linalg.solve(a, btwb, assume_a="pos"))
        score = rss / max(w.sum() - edf, 1.0) ** 2
        if score < best_score:
            best, best_score = lam, score
    return float(best)
