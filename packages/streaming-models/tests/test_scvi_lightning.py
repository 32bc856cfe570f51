"""scVI and the contrastive MLP through the command line (YAML), checkpoints, and two-process DDP on CPU."""

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from cellflux_streaming_models.lightning._cli import main as stream_main
from cellflux_streaming_models.models import SingleCellVariationalInference

pytestmark = [
    pytest.mark.filterwarnings("ignore:`isinstance\\(treespec, LeafSpec\\)`:FutureWarning"),
    pytest.mark.filterwarnings("ignore:The '\\w+_dataloader' does not have many workers"),
    pytest.mark.filterwarnings("ignore:Checkpoint directory .* exists and is not empty"),
]


def _config(tmp_path, shard_dir, model, trainer, **extra):
    config = {
        "data": {
            "paths": str(shard_dir / "*.h5ad"),
            "batch_size": 128,
            "shuffle": True,
            "obs_columns": {"batch_index_n": "sample"},
        },
        "model": model,
        "trainer": trainer,
        **extra,
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_cli_fits_scvi_and_predicts_latents_that_reload(shard_dir, full_adata, tmp_path, trainer_options):
    model = {
        "class_path": "cellflux_streaming_models.models.SingleCellVariationalInference",
        "init_args": {"n_latent": 5, "kl_warmup_epochs": 2, "gene_likelihood": "zinb"},
    }
    config = _config(tmp_path, shard_dir, model, trainer_options(max_epochs=2))
    assert stream_main(["fit", "--config", str(config)]) == 0
    checkpoint = tmp_path / "run" / "model.ckpt"
    out = tmp_path / "pred"
    argv = ["predict", "--config", str(config), "--ckpt_path", str(checkpoint), "--output_dir", str(out)]
    assert stream_main(argv) == 0
    latents = pd.concat([pd.read_csv(f, index_col=0) for f in sorted(out.glob("*.csv"))])
    assert list(latents.columns) == [f"scvi_{i}" for i in range(5)] and len(latents) == 1030
    # the saved weights reload into a fresh model (n_batch came from the data) and give the same latents
    state = torch.load(tmp_path / "run" / "model_state.pt", weights_only=False)
    assert state["_extra_state"]["step"] == 2 * 9 and state["_extra_state"]["current_epoch"] == 1
    genes = np.asarray(full_adata.var_names, dtype=object)
    fresh = SingleCellVariationalInference(genes, n_batch=6, n_latent=5, gene_likelihood="zinb")
    fresh.load_state_dict(state)
    fresh.eval()
    adata = full_adata[latents.index]
    x = torch.as_tensor(adata.X.toarray(), dtype=torch.float32)
    batch = torch.as_tensor(adata.obs["sample"].cat.codes.to_numpy().copy(), dtype=torch.long)
    z = fresh.predict(x, genes, batch)["x_ng"].numpy()
    np.testing.assert_allclose(latents.to_numpy(), z, rtol=1e-4, atol=1e-5)
    # resuming from the checkpoint continues the epochs and the KL schedule
    spec = yaml.safe_load(config.read_text())
    spec["trainer"]["max_epochs"] = 3
    config.write_text(yaml.safe_dump(spec))
    assert stream_main(["fit", "--config", str(config), "--ckpt_path", str(checkpoint)]) == 0
    resumed = torch.load(tmp_path / "run" / "model_state.pt", weights_only=False)
    assert resumed["_extra_state"]["step"] == 3 * 9 and resumed["_extra_state"]["current_epoch"] == 2


def test_cli_fits_the_contrastive_mlp(shard_dir, tmp_path, trainer_options):
    model = {
        "class_path": "cellflux_streaming_models.models.ContrastiveMLP",
        "init_args": {"hidden_size": [32], "embed_dim": 8, "temperature": 0.5},
    }
    transforms = [
        {"class_path": "cellflux_streaming_models.transforms.Duplicate"},
        {
            "class_path": "cellflux_streaming_models.transforms.BinomialResample",
            "init_args": {"p_binom_min": 0.5, "p_binom_max": 1.0},
        },
        {"class_path": "cellflux_streaming_models.transforms.NormalizeTotal"},
        {"class_path": "cellflux_streaming_models.transforms.Log1p"},
    ]
    config = _config(tmp_path, shard_dir, model, trainer_options(max_epochs=1), transforms=transforms)
    assert stream_main(["fit", "--config", str(config)]) == 0
    out = tmp_path / "pred"
    argv = [
        "predict",
        "--config",
        str(config),
        "--ckpt_path",
        str(tmp_path / "run" / "model.ckpt"),
        "--output_dir",
        str(out),
    ]
    assert stream_main(argv) == 0  # prediction: augmentations are the identity, one row per cell
    z = pd.concat([pd.read_csv(f, index_col=0) for f in sorted(out.glob("*.csv"))])
    assert z.shape == (1030, 8)
    np.testing.assert_allclose(np.linalg.norm(z.to_numpy(), axis=1), 1.0, rtol=1e-5)


DDP_SCRIPT = textwrap.dedent(
    """
    import json
    import sys
    import numpy as np
    import pandas as pd
    import torch
    import lightning.pytorch as pl
    from cellflux_streaming_models.lightning import StreamDataModule, StreamingModule
    from cellflux_streaming_models.models import ContrastiveMLP, SingleCellVariationalInference
    from cellflux_streaming_models.transforms import BinomialResample, Duplicate, Log1p, NormalizeTotal

    torch.set_num_threads(1)
    shards, out, devices = sys.argv[1], sys.argv[2], int(sys.argv[3])
    results = {}
    for name in ("scvi", "contrastive"):
        pl.seed_everything(0)
        # the same global batch: 2 x 64 cells or 1 x 128
        columns = {"batch_index_n": "sample"}
        data = StreamDataModule(shards, batch_size=128 // devices, shuffle=True, obs_columns=columns)
        genes = data.var_names_g
        if name == "scvi":
            model, transforms = SingleCellVariationalInference(genes, n_batch=6, n_latent=5, kl_warmup_epochs=2), []
        else:
            model = ContrastiveMLP(genes, hidden_size=[32], embed_dim=8, temperature=0.5)
            transforms = [Duplicate(), BinomialResample(0.5, 1.0), NormalizeTotal(), Log1p()]
        strategy, epochs = ("ddp" if devices > 1 else "auto"), (3 if name == "scvi" else 1)
        trainer = pl.Trainer(max_epochs=epochs, accelerator="cpu", devices=devices, strategy=strategy, logger=False,
                             enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
        trainer.fit(StreamingModule(model, transforms), datamodule=data)
        for key, value in model.named_parameters():
            results[f"{name}.{key}"] = value.detach().numpy()
    np.savez(out + f".{devices}.rank{trainer.global_rank}.npz", **results)
    # validation metrics of an untrained scVI (the same weights on every run) over all cells
    columns = {"batch_index_n": "sample", "validation_cell_type_index_n": "clusters"}
    data = StreamDataModule(shards, batch_size=64, obs_columns=columns, val_paths=shards)
    cats = list(data.collection.categories["clusters"])
    onto = pd.DataFrame(np.abs(np.subtract.outer(np.arange(8), np.arange(8))), index=cats, columns=cats)
    model = SingleCellVariationalInference(genes, n_batch=6, n_latent=5, cell_type_categories=cats,
                                           ontology_distance_matrix=onto, val_cell_type_classifier_reservoir_size=300)
    trainer = pl.Trainer(accelerator="cpu", devices=devices, strategy=strategy, logger=False,
                         enable_progress_bar=False, enable_model_summary=False)
    metrics = trainer.validate(StreamingModule(model, validation=True), datamodule=data, verbose=False)[0]
    with open(out + f".{devices}.rank{trainer.global_rank}.json", "w") as f:
        json.dump({k: float(v) for k, v in metrics.items()}, f)
    """
)


@pytest.mark.slow
def test_two_process_ddp_trains_like_one_process(shard_dir, full_adata, tmp_path):
    script = tmp_path / "ddp_deep.py"
    script.write_text(DDP_SCRIPT)
    out = tmp_path / "ddp"
    for devices in (2, 1):
        run = subprocess.run(
            [sys.executable, str(script), str(shard_dir / "*.h5ad"), str(out), str(devices)],
            capture_output=True,
            text=True,
            timeout=600,
            cwd=tmp_path,
        )
        assert run.returncode == 0, run.stderr[-3000:]
    ranks = [np.load(f"{out}.2.rank{r}.npz") for r in range(2)]
    single = np.load(f"{out}.1.rank0.npz")
    # validation: both processes log the one-process metrics (the reservoirs are keyed by cell, the sums
    # reduced); only the ELBO's one latent sample per cell differs
    metrics = [json.loads(Path(f"{out}.{d}.rank{r}.json").read_text()) for d, r in ((2, 0), (2, 1), (1, 0))]
    assert metrics[0] == metrics[1]
    assert {"val_cell_type_top1_accuracy", "val_ontology_spearman", "val_batch_silhouette"} <= set(metrics[2])
    for key, value in metrics[2].items():
        tolerance = 1e-2 if key in ("val_loss", "val_elbo", "val_reconstruction_loss") else 1e-5
        assert metrics[0][key] == pytest.approx(value, rel=tolerance, abs=1e-6), key
    for key in ranks[0].files:  # DDP keeps one set of parameters
        np.testing.assert_allclose(ranks[0][key], ranks[1][key], rtol=1e-5, atol=1e-6)
    # the same objective reached (3 epochs): scVI's negative ELBO on all cells within 3% of one process's
    genes = np.asarray(full_adata.var_names, dtype=object)
    x = torch.as_tensor(full_adata.X.toarray(), dtype=torch.float32)
    batch = torch.as_tensor(full_adata.obs["sample"].cat.codes.to_numpy().copy(), dtype=torch.long)
    elbo = []
    for params in (ranks[0], single):
        model = SingleCellVariationalInference(genes, n_batch=6, n_latent=5)
        model.load_state_dict(
            {k[5:]: torch.as_tensor(v) for k, v in params.items() if k.startswith("scvi.")}, strict=False
        )
        elbo.append(_nelbo(model, x, genes, batch))
    untrained = _nelbo(SingleCellVariationalInference(genes, n_batch=6, n_latent=5), x, genes, batch)
    assert elbo[0] < 0.9 * untrained and abs(elbo[0] - elbo[1]) / elbo[1] < 0.03


def _nelbo(model, x, genes, batch):
    """Negative ELBO with batch-norm statistics of the whole data (the running statistics are per process)."""
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm1d):
            module.reset_running_stats()
            module.momentum = None  # cumulative average
    model.train()
    with torch.no_grad():
        torch.manual_seed(0)
        model(x, genes, batch)  # one pass over all cells fills the running statistics
    torch.manual_seed(0)
    return float(model.negative_elbo(x, genes, batch).mean())
