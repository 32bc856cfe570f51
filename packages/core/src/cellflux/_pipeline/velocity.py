"""Step ``velocity``: the velocity VAE (default), the steady-state model, or a precomputed layer."""

from __future__ import annotations

import logging

import numpy as np

from .._keys import TruthKey
from ._context import Context, StepSkipped
from ._util import dense, require_function, require_module

__all__ = ["run"]

VKEY = "velocity"
GENES = "velocity_genes"  # scVelo's mask, which cellflux-kernels' VelocityKernel reads
SAMPLES = "velocity_samples"
_VAE = "cellflux-velocity-vae"


def run(ctx: Context) -> None:
    """Write ``layers["velocity"]`` and ``var["velocity_genes"]`` (and the VAE's latent time and uncertainty)."""
    mode, adata = ctx.config.velocity, ctx.adata
    if mode == "precomputed":
        if VKEY not in adata.layers:
            raise StepSkipped("--velocity precomputed needs a layers['velocity']; this file has none")
        if "Ms" not in adata.layers:
            adata.layers["Ms"] = dense(adata.X).astype(np.float32)
            ctx.info("no Ms layer: the velocity kernel compares velocities with X")
        finite = np.isfinite(dense(adata.layers[VKEY])).all(axis=0)
        if GENES not in adata.var:
            adata.var[GENES] = finite
        ctx.info(f"using the precomputed velocity layer ({int(adata.var[GENES].sum())} velocity genes)")
    else:
        if "unspliced" not in adata.layers or "spliced" not in adata.layers:
            raise StepSkipped(
                "no spliced/unspliced layers: RNA velocity needs unspliced counts "
                "(use --velocity precomputed with a velocity layer, or skip with --steps)"
            )
        if "Ms" not in adata.layers:
            raise StepSkipped("no moments (Ms/Mu): run the preprocess step")
        if mode == "vae":
            _vae(ctx)
        else:
            _steady_state(ctx)
    _score(ctx)


def _vae(ctx: Context) -> None:
    import cellflux as cf

    require_function("tl", "velocity_vae", _VAE)
    cfg, adata = ctx.config, ctx.adata
    epochs = cfg.vae_epochs or (10 if cfg.quick else 40)
    n_samples = 0 if cfg.quick else cfg.n_velocity_samples
    # few, large minibatches: about 4 optimiser steps per epoch keeps a CPU run within minutes
    batch = int(min(max(256, adata.n_obs // 4), 2048))
    # Lightning's rank-zero logger sets its own INFO level ("GPU available", tips): quiet it explicitly
    for name in ("lightning", "lightning.pytorch", "lightning.pytorch.utilities.rank_zero", "lightning.fabric", "scvi"):
        logging.getLogger(name).setLevel(logging.WARNING)
    cf.tl.velocity_vae(
        adata,
        max_epochs=epochs,
        batch_size=batch,
        n_samples=max(5, n_samples),  # posterior draws averaged per query; the queries dominate the step
        n_velocity_samples=n_samples,
        seed=cfg.seed,
        overwrite=True,
    )
    genes = adata.var["velocity_vae_genes"].to_numpy(dtype=bool)
    adata.var[GENES] = genes
    uns = adata.uns["velocity_vae"]
    if n_samples:
        # kept for the fates step (posterior uncertainty), not written to the h5ad (samples x cells x genes)
        ctx.objects[SAMPLES] = np.asarray(uns.pop("velocity_samples"))
    ctx.info(
        f"velocity VAE (VELOVI, cellflux-velocity-vae): {int(genes.sum())} genes modelled, "
        f"{int(uns.get('n_epochs', epochs))} epochs, {n_samples} posterior velocity samples kept"
    )


def _steady_state(ctx: Context) -> None:
    require_function("tl", "velocity_vae", _VAE)
    vv = require_module("cellflux_velocity_vae", _VAE)
    adata = ctx.adata
    ms, mu = dense(adata.layers["Ms"]), dense(adata.layers["Mu"])
    fit = vv.fit_steady_state(ms, mu)
    gamma = np.asarray(fit["gamma"], dtype=np.float64)
    genes = np.asarray(fit["velocity_genes"], dtype=bool)
    velocity = mu - gamma[None, :] * ms
    velocity[:, ~genes] = np.nan
    adata.layers[VKEY] = velocity.astype(np.float32)
    adata.var[GENES] = genes
    adata.var["velocity_gamma"] = gamma
    adata.var["velocity_r2"] = np.asarray(fit["r2"], dtype=np.float64)
    ctx.info(
        "steady-state velocity u - gamma s on the moments (cellflux-velocity-vae's fit_steady_state; "
        f"scVelo's stochastic model fails under numpy >= 2.4): {int(genes.sum())} velocity genes"
    )


def _score(ctx: Context) -> None:
    adata = ctx.adata
    if not ctx.has_truth or TruthKey.VELOCITY not in adata.layers:
        return
    from scipy.stats import spearmanr

    genes = adata.var[GENES].to_numpy(dtype=bool)
    v = np.nan_to_num(dense(adata.layers[VKEY])[:, genes])
    truth = dense(adata.layers[TruthKey.VELOCITY])[:, genes]
    cos = (v * truth).sum(1) / np.maximum(np.linalg.norm(v, axis=1) * np.linalg.norm(truth, axis=1), 1e-12)
    ctx.score(
        "velocity",
        "median cosine with the true velocity",
        float(np.median(cos)),
        f"over {int(genes.sum())} velocity genes",
    )
    if "latent_time" in adata.obs:
        rho = spearmanr(adata.obs["latent_time"], adata.obs[TruthKey.TIME])[0]
        ctx.score("velocity", "latent time vs true time (Spearman)", float(rho))
