"""Streaming models: ours vs cellarium-ml side by side, one process, no workers, same shards and batch size.

Default: 20,000 cells x 2,000 genes in 10 shards (CI-sized). ``--full``: 100,000 cells (the issue's size)
and the peak-RSS comparison 100,000 vs 1,000,000 cells (the 100,000 cells' shards linked ten times) for our
one-pass mean/var (each in a fresh process). Writes ``results/bench_{ci,full}.json`` and ``.csv``; with
``--models`` only prints. Logistic regression trains on the first 8 shards and is scored on the last 2
(scikit-learn's ``LogisticRegression()`` on the same standardised log-normalised data for reference);
ours reads sparse batches (``ShardDataset(sparse=True)``) and standardises inside the model
(``LogisticRegression(zscore=...)``, the same logits as the ``ZScore`` transform); cellarium-ml's
trainable models use Adam with lr 1e-3.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).parent
RESULTS = HERE / "results"


MODELS = (
    "onepass_mean_var",
    "incremental_pca",
    "hvg_seurat_v3",
    "tdigest",
    "logistic_regression",
    "logistic_regression_b250",
    "probabilistic_pca",
)


def simulate(folder: Path, n_cells: int, n_genes: int, n_shards: int, **kwargs) -> list[Path]:
    """Simulated shards in ``folder`` (reused when already there); ``kwargs`` go to ``simulate_shards``."""
    import cellflux as cf

    paths = sorted(folder.glob("*.h5ad"))
    if len(paths) == n_shards:
        return paths
    return cf.datasets.simulate_shards(
        folder,
        n_cells=n_cells,
        n_genes=n_genes,
        shard_size=-(-n_cells // n_shards),
        show_progress=False,
        seed=0,
        truth_layers=False,
        **kwargs,
    )


PPCA_K = 10
N_TRAIN_SHARDS = 8  # logistic regression: trained on the first 8 of 10 shards, tested on the rest


def run_ours(paths: list[Path], name: str, batch_size: int, ref: dict | None = None) -> tuple[float, object]:
    from cellflux_streaming_models._fit import stream_fit
    from cellflux_streaming_models.data import ShardCollection, ShardDataset
    from cellflux_streaming_models.models import (
        HVGSeuratV3,
        IncrementalPCA,
        LogisticRegression,
        OnePassMeanVarStd,
        ProbabilisticPCA,
        TDigest,
    )
    from cellflux_streaming_models.transforms import Log1p, NormalizeTotal, ZScore

    labelled = name.startswith("logistic_regression")
    if labelled:
        paths = paths[:N_TRAIN_SHARDS]
    collection = ShardCollection(paths, obs_columns={"y_n": "clusters"} if labelled else None)
    # logistic regression reads sparse rows and folds the z-score into its weights (the same logits)
    dataset = ShardDataset(collection, batch_size=batch_size, shuffle=labelled, sparse=labelled)
    genes = collection.var_names
    transforms: list = []
    log_transforms = [NormalizeTotal(1e4), Log1p()]
    if name == "onepass_mean_var":
        model = OnePassMeanVarStd(genes)
    elif name == "incremental_pca":
        model, transforms = IncrementalPCA(genes, n_components=50), log_transforms
    elif name == "tdigest":
        model = TDigest(genes)
    elif labelled:
        assert ref is not None
        zscore = ZScore(ref["train_mean"], ref["train_std"], genes)
        model = LogisticRegression(collection.n_obs, genes, list(collection.categories["clusters"]), zscore=zscore)
        transforms = log_transforms
    elif name == "probabilistic_pca":
        assert ref is not None
        model = ProbabilisticPCA(collection.n_obs, genes, PPCA_K, "marginalized", mean_g=ref["log_mean"])
        transforms = log_transforms
    else:
        model = HVGSeuratV3(genes, n_top_genes=200)
    start = time.perf_counter()
    stream_fit(model, lambda e: (dataset.set_epoch(e), dataset)[1], transforms=transforms, n_epochs=model.n_epochs or 1)
    return time.perf_counter() - start, model


def run_cellarium(paths: list[Path], name: str, batch_size: int, ref: dict | None = None) -> tuple[float, object]:
    import anndata as ad
    import torch
    from cellarium.ml.data import DistributedAnnDataCollection, IterableDistributedAnnDataCollectionDataset
    from cellarium.ml.models import (
        HVGSeuratV3,
        IncrementalPCA,
        LogisticRegression,
        OnePassMeanVarStd,
        ProbabilisticPCA,
        TDigest,
    )
    from cellarium.ml.transforms import Log1p, NormalizeTotal, ZScore
    from cellarium.ml.utilities.data import AnnDataField, categories_to_codes, densify

    labelled = name.startswith("logistic_regression")
    if labelled:
        paths = paths[:N_TRAIN_SHARDS]

    first = ad.read_h5ad(paths[0], backed="r")
    n_last = ad.read_h5ad(paths[-1], backed="r").n_obs
    dadc = DistributedAnnDataCollection(
        [str(p) for p in paths], shard_size=first.n_obs, last_shard_size=n_last, max_cache_size=1
    )
    dataset = IterableDistributedAnnDataCollectionDataset(
        dadc,
        batch_keys={
            "x_ng": AnnDataField(attr="X", convert_fn=densify),
            "var_names_g": AnnDataField(attr="var_names"),
            **({"y_n": AnnDataField(attr="obs", key="clusters", convert_fn=categories_to_codes)} if labelled else {}),
        },
        batch_size=batch_size,
        shuffle=labelled,
    )
    loader = torch.utils.data.DataLoader(dataset, batch_size=None)
    genes = np.asarray(first.var_names)
    transforms: list = []
    optimizer = None
    n_obs = len(dadc)
    if name == "onepass_mean_var":
        model, epochs = OnePassMeanVarStd(genes, output_path=None), 1
    elif name == "incremental_pca":
        model, epochs = IncrementalPCA(genes, n_components=50), 1
        transforms = [NormalizeTotal(target_count=1e4), Log1p()]
    elif name == "tdigest":
        model, epochs = TDigest(genes), 1
    elif labelled:
        assert ref is not None
        categories = first.obs["clusters"].cat.categories.to_numpy()
        model, epochs = LogisticRegression(n_obs, genes, categories), 1
        transforms = [
            NormalizeTotal(target_count=1e4),
            Log1p(),
            ZScore(torch.as_tensor(ref["train_mean"]), torch.as_tensor(ref["train_std"]), genes),
        ]
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    elif name == "probabilistic_pca":
        assert ref is not None
        mean = torch.as_tensor(ref["log_mean"], dtype=torch.float32)
        model, epochs = ProbabilisticPCA(n_obs, genes, PPCA_K, "marginalized", mean_g=mean), 1
        transforms = [NormalizeTotal(target_count=1e4), Log1p()]
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    else:
        model, epochs = HVGSeuratV3(genes, n_top_genes=200, output_path=None), 2

    class _Trainer:
        world_size, global_rank, current_epoch, datamodule = 1, 0, 0, None

    trainer = _Trainer()
    start = time.perf_counter()
    for epoch in range(epochs):
        trainer.current_epoch = epoch
        dataset.set_epoch(epoch)
        if hasattr(model, "on_train_epoch_start"):
            model.on_train_epoch_start(trainer)
        for batch in loader:
            x = torch.as_tensor(batch["x_ng"])
            for t in transforms:
                extra = {"total_mrna_umis_n": None} if isinstance(t, NormalizeTotal) else {}
                if isinstance(t, ZScore):
                    extra = {"var_names_g": batch["var_names_g"]}
                x = t(x_ng=x, **extra)["x_ng"]
            if optimizer is None:
                with torch.no_grad():
                    model(x_ng=x, var_names_g=batch["var_names_g"])
                continue
            kwargs = {"y_n": torch.as_tensor(batch["y_n"]), "y_categories": model.y_categories} if labelled else {}
            optimizer.zero_grad()
            loss = model(x_ng=x, var_names_g=batch["var_names_g"], **kwargs)["loss"]
            loss.backward()
            optimizer.step()
        if hasattr(model, "on_train_epoch_end"):
            model.on_train_epoch_end(trainer)
    return time.perf_counter() - start, model


def warm_up() -> None:
    """Pay one-time costs before any timing, for both sides: torch's first optimiser imports torch._dynamo (~2 s)."""
    import torch

    torch.optim.Adam([torch.zeros(1, requires_grad=True)])


