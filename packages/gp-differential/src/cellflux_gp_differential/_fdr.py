"""False discovery rates of Mahalanobis distances against a null from shuffled genes.

Empirical p-values ``(1 + #{null >= d}) / (1 + n_null)``; the tail FDR
``S_null(d) / S_real(d)`` (``pi0 = 1``, made monotone, i.e. Benjamini-Hochberg on the empirical
p-values); the local FDR ``f_null(d) / f_real(d)`` from Gaussian kernel densities of ``log d``, made
non-increasing in ``d`` by isotonic regression and clipped to ``[0, 1]``. A gene is called with
``tail_fdr < threshold`` (kompot calls on the local FDR; the tail FDR controls the FDR of the called set).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["compute_fdr"]


def _survival(sorted_values: np.ndarray, at: np.ndarray) -> np.ndarray:
    return (len(sorted_values) - np.searchsorted(sorted_values, at, side="left")) / len(sorted_values)


def _local_fdr(real: np.ndarray, null: np.ndarray) -> np.ndarray:
    from scipy.stats import gaussian_kde
    from sklearn.isotonic import IsotonicRegression

    if len(null) < 5 or len(real) < 5 or np.ptp(null) == 0 or np.ptp(real) == 0:
        return np.ones(len(real))
    lr, ln = np.log(real + 1e-12), np.log(null + 1e-12)
    ratio = gaussian_kde(ln)(lr) / np.maximum(gaussian_kde(lr)(lr), 1e-300)
    ratio = np.clip(ratio, 0.0, 1.0)
    iso = IsotonicRegression(increasing=False, y_min=0.0, y_max=1.0)
    return iso.fit_transform(real, ratio)


def compute_fdr(real: np.ndarray, null: np.ndarray, threshold: float = 0.05, gene_names=None) -> pd.DataFrame:
    """p-values, local FDR, tail FDR and calls of the distances ``real`` against the ``null`` distances.

    Parameters
    ----------
    real
        Mahalanobis distances of the genes tested.
    null
        Mahalanobis distances of null (shuffled) genes.
    threshold
        FDR level of the ``is_de`` call (on the tail FDR).
    gene_names
        Index of the result.

    Returns
    -------
    DataFrame with ``mahalanobis``, ``pvalue``, ``local_fdr``, ``tail_fdr``, ``is_de``.
    """
    real = np.asarray(real, dtype=float)
    null = np.asarray(null, dtype=float)
    null = null[np.isfinite(null)]
    if null.size == 0:
        raise ValueError("The null distribution is empty; pass Mahalanobis distances of null genes.")
    if not 0 < threshold < 1:
        raise ValueError(f"threshold must be in (0, 1), got {threshold}.")
    sorted_null = np.sort(null)
    n_null = len(null)
    exceed = n_null - np.searchsorted(sorted_null, real, side="left")
    pvalue = (1.0 + exceed) / (1.0 + n_null)
    s_null = _survival(sorted_null, real)
    s_real = _survival(np.sort(real), real)
    raw = np.clip(s_null / np.maximum(s_real, 1.0 / len(real)), 0.0, 1.0)
    order = np.argsort(real)
    tail = np.empty_like(raw)
    tail[order] = np.minimum.accumulate(raw[order])  # BH: the minimum over all less extreme genes
    local = _local_fdr(real, null)
    index = gene_names if gene_names is not None else pd.RangeIndex(len(real))
    return pd.DataFrame(
        {"mahalanobis": real, "pvalue": pvalue, "local_fdr": local, "tail_fdr": tail, "is_de": tail < threshold},
        index=index,
    )
