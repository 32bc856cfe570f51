"""Ours vs scvi-tools' VELOVI (and scVelo) side by side in one process: speed, parity, accuracy, memory.

Default (CI-sized): a simulated dataset (1,000 cells), few epochs. ``--full``: the shared pancreas
data preprocessed the usual way (genes with >= 20 shared counts, normalised, log1p, PCA 30,
30 neighbours, moments, min-max scaled: 3,696 cells x 1,126 genes), epoch timings interleaved
(ours, reference, ours, ...) so that both see the same machine load, a 100,000-cell query for
memory, and the accuracy bench on ``cf.datasets.simulate`` next to scVelo's stochastic and
dynamical models. Writes ``benchmarks/results/bench[_full].json`` and ``accuracy[_full].csv``.

Run: ``python benchmarks/run.py [--full] [--threads N]``.
"""

from __future__ import annotations

import argparse
import json
import threading
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import pearsonr, spearmanr

RESULTS = Path(__file__).parent / "results"


def cosine_rows(a, b):
    a, b = np.asarray(a, float), np.asarray(b, float)
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1) + 1e-12)


def load_pancreas():
    """The shared pancreas data, preprocessed as scVelo/veloVI users do (3,696 x 1,126 genes)."""
    import anndata as ad
    import scanpy as sc
    import scvelo as scv

    from cellflux.testing._shared import shared_file
    from cellflux_velocity_vae import preprocess_data

    adata = ad.read_h5ad(shared_file("pancreas.h5ad", Path.cwd()))
    scv.pp.filter_and_normalize(adata, min_shared_counts=20)
    sc.pp.pca(adata, n_comps=30)
    sc.pp.neighbors(adata, n_pcs=30, n_neighbors=30)
    scv.pp.moments(adata, n_pcs=None, n_neighbors=None)
    return preprocess_data(adata, filter_on_r2=False)


def simulated(n_cells, n_genes, seed=0):
    import cellflux as cf
    from cellflux_velocity_vae import moments

    adata = cf.datasets.simulate(n_cells=n_cells, n_genes=n_genes, seed=seed)
    moments(adata, n_neighbors=30, n_pcs=30)
    return adata


def new_model(cls, adata, seed):
    import scvi

    data = adata.copy()
    for key in [k for k in data.uns if k.startswith("_scvi")]:
        del data.uns[key]
    scvi.settings.seed = seed
    cls.setup_anndata(data, spliced_layer="Ms", unspliced_layer="Mu")
    return cls(data)


def train(model, epochs, batch_size=256):
    start = time.perf_counter()
    model.train(max_epochs=epochs, enable_progress_bar=False, batch_size=batch_size, early_stopping=False)
    return (time.perf_counter() - start) / epochs


def epoch_timings(models, rounds, epochs_per_round):
    """Seconds per epoch of each model, rounds interleaved (each model sees the same load).

    Returns wall-clock seconds and this process's CPU seconds per epoch (the latter is less
    sensitive to other jobs on a shared machine).
    """
    times = {name: [] for name in models}
    cpu = {name: [] for name in models}
    for _ in range(rounds):
        for name, model in models.items():
            start = time.process_time()
            times[name].append(train(model, epochs_per_round))
            cpu[name].append((time.process_time() - start) / epochs_per_round)
    return times, cpu


def queries(model, n_samples=25):
    out = {}
    start = time.perf_counter()
    velocity = model.get_velocity(n_samples=n_samples).to_numpy()
    out["get_velocity_s"] = time.perf_counter() - start
    start = time.perf_counter()
    gene_time = model.get_latent_time(n_samples=n_samples).to_numpy()
    out["get_latent_time_s"] = time.perf_counter() - start
    return out, velocity, gene_time


def final_elbo(model):
    history = model.history

    def last(key):
        return float(np.asarray(history[key]).ravel()[-1]) if key in history else float("nan")

    return {
        "elbo_train_last": last("elbo_train"),
        "elbo_validation_last": last("elbo_validation"),
        "get_elbo": float(model.get_elbo()),
    }


def compare(a, b, rates_a, rates_b):
    return {
        "velocity_cosine_median": float(np.median(cosine_rows(a[0], b[0]))),
        "latent_time_spearman": float(spearmanr(a[1].mean(1), b[1].mean(1))[0]),
        **{f"{r}_pearson": float(pearsonr(rates_a[r], rates_b[r])[0]) for r in ("alpha", "beta", "gamma")},
    }


