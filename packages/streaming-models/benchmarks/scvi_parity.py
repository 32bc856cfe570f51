"""scVI parity with scvi-tools' SCVI: same simulated data and settings, ELBO and latent quality side by side.

Simulated counts with batch effects (6 samples, ``sample_variability=0.3``; labels: ``clusters``).
Both models: 1 hidden layer of 128 units, 10 latent dimensions, negative binomial with gene
dispersion, one-hot batch injected in the decoder, batch norm, dropout 0.1 in the encoder, KL
warm-up over 10 epochs (40 epochs), Adam (lr 1e-3, eps 0.01, weight decay 1e-6), batch 128, all cells for
training. scvi-tools runs in a child process of ``--scvi-python`` (an environment with scvi-tools;
default this interpreter). The negative ELBO (per cell, KL weight one, one latent sample) and the
latent metrics (:func:`~cellflux_streaming_models.models.latent_metrics` on the posterior means) are
computed by the same code for both. Writes ``results/scvi_parity.json``.
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

SCVI_TOOLS = r"""
import sys, time, numpy as np, anndata as ad, torch, scvi
path, out, epochs = sys.argv[1], sys.argv[2], int(sys.argv[3])
torch.set_num_threads(1)
scvi.settings.seed = 0
adata = ad.read_h5ad(path)
scvi.model.SCVI.setup_anndata(adata, batch_key="sample")
model = scvi.model.SCVI(adata, n_hidden=128, n_latent=10, n_layers=1, gene_likelihood="nb", dispersion="gene")
start = time.perf_counter()
model.train(max_epochs=epochs, batch_size=128, train_size=1.0, accelerator="cpu", enable_progress_bar=False,
            plan_kwargs={"n_epochs_kl_warmup": 10, "lr": 1e-3})
seconds = time.perf_counter() - start
module = model.module.eval()
loader = model._make_data_loader(adata=adata, batch_size=1024)
nelbo = []
with torch.no_grad():
    for tensors in loader:
        _, _, losses = module(tensors, loss_kwargs={"kl_weight": 1.0})
        nelbo.append((losses.reconstruction_loss["reconstruction_loss"] + losses.kl_local["kl_divergence_z"]).numpy())
np.savez(out, z=model.get_latent_representation(), nelbo=np.concatenate(nelbo), seconds=seconds)
"""


def run_ours(adata, epochs: int) -> tuple[np.ndarray, np.ndarray, float]:
    import torch

    from cellflux_streaming_models.models import SingleCellVariationalInference

    torch.manual_seed(0)
    x = torch.as_tensor(adata.X.toarray(), dtype=torch.float32)
    b = torch.as_tensor(adata.obs["sample"].cat.codes.to_numpy().copy(), dtype=torch.long)
    genes = np.asarray(adata.var_names, dtype=object)
    model = SingleCellVariationalInference(genes, n_batch=int(b.max()) + 1, n_latent=10, kl_warmup_epochs=10)
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
    return z, model.negative_elbo(x, genes, b).numpy(), seconds


def main() -> None:
    import cellflux as cf
    from cellflux_streaming_models.models import latent_metrics

    parser = argparse.ArgumentParser()
    parser.add_argument("--scvi-python", default=sys.executable)
    parser.add_argument("--n-cells", type=int, default=2000)
    parser.add_argument("--n-genes", type=int, default=300)
    parser.add_argument("--epochs", type=int, default=40)
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)  # a shared machine: one thread for both libraries
    adata = cf.datasets.simulate(
        n_cells=args.n_cells, n_genes=args.n_genes, seed=0, sample_variability=0.3, truth_layers=False
    )
    adata.obs["sample"] = adata.obs["sample"].astype("category")
    adata = adata[:, np.asarray(adata.X.sum(0)).ravel() > 0].copy()
    labels, batches = adata.obs["clusters"].to_numpy(), adata.obs["sample"].to_numpy()
    results = {"n_cells": adata.n_obs, "n_genes": adata.n_vars, "epochs": args.epochs}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "data.h5ad"
        slim = adata.copy()
        slim.layers = {}
        slim.write_h5ad(path)
        run = subprocess.run(
            [args.scvi_python, "-c", SCVI_TOOLS, str(path), str(Path(tmp) / "scvi.npz"), str(args.epochs)],
            capture_output=True,
            text=True,
        )
        if run.returncode != 0:
            raise RuntimeError(f"scvi-tools failed:\n{run.stderr[-3000:]}")
        ref = np.load(Path(tmp) / "scvi.npz")
        version = subprocess.run(
            [args.scvi_python, "-c", "import scvi; print(scvi.__version__)"], capture_output=True, text=True
        ).stdout.strip()
    z, nelbo, seconds = run_ours(adata, args.epochs)
    results["ours"] = {
        "negative_elbo": float(nelbo.mean()),
        "train_seconds": seconds,
        **latent_metrics(z, labels, batches),
    }
    results["scvi_tools"] = {
        "version": version,
        "negative_elbo": float(ref["nelbo"].mean()),
        "train_seconds": float(ref["seconds"]),
        **latent_metrics(ref["z"], labels, batches),
    }
    results["relative_difference"] = {
        k: (results["ours"][k] - results["scvi_tools"][k]) / abs(results["scvi_tools"][k])
        for k in ("negative_elbo", "silhouette_label", "knn_accuracy", "batch_mixing")
    }
    print(json.dumps(results, indent=1))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "scvi_parity.json").write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
