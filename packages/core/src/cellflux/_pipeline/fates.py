"""Step ``fates``: GPCCA macrostates, terminal and initial states, fate probabilities, drivers, trends.

With posterior velocity samples from the VAE, the fate probabilities are recomputed on one transition
matrix per sample (same terminal states) and their spread is the uncertainty.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from ._context import Context
from ._util import require_function, require_module
from .kernels import WEIGHTS
from .scoring import score_fates
from .velocity import GENES, SAMPLES

__all__ = ["run"]

logger = logging.getLogger(__name__)

_EST = "cellflux-estimators"
FATE_SD = "fate_probabilities_sd"
PSEUDOTIME = "absorption_pseudotime"


def _macrostates(ctx: Context, g, cluster_key: str) -> None:
    """Macrostates: ``n_states``, or the larger of eigengap + 1 and clusters - 1 (room for the progenitors).

    A number that leaves a macrostate without cells of its own is lowered until one works.
    """
    n = ctx.config.n_states
    if n is None:
        g.compute_schur(20)
        g.compute_macrostates(None, cluster_key=cluster_key)
        n_gap = len(g.macrostates.cat.categories)
        n_clusters = int(ctx.adata.obs[cluster_key].nunique())
        n = int(np.clip(max(n_gap + 1, n_clusters - 1), 3, 12))
        ctx.info(
            f"{n} macrostates: the eigengap suggests {n_gap}, the data have {n_clusters} clusters "
            "(max of eigengap + 1 and clusters - 1, within [3, 12])"
        )
    g.compute_schur(max(20, n + 5))
    for k in range(n, 1, -1):
        try:
            g.compute_macrostates(k, cluster_key=cluster_key)
            return
        except ValueError as error:
            ctx.info(f"{k} macrostates: {error}; trying {k - 1}")
    raise ValueError(f"No number of macrostates between 2 and {n} gives macrostates with cells of their own.")


def run(ctx: Context) -> None:
    """Fit GPCCA on ``obsp["T_fwd"]`` and write its results into ``ctx.adata``."""
    require_function("tl", "macrostates", _EST)
    est = require_module("cellflux_estimators", _EST)
    cfg, adata = ctx.config, ctx.adata
    cluster_key = ctx.objects["cluster_key"]
    g = est.GPCCA(adata, obsp_key="T_fwd", seed=cfg.seed)
    _macrostates(ctx, g, cluster_key)
    names = list(g.macrostates.cat.categories)
    ctx.info(f"{len(names)} macrostates: {', '.join(names)}")
    if cfg.n_terminal is not None:
        g.predict_terminal_states("top_n", n_states=cfg.n_terminal)
    else:
        try:
            g.predict_terminal_states("stability", stability_threshold=0.95)
        except ValueError as error:
            ctx.info(f"no stable macrostate ({error}); taking the 2 most stable ones")
            g.predict_terminal_states("top_n", n_states=2)
    g.compute_fate_probabilities()
    _initial_state(ctx, g)
    terminal = list(g.terminal_states.cat.categories)
    initial = list(g.initial_states.cat.categories)
    _describe(ctx, g, cluster_key, terminal, initial)
    g.compute_lineage_drivers(cluster_key=None)
    ctx.objects["gpcca"] = g
    ctx.objects["terminal"], ctx.objects["initial"] = terminal, initial
    _pseudotime(ctx, g)
    _trend_genes(ctx, g, terminal)
    _uncertainty(ctx, g)
    g.to_adata(adata, copy=False)
    if ctx.has_truth:
        score_fates(ctx, g)


def _majority(labels: pd.Series) -> tuple[str, float]:
    counts = labels.astype(str).value_counts()
    return str(counts.index[0]), float(counts.iloc[0] / counts.sum())


def _describe(ctx: Context, g, cluster_key: str, terminal: list[str], initial: list[str]) -> None:
    clusters = ctx.adata.obs[cluster_key]
    rows = []
    for kind, states, series in (("terminal", terminal, g.terminal_states), ("initial", initial, g.initial_states)):
        for name in states:
            cells = (series == name).to_numpy()
            major, frac = _majority(clusters[cells])
            rows.append({"kind": kind, "state": name, "cells": int(cells.sum()), "cluster": major, "fraction": frac})
            ctx.found.append(
                f"{kind} state <b>{name}</b>: {int(cells.sum())} cells, {frac:.0%} of them in cluster {major!r}"
            )
    ctx.objects["states_table"] = pd.DataFrame(rows)
    ctx.info("terminal states: " + ", ".join(terminal) + "; initial state(s): " + ", ".join(initial))


def _steps_to_absorption(g) -> np.ndarray:
    terminal = list(g.terminal_states.cat.categories)
    if g.absorption_times is None:
        g.compute_absorption_times(keys=[", ".join(terminal)])
    return np.nan_to_num(g.absorption_times.iloc[:, 0].to_numpy(dtype=np.float64), nan=0.0)


def _initial_state(ctx: Context, g) -> None:
    """The non-terminal macrostate farthest from absorption: largest mean number of steps to a terminal state."""
    steps = pd.Series(_steps_to_absorption(g), index=g.macrostates.index)
    terminal = set(g.terminal_states.cat.categories)
    candidates = {
        name: float(steps[(g.macrostates == name).to_numpy()].mean())
        for name in g.macrostates.cat.categories
        if name not in terminal
    }
    if not candidates:
        ctx.info("every macrostate is terminal: the initial state is the one with the lowest stationary mass")
        g.predict_initial_states(1, allow_overlap=True)
        return
    name = max(candidates, key=candidates.get)
    cells = g.macrostates.index[(g.macrostates == name).to_numpy()]
    g.set_initial_states({name: list(cells)})
    ctx.info(
        f"initial state: {name!r}, the non-terminal macrostate farthest from absorption "
        f"({candidates[name]:.0f} steps on average to a terminal state)"
    )


def _pseudotime(ctx: Context, g) -> None:
    """Latent time if the velocity step gave one, else 1 - (mean steps to absorption) / max, in ``[0, 1]``."""
    adata = ctx.adata
    if "latent_time" in adata.obs:
        ctx.objects["time_key"] = "latent_time"
        return
    steps = _steps_to_absorption(g)
    adata.obs[PSEUDOTIME] = 1.0 - steps / max(float(steps.max()), 1e-12)
    ctx.objects["time_key"] = PSEUDOTIME
    ctx.info(
        f"no latent time: pseudotime obs[{PSEUDOTIME!r}] = 1 - mean number of steps to any terminal state "
        "(normalised), from the GPCCA absorption times"
    )


def _trend_genes(ctx: Context, g, terminal: list[str]) -> None:
    drivers = g.lineage_drivers
    genes: list[str] = []
    for name in terminal:
        column = f"{name}_corr"
        if column in drivers:
            top = drivers[column].sort_values(ascending=False).index[:2]
            genes += [str(x) for x in top if str(x) not in genes]
    ctx.objects["trend_genes"] = genes[:6]
    ctx.info("top lineage drivers: " + ", ".join(ctx.objects["trend_genes"]))


def _uncertainty(ctx: Context, g) -> None:
    samples = ctx.objects.get(SAMPLES)
    adata = ctx.adata
    if samples is None or not len(samples):
        reason = "quick run" if ctx.config.quick else "velocity without posterior samples (only the VAE provides them)"
        ctx.info(f"fate-probability uncertainty not computed: {reason}")
        return
    ck = require_module("cellflux_kernels", "cellflux-kernels")
    est = require_module("cellflux_estimators", _EST)
    conn = ck.ConnectivityKernel(adata).compute_transition_matrix()
    fates = []
    draw = "velocity_draw"
    try:
        for k in range(samples.shape[0]):
            adata.layers[draw] = samples[k]
            vk = ck.VelocityKernel(adata, xkey="Ms", vkey=draw, gene_subset=GENES)
            vk.compute_transition_matrix(show_progress_bar=False)
            gk = est.GPCCA(WEIGHTS["velocity"] * vk + WEIGHTS["connectivity"] * conn)
            gk.set_terminal_states(g.terminal_states)
            fates.append(
                gk.compute_fate_probabilities().fate_probabilities.loc[:, g.fate_probabilities.columns].to_numpy()
            )
    finally:
        del adata.layers[draw]
    stack = np.stack(fates)
    sd = pd.DataFrame(stack.std(0), index=adata.obs_names, columns=g.fate_probabilities.columns)
    adata.obsm[FATE_SD] = sd
    adata.obs["fate_probabilities_sd_max"] = sd.to_numpy().max(1)
    ctx.objects["fate_sd"] = sd
    ctx.info(
        f"fate-probability uncertainty from {stack.shape[0]} posterior velocity samples of the VAE "
        f"(one transition matrix each): median largest s.d. {np.median(sd.to_numpy().max(1)):.3f}"
    )
