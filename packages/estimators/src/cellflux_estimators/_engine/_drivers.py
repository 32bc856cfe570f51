"""Lineage drivers: correlation of every gene with fate probabilities, with p-values, q-values and CIs."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy import sparse, stats
from tqdm.auto import tqdm

__all__ = ["DriverResult", "benjamini_hochberg", "correlate", "driver_test"]

logger = logging.getLogger(__name__)


def _rank(x: np.ndarray) -> np.ndarray:
    return stats.rankdata(x, axis=0)


def correlate(x: np.ndarray | sparse.spmatrix, y: np.ndarray) -> np.ndarray:
    """Pearson correlation of each column of ``x`` (cells x genes) with each column of ``y`` (cells x lineages).

    Sparse ``x`` stays sparse; constant genes give NaN.
    """
    n = x.shape[0]
    y = np.asarray(y, dtype=np.float64)
    yc = y - y.mean(axis=0)
    ysd = np.sqrt((yc**2).sum(axis=0))
    if sparse.issparse(x):
        x = sparse.csc_matrix(x, dtype=np.float64)
        xm = np.asarray(x.mean(axis=0)).ravel()
        xtx = np.asarray(x.multiply(x).sum(axis=0)).ravel()
        xsd = np.sqrt(np.maximum(xtx - n * xm**2, 0.0))
        cov = np.asarray(x.T @ yc)  # sum_i x_ig (y_il - ybar_l); x's mean drops out since sum(yc) = 0
    else:
        x = np.asarray(x, dtype=np.float64)
        xc = x - x.mean(axis=0)
        xsd = np.sqrt((xc**2).sum(axis=0))
        cov = xc.T @ yc
    with np.errstate(divide="ignore", invalid="ignore"):
        corr = cov / np.outer(xsd, ysd)
    corr[~np.isfinite(corr)] = np.nan
    return np.clip(corr, -1.0, 1.0)


def benjamini_hochberg(p: np.ndarray) -> np.ndarray:
    """Benjamini–Hochberg adjusted p-values (q-values); NaNs are kept and ignored."""
    p = np.asarray(p, dtype=np.float64)
    q = np.full_like(p, np.nan)
    ok = np.isfinite(p)
    m = int(ok.sum())
    if m == 0:
        return q
    pv = p[ok]
    order = np.argsort(pv)
    ranked = pv[order] * m / np.arange(1, m + 1)
    ranked = np.minimum.accumulate(ranked[::-1])[::-1]
    out = np.empty(m)
    out[order] = np.minimum(ranked, 1.0)
    q[ok] = out
    return q


@dataclass(frozen=True)
class DriverResult:
    """Per gene and lineage: correlation, p-value, q-value and confidence interval (each ``(genes, lineages)``)."""

    corr: np.ndarray
    pval: np.ndarray
    qval: np.ndarray
    ci_low: np.ndarray
    ci_high: np.ndarray


def driver_test(
    x: np.ndarray | sparse.spmatrix,
    y: np.ndarray,
    *,
    method: Literal["fisher", "perm_test"] = "fisher",
    correlation: Literal["pearson", "spearman"] = "pearson",
    confidence_level: float = 0.95,
    n_perms: int = 1000,
    seed: int | None = None,
    show_progress_bar: bool = True,
) -> DriverResult:
    """Correlate genes with fate probabilities and test the correlations.

    Parameters
    ----------
    x
        Expression, cells x genes (dense or sparse).
    y
        Fate probabilities, cells x lineages.
    method
        ``"fisher"``: Fisher z-transform (normal approximation) for p-values and confidence intervals;
        ``"perm_test"``: p-values from ``n_perms`` permutations of cells, intervals from as many bootstraps.
    correlation
        ``"pearson"`` or ``"spearman"`` (Pearson on ranks; densifies ``x`` one block of genes at a time).
    confidence_level
        Level of the confidence intervals.
    n_perms
        Permutations (``perm_test``).
    seed
        Seed of the permutations.
    show_progress_bar
        Progress bar over permutations.

    Returns
    -------
    The :class:`DriverResult`.
    """
    if not 0 < confidence_level < 1:
        raise ValueError(f"confidence_level must be in (0, 1), got {confidence_level}.")
    if correlation not in ("pearson", "spearman"):
        raise ValueError(f"correlation={correlation!r} is not supported; use 'pearson' or 'spearman'.")
    n = x.shape[0]
    if n < 4:
        raise ValueError(f"At least 4 cells are needed to test correlations, got {n}.")
    if correlation == "spearman":
        y = _rank(y)
        x = _rank_columns(x)
    corr = correlate(x, y)
    qh = confidence_level + (1 - confidence_level) / 2.0
    if method == "fisher":
        with np.errstate(divide="ignore"):
            z = np.arctanh(corr)
        se = 1.0 / np.sqrt(n - 3)
        zc = stats.norm.ppf(qh)
        ci_low, ci_high = np.tanh(z - zc * se), np.tanh(z + zc * se)
        pval = 2 * stats.norm.cdf(-np.abs(z * np.sqrt(n - 3)))
    elif method == "perm_test":
        if not isinstance(n_perms, (int, np.integer)) or n_perms <= 0:
            raise ValueError(f"n_perms must be a positive integer, got {n_perms!r}.")
        rng = np.random.default_rng(seed)
        exceed = np.zeros_like(corr)
        boot = np.empty((n_perms, *corr.shape))
        xs = sparse.csr_matrix(x) if sparse.issparse(x) else x
        for i in tqdm(range(n_perms), disable=not show_progress_bar, desc="permutations"):
            perm = rng.permutation(n)
            exceed += np.abs(correlate(xs, y[perm])) >= np.abs(corr)
            b = rng.integers(0, n, size=n)
            boot[i] = correlate(xs[b], y[b])
        pval = exceed / n_perms
        ql = 1 - qh
        ci_low, ci_high = np.nanquantile(boot, ql, axis=0), np.nanquantile(boot, qh, axis=0)
    else:
        raise ValueError(f"method={method!r} is not supported; use 'fisher' or 'perm_test'.")
    nan = ~np.isfinite(corr)
    for arr in (pval, ci_low, ci_high):
        arr[nan] = np.nan
    qval = np.column_stack([benjamini_hochberg(pval[:, j]) for j in range(pval.shape[1])])
    return DriverResult(corr=corr, pval=pval, qval=qval, ci_low=ci_low, ci_high=ci_high)


def _rank_columns(x: np.ndarray | sparse.spmatrix, block: int = 512) -> np.ndarray:
    n, g = x.shape
    out = np.empty((n, g))
    for start in range(0, g, block):
        chunk = x[:, start : start + block]
        chunk = chunk.toarray() if sparse.issparse(chunk) else np.asarray(chunk)
        out[:, start : start + block] = _rank(chunk)
    return out
