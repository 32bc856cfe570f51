"""Plots: the projected transition matrix (stream or arrows) and random walks on an embedding.

matplotlib is imported inside the functions so that importing the package stays light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from scipy.spatial import cKDTree

from ._kernels._projection import read_basis
from ._keys import Key

if TYPE_CHECKING:
    from anndata import AnnData
    from matplotlib.axes import Axes

__all__ = ["draw_random_walks", "projection", "random_walks"]


def _axes(ax: Axes | None, figsize: tuple[float, float] | None) -> Axes:
    if ax is not None:
        return ax
    import matplotlib.pyplot as plt

    _, ax = plt.subplots(figsize=figsize or (5, 5))
    return ax


def _background(ax: Axes, adata: AnnData, emb: np.ndarray, color: str | None, size: float) -> None:
    if color is None:
        ax.scatter(emb[:, 0], emb[:, 1], s=size, c="lightgrey", linewidths=0)
    elif color in adata.obs and not pd.api.types.is_numeric_dtype(adata.obs[color]):
        cats = adata.obs[color].astype("category")
        import matplotlib as mpl

        palette = mpl.colormaps["tab20"]
        for i, cat in enumerate(cats.cat.categories):
            sel = np.asarray(cats == cat)
            ax.scatter(emb[sel, 0], emb[sel, 1], s=size, color=palette(i % 20), label=str(cat), linewidths=0)
        ax.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False, markerscale=3, fontsize="small")
    else:
        values = adata.obs[color] if color in adata.obs else adata.obs_vector(color)
        sc = ax.scatter(emb[:, 0], emb[:, 1], s=size, c=np.asarray(values), cmap="viridis", linewidths=0)
        ax.figure.colorbar(sc, ax=ax, shrink=0.6, label=color)
    ax.set_xticks([])
    ax.set_yticks([])


def _grid(
    emb: np.ndarray, vectors: np.ndarray, density: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Gaussian-smoothed vectors on a regular grid (scVelo's stream-plot recipe, simplified)."""
    n_grid = int(40 * density)
    lo, hi = emb.min(axis=0), emb.max(axis=0)
    pad = 0.02 * (hi - lo)
    xs = np.linspace(lo[0] - pad[0], hi[0] + pad[0], n_grid)
    ys = np.linspace(lo[1] - pad[1], hi[1] + pad[1], n_grid)
    gx, gy = np.meshgrid(xs, ys)
    points = np.column_stack([gx.ravel(), gy.ravel()])
    k = min(30, len(emb))
    dist, idx = cKDTree(emb).query(points, k=k)
    width = np.mean(hi - lo) / n_grid * 2
    w = np.exp(-0.5 * (dist / width) ** 2)
    total = w.sum(axis=1)
    vec = (w[..., None] * np.nan_to_num(vectors)[idx]).sum(axis=1) / np.maximum(total, 1e-12)[:, None]
    # no streamlines through empty space: drop grid points with no cell within two grid spacings
    vec[(total < np.percentile(total, 10)) | (dist[:, 0] > width)] = np.nan
    return xs, ys, vec[:, 0].reshape(gx.shape), vec[:, 1].reshape(gx.shape)