class PeakRSS:
    """Peak resident memory of this process while the block runs, sampled every 5 ms from /proc."""

    def __enter__(self):
        self.base = self.peak = self._rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    @staticmethod
    def _rss() -> int:
        with open("/proc/self/statm") as handle:
            return int(handle.read().split()[1]) * 4096

    def _watch(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, self._rss())
            time.sleep(0.005)


def memory_100k(n_cells=100_000, n_genes=100, n_samples=10):
    """Posterior queries over ``n_cells`` cells: peak memory above the inputs and the output.

    The cells are a 5,000-cell simulation (moments, min-max scaled) tiled with 5% multiplicative
    noise: kNN moments over 100,000 cells would dominate the run and say nothing about the queries.
    """
    import anndata as ad

    from cellflux_velocity_vae import VELOVI, preprocess_data

    base = preprocess_data(simulated(5000, n_genes, seed=3), filter_on_r2=False)
    model = new_model(VELOVI, base, 0)
    train(model, 5)
    rng = np.random.default_rng(0)
    reps = int(np.ceil(n_cells / base.n_obs))
    layers = {}
    for key in ("Ms", "Mu"):
        tiled = np.tile(np.asarray(base.layers[key], dtype=np.float32), (reps, 1))[:n_cells]
        layers[key] = np.clip(tiled * rng.normal(1, 0.05, size=tiled.shape).astype(np.float32), 0, 1)
    query = ad.AnnData(layers=layers, var=base.var[[]].copy())
    query.obs_names = [f"c{i}" for i in range(n_cells)]
    adata = base
    out = {"cells": n_cells, "genes": adata.n_vars, "n_samples": n_samples}
    for name, call in (
        ("get_velocity", lambda: model.get_velocity(query, n_samples=n_samples, return_numpy=True)),
        ("get_latent_time", lambda: model.get_latent_time(query, n_samples=n_samples, return_numpy=True)),
    ):
        start = time.perf_counter()
        with PeakRSS() as rss:
            result = call()
        out[name] = {
            "seconds": time.perf_counter() - start,
            "peak_above_start_mib": (rss.peak - rss.base) / 2**20,
            "output_mib": float(np.asarray(result).nbytes) / 2**20,
        }
        del result
    out["all_samples_would_need_mib"] = n_samples * n_cells * adata.n_vars * 4 * 4 / 2**20
    return out


def fate_scores(adata, genes, velocity, connectivities):
    """Feed a velocity through cellflux-kernels and GPCCA; score the fates against the simulator's truth.

    Velocity kernel (0.8) plus connectivity kernel (0.2) on ``layers["Ms"]`` of ``genes``; GPCCA with
    one macrostate per lineage plus one (the progenitors, fewer if a macrostate gets no cells), the
    ``n_lineages`` most stable as terminal states. Returns the lineages recovered (terminal states
    mapped to the true lineage of most of their cells) and the fate accuracy on branch cells.
    """
    import cellflux_kernels as ck
    from cellflux._keys import TruthKey
    from cellflux._pipeline.scoring import match_states
    from cellflux_estimators import GPCCA

    lineages = [str(x) for x in adata.uns[TruthKey.SIMULATION]["lineage_names"]]
    data = adata[:, genes].copy()
    data.layers["velocity"] = np.nan_to_num(np.asarray(velocity, dtype=np.float64))
    data.obsp["connectivities"] = connectivities
    vk = ck.VelocityKernel(data).compute_transition_matrix(show_progress_bar=False)
    g = GPCCA(0.8 * vk + 0.2 * ck.ConnectivityKernel(data).compute_transition_matrix())
    g.compute_schur(n_components=10)
    for n_states in range(len(lineages) + 1, 1, -1):
        try:
            g.compute_macrostates(n_states=n_states, cluster_key=TruthKey.CLUSTERS)
            break
        except ValueError:
            continue
    g.predict_terminal_states(method="top_n", n_states=min(len(lineages), n_states))
    g.compute_fate_probabilities()
    mapping = match_states(data, g.terminal_states)
    fates = pd.DataFrame(0.0, index=data.obs_names, columns=lineages)
    for name, lineage in mapping.items():
        if lineage is not None:
            fates[lineage] += g.fate_probabilities[name].to_numpy()
    branch = data.obs[TruthKey.STATE].astype(str).to_numpy() != "progenitor"
    predicted = np.asarray(lineages)[fates.to_numpy().argmax(1)]
    truth = data.obs[TruthKey.LINEAGE].astype(str).to_numpy()
    recovered = len({v for v in mapping.values() if v is not None})
    return {
        "terminal_states_recovered": f"{recovered}/{len(lineages)}",
        "fate_accuracy_branch_cells": float(np.mean(predicted[branch] == truth[branch])),
    }


