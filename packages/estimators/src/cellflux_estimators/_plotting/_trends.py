"""Gene trends per lineage (our penalised-spline smoother) and the trend heatmap."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from .._engine._trends import fit_trends
from .._estimators._drivers import expression
from ._source import colors, fates, finish, gene_list, select_lineages, source

__all__ = ["cluster_trends", "gene_trends", "trend_heatmap"]


def _trends(ad, genes, time_key, key, lineages, layer, n_knots, own=None):
    if time_key not in ad.obs:
        raise KeyError(f"adata.obs[{time_key!r}] does not exist; pass the pseudotime's column as time_key.")
    missing = [g for g in genes if g not in ad.var_names]
    if missing:
        raise KeyError(f"Gene(s) {missing[:5]} are not in adata.var_names.")
    fp = fates(ad, key, own)
    sub = select_lineages(fp, lineages, key)
    lineages = list(sub.columns)
    x, _ = expression(ad, layer, False)
    x = x[:, ad.var_names.get_indexer(genes)]
    res = fit_trends(x, ad.obs[time_key].to_numpy(dtype=float), sub.to_numpy(), n_knots=n_knots)
    return res, lineages, fp


def gene_trends(
    adata: Any,
    *,
    genes: list[str],
    time_key: str,
    key: str = "lineages_fwd",
    lineages: list[str] | None = None,
    layer: str | None = None,
    n_knots: int = 8,
    show_cells: bool = True,
    ncols: int = 3,
    save: str | Path | None = None,
) -> plt.Figure:
    """Plot smoothed expression along pseudotime, one line per lineage, one panel per gene.

    Parameters
    ----------
    adata
        AnnData with fate probabilities in ``obsm[key]`` or an estimator.
    genes
        Genes to plot (a name or a list of names).
    time_key
        Pseudotime in ``obs``.
    key
        Where the fate probabilities are.
    lineages
        Subset of lineages (unknown names raise a ``KeyError`` listing the lineages).
    layer
        Expression layer.
    n_knots
        Spline knots.
    show_cells
        Draw the cells behind the trends.
    ncols
        Panels per row.
    save
        Path to save the figure to.

    Returns
    -------
    The matplotlib figure.
    """
    ad, own = source(adata)
    genes = gene_list(genes)
    res, lineages, _ = _trends(ad, genes, time_key, key, lineages, layer, n_knots, own)
    cmap = colors(ad, key, lineages, own)
    ncols = min(ncols, len(genes))
    nrows = int(np.ceil(len(genes) / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.6 * ncols, 2.8 * nrows), squeeze=False, layout="constrained")
    x, _ = expression(ad, layer, False)
    t = ad.obs[time_key].to_numpy(dtype=float)
    for i, gene in enumerate(genes):
        ax = axes.flat[i]
        if show_cells:
            col = x[:, ad.var_names.get_loc(gene)]
            col = np.asarray(col.toarray()).ravel() if hasattr(col, "toarray") else np.asarray(col).ravel()
            ax.scatter(t, col, s=2, c="lightgray")
        for j, lin in enumerate(lineages):
            mean, se = res.values[j][:, i], res.se[j][:, i]
            ax.plot(res.grid, mean, color=cmap[lin], label=lin)
            ax.fill_between(res.grid, mean - 2 * se, mean + 2 * se, color=cmap[lin], alpha=0.2)
        ax.set(title=gene, xlabel=time_key)
    for ax in axes.flat[len(genes) :]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7, frameon=False)
    return finish(fig, save)


def trend_heatmap(
    adata: Any,
    *,
    genes: list[str],
    time_key: str,
    lineage: str,
    key: str = "lineages_fwd",
    layer: str | None = None,
    n_knots: int = 8,
    save: str | Path | None = None,
) -> plt.Figure:
    """Heatmap of smoothed, min-max scaled trends of ``genes`` along one lineage, sorted by peak time.

    Parameters
    ----------
    adata
        AnnData with fate probabilities in ``obsm[key]`` or an estimator.
    genes
        Genes to show (a name or a list of names).
    time_key
        Pseudotime in ``obs``.
    lineage
        The lineage (an unknown name raises a ``KeyError`` listing the lineages).
    key
        Where the fate probabilities are.
    layer
        Expression layer.
    n_knots
        Spline knots.
    save
        Path to save the figure to.

    Returns
    -------
    The matplotlib figure.
    """
    ad, own = source(adata)
    genes = gene_list(genes)
    res, _, _ = _trends(ad, genes, time_key, key, [lineage], layer, n_knots, own)
    v = res.values[0]
    lo, hi = v.min(axis=0), v.max(axis=0)
    scaled = (v - lo) / np.where(hi > lo, hi - lo, 1.0)
    order = np.argsort(np.argmax(scaled, axis=0))
    df = pd.DataFrame(scaled[:, order].T, index=np.asarray(genes)[order])
    fig, ax = plt.subplots(figsize=(6, 0.25 * len(genes) + 1.2), layout="constrained")
    im = ax.imshow(
        df.to_numpy(), aspect="auto", cmap="viridis", extent=(res.grid[0], res.grid[-1], len(genes) - 0.5, -0.5)
    )
    ax.set_yticks(range(len(genes)))
    ax.set_yticklabels(df.index)
    ax.set(xlabel=time_key, title=f"{lineage}: gene trends")
    fig.colorbar(im, ax=ax, label="scaled expression")
    return finish(fig, save)


def cluster_trends(
    adata: Any,
    *,
    genes: list[str],
    time_key: str,
    lineage: str,
    n_clusters: int = 4,
    key: str = "lineages_fwd",
    layer: str | None = None,
    n_knots: int = 8,
    seed: int = 0,
    save: str | Path | None = None,
) -> plt.Figure:
    """Cluster genes by the shape of their smoothed trend along one lineage and plot each cluster's trends.

    Trends are min-max scaled per gene, grouped with k-means (seeded) and drawn as thin lines with the
    cluster mean in bold; panels are ordered by the time of the mean's peak.

    Parameters
    ----------
    adata
        AnnData with fate probabilities in ``obsm[key]``, or an estimator.
    genes
        Genes to cluster (a name or a list of names).
    time_key
        Pseudotime in ``obs``.
    lineage
        The lineage (an unknown name raises a ``KeyError`` listing the lineages).
    n_clusters
        Number of gene clusters.
    key
        Where the fate probabilities are.
    layer
        Expression layer.
    n_knots
        Spline knots.
    seed
        k-means seed.
    save
        Path to save the figure to.

    Returns
    -------
    The matplotlib figure; the gene clusters are in ``fig.gene_clusters`` (a :class:`pandas.Series`).
    """
    from .._engine._cluster import kmeans

    ad, own = source(adata)
    genes = gene_list(genes)
    if not 1 <= n_clusters <= len(genes):
        raise ValueError(f"n_clusters must be in [1, {len(genes)}] (the number of genes), got {n_clusters}.")
    res, _, _ = _trends(ad, genes, time_key, key, [lineage], layer, n_knots, own)
    v = res.values[0]
    lo, hi = v.min(axis=0), v.max(axis=0)
    scaled = ((v - lo) / np.where(hi > lo, hi - lo, 1.0)).T  # genes x grid
    labels = kmeans(scaled, n_clusters, seed=seed)
    peaks = [np.argmax(scaled[labels == c].mean(axis=0)) if np.any(labels == c) else 0 for c in range(n_clusters)]
    order = [c for c in np.argsort(peaks) if np.any(labels == c)]
    ncols = min(4, len(order))
    nrows = int(np.ceil(len(order) / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(3 * ncols, 2.4 * nrows), squeeze=False, layout="constrained")
    for i, c in enumerate(order):
        ax = axes.flat[i]
        members = scaled[labels == c]
        ax.plot(res.grid, members.T, color="gray", lw=0.5, alpha=0.6)
        ax.plot(res.grid, members.mean(axis=0), color="black", lw=2)
        ax.set(title=f"cluster {i + 1} ({len(members)} genes)", ylim=(-0.05, 1.05), xlabel=time_key)
    for ax in axes.flat[len(order) :]:
        ax.axis("off")
    fig.suptitle(f"{lineage}: gene trend clusters")
    rank = {c: i + 1 for i, c in enumerate(order)}
    fig.gene_clusters = pd.Series([rank[c] for c in labels], index=genes, name="trend_cluster")
    return finish(fig, save)
