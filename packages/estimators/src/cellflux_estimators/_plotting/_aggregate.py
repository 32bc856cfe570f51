"""Fate probabilities aggregated over clusters: bar, violin or heatmap."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import matplotlib.pyplot as plt
import numpy as np

from ._source import colors, fates, finish, select_lineages, source

__all__ = ["aggregate_fate_probabilities"]


def aggregate_fate_probabilities(
    adata: Any,
    *,
    cluster_key: str = "clusters",
    key: str = "lineages_fwd",
    mode: Literal["bar", "violin", "heatmap"] = "violin",
    lineages: list[str] | None = None,
    clusters: list[str] | None = None,
    ncols: int = 3,
    save: str | Path | None = None,
) -> plt.Figure:
    """Summarise fate probabilities per cluster (as the pancreas tutorial's violin plot).

    Parameters
    ----------
    adata
        AnnData with ``obsm[key]`` and ``obs[cluster_key]``, or an estimator.
    cluster_key
        Clusters to aggregate over.
    key
        Where the fate probabilities are.
    mode
        ``"bar"`` (mean per cluster and lineage), ``"violin"`` (one panel per lineage) or ``"heatmap"``.
    lineages
        Subset of lineages (a name or a list; unknown names raise a ``KeyError`` listing the lineages).
    clusters
        Subset of clusters.
    ncols
        Panels per row (violin).
    save
        Path to save the figure to.

    Returns
    -------
    The matplotlib figure.
    """
    ad, own = source(adata)
    fp = select_lineages(fates(ad, key, own), lineages, key)
    if cluster_key not in ad.obs:
        raise KeyError(f"adata.obs[{cluster_key!r}] does not exist.")
    col = ad.obs[cluster_key].astype(str)
    cl = (
        list(dict.fromkeys(ad.obs[cluster_key].cat.categories.astype(str)))
        if hasattr(ad.obs[cluster_key], "cat")
        else sorted(col.unique())
    )
    if clusters is not None:
        unknown = [c for c in clusters if c not in cl]
        if unknown:
            raise KeyError(f"Cluster(s) {unknown} are not in adata.obs[{cluster_key!r}].")
        cl = list(clusters)
    cl = [c for c in cl if (col == c).any()]
    names = list(fp.columns)
    cmap = colors(ad, key, names, own)
    if mode == "bar":
        means = np.array([[fp.loc[(col == c).to_numpy(), n].mean() for n in names] for c in cl])
        fig, ax = plt.subplots(figsize=(1.2 + 0.5 * len(cl) * len(names) / 2, 3.5), layout="constrained")
        width = 0.8 / len(names)
        for j, n in enumerate(names):
            ax.bar(np.arange(len(cl)) + j * width, means[:, j], width, color=cmap[n], label=n)
        ax.set_xticks(np.arange(len(cl)) + 0.4 - width / 2)
        ax.set_xticklabels(cl, rotation=45, ha="right")
        ax.set(ylabel="mean fate probability", ylim=(0, 1))
        ax.legend(loc="center left", bbox_to_anchor=(1, 0.5), frameon=False)
    elif mode == "violin":
        ncols = min(ncols, len(names))
        nrows = int(np.ceil(len(names) / ncols))
        fig, axes = plt.subplots(
            nrows, ncols, figsize=(0.6 * len(cl) * ncols + 1, 3 * nrows), squeeze=False, layout="constrained"
        )
        for i, n in enumerate(names):
            ax = axes.flat[i]
            data = [fp.loc[(col == c).to_numpy(), n].to_numpy() for c in cl]
            parts = ax.violinplot(data, showmedians=True)
            for body in parts["bodies"]:
                body.set_facecolor(cmap[n])
                body.set_alpha(0.7)
            ax.set_xticks(np.arange(1, len(cl) + 1))
            ax.set_xticklabels(cl, rotation=45, ha="right")
            ax.set(title=n, ylim=(-0.02, 1.02), ylabel="fate probability" if i % ncols == 0 else None)
        for ax in axes.flat[len(names) :]:
            ax.axis("off")
    elif mode == "heatmap":
        means = np.array([[fp.loc[(col == c).to_numpy(), n].mean() for n in names] for c in cl])
        fig, ax = plt.subplots(figsize=(1.5 + 0.7 * len(names), 1 + 0.35 * len(cl)), layout="constrained")
        im = ax.imshow(means, cmap="viridis", vmin=0, vmax=1, aspect="auto")
        ax.set(xticks=range(len(names)), yticks=range(len(cl)))
        ax.set_xticklabels(names, rotation=45, ha="right")
        ax.set_yticklabels(cl)
        fig.colorbar(im, ax=ax, label="mean fate probability")
    else:
        raise ValueError(f"mode={mode!r} is not supported; use 'bar', 'violin' or 'heatmap'.")
    return finish(fig, save)