def projection(
    adata: AnnData,
    *,
    key: str = Key.FORWARD,
    basis: str = "umap",
    stream: bool = True,
    color: str | None = None,
    density: float = 1.0,
    size: float = 8.0,
    ax: Axes | None = None,
    figsize: tuple[float, float] | None = None,
) -> Axes:
    """Plot the projection of a transition matrix onto an embedding as streamlines or arrows.

    The projection is read from ``obsm[f"{key}_{basis}"]``; compute it first with
    ``kernel.compute_projection(basis=...)``.

    Parameters
    ----------
    adata
        Annotated data.
    key
        The transition matrix's key (``"T_fwd"``, ``"T_bwd"`` or the ``key_added`` used).
    basis
        The embedding.
    stream
        Streamlines on a grid (``True``) or one arrow per cell.
    color
        ``obs`` column or gene to colour the cells by.
    density
        Grid density of the stream plot.
    size
        Marker size.
    ax
        Axes to draw into.
    figsize
        Size of a new figure.

    Returns
    -------
    The matplotlib axes.
    """
    pkey = Key.projection(key, basis)
    if pkey not in adata.obsm:
        raise KeyError(f"adata.obsm[{pkey!r}] is missing; run kernel.compute_projection(basis={basis!r}) first.")
    emb = read_basis(adata, basis)
    vectors = np.asarray(adata.obsm[pkey], dtype=np.float64)[:, :2]
    ax = _axes(ax, figsize)
    _background(ax, adata, emb, color, size)
    if stream:
        xs, ys, u, v = _grid(emb, vectors, density)
        ax.streamplot(xs, ys, u, v, color="black", density=density, linewidth=0.8, arrowsize=1.0)
    else:
        ax.quiver(
            emb[:, 0], emb[:, 1], vectors[:, 0], vectors[:, 1], angles="xy", scale_units="xy", scale=1, width=0.002
        )
    ax.set_title(f"{key} projected on {basis}")
    return ax


def random_walks(
    adata: AnnData,
    *,
    key: str = Key.FORWARD,
    basis: str = "umap",
    n_sims: int = 100,
    max_iter: int | float = 0.25,
    seed: int | None = None,
    start_ixs: Any = None,
    stop_ixs: Any = None,
    successive_hits: int = 0,
    color: str | None = None,
    cmap: str = "gnuplot",
    ax: Axes | None = None,
    figsize: tuple[float, float] | None = None,
) -> Axes:
    """Simulate random walks on ``obsp[key]`` and draw them on an embedding.

    Parameters
    ----------
    adata
        Annotated data with a transition matrix in ``obsp[key]``.
    key
        The transition matrix's key.
    basis
        The embedding.
    n_sims, max_iter, seed, start_ixs, stop_ixs, successive_hits
        See :meth:`KernelExpression.simulate_random_walks`.
    color
        ``obs`` column to colour the cells by.
    cmap
        Colour map along each walk (start to end).
    ax
        Axes to draw into.
    figsize
        Size of a new figure.

    Returns
    -------
    The matplotlib axes.
    """
    from ._kernels._precomputed import PrecomputedKernel

    kernel = PrecomputedKernel(key, adata=adata)
    walks = kernel.simulate_random_walks(
        n_sims, max_iter=max_iter, seed=seed, start_ixs=start_ixs, stop_ixs=stop_ixs, successive_hits=successive_hits
    )
    return draw_random_walks(adata, walks, basis=basis, color=color, cmap=cmap, ax=ax, figsize=figsize)


def draw_random_walks(
    adata: AnnData,
    walks: list[np.ndarray],
    *,
    basis: str = "umap",
    color: str | None = None,
    cmap: str = "gnuplot",
    ax: Axes | None = None,
    figsize: tuple[float, float] | None = None,
) -> Axes:
    """Draw simulated walks (arrays of cell indices) on an embedding; returns the axes."""
    import matplotlib as mpl
    from matplotlib.collections import LineCollection

    emb = read_basis(adata, basis)
    ax = _axes(ax, figsize)
    _background(ax, adata, emb, color, 6.0)
    colormap = mpl.colormaps[cmap]
    for walk in walks:
        points = emb[walk]
        if len(points) < 2:
            continue
        segments = np.stack([points[:-1], points[1:]], axis=1)
        lines = LineCollection(segments, colors=colormap(np.linspace(0, 1, len(segments))), linewidths=1.0, alpha=0.4)
        ax.add_collection(lines)
    starts = np.array([w[0] for w in walks])
    ends = np.array([w[-1] for w in walks])
    ax.scatter(
        emb[starts, 0],
        emb[starts, 1],
        s=20,
        color=colormap(0.0),
        edgecolors="black",
        linewidths=0.3,
        zorder=3,
        label="start",
    )
    ax.scatter(
        emb[ends, 0],
        emb[ends, 1],
        s=20,
        color=colormap(0.95),
        edgecolors="black",
        linewidths=0.3,
        zorder=3,
        label="end",
    )
    ax.set_title(f"{len(walks)} random walks")
    return ax