def exact_reference(paths: list[Path]) -> dict:
    import anndata as ad
    from scipy import sparse

    adatas = [ad.read_h5ad(p) for p in paths]
    x = sparse.vstack([a.X for a in adatas]).tocsr().astype(np.float64)
    labels = np.concatenate([a.obs["clusters"].astype(str).to_numpy() for a in adatas])
    n_train = sum(a.n_obs for a in adatas[:N_TRAIN_SHARDS])
    mean = np.asarray(x.mean(0)).ravel()
    var = np.asarray(x.multiply(x).mean(0)).ravel() - mean**2
    y = x.multiply(1e4 / np.asarray(x.sum(1))).tocsr()
    y.data = np.log1p(y.data)
    y = y.toarray().astype(np.float32)
    ym = y.mean(0, dtype=np.float64)
    cov = (y.T.astype(np.float64) @ y) / len(y) - np.outer(ym, ym)
    eigenvalues, eigenvectors = np.linalg.eigh(cov)
    train_mean = y[:n_train].mean(0, dtype=np.float64)
    train_std = y[:n_train].std(0, dtype=np.float64) + 1e-6
    return {
        "x_csc": x.tocsc(),
        "mean": mean,
        "var": var,
        "ev": eigenvalues[::-1],
        "evec": eigenvectors[:, ::-1],
        "cov": cov,
        "log_mean": ym.astype(np.float32),
        "train_mean": train_mean.astype(np.float32),
        "train_std": train_std.astype(np.float32),
        "z": ((y - train_mean) / train_std).astype(np.float32),
        "labels": labels,
        "n_train": n_train,
    }


