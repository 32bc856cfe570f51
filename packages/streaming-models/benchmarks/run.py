"""Streaming models: ours vs cellarium-ml side by side, one process, no workers, same shards and batch size.

Default: 20,000 cells x 2,000 genes in 10 shards (CI-sized). ``--full``: 100,000 cells (the issue's size)
and the peak-RSS comparison 100,000 vs 1,000,000 cells for our one-pass mean/var (each in a fresh process).
Writes ``results/bench.json`` and ``results/bench.csv``.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).parent
RESULTS = HERE / "results"


def simulate(folder: Path, n_cells: int, n_genes: int, n_shards: int) -> list[Path]:
    import cellflux as cf

    paths = sorted(folder.glob("*.h5ad"))
    if len(paths) == n_shards:
        return paths
    return cf.datasets.simulate_shards(
        folder, n_cells=n_cells, n_genes=n_genes, shard_size=-(-n_cells // n_shards), show_progress=False, seed=0
    )


def run_ours(paths: list[Path], name: str, batch_size: int) -> tuple[float, object]:
    from cellflux_streaming_models._fit import stream_fit
    from cellflux_streaming_models.data import ShardCollection, ShardDataset
    from cellflux_streaming_models.models import HVGSeuratV3, IncrementalPCA, OnePassMeanVarStd
    from cellflux_streaming_models.transforms import Log1p, NormalizeTotal

    collection = ShardCollection(paths)
    dataset = ShardDataset(collection, batch_size=batch_size)
    genes = collection.var_names
    transforms: list = []
    if name == "onepass_mean_var":
        model = OnePassMeanVarStd(genes)
    elif name == "incremental_pca":
        model, transforms = IncrementalPCA(genes, n_components=50), [NormalizeTotal(1e4), Log1p()]
    else:
        model = HVGSeuratV3(genes, n_top_genes=200)
    start = time.perf_counter()
    stream_fit(model, lambda e: (dataset.set_epoch(e), dataset)[1], transforms=transforms)
    return time.perf_counter() - start, model


def run_cellarium(paths: list[Path], name: str, batch_size: int) -> tuple[float, object]:
    import anndata as ad
    import torch
    from cellarium.ml.data import DistributedAnnDataCollection, IterableDistributedAnnDataCollectionDataset
    from cellarium.ml.models import HVGSeuratV3, IncrementalPCA, OnePassMeanVarStd
    from cellarium.ml.transforms import Log1p, NormalizeTotal
    from cellarium.ml.utilities.data import AnnDataField, densify

    first = ad.read_h5ad(paths[0], backed="r")
    n_last = ad.read_h5ad(paths[-1], backed="r").n_obs
    dadc = DistributedAnnDataCollection(
        [str(p) for p in paths], shard_size=first.n_obs, last_shard_size=n_last, max_cache_size=1
    )
    dataset = IterableDistributedAnnDataCollectionDataset(
        dadc,
        batch_keys={"x_ng": AnnDataField(attr="X", convert_fn=densify), "var_names_g": AnnDataField(attr="var_names")},
        batch_size=batch_size,
        shuffle=False,
    )
    loader = torch.utils.data.DataLoader(dataset, batch_size=None)
    genes = np.asarray(first.var_names)
    transforms: list = []
    if name == "onepass_mean_var":
        model, epochs = OnePassMeanVarStd(genes, output_path=None), 1
    elif name == "incremental_pca":
        model, epochs = IncrementalPCA(genes, n_components=50), 1
        transforms = [NormalizeTotal(target_count=1e4), Log1p()]
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
                x = t(x_ng=x, **({"total_mrna_umis_n": None} if isinstance(t, NormalizeTotal) else {}))["x_ng"]
            with torch.no_grad():
                model(x_ng=x, var_names_g=batch["var_names_g"])
        if hasattr(model, "on_train_epoch_end"):
            model.on_train_epoch_end(trainer)
    return time.perf_counter() - start, model


def exact_reference(paths: list[Path]) -> dict[str, np.ndarray]:
    import anndata as ad
    from scipy import sparse

    x = sparse.vstack([ad.read_h5ad(p).X for p in paths]).tocsr().astype(np.float64)
    mean = np.asarray(x.mean(0)).ravel()
    var = np.asarray(x.multiply(x).mean(0)).ravel() - mean**2
    y = x.multiply(1e4 / np.asarray(x.sum(1))).tocsr()
    y.data = np.log1p(y.data)
    y = y.toarray()
    ym = y.mean(0)
    cov = (y.T @ y) / len(y) - np.outer(ym, ym)
    eigenvalues, eigenvectors = np.linalg.eigh(cov)
    return {"mean": mean, "var": var, "ev": eigenvalues[::-1], "evec": eigenvectors[:, ::-1], "cov": cov}


def pca_accuracy(components: np.ndarray, explained: np.ndarray, ref: dict, k: int) -> dict[str, float]:
    ev = ref["ev"]
    captured = float(np.einsum("kg,gh,kh->", components[:k], ref["cov"], components[:k]) / ev[:k].sum())
    return {
        f"explained_variance_max_rel_error_top{k}": float(np.max(np.abs(explained[:k] - ev[:k]) / ev[:k])),
        f"captured_variance_top{k}": captured,
    }


def peak_rss_child(n_cells: int, folder: Path) -> float:
    code = (
        f"import resource, sys; sys.path.insert(0, {str(HERE)!r}); import run; from pathlib import Path; "
        f"paths = sorted(Path({str(folder)!r}).glob('*.h5ad')); run.run_ours(paths, 'onepass_mean_var', 1000); "
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return int(out.stdout.strip().splitlines()[-1]) / 1024


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--full", action="store_true")
    parser.add_argument("--data", default=None, help="folder for the simulated shards (kept between runs)")
    parser.add_argument("--models", nargs="*", default=None, help="run only these models (no results written)")
    args = parser.parse_args()
    n_cells = 100_000 if args.full else 20_000
    folder = Path(args.data or tempfile.mkdtemp()) / f"cells{n_cells}"
    folder.mkdir(parents=True, exist_ok=True)
    paths = simulate(folder, n_cells, 2000, 10)
    ref = exact_reference(paths)
    try:
        import cellarium.ml  # noqa: F401

        have_reference = True
    except ImportError:
        have_reference = False
    rows = []
    for name in args.models or ("onepass_mean_var", "incremental_pca", "hvg_seurat_v3"):
        row: dict[str, object] = {"model": name, "n_cells": n_cells, "batch_size": 1000}
        seconds, model = run_ours(paths, name, 1000)
        row["ours_s"] = seconds
        row["ours_cells_per_s"] = n_cells * (2 if name == "hvg_seurat_v3" else 1) / seconds
        if name == "onepass_mean_var":
            row["ours_var_max_rel_error"] = float(np.max(np.abs(model.var_g.numpy() - ref["var"]) / ref["var"]))
        if name == "incremental_pca":
            for k in (10, 50):
                row.update(
                    {
                        f"ours_{key}": v
                        for key, v in pca_accuracy(
                            model.components_kg.numpy(), model.explained_variance_k.numpy(), ref, k
                        ).items()
                    }
                )
        if have_reference:
            seconds, theirs = run_cellarium(paths, name, 1000)
            row["cellarium_s"] = seconds
            row["cellarium_cells_per_s"] = n_cells * (2 if name == "hvg_seurat_v3" else 1) / seconds
            row["speedup"] = row["cellarium_s"] / row["ours_s"]
            if name == "onepass_mean_var":
                row["cellarium_var_max_rel_error"] = float(
                    np.max(np.abs(theirs.var_g.numpy() - ref["var"]) / ref["var"])
                )
            if name == "incremental_pca":
                for k in (10, 50):
                    row.update(
                        {
                            f"cellarium_{key}": v
                            for key, v in pca_accuracy(
                                theirs.components_kg.numpy(), theirs.explained_variance_k.numpy(), ref, k
                            ).items()
                        }
                    )
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
        big = folder.parent / "cells1000000"
        big.mkdir(exist_ok=True)
        simulate(big, 1_000_000, 2000, 100)
        summary["peak_rss_mb_meanvar_100k"] = peak_rss_child(100_000, folder)
        summary["peak_rss_mb_meanvar_1M"] = peak_rss_child(1_000_000, big)
    if args.models:
        print(json.dumps(summary, indent=2))
        return
    RESULTS.mkdir(exist_ok=True)
    suffix = "full" if args.full else "ci"
    (RESULTS / f"bench_{suffix}.json").write_text(json.dumps(summary, indent=2))
    import pandas as pd

    pd.DataFrame(rows).to_csv(RESULTS / f"bench_{suffix}.csv", index=False)
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
