"""Log-odds of two lineages (or one against the rest) along pseudotime, per cluster."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np

from ._source import colors, fates, finish, source

__all__ = ["log_odds", "log_odds_values"]


def log_odds_values(p1: np.ndarray, p2: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """``log((p1 + eps) / (p2 + eps))``; ``eps`` keeps committed cells finite."""
    return np.log((np.asarray(p1, dtype=float) + eps) / (np.asarray(p2, dtype=float) + eps))


def log_odds(
    adata: Any,
    *,
    lineage_1: str,
    lineage_2: str | None = None,
    time_key: str,
    cluster_key: str | None = None,
    key: str = "lineages_fwd",
    threshold: float | None = None,
    size: float = 6.0,
    seed: int = 0,
    save: str | Path | None = None,
) -> plt.Figure:
    """Plot the log-odds ``log(p_1 / p_2)`` of two lineages (``p_2 = 1 - p_1`` without ``lineage_2``) per cell.

    Cells are placed by pseudotime (x) and log-odds (y), coloured by cluster; positive values favour
    ``lineage_1``.

    Parameters
    ----------
    adata
        AnnData with fate probabilities in ``obsm[key]``, or an estimator.
    lineage_1, lineage_2
        The lineages compared (``lineage_2=None``: ``lineage_1`` against all others).
    time_key
        Pseudotime in ``obs``.
    cluster_key
        Colour by these clusters (scanpy's colours ``uns[cluster_key + "_colors"]`` when set).
    key
        Where the fate probabilities are.
    threshold
        Draw horizontal lines at ``+-threshold``.
    size
        Marker size.
    seed
        Seed of the vertical jitter that separates ties of fully committed cells.
    save
        Path to save the figure to.

    Returns
    -------
    The matplotlib figure.
    """
    ad, own = source(adata)
    fp = fates(ad, key, own)
    for name in (lineage_1, lineage_2):
        if name is not None and name not in fp.columns:
            raise KeyError(f"Lineage {name!r} is not among {list(fp.columns)}.")
    if time_key not in ad.obs:
        raise KeyError(f"adata.obs[{time_key!r}] does not exist.")
    p1 = fp[lineage_1].to_numpy(dtype=float)
    p2 = 1.0 - p1 if lineage_2 is None else fp[lineage_2].to_numpy(dtype=float)
    y = log_odds_values(p1, p2)
    y = y + np.random.default_rng(seed).normal(scale=0.02, size=y.shape)
    t = ad.obs[time_key].to_numpy(dtype=float)
    fig, ax = plt.subplots(figsize=(6, 3.6), layout="constrained")
    if cluster_key is None:
        ax.scatter(t, y, s=size, color="gray", linewidths=0)
    else:
        if cluster_key not in ad.obs:
            raise KeyError(f"adata.obs[{cluster_key!r}] does not exist.")
        col = ad.obs[cluster_key]
        labels = col.astype(str)
        cats = [str(c) for c in col.cat.categories] if hasattr(col, "cat") else sorted(set(labels))
        cats = [c for c in cats if (labels == c).any()]
        cmap = colors(ad, cluster_key, cats, own)
        for c in cats:
            m = (labels == c).to_numpy()
            ax.scatter(t[m], y[m], s=size, color=cmap[c], label=c, linewidths=0)
        ax.legend(loc="center left", bbox_to_anchor=(1, 0.5), frameon=False, markerscale=2, fontsize=7)
    ax.axhline(0, color="black", lw=0.8)
    if threshold is not None:
        for v in (threshold, -threshold):
            ax.axhline(v, color="gray", lw=0.8, ls="--")
    other = "rest" if lineage_2 is None else lineage_2
    ax.set(xlabel=time_key, ylabel=f"log odds {lineage_1} : {other}", title=f"{lineage_1} vs {other}")
    return finish(fig, save)
