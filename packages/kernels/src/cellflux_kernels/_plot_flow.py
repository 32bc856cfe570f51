"""The single-cell flow plot: where the transition mass of one cluster goes over experimental time.

matplotlib is imported inside the function so that importing the package stays light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ._engine._flow import single_flow as flow_table
from ._keys import Key

if TYPE_CHECKING:
    from anndata import AnnData
    from matplotlib.axes import Axes

__all__ = ["single_flow"]


def _categorical(adata: AnnData, key: str, what: str) -> pd.Categorical:
    if key not in adata.obs:
        raise KeyError(f"adata.obs[{key!r}] ({what}) is missing.")
    values = adata.obs[key]
    if not isinstance(values.dtype, pd.CategoricalDtype):
        values = values.astype("category")  # numeric time points sort numerically
    return values.array


def _colors(adata: AnnData, cluster_key: str, categories: list[str]) -> dict[str, object]:
    import matplotlib as mpl

    stored = adata.uns.get(f"{cluster_key}_colors")
    if stored is not None and len(stored) == len(categories):
        return dict(zip(categories, stored, strict=True))
    palette = mpl.colormaps["tab20"]
    return {c: palette(i % 20) for i, c in enumerate(categories)}


def single_flow(
    adata: AnnData,
    *,
    cluster_key: str,
    time_key: str,
    cluster: str,
    key: str = Key.FORWARD,
    matrix: Any = None,
    min_flow: float = 0.0,
    remove_empty_clusters: bool = True,
    ascending: bool | None = False,
    alpha: float = 0.8,
    ax: Axes | None = None,
    figsize: tuple[float, float] | None = None,
) -> Axes:
    """Plot how the transition mass of one cluster flows into the clusters of the next time point.

    For every pair of consecutive time points, a ribbon leaves ``cluster`` at the earlier time point
    and reaches each cluster at the later one, its width the fraction of the cluster's mass that
    goes there (see :func:`cellflux_kernels._engine._flow.single_flow`), as CellRank's
    ``plot_single_flow``. Typical input: a :class:`~cellflux_kernels.RealTimeKernel` written with
    ``write_to_adata``.

    Parameters
    ----------
    adata
        Annotated data with the transition matrix in ``obsp[key]``.
    cluster_key
        ``obs`` column with the clusters.
    time_key
        ``obs`` column with the time points (ordered categorical or numeric).
    cluster
        The cluster whose outgoing flow is drawn.
    key
        ``obsp`` key of the transition matrix.
    matrix
        The transition matrix itself (e.g. ``kernel.transition_matrix``) instead of ``obsp[key]``.
    min_flow
        Ribbons carrying less than this fraction are not drawn.
    remove_empty_clusters
        Leave out clusters that receive no drawn flow (the source cluster always stays).
    ascending
        Order the clusters on the y axis by their total inflow (``False``: largest at the top,
        ``True``: at the bottom, ``None``: the categories' order).
    alpha
        Opacity of the ribbons.
    ax
        Axes to draw into.
    figsize
        Size of a new figure.

    Returns
    -------
    The matplotlib axes; the flow table is in ``ax.flow`` (a :class:`pandas.DataFrame`).
    """
    if matrix is None:
        if key not in adata.obsp:
            raise KeyError(f"adata.obsp[{key!r}] is missing; write a kernel there first (kernel.write_to_adata()).")
        matrix = adata.obsp[key]
    if matrix.shape != (adata.n_obs, adata.n_obs):
        raise ValueError(f"The transition matrix has shape {matrix.shape}, expected ({adata.n_obs}, {adata.n_obs}).")
    clusters = _categorical(adata, cluster_key, "the clusters")
    time = _categorical(adata, time_key, "the time points")
    flow = flow_table(matrix, clusters, time, cluster)
    drawn = flow.where(flow >= min_flow, 0.0).fillna(0.0)
    cats = list(clusters.categories)
    keep = [c for c in cats if c == cluster or not remove_empty_clusters or drawn[c].sum() > 0]
    if ascending is not None:
        keep = sorted(keep, key=lambda c: drawn[c].sum(), reverse=not ascending)
    ypos = {c: len(keep) - 1 - i for i, c in enumerate(keep)}
    points = [p for p in time.categories if (np.asarray(time) == p).any()]
    colors = _colors(adata, cluster_key, cats)

    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=figsize or (1.6 * len(points) + 2, 0.5 * len(keep) + 1.5))
    height = 0.8  # the width a ribbon carrying all of the mass gets
    grid = np.linspace(0.0, 1.0, 50)
    smooth = 3 * grid**2 - 2 * grid**3
    for x, (_, row) in enumerate(drawn.iterrows()):
        offset = ypos[cluster] + 0.5 * height * row.sum()
        for c in keep:
            w = float(row[c]) * height
            if w <= 0:
                continue
            top0, top1 = offset, ypos[c] + 0.5 * w
            offset -= w
            xs = x + grid
            upper = top0 + (top1 - top0) * smooth
            ax.fill_between(xs, upper - w, upper, color=colors[c], alpha=alpha, linewidth=0)
    for x, p in enumerate(points):  # the source cluster where it has cells
        if ((np.asarray(clusters) == cluster) & (np.asarray(time) == p)).any():
            y = ypos[cluster]
            ax.plot([x, x], [y - 0.5 * height, y + 0.5 * height], color=colors[cluster], lw=3, solid_capstyle="butt")
    for c in keep:
        ax.axhline(ypos[c], color="lightgrey", lw=0.5, zorder=0)
    ax.set_yticks([ypos[c] for c in keep], keep)
    ax.set_xticks(range(len(points)), [str(p) for p in points])
    ax.set_xlim(-0.1, len(points) - 0.9)
    ax.set_ylim(-0.8, len(keep) - 0.2)
    ax.set_xlabel(time_key)
    ax.set_title(f"flow out of {cluster}")
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    ax.flow = flow
    return ax
