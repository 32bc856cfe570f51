"""CytoTRACE (Gulati et al. 2020) as in CellRank: genes correlated with the number of expressed genes."""

from __future__ import annotations

from typing import Literal

import numpy as np
from scipy import sparse, stats

__all__ = ["Aggregation", "aggregate", "gene_correlation", "num_expressed_genes"]

Aggregation = Literal["mean", "median", "hmean", "gmean"]


def num_expressed_genes(X: np.ndarray | sparse.spmatrix) -> np.ndarray:
    """Number of genes with a positive value in every cell."""
    return np.asarray((X > 0).sum(axis=1)).ravel()


def gene_correlation(X: np.ndarray | sparse.spmatrix, y: np.ndarray) -> np.ndarray:
    """Correlation of every gene (column of ``X``) with ``y``, as CellRank computes it.

    CellRank divides the covariance sum by ``(n - 1)`` times the product of the *population* standard
    deviations; we keep that for parity. Genes that do not vary get NaN.
    """
    n = X.shape[0]
    y = np.asarray(y, dtype=np.float64)
    if sparse.issparse(X):
        X = sparse.csc_matrix(X, dtype=np.float64)
        x_bar = np.asarray(X.mean(axis=0)).ravel()
        x_std = np.sqrt(np.asarray(X.power(2).mean(axis=0)).ravel() - x_bar**2)
        xy = np.asarray(X.T @ y).ravel()
    else:
        X = np.asarray(X, dtype=np.float64)
        x_bar = X.mean(axis=0)
        x_std = X.std(axis=0)
        xy = X.T @ y
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = (xy - n * x_bar * y.mean()) / ((n - 1) * x_std * y.std())
    corr[(corr < -1) | (corr > 1) | ~np.isfinite(corr)] = np.nan
    return corr


def aggregate(expression: np.ndarray | sparse.spmatrix, how: Aggregation) -> np.ndarray:
    """Aggregate the expression of the chosen genes in every cell.

    Means and medians are taken in the data's own precision (as CellRank does, for parity), then
    returned as float64.
    """
    if how == "mean":
        return np.asarray(expression.mean(axis=1)).ravel().astype(np.float64)
    if sparse.issparse(expression):
        expression = expression.toarray()
    expression = np.asarray(expression)
    if how == "median":
        return np.median(expression, axis=1).astype(np.float64)
    expression = expression.astype(np.float64)
    if how == "gmean":
        with np.errstate(divide="ignore"):
            return stats.gmean(expression, axis=1)
    if how == "hmean":
        return stats.hmean(expression, axis=1)
    raise ValueError(f"aggregation must be one of 'mean', 'median', 'hmean', 'gmean'; got {how!r}.")
