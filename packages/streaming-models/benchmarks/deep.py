"""Deep streaming models: ours vs cellarium-ml side by side (scVI, contrastive MLP), one process, same shards.

Both train one epoch per model over the same h5ad shards at the same batch size (cellarium-ml's
loader for cellarium-ml, ours for ours; no workers), interleaved ``--repeats`` times; the best epoch
of each is reported as cells per second. Peak memory: our scVI epoch in a fresh process over the
shards and over the shards linked four times (VmHWM). Default: 10,000 cells x 1,000 genes in 5
shards, batch 256 (CI-sized); ``--full``: 50,000 cells x 2,000 genes. Writes
``results/deep_{ci,full}.json``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).parent
RESULTS = HERE / "results"
SCVI = {"n_latent": 10, "n_hidden": 128, "kl_warmup_epochs": 10}
CONTRASTIVE = {"hidden_size": [128, 128], "embed_dim": 32, "temperature": 0.5}


def simulate(folder: Path, n_cells: int, n_genes: int, n_shards: int) -> list[Path]:
    """The shards of ``run.py``, with larger between-sample variability (batches to integrate)."""
    from run import simulate as simulate_shards

    return simulate_shards(folder, n_cells, n_genes, n_shards, sample_variability=0.3)


def _cellarium_network(n_hidden: int, decoder: bool) -> dict:
    layer = {
        "class_path": "cellarium.ml.models.scvi.LinearWithBatch",
        "init_args": {"out_features": n_hidden, "label_to_bias_hidden_layers": []},
    }
    config = {"hidden_layers": [layer], "final_layer": {"class_path": "torch.nn.Linear", "init_args": {}}}
    if decoder:
        config["final_additive_bias"] = False
    return config


def run_ours(paths: list[Path], name: str, batch_size: int) -> float:
    import torch

    from cellflux_streaming_models.data import ShardCollection, ShardDataset
    from cellflux_streaming_models.models import ContrastiveMLP, SingleCellVariationalInference
    from cellflux_streaming_models.transforms import (
        BinomialResample,
        Duplicate,
        Log1p,
        NormalizeTotal,
        apply_transforms,
        call_with_batch,
    )

    collection = ShardCollection(paths, obs_columns={"batch_index_n": "sample"})
    dataset = ShardDataset(collection, batch_size=batch_size, shuffle=False)
    genes = collection.var_names
    transforms = []
    if name == "scvi":
        n_batch = len(collection.categories["sample"])
        model = SingleCellVariationalInference(
            genes, n_batch=n_batch, n_latent=SCVI["n_latent"], kl_warmup_epochs=SCVI["kl_warmup_epochs"]
        )
    else:
        model = ContrastiveMLP(genes, len(genes), **CONTRASTIVE)
        transforms = [Duplicate(), BinomialResample(0.5, 1.0), NormalizeTotal(), Log1p()]
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.train()
    start = time.perf_counter()
    model.on_train_epoch_start(0)
    for batch in dataset:
        batch = apply_transforms(transforms, batch)
        optimizer.zero_grad()
        call_with_batch(model, batch)["loss"].backward()
        optimizer.step()
    return time.perf_counter() - start


def run_cellarium(paths: list[Path], name: str, batch_size: int) -> float:
    import anndata as ad
    import torch
    from cellarium.ml.data import DistributedAnnDataCollection, IterableDistributedAnnDataCollectionDataset
    from cellarium.ml.models import ContrastiveMLP, SingleCellVariationalInference
    from cellarium.ml.transforms import BinomialResample, Duplicate, Log1p, NormalizeTotal
    from cellarium.ml.utilities.data import AnnDataField, categories_to_codes, densify

    first = ad.read_h5ad(paths[0], backed="r")
    n_last = ad.read_h5ad(paths[-1], backed="r").n_obs
    dadc = DistributedAnnDataCollection(
        [str(p) for p in paths], shard_size=first.n_obs, last_shard_size=n_last, max_cache_size=2
    )
    dataset = IterableDistributedAnnDataCollectionDataset(
        dadc,
        batch_keys={
            "x_ng": AnnDataField(attr="X", convert_fn=densify),
            "var_names_g": AnnDataField(attr="var_names"),
            "batch_index_n": AnnDataField(attr="obs", key="sample", convert_fn=categories_to_codes),
        },
        batch_size=batch_size,
        shuffle=False,
    )
    loader = torch.utils.data.DataLoader(dataset, batch_size=None)
    genes = np.asarray(first.var_names)
    if name == "scvi":
        n_batch = len(first.obs["sample"].cat.categories)
        model = SingleCellVariationalInference(
            genes,
            encoder=_cellarium_network(SCVI["n_hidden"], False),
            decoder=_cellarium_network(SCVI["n_hidden"], True),
            n_batch=n_batch,
            n_latent=SCVI["n_latent"],
            kl_warmup_epochs=SCVI["kl_warmup_epochs"],
        )
    else:
        model = ContrastiveMLP(len(genes), **CONTRASTIVE)
    transforms = [Duplicate(), BinomialResample(0.5, 1.0, 1.0), NormalizeTotal(target_count=1e4), Log1p()]
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.train()
    start = time.perf_counter()
    for batch in loader:
        x = torch.as_tensor(batch["x_ng"])
        optimizer.zero_grad()
        if name == "scvi":
            loss = model(
                x_ng=x, var_names_g=batch["var_names_g"], batch_index_n=torch.as_tensor(batch["batch_index_n"])
            )["loss"]
        else:
            for t in transforms:
                x = t(x_ng=x, **({"total_mrna_umis_n": None} if isinstance(t, NormalizeTotal) else {}))["x_ng"]
            loss = model(x_ng=x)["loss"]
        loss.backward()
        optimizer.step()
    return time.perf_counter() - start


def peak_rss(paths: list[Path], batch_size: int) -> float:
    """Peak resident memory (MiB) of a fresh process training our scVI for one epoch over ``paths``."""
    code = (
        "import sys, resource; from pathlib import Path; sys.path.insert(0, sys.argv[1]); import deep;"
        "deep.run_ours([Path(p) for p in sys.argv[3:]], 'scvi', int(sys.argv[2]));"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(HERE), str(batch_size), *map(str, paths)],
        capture_output=True,
        text=True,
        check=True,
    )
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    import torch

    parser = argparse.ArgumentParser()
    parser.add_argument("--full", action="store_true")
    parser.add_argument("--data", default=None, help="folder for the simulated shards (kept between runs)")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=256)
    args = parser.parse_args()
    torch.set_num_threads(1)  # a shared machine: one thread for both libraries
    n_cells, n_genes = (50_000, 2_000) if args.full else (10_000, 1_000)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(args.data) if args.data else Path(tmp) / "shards"
        folder.mkdir(parents=True, exist_ok=True)
        paths = simulate(folder, n_cells, n_genes, 5)
        rows = []
        for name in ("scvi", "contrastive_mlp"):
            ours, ref = [], []
            for _ in range(args.repeats):
                ours.append(run_ours(paths, name, args.batch_size))
                ref.append(run_cellarium(paths, name, args.batch_size))
            row = {
                "model": name,
                "n_cells": n_cells,
                "n_genes": n_genes,
                "batch_size": args.batch_size,
                "ours_cells_per_s": n_cells / min(ours),
                "cellarium_cells_per_s": n_cells / min(ref),
            }
            row["speedup"] = row["ours_cells_per_s"] / row["cellarium_cells_per_s"]
            rows.append(row)
            print(json.dumps(row))
        linked = Path(tmp) / "linked"
        linked.mkdir()
        many = []
        for r in range(4):
            for p in paths:
                target = linked / f"{r}_{p.name}"
                target.symlink_to(p.resolve())
                many.append(target)
        memory = {
            "n_cells": [n_cells, 4 * n_cells],
            "peak_rss_mib": [peak_rss(paths, args.batch_size), peak_rss(many, args.batch_size)],
        }
        print(json.dumps(memory))
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"deep_{'full' if args.full else 'ci'}.json"
    out.write_text(json.dumps({"speed": rows, "memory_scvi": memory, "torch_threads": 1}, indent=1) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
