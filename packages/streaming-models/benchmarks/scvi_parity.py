"""scVI parity with scvi-tools' SCVI: same simulated data and settings, ELBO and latent quality side by side.

Simulated counts with batch effects (6 samples, ``sample_variability=0.3``; labels: ``clusters``).
Both models: 1 hidden layer of 128 units, 10 latent dimensions, negative binomial with gene
dispersion, one-hot batch injected in the decoder, batch norm, dropout 0.1 in the encoder, KL
warm-up over 10 epochs (40 epochs), Adam (lr 1e-3, eps 0.01, weight decay 1e-6), batch 128, all cells for
training. scvi-tools runs in this process when this interpreter has it, else in a child process of
``--scvi-python`` (an environment with scvi-tools). The negative ELBO (per cell, KL weight one, one
latent sample) and the latent metrics (:func:`~cellflux_streaming_models.models.latent_metrics` on the
posterior means) are computed by the same code for both. Writes ``results/scvi_parity.json``.

The functions are shared with the package's parity test (``tests/test_scvi_parity.py``, smaller sizes).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).parent
RESULTS = HERE / "results"
METRICS = ("negative_elbo", "silhouette_label", "knn_accuracy", "batch_mixing")


def simulate(n_cells: int, n_genes: int, seed: int = 0):
    """Counts with batch effects (``obs['sample']``, 6 samples) and labels (``obs['clusters']``); no empty genes."""
    import cellflux as cf

    adata = cf.datasets.simulate(
        n_cells=n_cells, n_genes=n_genes, seed=seed, sample_variability=0.3, truth_layers=False
    )
    adata.obs["sample"] = adata.obs["sample"].astype("category")
    adata = adata[:, np.asarray(adata.X.sum(0)).ravel() > 0].copy()
    adata.layers = {}
    return adata


def run_scvi_tools(adata, epochs: int, warmup: int = 10) -> dict:
    """Train scvi-tools' SCVI (one thread, seed 0): posterior means, per-cell negative ELBO, seconds, version."""
    import scvi
    import torch

    torch.set_num_threads(1)
    scvi.settings.seed = 0
    adata = adata.copy()
    scvi.model.SCVI.setup_anndata(adata, batch_key="sample")
    model = scvi.model.SCVI(adata, n_hidden=128, n_latent=10, n_layers=1, gene_likelihood="nb", dispersion="gene")
    start = time.perf_counter()
    model.train(
        max_epochs=epochs,
        batch_size=128,
        train_size=1.0,
        accelerator="cpu",
        enable_progress_bar=False,
        plan_kwargs={"n_epochs_kl_warmup": warmup, "lr": 1e-3},
    )
    seconds = time.perf_counter() - start
    module = model.module.eval()
    nelbo = []
    with torch.no_grad():
        for tensors in model._make_data_loader(adata=adata, batch_size=1024):
            _, _, losses = module(tensors, loss_kwargs={"kl_weight": 1.0})
            nelbo.append(
                (losses.reconstruction_loss["reconstruction_loss"] + losses.kl_local["kl_divergence_z"]).numpy()
            )
    return {
        "z": model.get_latent_representation(),
        "nelbo": np.concatenate(nelbo),
        "seconds": seconds,
        "version": scvi.__version__,
    }


def run_ours(adata, epochs: int, warmup: int = 10) -> dict:
    """Train our SingleCellVariationalInference with the same settings in memory (batches of 128, seed 0)."""
    import torch

    from cellflux_streaming_models.models import SingleCellVariationalInference

    torch.set_num_threads(1)
    torch.manual_seed(0)
    x = torch.as_tensor(adata.X.toarray(), dtype=torch.float32)
    b = torch.as_tensor(adata.obs["sample"].cat.codes.to_numpy().copy(), dtype=torch.long)
    genes = np.asarray(adata.var_names, dtype=object)
    model = SingleCellVariationalInference(genes, n_batch=int(b.max()) + 1, n_latent=10, kl_warmup_epochs=warmup)
    optimizer = model.default_optimizer(128)
    generator = torch.Generator().manual_seed(0)
    start = time.perf_counter()
    model.train()
    for epoch in range(epochs):
        model.on_train_epoch_start(epoch)
        for rows in torch.randperm(len(x), generator=generator).split(128):
            if len(rows) < 3:  # batch norm needs more than one cell (scvi-tools drops such batches too)
                continue
            optimizer.zero_grad()
            model(x[rows], genes, b[rows])["loss"].backward()
            optimizer.step()
    seconds = time.perf_counter() - start
    model.eval()
    z = model.predict(x, genes, b)["x_ng"].numpy()
    return {"z": z, "nelbo": model.negative_elbo(x, genes, b).numpy(), "seconds": seconds}


def scores(run: dict, adata) -> dict:
    """Negative ELBO per cell, training seconds and the latent metrics of one run."""
    from cellflux_streaming_models.models import latent_metrics

    labels, batches = adata.obs["clusters"].to_numpy(), adata.obs["sample"].to_numpy()
    out = {"negative_elbo": float(np.mean(run["nelbo"])), "train_seconds": float(run["seconds"])}
    return {**out, **latent_metrics(run["z"], labels, batches)}


def compare(adata, epochs: int, warmup: int = 10, scvi_python: str | None = None) -> dict:
    """Both models on ``adata``: their scores and the relative differences (ours - scvi-tools) / |scvi-tools|."""
    if scvi_python is None and importlib.util.find_spec("scvi") is not None:
        ref = run_scvi_tools(adata, epochs, warmup)
    else:
        ref = _run_scvi_tools_elsewhere(adata, epochs, warmup, scvi_python or sys.executable)
    ours = run_ours(adata, epochs, warmup)
    results = {"n_cells": adata.n_obs, "n_genes": adata.n_vars, "epochs": epochs, "kl_warmup_epochs": warmup}
    results["ours"] = scores(ours, adata)
    results["scvi_tools"] = {"version": ref["version"], **scores(ref, adata)}
    results["relative_difference"] = {
        k: (results["ours"][k] - results["scvi_tools"][k]) / abs(results["scvi_tools"][k]) for k in METRICS
    }
    return results


def _run_scvi_tools_elsewhere(adata, epochs: int, warmup: int, python: str) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        path, out = Path(tmp) / "data.h5ad", Path(tmp) / "scvi.npz"
        adata.write_h5ad(path)
        command = [python, __file__, "--reference-only", str(path), str(out), str(epochs), str(warmup)]
        run = subprocess.run(command, capture_output=True, text=True)
        if run.returncode != 0:
            raise RuntimeError(f"scvi-tools failed:\n{run.stderr[-3000:]}")
        ref = np.load(out)
        return {"z": ref["z"], "nelbo": ref["nelbo"], "seconds": float(ref["seconds"]), "version": str(ref["version"])}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--scvi-python", default=None, help="an interpreter with scvi-tools (default: this one)")
    parser.add_argument("--n-cells", type=int, default=2000)
    parser.add_argument("--n-genes", type=int, default=300)
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument(
        "--reference-only", nargs=4, metavar=("H5AD", "OUT", "EPOCHS", "WARMUP"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.reference_only:  # the child process of another interpreter
        import anndata as ad

        path, out, epochs, warmup = args.reference_only
        ref = run_scvi_tools(ad.read_h5ad(path), int(epochs), int(warmup))
        np.savez(out, **ref)
        return
    results = compare(simulate(args.n_cells, args.n_genes), args.epochs, scvi_python=args.scvi_python)
    print(json.dumps(results, indent=1))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "scvi_parity.json").write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
