"""Ours vs scvi-tools' VELOVI side by side in one process: speed, parity, accuracy, memory.

Default (CI-sized): a simulated dataset (1,000 cells), few epochs. ``--full``: the shared pancreas
data (3,696 cells x 1,126 genes after moments and min-max scaling), more epochs, and a 100,000-cell
query for memory. Writes ``benchmarks/results/bench[_full].json``.
"""

from __future__ import annotations

import argparse
import json
import resource
import time
import warnings
from pathlib import Path

import numpy as np
from scipy.stats import pearsonr, spearmanr

RESULTS = Path(__file__).parent / "results"


def cosine_rows(a, b):
    a, b = np.asarray(a, float), np.asarray(b, float)
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1) + 1e-12)


def load_data(full: bool):
    import cellflux as cf
    from cellflux_velocity_vae import moments, preprocess_data

    if full:
        import anndata as ad

        from cellflux.testing._shared import shared_file

        adata = ad.read_h5ad(shared_file("pancreas.h5ad", Path.cwd()))
        try:
            import scanpy as sc
            import scvelo as scv

            scv.pp.filter_and_normalize(adata, min_shared_counts=20)
            sc.pp.pca(adata, n_comps=30)
            sc.pp.neighbors(adata, n_pcs=30, n_neighbors=30)
            scv.pp.moments(adata, n_pcs=None, n_neighbors=None)
        except ImportError:
            moments(adata)
        return preprocess_data(adata, filter_on_r2=False)
    adata = cf.datasets.simulate(n_cells=1000, n_genes=150, seed=0)
    moments(adata, n_neighbors=20, n_pcs=20)
    return preprocess_data(adata)


def fit(cls, adata, seed, epochs, batch_size=256):
    import scvi

    data = adata.copy()
    for key in [k for k in data.uns if k.startswith("_scvi")]:
        del data.uns[key]
    scvi.settings.seed = seed
    cls.setup_anndata(data, spliced_layer="Ms", unspliced_layer="Mu")
    model = cls(data)
    start = time.perf_counter()
    model.train(max_epochs=epochs, enable_progress_bar=False, batch_size=batch_size, early_stopping=False)
    per_epoch = (time.perf_counter() - start) / epochs
    return model, per_epoch


def queries(model, n_samples=25):
    out = {}
    start = time.perf_counter()
    velocity = model.get_velocity(n_samples=n_samples).to_numpy()
    out["get_velocity_s"] = time.perf_counter() - start
    start = time.perf_counter()
    gene_time = model.get_latent_time(n_samples=n_samples).to_numpy()
    out["get_latent_time_s"] = time.perf_counter() - start
    out["elbo"] = float(model.get_elbo())
    return out, velocity, gene_time


def compare(a, b, rates_a, rates_b):
    return {
        "velocity_cosine_median": float(np.median(cosine_rows(a[0], b[0]))),
        "latent_time_spearman": float(spearmanr(a[1].mean(1), b[1].mean(1))[0]),
        "gamma_pearson": float(pearsonr(rates_a["gamma"], rates_b["gamma"])[0]),
        "beta_pearson": float(pearsonr(rates_a["beta"], rates_b["beta"])[0]),
        "alpha_pearson": float(pearsonr(rates_a["alpha"], rates_b["alpha"])[0]),
    }


def accuracy(adata, velocity, gene_time):
    from cellflux._keys import TruthKey

    if TruthKey.VELOCITY not in adata.layers:
        return {}
    truth = np.asarray(adata.layers[TruthKey.VELOCITY])
    return {
        "true_velocity_cosine_median": float(np.median(cosine_rows(velocity, truth))),
        "true_time_spearman": float(spearmanr(gene_time.mean(1), adata.obs[TruthKey.TIME])[0]),
    }


def memory_100k(model, adata, n_cells=100_000, n_samples=25):
    import anndata as ad

    reps = int(np.ceil(n_cells / adata.n_obs))
    layers = {k: np.tile(adata.layers[k], (reps, 1))[:n_cells] for k in ("Ms", "Mu")}
    big = ad.AnnData(layers=layers, var=adata.var[[]].copy())
    big.obs_names = [f"c{i}" for i in range(n_cells)]
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    velocity = model.get_velocity(big, n_samples=n_samples, return_numpy=True)
    seconds = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "cells": n_cells,
        "n_samples": n_samples,
        "seconds": seconds,
        "output_mib": velocity.nbytes / 2**20,
        "peak_rss_increase_mib": (after - before) / 1024,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--full", action="store_true")
    parser.add_argument("--epochs", type=int, default=None)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    import torch
    from scvi.external import VELOVI as Reference

    from cellflux_velocity_vae import VELOVI

    epochs = args.epochs or (20 if args.full else 5)
    adata = load_data(args.full)
    report = {
        "data": {"cells": adata.n_obs, "genes": adata.n_vars},
        "epochs": epochs,
        "threads": torch.get_num_threads(),
    }
    ours, ours_epoch = fit(VELOVI, adata, 0, epochs)
    ref, ref_epoch = fit(Reference, adata, 0, epochs)
    ref1, _ = fit(Reference, adata, 1, epochs)
    q_ours, *a = queries(ours)
    q_ref, *b = queries(ref)
    _, *c = queries(ref1)
    report["ours"] = {"seconds_per_epoch": ours_epoch, **q_ours, **accuracy(adata, *a)}
    report["reference"] = {"seconds_per_epoch": ref_epoch, **q_ref, **accuracy(adata, *b)}
    report["speedup"] = {
        "epoch": ref_epoch / ours_epoch,
        "get_velocity": q_ref["get_velocity_s"] / q_ours["get_velocity_s"],
        "get_latent_time": q_ref["get_latent_time_s"] / q_ours["get_latent_time_s"],
    }
    report["parity_ours_vs_reference_seed0"] = {
        "elbo_relative_difference": abs(q_ours["elbo"] - q_ref["elbo"]) / abs(q_ref["elbo"]),
        **compare(a, b, ours.get_rates(), ref.get_rates()),
    }
    report["reference_seed0_vs_seed1"] = compare(b, c, ref.get_rates(), ref1.get_rates())
    if args.full:
        report["memory_100k_cells_ours"] = memory_100k(ours, adata)
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / ("bench_full.json" if args.full else "bench.json")
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
