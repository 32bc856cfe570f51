"""Plots of ``cf.tl.velocity_vae`` results: latent time, phase portraits with the fitted dynamics, uncertainty."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from ._keys import Key
from ._preprocess import min_max_scale
from ._validate import layer_values

if TYPE_CHECKING:
    from anndata import AnnData
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["latent_time", "phase_portraits", "uncertainty", "fitted_trajectory"]


def _embedding(adata: AnnData, basis: str) -> np.ndarray:
    key = basis if basis.startswith("X_") else f"X_{basis}"
    if key not in adata.obsm:
        raise KeyError(f"adata.obsm[{key!r}] is missing; compute the embedding (e.g. scanpy.tl.umap) or pass basis=.")
    return np.asarray(adata.obsm[key])[:, :2]


def _scatter_embedding(adata: AnnData, values: np.ndarray, basis: str, title: str, cmap: str, ax: Axes | None) -> Axes:
    import matplotlib.pyplot as plt

    xy = _embedding(adata, basis)
    if ax is None:
        _, ax = plt.subplots(figsize=(4.5, 4))
    order = np.argsort(values)  # high values on top
    points = ax.scatter(xy[order, 0], xy[order, 1], c=values[order], s=6, cmap=cmap, linewidths=0)
    ax.figure.colorbar(points, ax=ax, shrink=0.8)
    ax.set_title(title)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_xlabel(f"{basis} 1")
    ax.set_ylabel(f"{basis} 2")
    return ax


def latent_time(
    adata: AnnData,
    *,
    basis: str = "umap",
    time_key: str = Key.LATENT_TIME,
    cmap: str = "gnuplot",
    ax: Axes | None = None,
) -> Axes:
    """Cell-level latent time of ``cf.tl.velocity_vae`` on an embedding.

    Parameters
    ----------
    adata
        AnnData with ``obs[time_key]`` and ``obsm[f"X_{basis}"]``.
    basis
        The embedding.
    time_key
        obs column with the latent time.
    cmap
        Colour map.
    ax
        Axes to draw into.

    Returns
    -------
    The matplotlib Axes.
    """
    if time_key not in adata.obs:
        raise KeyError(f"adata.obs[{time_key!r}] is missing; run cf.tl.velocity_vae first.")
    return _scatter_embedding(adata, np.asarray(adata.obs[time_key], dtype=float), basis, "latent time", cmap, ax)


def uncertainty(
    adata: AnnData,
    *,
    basis: str = "umap",
    statistic: str = "directional_cosine_sim_variance",
    key_added: str = Key.KEY_ADDED,
    cmap: str = "viridis",
    ax: Axes | None = None,
) -> Axes:
    """Directional velocity uncertainty of ``cf.tl.velocity_vae`` on an embedding.

    Parameters
    ----------
    adata
        AnnData with ``obs[f"{key_added}_{statistic}"]``.
    basis
        The embedding.
    statistic
        One of the directional statistics (e.g. ``"directional_cosine_sim_variance"``).
    key_added
        The ``key_added`` of the tool call.
    cmap
        Colour map.
    ax
        Axes to draw into.

    Returns
    -------
    The matplotlib Axes.
    """
    column = f"{key_added}_{statistic}"
    if column not in adata.obs:
        raise KeyError(f"adata.obs[{column!r}] is missing; run cf.tl.velocity_vae (key_added={key_added!r}) first.")
    values = (
        np.log10(np.clip(np.asarray(adata.obs[column], dtype=float), 1e-12, None))
        if "variance" in statistic
        else np.asarray(adata.obs[column], dtype=float)
    )
    label = statistic.replace("directional_", "").replace("_", " ")
    title = f"velocity uncertainty\n(log10 {label})" if "variance" in statistic else f"velocity uncertainty\n({label})"
    return _scatter_embedding(adata, values, basis, title, cmap, ax)


def fitted_trajectory(
    alpha: float, beta: float, gamma: float, switch_time: float, t_max: float = 20.0, n_points: int = 200
) -> tuple[np.ndarray, np.ndarray]:
    """``(u(t), s(t))`` along induction up to ``switch_time`` and repression up to ``t_max``."""
    import torch

    from ._kinetics import induction, repression

    t = torch.linspace(0, t_max, n_points, dtype=torch.float64)
    a, b, g = (torch.tensor(float(v), dtype=torch.float64) for v in (alpha, beta, gamma))
    ts = torch.tensor(float(switch_time), dtype=torch.float64)
    zero = torch.zeros((), dtype=torch.float64)
    u_ind, s_ind = induction(a, zero, zero, b, g, torch.minimum(t, ts))
    u0, s0 = induction(a, zero, zero, b, g, ts)
    u_rep, s_rep = repression(u0, s0, b, g, torch.clamp(t - ts, min=0))
    u = torch.where(t <= ts, u_ind, u_rep)
    s = torch.where(t <= ts, s_ind, s_rep)
    return u.numpy(), s.numpy()


def phase_portraits(
    adata: AnnData,
    *,
    genes: Sequence[str],
    key_added: str = Key.KEY_ADDED,
    spliced_layer: str = Key.SPLICED,
    unspliced_layer: str = Key.UNSPLICED,
    ncols: int = 3,
    **scatter_kwargs: Any,
) -> Figure:
    """Per-gene phase portraits (scaled ``s`` vs ``u``) with veloVI's fitted dynamics.

    Cells are coloured by their gene-wise latent time; the line is the fitted induction and
    repression trajectory from the rates in ``var``.

    Parameters
    ----------
    adata
        AnnData after ``cf.tl.velocity_vae``.
    genes
        Genes to show (modelled genes only).
    key_added
        The ``key_added`` of the tool call.
    spliced_layer, unspliced_layer
        The moment layers the model was trained on (min-max scaled here, as for training).
    ncols
        Panels per row.
    **scatter_kwargs
        Passed to :meth:`matplotlib.axes.Axes.scatter`.

    Returns
    -------
    The matplotlib Figure.
    """
    import matplotlib.pyplot as plt

    genes = list(genes)
    modelled = f"{key_added}_genes"
    if modelled not in adata.var:
        raise KeyError(f"adata.var[{modelled!r}] is missing; run cf.tl.velocity_vae (key_added={key_added!r}) first.")
    unknown = [g for g in genes if g not in adata.var_names or not adata.var.loc[g, modelled]]
    if unknown:
        raise KeyError(f"Genes not modelled by velocity_vae: {unknown}.")
    idx = adata.var_names.get_indexer(genes)
    s = min_max_scale(layer_values(adata, spliced_layer)[:, idx])
    u = min_max_scale(layer_values(adata, unspliced_layer)[:, idx])
    fit_t = np.asarray(adata.layers[f"{key_added}_{Key.FIT_T}"])[:, idx]
    nrows = int(np.ceil(len(genes) / ncols))
    fig, axes = plt.subplots(
        nrows, min(ncols, len(genes)), figsize=(3.2 * min(ncols, len(genes)), 3 * nrows), squeeze=False
    )
    for j, gene in enumerate(genes):
        ax = axes.flat[j]
        var = adata.var.loc[gene]
        scaling = float(var[f"{key_added}_scaling"])
        points = ax.scatter(
            s[:, j], u[:, j], c=fit_t[:, j], s=5, cmap="gnuplot", vmin=0, vmax=20, linewidths=0, **scatter_kwargs
        )
        u_fit, s_fit = fitted_trajectory(
            var[f"{key_added}_alpha"] * scaling,
            var[f"{key_added}_beta"] * scaling,
            var[f"{key_added}_gamma"] * scaling,
            var[f"{key_added}_switch_time"] / scaling,
        )
        ax.plot(s_fit, u_fit, color="black", lw=1.5, label="fitted dynamics")
        ax.set_title(gene)
        ax.set(xlim=(-0.05, 1.05), ylim=(-0.05, 1.05))
        ax.set_xlabel("spliced (scaled)")
        ax.set_ylabel("unspliced (scaled)")
    for ax in list(axes.flat)[len(genes) :]:
        ax.set_visible(False)
    axes.flat[0].legend(loc="upper left", fontsize="small", frameon=False)
    fig.tight_layout()
    fig.colorbar(points, ax=list(axes.flat[: len(genes)]), shrink=0.8, label="gene-wise latent time")
    return fig
