"""Plots of the differential abundance and expression results (matplotlib, imported on use)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ._keys import Key

if TYPE_CHECKING:
    from anndata import AnnData
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = [
    "differential_abundance_volcano",
    "differential_expression_volcano",
    "direction_barplot",
    "fold_change_embedding",
    "smoothed_expression",
]

_DIRECTION_COLOURS = {"down": "#3b6fb6", "neutral": "#c8c8c8", "up": "#c0392b"}


def _axes(ax: Axes | None, figsize: tuple[float, float] = (5.0, 4.0)) -> Axes:
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=figsize)
    return ax


def _require(adata: AnnData, slot: str, key: str, produced_by: str) -> Any:
    container = getattr(adata, slot)
    if key not in container:
        raise KeyError(f"{slot}[{key!r}] is missing; run {produced_by} first (or pass the key_added you used as key=).")
    return container[key]


def _params(adata: AnnData, key: str, produced_by: str) -> dict[str, Any]:
    return dict(_require(adata, "uns", key, produced_by).get("params", {}))


def _basis(adata: AnnData, basis: str | None, key: str, produced_by: str) -> tuple[np.ndarray, str]:
    if basis is None:
        basis = "X_umap" if "X_umap" in adata.obsm else _params(adata, key, produced_by).get("obsm_key", Key.OBSM)
    coords = np.asarray(_require(adata, "obsm", basis, "an embedding (or pass basis=)"))
    if coords.ndim != 2 or coords.shape[1] < 2:
        raise ValueError(f"obsm[{basis!r}] needs at least two columns to plot.")
    return coords[:, :2], basis


def differential_abundance_volcano(
    adata: AnnData,
    *,
    key: str = Key.DA,
    groupby: str | None = None,
    log_fold_change_threshold: float | None = None,
    ptp_threshold: float | None = None,
    ax: Axes | None = None,
    s: float = 6.0,
) -> Axes:
    """Volcano plot of differential abundance: log fold change vs ``-log10`` PTP, coloured by cluster.

    Parameters
    ----------
    adata
        AnnData after ``cf.tl.differential_abundance``.
    key
        The ``key_added`` of that call.
    groupby
        ``obs`` column to colour by (default: the direction calls).
    log_fold_change_threshold, ptp_threshold
        Threshold lines (default: those of the call).
    ax
        Axes to draw on.
    s
        Marker size.

    Returns
    -------
    The matplotlib Axes.
    """
    produced_by = "cf.tl.differential_abundance"
    lfc = np.asarray(_require(adata, "obs", Key.field(key, Key.LOG_FOLD_CHANGE), produced_by))
    ptp = np.asarray(_require(adata, "obs", Key.field(key, Key.NEG_LOG10_PTP), produced_by))
    params = _params(adata, key, produced_by)
    lfc_t = (
        params.get("log_fold_change_threshold", 1.0) if log_fold_change_threshold is None else log_fold_change_threshold
    )
    ptp_t = params.get("ptp_threshold", 0.05) if ptp_threshold is None else ptp_threshold
    ax = _axes(ax)
    if groupby is None:
        labels = adata.obs[Key.field(key, Key.DIRECTION)].astype(str)
        colours = {k: v for k, v in _DIRECTION_COLOURS.items()}
    else:
        labels = _require(adata, "obs", groupby, "annotation (pass groupby= an obs column)").astype(str)
        import matplotlib.pyplot as plt

        cats = sorted(labels.unique())
        cmap = plt.get_cmap("tab20" if len(cats) > 10 else "tab10")
        colours = {c: cmap(i % cmap.N) for i, c in enumerate(cats)}
    for cat, colour in colours.items():
        sel = (labels == cat).to_numpy()
        if sel.any():
            ax.scatter(lfc[sel], ptp[sel], s=s, color=colour, label=cat, linewidths=0, rasterized=True)
    for x in (-lfc_t, lfc_t):
        ax.axvline(x, color="0.4", lw=0.8, ls="--")
    ax.axhline(-np.log10(ptp_t), color="0.4", lw=0.8, ls="--")
    c1, c2 = params.get("conditions", ["condition 1", "condition 2"])
    ax.set_xlabel(f"log fold change ({c2} vs {c1})")
    ax.set_ylabel("-log10 posterior tail probability")
    ax.legend(fontsize="small", markerscale=2, frameon=False, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    ax.set_title("Differential abundance")
    return ax


def differential_expression_volcano(
    adata: AnnData,
    *,
    key: str = Key.DE,
    fdr_threshold: float | None = None,
    n_labels: int = 10,
    ax: Axes | None = None,
    s: float = 10.0,
) -> Axes:
    """Volcano plot of differential expression: mean log fold change vs Mahalanobis distance, FDR-coloured.

    Parameters
    ----------
    adata
        AnnData after ``cf.tl.differential_expression`` (with ``compute_mahalanobis=True``).
    key
        The ``key_added`` of that call.
    fdr_threshold
        Genes with tail FDR below it are highlighted (default: that of the call).
    n_labels
        Label the genes with the largest distances.
    ax
        Axes to draw on.
    s
        Marker size.

    Returns
    -------
    The matplotlib Axes.
    """
    produced_by = "cf.tl.differential_expression"
    var = adata.var
    lfc = np.asarray(_require(adata, "var", Key.field(key, Key.MEAN_LFC), produced_by), dtype=float)
    dist = np.asarray(
        _require(adata, "var", Key.field(key, Key.MAHALANOBIS), produced_by + " with compute_mahalanobis=True"),
        dtype=float,
    )
    tested = np.isfinite(dist)
    params = _params(adata, key, produced_by)
    threshold = params.get("fdr_threshold", 0.05) if fdr_threshold is None else fdr_threshold
    ax = _axes(ax)
    fdr_key = Key.field(key, Key.TAIL_FDR)
    if fdr_key in var:
        import matplotlib.pyplot as plt

        fdr = np.asarray(var[fdr_key], dtype=float)
        colour = -np.log10(np.clip(fdr, 1e-6, 1.0))
        sig = tested & (fdr < threshold)
        sc = ax.scatter(lfc[tested], dist[tested], c=colour[tested], cmap="viridis", s=s, linewidths=0, vmin=0)
        ax.scatter(
            lfc[sig],
            dist[sig],
            facecolors="none",
            edgecolors="#c0392b",
            s=s * 2.5,
            linewidths=0.8,
            label=f"FDR < {threshold:g}",
        )
        plt.colorbar(sc, ax=ax, label="-log10 tail FDR")
        ax.legend(fontsize="small", frameon=False, loc="upper left")
    else:
        ax.scatter(lfc[tested], dist[tested], s=s, color="0.3", linewidths=0)
    order = np.argsort(np.where(tested, dist, -np.inf))[::-1][:n_labels]
    for i in order:
        if tested[i]:
            ax.annotate(
                str(adata.var_names[i]), (lfc[i], dist[i]), fontsize=7, xytext=(3, 2), textcoords="offset points"
            )
    c1, c2 = params.get("conditions", ["condition 1", "condition 2"])
    ax.set_xlabel(f"mean log fold change ({c2} vs {c1})")
    ax.set_ylabel("Mahalanobis distance")
    ax.set_title("Differential expression")
    return ax


def fold_change_embedding(
    adata: AnnData,
    *,
    key: str = Key.DA,
    gene: str | None = None,
    basis: str | None = None,
    ax: Axes | None = None,
    s: float = 6.0,
    vmax: float | None = None,
) -> Axes:
    """Fold changes on an embedding: the DA log fold change, or a gene's DE fold change (``gene=``).

    Parameters
    ----------
    adata
        AnnData after ``cf.tl.differential_abundance`` (or ``cf.tl.differential_expression`` with ``gene``).
    key
        The ``key_added`` of that call.
    gene
        Plot this gene's per-cell fold change from ``layers[f"{key}_fold_change"]``.
    basis
        ``obsm`` key of the embedding (default ``X_umap`` if present, else the call's representation).
    ax
        Axes to draw on.
    s
        Marker size.
    vmax
        Symmetric colour limit (default: 99th percentile of ``|fold change|``).

    Returns
    -------
    The matplotlib Axes.
    """
    import matplotlib.pyplot as plt

    if gene is None:
        produced_by = "cf.tl.differential_abundance"
        values = np.asarray(_require(adata, "obs", Key.field(key, Key.LOG_FOLD_CHANGE), produced_by), dtype=float)
        label = "log fold change (abundance)"
    else:
        produced_by = "cf.tl.differential_expression with store_layers=True"
        layer = _require(adata, "layers", Key.field(key, Key.FOLD_CHANGE), produced_by)
        if gene not in adata.var_names:
            raise KeyError(f"Gene {gene!r} is not in var_names.")
        values = np.asarray(layer[:, adata.var_names.get_loc(gene)], dtype=float).ravel()
        label = f"{gene} fold change"
    coords, basis = _basis(adata, basis, key, produced_by)
    ax = _axes(ax, (5.0, 4.5))
    lim = vmax if vmax is not None else float(np.nanpercentile(np.abs(values), 99)) or 1.0
    order = np.argsort(np.abs(np.nan_to_num(values)))
    sc = ax.scatter(
        coords[order, 0],
        coords[order, 1],
        c=values[order],
        cmap="RdBu_r",
        vmin=-lim,
        vmax=lim,
        s=s,
        linewidths=0,
        rasterized=True,
    )
    plt.colorbar(sc, ax=ax, label=label)
    ax.set_xlabel(f"{basis} 1")
    ax.set_ylabel(f"{basis} 2")
    ax.set_xticks([])
    ax.set_yticks([])
    return ax


def direction_barplot(
    adata: AnnData,
    *,
    groupby: str | None = None,
    key: str = Key.DA,
    normalize: bool = True,
    ax: Axes | None = None,
) -> Axes:
    """Share of cells called up, down or neutral in each cluster.

    Parameters
    ----------
    adata
        AnnData after ``cf.tl.differential_abundance``.
    groupby
        ``obs`` column of the clusters (required).
    key
        The ``key_added`` of that call.
    normalize
        Fractions (default) or counts.
    ax
        Axes to draw on.

    Returns
    -------
    The matplotlib Axes.
    """
    if groupby is None:
        raise ValueError("Pass groupby= the obs column of the clusters.")
    direction = _require(adata, "obs", Key.field(key, Key.DIRECTION), "cf.tl.differential_abundance").astype(str)
    clusters = _require(adata, "obs", groupby, "annotation (pass groupby= an obs column)").astype(str)
    table = pd.crosstab(clusters, direction).reindex(columns=list(Key.DIRECTIONS), fill_value=0)
    if normalize:
        table = table.div(table.sum(axis=1), axis=0)
    ax = _axes(ax, (max(4.0, 0.5 * len(table) + 2), 4.0))
    bottom = np.zeros(len(table))
    for direction_name in ("down", "neutral", "up"):
        ax.bar(
            table.index,
            table[direction_name],
            bottom=bottom,
            color=_DIRECTION_COLOURS[direction_name],
            label=direction_name,
        )
        bottom += table[direction_name].to_numpy()
    ax.set_ylabel("fraction of cells" if normalize else "cells")
    ax.set_xlabel(groupby)
    ax.tick_params(axis="x", rotation=60)
    ax.legend(fontsize="small", frameon=False, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    ax.set_title("Differential abundance per cluster")
    return ax


def smoothed_expression(
    adata: AnnData,
    *,
    gene: str | None = None,
    key: str = Key.DE,
    basis: str | None = None,
    s: float = 6.0,
) -> Figure:
    """A gene's smoothed expression in each condition (and its fold change) on an embedding.

    Parameters
    ----------
    adata
        AnnData after ``cf.tl.differential_expression`` with ``store_layers=True``.
    gene
        The gene (required).
    key
        The ``key_added`` of that call.
    basis
        ``obsm`` key of the embedding (default ``X_umap`` if present, else the call's representation).
    s
        Marker size.

    Returns
    -------
    The matplotlib Figure with three panels.
    """
    import matplotlib.pyplot as plt

    produced_by = "cf.tl.differential_expression with store_layers=True"
    if gene is None or gene not in adata.var_names:
        raise KeyError(f"Pass gene= one of var_names (got {gene!r}).")
    params = _params(adata, key, produced_by)
    c1, c2 = params.get("conditions", [None, None])
    j = adata.var_names.get_loc(gene)
    panels = []
    for c in (c1, c2):
        layer = _require(adata, "layers", Key.field(key, Key.IMPUTED, c), produced_by)
        panels.append((f"{gene}: {c}", np.asarray(layer[:, j], dtype=float).ravel()))
    coords, basis = _basis(adata, basis, key, produced_by)
    fig, axes = plt.subplots(1, 3, figsize=(13.5, 4.0))
    vmin = min(np.nanmin(v) for _, v in panels)
    vmax = max(np.nanmax(v) for _, v in panels)
    for ax, (title, values) in zip(axes[:2], panels, strict=True):
        sc = ax.scatter(
            coords[:, 0],
            coords[:, 1],
            c=values,
            cmap="viridis",
            vmin=vmin,
            vmax=vmax,
            s=s,
            linewidths=0,
            rasterized=True,
        )
        ax.set_title(title)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.colorbar(sc, ax=axes[:2], label="smoothed expression")
    fold_change_embedding(adata, key=key, gene=gene, basis=basis, ax=axes[2], s=s)
    axes[2].set_title(f"{gene}: {c2} - {c1}")
    return fig