def pca_accuracy(components: np.ndarray, explained: np.ndarray | None, ref: dict, k: int) -> dict[str, float]:
    ev = ref["ev"]
    q, _ = np.linalg.qr(components[:k].T)  # captured variance of the (orthonormalised) subspace
    out = {f"captured_variance_top{k}": float(np.einsum("gk,gh,hk->", q, ref["cov"], q) / ev[:k].sum())}
    if explained is not None:
        out[f"explained_variance_max_rel_error_top{k}"] = float(np.max(np.abs(explained[:k] - ev[:k]) / ev[:k]))
    cosines = np.linalg.svd(q.T @ ref["evec"][:, :k], compute_uv=False)
    out[f"max_principal_angle_deg_top{k}"] = float(np.degrees(np.arccos(np.clip(cosines.min(), -1, 1))))
    return out


def tdigest_accuracy(medians: np.ndarray, ref: dict) -> dict[str, float]:
    x = ref["x_csc"]
    rel, rank = [], []
    for j in range(x.shape[1]):
        values = np.sort(x.data[x.indptr[j] : x.indptr[j + 1]])
        if len(values) < 20:
            continue
        exact = np.median(values)
        rel.append(abs(medians[j] - exact) / exact)
        lo, hi = np.searchsorted(values, medians[j], "left"), np.searchsorted(values, medians[j], "right")
        rank.append(max(0.0, lo / len(values) - 0.5, 0.5 - hi / len(values)))
    return {"median_max_rel_error": float(np.max(rel)), "median_max_rank_error": float(np.max(rank))}


def logistic_accuracy(logits_fn, categories: np.ndarray, ref: dict) -> float:
    import torch

    test = ref["z"][ref["n_train"] :]
    logits = logits_fn(torch.from_numpy(test))
    predicted = np.asarray(categories, dtype=object)[logits.argmax(1).numpy()]
    return float((predicted == ref["labels"][ref["n_train"] :]).mean())


def sklearn_accuracy(ref: dict) -> float:
    from sklearn.linear_model import LogisticRegression

    n = ref["n_train"]
    model = LogisticRegression(max_iter=500).fit(ref["z"][:n], ref["labels"][:n])
    return float(model.score(ref["z"][n:], ref["labels"][n:]))


def accuracy(name: str, model, ref: dict, flavour: str) -> dict[str, float]:
    """Accuracy figures of a trained model (ours or cellarium-ml's) against the exact reference."""
    import torch

    if name == "onepass_mean_var":
        return {"var_max_rel_error": float(np.max(np.abs(model.var_g.numpy() - ref["var"]) / ref["var"]))}
    if name == "incremental_pca":
        out: dict[str, float] = {}
        for k in (10, 50):
            out.update(pca_accuracy(model.components_kg.numpy(), model.explained_variance_k.numpy(), ref, k))
        return out
    if name == "probabilistic_pca":
        with torch.no_grad():
            return pca_accuracy(model.U_gk.T.numpy(), None, ref, PPCA_K)
    if name == "tdigest":
        return tdigest_accuracy(model.median_g.numpy(), ref)
    if name.startswith("logistic_regression"):
        categories = model.y_categories
        if flavour == "ours":  # the model standardises its inputs itself: give it the log-normalised data

            def logits(z):
                x = z / model.zscore.inverse_std_g() + model.zscore.mean_g
                return model.predict(x, model.var_names_g)["x_ng"]

            return {"heldout_accuracy": logistic_accuracy(logits, categories, ref)}
        with torch.no_grad():
            acc = logistic_accuracy(lambda x: x @ model.W_gc + model.b_c, categories, ref)
        return {"heldout_accuracy": acc}
    return {}