def accuracy(n_cells, n_genes, epochs, dynamical_cells):
    """Velocity and time against the simulator's truth: ours, scvi-tools' VELOVI, scVelo."""
    import scvelo as scv
    from scvi.external import VELOVI as Reference

    from cellflux._keys import TruthKey
    from cellflux_velocity_vae import VELOVI, preprocess_data

    adata = simulated(n_cells, n_genes, seed=7)
    prepared = preprocess_data(adata)
    genes = adata.var_names.isin(prepared.var_names)
    span = prepared.var_names.map(
        lambda g: float(np.ptp(adata[:, g].layers["Ms"]))  # undo the min-max scaling: velocity in Ms units
    ).to_numpy()
    truth_v = np.asarray(adata.layers[TruthKey.VELOCITY])[:, genes]
    truth_t = adata.obs[TruthKey.TIME].to_numpy()
    rows = []
    import cellflux as cf

    graph = cf.pp.kernel_inputs(adata, velocity_layer=None, n_pcs=20, copy=True, overwrite=True)
    connectivities = graph.obsp["connectivities"]

    def score(method, velocity, time_per_cell, seconds, note=""):
        rows.append(
            {
                "method": method,
                "velocity_cosine_median": float(np.nanmedian(cosine_rows(velocity, truth_v))),
                "time_spearman": float(spearmanr(time_per_cell, truth_t[: len(time_per_cell)])[0]),
                **fate_scores(adata, genes, velocity, connectivities),
                "fit_seconds": seconds,
                "note": note,
            }
        )

    for name, cls in (("cellflux VELOVI", VELOVI), ("scvi-tools VELOVI", Reference)):
        model = new_model(cls, prepared, 0)
        seconds = train(model, epochs) * epochs
        velocity = model.get_velocity(n_samples=25).to_numpy() * span
        gene_time = model.get_latent_time(n_samples=25).to_numpy()
        score(name, velocity, gene_time.mean(1), seconds, f"{epochs} epochs, 25 posterior samples")

    for mode in ("stochastic", "dynamical"):
        data = adata.copy() if mode == "stochastic" else adata[:dynamical_cells].copy()
        data = data[:, genes].copy()
        start = time.perf_counter()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                scv.pp.moments(data, n_neighbors=30, n_pcs=30)  # scVelo's own kNN graph and moments (raw counts)
                if mode == "dynamical":
                    scv.tl.recover_dynamics(data, n_jobs=1, show_progress_bar=False)
                scv.tl.velocity(data, mode=mode)
        except Exception as error:  # scVelo 0.3.4's stochastic fit breaks under numpy 2.x
            rows.append(
                {
                    "method": f"scVelo {mode}",
                    "velocity_cosine_median": np.nan,
                    "time_spearman": np.nan,
                    "fit_seconds": np.nan,
                    "note": f"failed: {type(error).__name__}: {error}"[:120],
                }
            )
            continue
        seconds = time.perf_counter() - start
        velocity = np.nan_to_num(np.asarray(data.layers["velocity"]))
        truth = truth_v[: data.n_obs]
        if mode == "dynamical":
            fit_t = np.nanmean(np.asarray(data.layers["fit_t"]), axis=1)
            note = f"subsampled to the first {data.n_obs} cells (recover_dynamics is slow)"
        else:
            fit_t = np.full(data.n_obs, np.nan)
            note = "no latent time (steady-state model)"
        fates = (
            fate_scores(adata, genes, velocity, connectivities)
            if data.n_obs == adata.n_obs
            else {"terminal_states_recovered": "", "fate_accuracy_branch_cells": np.nan}
        )
        rows.append(
            {
                "method": f"scVelo {mode}",
                "velocity_cosine_median": float(np.nanmedian(cosine_rows(velocity, truth))),
                "time_spearman": float(spearmanr(fit_t, truth_t[: data.n_obs])[0]) if mode == "dynamical" else np.nan,
                **fates,
                "fit_seconds": seconds,
                "note": note,
            }
        )
    table = pd.DataFrame(rows)
    table.insert(1, "cells", [n_cells, n_cells, n_cells, dynamical_cells])
    table.insert(2, "genes", int(genes.sum()))
    return table


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--full", action="store_true")
    parser.add_argument("--epochs", type=int, default=None, help="epochs per model for the ELBO comparison")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (same for both)")
    parser.add_argument("--skip", nargs="*", default=[], choices=["speed", "memory", "accuracy"])
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    import logging

    import torch
    from scvi.external import VELOVI as Reference

    from cellflux_velocity_vae import VELOVI

    logging.getLogger("lightning").setLevel(logging.ERROR)
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    torch.set_num_threads(args.threads)
    suffix = "_full" if args.full else ""
    RESULTS.mkdir(exist_ok=True)
    report_path = RESULTS / f"bench{suffix}.json"
    report = json.loads(report_path.read_text()) if report_path.exists() else {}
    report["threads"] = args.threads

    if "speed" not in args.skip:
        epochs = args.epochs or (10 if args.full else 8)
        if args.full:
            adata = load_pancreas()
        else:
            from cellflux_velocity_vae import preprocess_data

            adata = preprocess_data(simulated(1000, 150), filter_on_r2=False)
        report["data"] = {"name": "pancreas" if args.full else "simulated", "cells": adata.n_obs, "genes": adata.n_vars}
        # speed: interleaved rounds of 2 epochs on fresh models
        timing, cpu_timing = epoch_timings(
            {"ours": new_model(VELOVI, adata, 0), "reference": new_model(Reference, adata, 0)},
            rounds=3 if args.full else 2,
            epochs_per_round=2,
        )
        report["interleaved_seconds_per_epoch"] = timing
        report["interleaved_cpu_seconds_per_epoch"] = cpu_timing
        report["load_average_at_start"] = list(__import__("os").getloadavg())
        report_path.write_text(json.dumps(report, indent=2) + "\n")
        # ELBO and agreement: same seed, same epochs; the reference also against itself (seed 1)
        models = {"ours": new_model(VELOVI, adata, 0), "reference": new_model(Reference, adata, 0)}
        models["reference_seed1"] = new_model(Reference, adata, 1)
        seconds = {name: train(model, epochs) for name, model in models.items()}
        outputs = {name: queries(model) for name, model in models.items()}
        report["epochs"] = epochs
        for name in ("ours", "reference"):
            report[name] = {
                "seconds_per_epoch_interleaved": timing[name],
                "seconds_per_epoch_min": min(timing[name]),
                "seconds_per_epoch_long_run": seconds[name],
                **outputs[name][0],
                **final_elbo(models[name]),
            }
        report["speedup"] = {
            "epoch_total_wall": sum(timing["reference"]) / sum(timing["ours"]),
            "epoch_total_cpu": sum(cpu_timing["reference"]) / sum(cpu_timing["ours"]),
            "epoch_min": min(timing["reference"]) / min(timing["ours"]),
            "epoch_median": float(np.median(timing["reference"]) / np.median(timing["ours"])),
            "get_velocity": outputs["reference"][0]["get_velocity_s"] / outputs["ours"][0]["get_velocity_s"],
            "get_latent_time": outputs["reference"][0]["get_latent_time_s"] / outputs["ours"][0]["get_latent_time_s"],
        }
        ref_elbo = final_elbo(models["reference"])
        ref1_elbo = final_elbo(models["reference_seed1"])
        ours_elbo = report["ours"]
        rates = {name: model.get_rates() for name, model in models.items()}
        report["parity_ours_vs_reference_seed0"] = {
            **{
                f"{k}_relative_difference": abs(ours_elbo[k] - ref_elbo[k]) / abs(ref_elbo[k])
                for k in ("elbo_train_last", "get_elbo")
            },
            **compare(outputs["ours"][1:], outputs["reference"][1:], rates["ours"], rates["reference"]),
        }
        report["reference_seed0_vs_seed1"] = {
            **{
                f"{k}_relative_difference": abs(ref1_elbo[k] - ref_elbo[k]) / abs(ref_elbo[k])
                for k in ("elbo_train_last", "elbo_validation_last", "get_elbo")
            },
            **compare(
                outputs["reference_seed1"][1:], outputs["reference"][1:], rates["reference_seed1"], rates["reference"]
            ),
        }
        report_path.write_text(json.dumps(report, indent=2) + "\n")
    if "memory" not in args.skip and args.full:
        report["memory_100k_cells_ours"] = memory_100k()
        report_path.write_text(json.dumps(report, indent=2) + "\n")
    if "accuracy" not in args.skip:
        if args.full:
            table = accuracy(n_cells=2000, n_genes=200, epochs=100, dynamical_cells=500)
        else:
            table = accuracy(n_cells=600, n_genes=80, epochs=20, dynamical_cells=200)
        table.to_csv(RESULTS / f"accuracy{suffix}.csv", index=False, float_format="%.4g")
        print(table.to_string())
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
