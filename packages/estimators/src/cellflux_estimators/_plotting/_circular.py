"""Circular projection of fate probabilities: lineages on a circle, each cell at its probability-weighted mean."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np

from ._source import colors, fates, finish, select_lineages, source

__all__ = ["circular_projection", "circular_coordinates"]


def circular_coordinates(probabilities: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Lineage anchors on the unit circle and cell positions ``p @ anchors`` (a cell of one fate sits on its anchor).

    Parameters
    ----------
    probabilities
        Fate probabilities ``(n, k)``, rows summing to 1.

    Returns
    -------
    Anchors ``(k, 2)`` (the first at the top, counter-clockwise) and cell coordinates ``(n, 2)``.
    """
    k = probabilities.shape[1]
    angles = np.pi / 2 + 2 * np.pi * np.arange(k) / k
    anchors = np.column_stack([np.cos(angles), np.sin(angles)])
    return anchors, probabilities @ anchors


def circular_projection(
    adata: Any,
    *,
    key: str = "lineages_fwd",
    color: str | None = None,
    lineages: list[str] | None = None,
    size: float = 6.0,
    save: str | Path | None = None,
) -> plt.Figure:
    """Place the lineages on a circle and every cell at the fate-probability-weighted mean of their positions.

    Undecided cells gather in the centre, committed cells at their lineage; as in CellRank's circular projection.

    Parameters
    ----------
    adata
        AnnData with fate probabilities in ``obsm[key]``, or an estimator.
    key
        Where the fate probabilities are.
    color
        ``obs`` column to colour cells by (categorical or continuous); default: the entropy of the fates
        (their uncertainty). Categories are coloured as in scanpy (``uns[color + "_colors"]``) when set.
    lineages
        Subset (re-normalised) of the lineages; unknown names raise a ``KeyError`` listing the lineages.
    size
        Marker size.
    save
        Path to save the figure to.

    Returns
    -------
    The matplotlib figure.
    """
    ad, own = source(adata)
    fp = select_lineages(fates(ad, key, own), lineages, key)
    if fp.shape[1] < 3:
        raise ValueError(f"A circular projection needs at least 3 lineages, got {fp.shape[1]}.")
    p = fp.to_numpy(dtype=float)
    p = p / np.where(p.sum(axis=1, keepdims=True) > 0, p.sum(axis=1, keepdims=True), 1.0)
    anchors, xy = circular_coordinates(p)
    fig, ax = plt.subplots(figsize=(5, 4.6), layout="constrained")
    circle = np.linspace(0, 2 * np.pi, 200)
    ax.plot(np.cos(circle), np.sin(circle), color="lightgray", lw=1, zorder=0)
    if color is None:
        with np.errstate(divide="ignore", invalid="ignore"):
            entropy = -np.nansum(np.where(p > 0, p * np.log(p), 0.0), axis=1) / np.log(p.shape[1])
        sc = ax.scatter(*xy.T, c=entropy, s=size, cmap="viridis", vmin=0, vmax=1, linewidths=0)
        fig.colorbar(sc, ax=ax, shrink=0.7, label="fate entropy (scaled)")
    else:
        if color not in ad.obs:
            raise KeyError(f"adata.obs[{color!r}] does not exist.")
        col = ad.obs[color]
        if hasattr(col, "cat") or col.dtype == object:
            labels = col.astype(str)
            cats = list(dict.fromkeys(col.cat.categories.astype(str))) if hasattr(col, "cat") else sorted(set(labels))
            cmap = colors(ad, color, cats, own)
            for c in cats:
                m = (labels == c).to_numpy()
                ax.scatter(*xy[m].T, s=size, color=cmap[c], label=c, linewidths=0)
            ax.legend(loc="center left", bbox_to_anchor=(1, 0.5), frameon=False, markerscale=2, fontsize=7)
        else:
            sc = ax.scatter(*xy.T, c=col.to_numpy(dtype=float), s=size, cmap="viridis", linewidths=0)
            fig.colorbar(sc, ax=ax, shrink=0.7, label=color)
    lcol = colors(ad, key, list(fp.columns), own)
    for name, (x, y) in zip(fp.columns, anchors, strict=True):
        ax.scatter([x], [y], s=80, color=lcol[name], edgecolors="black", zorder=3)
        ax.annotate(name, (x, y), xytext=(1.13 * x, 1.13 * y), ha="center", va="center", fontsize=9)
    ax.set(xlim=(-1.35, 1.35), ylim=(-1.3, 1.3), aspect="equal", title="circular projection of fates")
    ax.axis("off")
    return finish(fig, save)