def peak_rss_child(folder: Path) -> float:
    """Peak resident memory (MB, ``VmHWM``: reset by exec, unlike ``ru_maxrss``) of our mean/var over a folder."""
    code = (
        f"import sys; sys.path.insert(0, {str(HERE)!r}); import run; from pathlib import Path; "
        f"paths = sorted(Path({str(folder)!r}).glob('*.h5ad')); run.run_ours(paths, 'onepass_mean_var', 1000); "
        "print([line for line in open('/proc/self/status') if line.startswith('VmHWM')][0].split()[1])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return int(out.stdout.strip().splitlines()[-1]) / 1024


def peak_rss_comparison(folder: Path, paths: list[Path]) -> dict[str, float]:
    """Peak memory of one-pass mean/var over 100,000 and 1,000,000 cells (the shards linked ten times)."""
    big = folder.parent / "cells1000000_linked"
    big.mkdir(exist_ok=True)
    for copy in range(10):
        for path in paths:
            link = big / f"copy{copy}_{path.name}"
            if not link.exists():
                link.symlink_to(path.resolve())
    return {"peak_rss_mb_meanvar_100k": peak_rss_child(folder), "peak_rss_mb_meanvar_1M": peak_rss_child(big)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--full", action="store_true")
    parser.add_argument("--data", default=None, help="folder for the simulated shards (kept between runs)")
    parser.add_argument("--models", nargs="*", default=None, help="run only these models (no results written)")
    parser.add_argument(
        "--update", action="store_true", help="with --models: replace these models' rows in the results files"
    )
    parser.add_argument("--rss-only", action="store_true", help="with --full: redo only the peak-memory comparison")
    args = parser.parse_args()
    n_cells = 100_000 if args.full else 20_000
    folder = Path(args.data or tempfile.mkdtemp()) / f"cells{n_cells}"
    folder.mkdir(parents=True, exist_ok=True)
    paths = simulate(folder, n_cells, 2000, 10)
    if args.rss_only:
        target = RESULTS / "bench_full.json"
        summary = json.loads(target.read_text())
        summary.update(peak_rss_comparison(folder, paths))
        target.write_text(json.dumps(summary, indent=2))
        print(json.dumps(summary, indent=2))
        return
    ref = exact_reference(paths)
    try:
        import cellarium.ml  # noqa: F401

        have_reference = True
    except ImportError:
        have_reference = False
    warm_up()
    rows = []
    for name in args.models or MODELS:
        batch_size = 250 if name.endswith("_b250") else 1000
        epochs = 2 if name == "hvg_seurat_v3" else 1
        n_seen = ref["n_train"] if name.startswith("logistic_regression") else n_cells
        row: dict[str, object] = {"model": name, "n_cells": n_seen, "batch_size": batch_size, "epochs": epochs}
        row["load_average_1min"] = os.getloadavg()[0]
        seconds, model = run_ours(paths, name, batch_size, ref)
        row["ours_s"] = seconds
        row["ours_cells_per_s"] = n_seen * epochs / seconds
        row.update({f"ours_{k}": v for k, v in accuracy(name, model, ref, "ours").items()})
        if name.startswith("logistic_regression"):
            if "sklearn" not in ref:
                ref["sklearn"] = sklearn_accuracy(ref)
            row["sklearn_heldout_accuracy"] = ref["sklearn"]
        if have_reference:
            seconds, theirs = run_cellarium(paths, name, batch_size, ref)
            row["cellarium_s"] = seconds
            row["cellarium_cells_per_s"] = n_seen * epochs / seconds
            row["speedup"] = row["cellarium_s"] / row["ours_s"]
            row.update({f"cellarium_{k}": v for k, v in accuracy(name, theirs, ref, "cellarium").items()})
            if name == "hvg_seurat_v3":
                ours_set = set(model.hvg_df.index[model.hvg_df["highly_variable"]])
                theirs_df = theirs.hvg_dfs[200]
                row["hvg_overlap_with_cellarium"] = (
                    len(ours_set & set(theirs_df.index[theirs_df["highly_variable"]])) / 200
                )
        print(json.dumps(row), flush=True)
        rows.append(row)
    summary = {"rows": rows, "peak_rss_mb_bench_process": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    if args.full:
        summary.update(peak_rss_comparison(folder, paths))
    suffix = "full" if args.full else "ci"
    if args.models and not args.update:
        print(json.dumps(summary, indent=2))
        return
    if args.models:  # merge into the committed results: these rows replaced, the rest kept
        previous = json.loads((RESULTS / f"bench_{suffix}.json").read_text())
        fresh = {row["model"]: row for row in rows}
        rows = [fresh.pop(row["model"], row) for row in previous["rows"]] + list(fresh.values())
        summary = {**previous, **{k: v for k, v in summary.items() if k != "rows"}, "rows": rows}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"bench_{suffix}.json").write_text(json.dumps(summary, indent=2))
    import pandas as pd

    pd.DataFrame(rows).to_csv(RESULTS / f"bench_{suffix}.csv", index=False)
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
