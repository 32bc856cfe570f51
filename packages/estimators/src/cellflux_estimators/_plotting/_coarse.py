"""The coarse-grained transition matrix as an annotated heatmap."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np

from ._source import coarse, finish, source

__all__ = ["coarse_T"]


def coarse_T(
    adata: Any,
    *,
    key: str = "macrostates_fwd",
    order: str | None = "stability",
    annotate: bool = True,
    cmap: str = "viridis",
    save: str | Path | None = None,
) -> plt.Figure:
    """Plot the coarse-grained transition matrix with the coarse initial and stationary distributions.

    Parameters
    ----------
    adata
        AnnData with ``uns[key]["coarse_T"]`` (``cf.tl.macrostates``) or an estimator (its own coarse matrix is
        plotted, whatever ``key``).
    key
        Where the coarse matrix is: ``uns[key]``, else the estimator written with ``to_adata`` in the direction
        the key's suffix names (``uns["estimator_fwd"]`` for ``_fwd``, ``uns["estimator_bwd"]`` for ``_bwd``).
    order
        ``"stability"`` (by self-transition), ``"stat_dist"`` (by the coarse stationary distribution, which
        exists only for an irreducible transition matrix) or ``None`` (as computed).
    annotate
        Write the values in the cells.
    cmap
        Colour map.
    save
        Path to save the figure to.

    Returns
    -------
    The matplotlib figure.
    """
    if order not in ("stability", "stat_dist", None):
        raise ValueError(f"order={order!r} is not supported; use 'stability', 'stat_dist' or None.")
    ad, own = source(adata)
    t, init, stat = coarse(ad, key, own)
    if order == "stability":
        names = list(t.index[np.argsort(np.diag(t.to_numpy()), kind="stable")])
    elif order == "stat_dist":
        if stat is None:
            where = "the estimator" if own is not None else f"adata.uns[{key!r}]"
            raise ValueError(
                f"order='stat_dist' sorts by the coarse stationary distribution, but {where} has no coarse "
                "stationary distribution. cf.tl.macrostates and GPCCA.compute_macrostates compute one only when "
                "the transition matrix is irreducible (GPCCA(...).structure tells); recompute the macrostates on "
                "an irreducible matrix, or use order='stability' or order=None."
            )
        names = list(stat.index[np.argsort(stat.to_numpy(), kind="stable")])
    else:
        names = list(t.index)
    t = t.loc[names, names]
    k = len(names)
    fig, (ax, ax_init) = plt.subplots(
        2, 1, figsize=(1.0 + 0.8 * k, 1.4 + 0.8 * k), height_ratios=[k, 1], layout="constrained"
    )
    im = ax.imshow(t.to_numpy(), cmap=cmap, vmin=0, vmax=1)
    ax.set(xticks=range(k), yticks=range(k), title="coarse-grained transition matrix")
    ax.set_xticklabels(names, rotation=45, ha="right")
    ax.set_yticklabels(names)
    if annotate:
        for i in range(k):
            for j in range(k):
                v = t.iloc[i, j]
                ax.text(j, i, f"{v:.2f}", ha="center", va="center", color="white" if v < 0.5 else "black", fontsize=8)
    fig.colorbar(im, ax=ax, shrink=0.8)
    dist = init.loc[names].to_numpy()[None, :] if stat is None else np.vstack([init.loc[names], stat.loc[names]])
    ax_init.imshow(dist, cmap="Greys", aspect="auto")
    ax_init.set(xticks=range(k), yticks=range(dist.shape[0]))
    ax_init.set_yticklabels(["initial", "stationary"][: dist.shape[0]])
    ax_init.set_xticklabels([])
    for i in range(dist.shape[0]):
        for j in range(k):
            ax_init.text(j, i, f"{dist[i, j]:.2f}", ha="center", va="center", color="tab:red", fontsize=8)
    return finish(fig, save)
