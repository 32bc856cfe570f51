"""Top lineage drivers with their confidence intervals."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np

from .._keys import Key
from ._source import finish, to_adata

__all__ = ["drivers_correlation", "lineage_drivers"]


def lineage_drivers(
    adata: Any,
    *,
    lineage: str,
    key: str = "drivers_fwd",
    n_genes: int = 10,
    ascending: bool = False,
    save: str | Path | None = None,
) -> plt.Figure:
    """Plot the genes most correlated with a lineage, with their confidence intervals.

    Parameters
    ----------
    adata
        AnnData with ``var[key + "_<lineage>_corr"]`` etc. (``cf.tl.lineage_drivers``) or an estimator.
    lineage
        The lineage.
    key
        Prefix of the driver columns.
    n_genes
        Number of genes.
    ascending
        Show the most negatively correlated genes instead.
    save
        Path to save the figure to.

    Returns
    -------
    The matplotlib figure.
    """
    ad = to_adata(adata)
    col = Key.driver_column(key, lineage, "corr")
    if col not in ad.var:
        raise KeyError(f"adata.var[{col!r}] does not exist; run cf.tl.lineage_drivers for lineage {lineage!r}.")
    df = ad.var[
        [
            col,
            Key.driver_column(key, lineage, "ci_low"),
            Key.driver_column(key, lineage, "ci_high"),
            Key.driver_column(key, lineage, "qval"),
        ]
    ].dropna()
    df = df.sort_values(col, ascending=ascending).head(n_genes)[::-1]
    fig, ax = plt.subplots(figsize=(4.5, 0.3 * len(df) + 1), layout="constrained")
    y = np.arange(len(df))
    corr = df.iloc[:, 0].to_numpy()
    err = np.vstack([corr - df.iloc[:, 1].to_numpy(), df.iloc[:, 2].to_numpy() - corr])
    ax.errorbar(corr, y, xerr=err, fmt="o", color="black", ecolor="gray", capsize=2)
    ax.set_yticks(y)
    ax.set_yticklabels(df.index)
    ax.axvline(0, color="lightgray", lw=1)
    ax.set(xlabel="correlation with fate probability", title=f"{lineage} drivers")
    return finish(fig, save)


def drivers_correlation(
    adata: Any,
    *,
    lineage_x: str,
    lineage_y: str,
    key: str = "drivers_fwd",
    n_genes: int = 5,
    size: float = 8.0,
    save: str | Path | None = None,
) -> plt.Figure:
    """Scatter the driver correlations of two lineages gene by gene, labelling each lineage's top drivers.

    Genes in the upper-left and lower-right corners drive one lineage and oppose the other.

    Parameters
    ----------
    adata
        AnnData with driver columns in ``var`` (``cf.tl.lineage_drivers``), or an estimator.
    lineage_x, lineage_y
        The two lineages (x and y axes).
    key
        Prefix of the driver columns.
    n_genes
        Top genes of each lineage to label.
    size
        Marker size.
    save
        Path to save the figure to.

    Returns
    -------
    The matplotlib figure.
    """
    ad = to_adata(adata)
    cols = [Key.driver_column(key, lin, "corr") for lin in (lineage_x, lineage_y)]
    for lin, col in zip((lineage_x, lineage_y), cols, strict=True):
        if col not in ad.var:
            raise KeyError(f"adata.var[{col!r}] does not exist; run cf.tl.lineage_drivers for lineage {lin!r}.")
    df = ad.var[cols].dropna()
    x, y = df.iloc[:, 0].to_numpy(), df.iloc[:, 1].to_numpy()
    fig, ax = plt.subplots(figsize=(4.6, 4.4), layout="constrained")
    ax.scatter(x, y, s=size, color="gray", alpha=0.6, linewidths=0)
    top = list(dict.fromkeys(list(df.iloc[:, 0].nlargest(n_genes).index) + list(df.iloc[:, 1].nlargest(n_genes).index)))
    for gene in top:
        gx, gy = df.loc[gene].to_numpy()
        ax.scatter([gx], [gy], s=2 * size, color="black")
        ax.annotate(str(gene), (gx, gy), xytext=(3, 3), textcoords="offset points", fontsize=7)
    lim = max(np.abs(x).max(initial=0), np.abs(y).max(initial=0)) * 1.1 or 1.0
    ax.axhline(0, color="lightgray", lw=1)
    ax.axvline(0, color="lightgray", lw=1)
    ax.set(xlim=(-lim, lim), ylim=(-lim, lim), aspect="equal", xlabel=f"{lineage_x} correlation")
    ax.set(ylabel=f"{lineage_y} correlation", title="lineage driver correlations")
    return finish(fig, save)
