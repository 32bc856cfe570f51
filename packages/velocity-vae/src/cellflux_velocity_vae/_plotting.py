"""Plots of ``cf.tl.velocity_vae`` results: latent time, phase portraits with the fitted dynamics, uncertainty."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from cellflux._keys import ProvenanceKey

from ._keys import Key
from ._preprocess import min_max_scale
from ._uncertainty import STATISTICS
from ._validate import dense, layer_values

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
        One of the directional statistics: ``"directional_variance"``, ``"directional_difference"``,
        ``"directional_cosine_sim_variance"``, ``"directional_cosine_sim_difference"`` or
        ``"directional_cosine_sim_mean"``.
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
    if statistic not in STATISTICS:
        raise ValueError(f"Unknown statistic {statistic!r}; expected one of {', '.join(map(repr, STATISTICS))}.")
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
    alpha: float,
    beta: float,
    gamma: float,
    switch_time: float,
    t_max: float = 20.0,
    n_points: int = 200,
    *,
    alpha_1: float | None = None,
    lambda_alpha: float | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """``(u(t), s(t))`` along induction up to ``switch_time`` and repression up to ``t_max``.

    Parameters
    ----------
    alpha, beta, gamma
        Transcription, splicing and degradation rates (of the model's time axis).
    switch_time
        Time of the switch from induction to repression.
    t_max
        End of the time axis.
    n_points
        Points on ``[0, t_max]``, evenly spaced.
    alpha_1, lambda_alpha
        A time-dependent transcription rate (VELOVI's ``time_dep_transcription_rate=True``): during
        induction the rate relaxes from ``alpha`` to ``alpha_1`` at rate ``lambda_alpha``. Give both,
        or neither for a constant rate ``alpha``.

    Returns
    -------
    The unspliced and spliced abundances at the ``n_points`` times.
    """
    import torch

    from ._kinetics import induction, repression

    if (alpha_1 is None) != (lambda_alpha is None):
        raise ValueError("Give both alpha_1 and lambda_alpha for a time-dependent transcription rate, or neither.")
    dependent = alpha_1 is not None
    t = torch.linspace(0, t_max, n_points, dtype=torch.float64)
    a, b, g = (torch.tensor(float(v), dtype=torch.float64) for v in (alpha, beta, gamma))
    a1, lam = (torch.tensor(float(v) if dependent else 0.0, dtype=torch.float64) for v in (alpha_1, lambda_alpha))
    ts = torch.tensor(float(switch_time), dtype=torch.float64)
    u_ind, s_ind = induction(a, a1, lam, b, g, torch.minimum(t, ts), dependent)
    u0, s0 = induction(a, a1, lam, b, g, ts, dependent)
    u_rep, s_rep = repression(u0, s0, b, g, torch.clamp(t - ts, min=0))
    u = torch.where(t <= ts, u_ind, u_rep)
    s = torch.where(t <= ts, s_ind, s_rep)
    return u.numpy(), s.numpy()


def _training_params(adata: AnnData, key_added: str) -> dict[str, Any]:
    """The parameters ``cf.tl.velocity_vae`` recorded in ``uns[key_added]`` (empty when none were)."""
    record = adata.uns.get(key_added, {})
    params = record.get(ProvenanceKey.PARAMS, {}) if isinstance(record, Mapping) else {}
    return dict(params) if isinstance(params, Mapping) else {}


def _scatter_options(user: dict[str, Any], time: np.ndarray, t_max: float = 20.0) -> tuple[dict[str, Any], bool]:
    """Options of :meth:`~matplotlib.axes.Axes.scatter`: the defaults updated with the user's.

    Parameters
    ----------
    user
        The user's keyword arguments (matplotlib aliases such as ``lw`` allowed).
    time
        The gene-wise latent time of the cells, the default colour.
    t_max
        End of the model's time axis (the top of the colour scale).

    Returns
    -------
    The keyword arguments, and whether the points are coloured by the latent time.
    """
    from matplotlib import cbook
    from matplotlib.collections import PathCollection

    options = cbook.normalize_kwargs(user, PathCollection)
    defaults: dict[str, Any] = {"s": 5, "linewidth": 0}
    # a colour of the user's replaces the latent time and its colour scale
    by_time = not {"c", "color", "facecolor"} & set(options)
    if by_time:
        defaults.update(c=time, cmap="gnuplot", vmin=0, vmax=t_max)
    return {**defaults, **options}, by_time


def phase_portraits(
    adata: AnnData,
    *,
    genes: str | Sequence[str],
    key_added: str = Key.KEY_ADDED,
    spliced_layer: str = Key.SPLICED,
    unspliced_layer: str = Key.UNSPLICED,
    ncols: int = 3,
    **scatter_kwargs: Any,
) -> Figure:
    """Per-gene phase portraits (``s`` vs ``u``) with veloVI's fitted dynamics.

    Cells are coloured by their gene-wise latent time; the line is the fitted induction and
    repression trajectory from the rates in ``var`` (with the time-dependent transcription rate when
    the model was trained with one).

    Parameters
    ----------
    adata
        AnnData after ``cf.tl.velocity_vae``.
    genes
        Gene, or genes, to show (modelled genes only).
    key_added
        The ``key_added`` of the tool call.
    spliced_layer, unspliced_layer
        The moment layers the model was trained on. They are min-max scaled here when the model was
        trained on min-max scaled moments (``cf.tl.velocity_vae(min_max_scale=True)``, the default),
        and shown in their own units otherwise.
    ncols
        Panels per row.
    **scatter_kwargs
        Passed to :meth:`matplotlib.axes.Axes.scatter`; they replace the defaults (``s=5``,
        ``linewidths=0``, and ``c`` the gene-wise latent time with ``cmap="gnuplot"``, ``vmin=0``,
        ``vmax`` the model's ``t_max``, 20 by default). With ``c=``, ``color=`` or ``facecolor=`` the
        points are not coloured by the latent time (and the colour bar is left unlabelled, or left out
        when nothing is colour-mapped).

    Returns
    -------
    The matplotlib Figure.
    """
    import matplotlib.pyplot as plt

    genes = [genes] if isinstance(genes, str) else list(genes)
    if not genes:
        raise ValueError("genes is empty; pass at least one gene modelled by cf.tl.velocity_vae.")
    modelled = f"{key_added}_genes"
    if modelled not in adata.var:
        raise KeyError(f"adata.var[{modelled!r}] is missing; run cf.tl.velocity_vae (key_added={key_added!r}) first.")
    unknown = [g for g in genes if g not in adata.var_names or not adata.var.loc[g, modelled]]
    if unknown:
        raise KeyError(f"Genes not modelled by velocity_vae: {unknown}.")
    params = _training_params(adata, key_added)
    scaled = bool(params.get("min_max_scale", True))
    t_max = float(params.get("t_max", 20.0))  # the model's time axis (20 unless set in model_kwargs)
    time_dependent = bool(params.get("time_dep_transcription_rate", False))
    if time_dependent:
        missing = [f"{key_added}_{n}" for n in Key.TIME_DEPENDENT_RATES if f"{key_added}_{n}" not in adata.var]
        if missing:
            raise KeyError(
                f"adata.var is missing {missing}: the model has a time-dependent transcription rate, and its fitted "
                f"dynamics need them. Run cf.tl.velocity_vae (key_added={key_added!r}) again."
            )
    idx = adata.var_names.get_indexer(genes)
    s = dense(layer_values(adata, spliced_layer)[:, idx], np.float64)
    u = dense(layer_values(adata, unspliced_layer)[:, idx], np.float64)
    if scaled:  # as for training
        s, u = min_max_scale(s), min_max_scale(u)
    fit_t = np.asarray(adata.layers[f"{key_added}_{Key.FIT_T}"])[:, idx]
    nrows = int(np.ceil(len(genes) / ncols))
    fig, axes = plt.subplots(
        nrows, min(ncols, len(genes)), figsize=(3.2 * min(ncols, len(genes)), 3 * nrows), squeeze=False
    )
    unit = " (scaled)" if scaled else ""
    for j, gene in enumerate(genes):
        ax = axes.flat[j]
        var = adata.var.loc[gene]
        scaling = float(var[f"{key_added}_scaling"])
        options, by_time = _scatter_options(scatter_kwargs, fit_t[:, j], t_max)
        points = ax.scatter(s[:, j], u[:, j], **options)
        relaxation = (
            {n: float(var[f"{key_added}_{n}"]) * scaling for n in Key.TIME_DEPENDENT_RATES} if time_dependent else {}
        )
        u_fit, s_fit = fitted_trajectory(
            var[f"{key_added}_alpha"] * scaling,
            var[f"{key_added}_beta"] * scaling,
            var[f"{key_added}_gamma"] * scaling,
            var[f"{key_added}_switch_time"] / scaling,
            t_max=t_max,
            **relaxation,
        )
        ax.plot(s_fit, u_fit, color="black", lw=1.5, label="fitted dynamics")
        ax.set_title(gene)
        if scaled:
            ax.set(xlim=(-0.05, 1.05), ylim=(-0.05, 1.05))
        ax.set_xlabel(f"spliced{unit}")
        ax.set_ylabel(f"unspliced{unit}")
    for ax in list(axes.flat)[len(genes) :]:
        ax.set_visible(False)
    axes.flat[0].legend(loc="upper left", fontsize="small", frameon=False)
    fig.tight_layout()
    if points.get_array() is not None:
        label = "gene-wise latent time" if by_time else ""
        fig.colorbar(points, ax=list(axes.flat[: len(genes)]), shrink=0.8, label=label)
    return fig
