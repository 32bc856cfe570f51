"""Top lineage drivers with their confidence intervals."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np

from .._keys import Key
from ._source import finish, to_adata

__all__ = ["lineage_drivers"]


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
