"""Lightning module, data module, the ``cellflux stream`` command line and two-process DDP on CPU."""

import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from cellflux_streaming_models._fit import stream_fit
from cellflux_streaming_models.data import ShardCollection, ShardDataset
from cellflux_streaming_models.lightning import StreamDataModule, StreamingModule
from cellflux_streaming_models.lightning._cli import main as stream_main
from cellflux_streaming_models.models import HVGSeuratV3, IncrementalPCA, OnePassMeanVarStd
from cellflux_streaming_models.transforms import Log1p, NormalizeTotal

# lightning < 2.6 with torch >= 2.10 (the pins cellarium-ml brings along) deprecates its own pytree use
# and warns that a loader without workers may be a bottleneck (it is not: reading is not the bottleneck here)
pytestmark = [
    pytest.mark.filterwarnings("ignore:`isinstance\\(treespec, LeafSpec\\)`:FutureWarning"),
    pytest.mark.filterwarnings("ignore:The '\\w+_dataloader' does not have many workers"),
]


def test_lightning_fit_mean_var(shard_paths, dense_x, trainer_options):
    import lightning.pytorch as pl

    data = StreamDataModule([str(p) for p in shard_paths], batch_size=200, shuffle=True)
    model = OnePassMeanVarStd(data.var_names_g)
    trainer = pl.Trainer(**trainer_options(max_epochs=1, logger=False, enable_checkpointing=False))
    trainer.fit(StreamingModule(model), datamodule=data)
    np.testing.assert_allclose(model.mean_g.numpy(), dense_x.mean(0), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(model.var_g.numpy(), dense_x.var(0), rtol=1e-6)


def _config(tmp_path, shard_dir, model, trainer, **extra):
    config = {
        "data": {"paths": str(shard_dir / "*.h5ad"), "batch_size": 256},
        "model": model,
        "trainer": trainer,
        **extra,
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_cli_fit_and_predict(shard_dir, shard_paths, dense_x, tmp_path, trainer_options):
    pca = {"class_path": "cellflux_streaming_models.models.IncrementalPCA", "init_args": {"n_components": 3}}
    transforms = [
        {"class_path": "cellflux_streaming_models.transforms.NormalizeTotal"},
        {"class_path": "cellflux_streaming_models.transforms.Log1p"},
    ]
    config = _config(tmp_path, shard_dir, pca, trainer_options(max_epochs=1), transforms=transforms)
    assert stream_main(["fit", "--config", str(config)]) == 0
    checkpoint = tmp_path / "run" / "model.ckpt"
    assert checkpoint.exists()
    out = tmp_path / "pred"
    argv = ["predict", "--config", str(config), "--ckpt_path", str(checkpoint), "--output_dir", str(out)]
    assert stream_main(argv) == 0
    files = sorted(out.glob("*.csv"))
    assert [f.stem for f in files] == [p.stem for p in shard_paths]
    state = torch.load(tmp_path / "run" / "model_state.pt", weights_only=False)
    y = np.log1p(dense_x / dense_x.sum(1, keepdims=True) * 1e4)
    expected = (y - state["x_mean_g"].numpy()) @ state["V_kg"][:3].numpy().T
    first = pd.read_csv(files[0], index_col=0)
    assert list(first.columns) == ["PC1", "PC2", "PC3"] and len(first) == 300
    np.testing.assert_allclose(first.to_numpy(), expected[:300], rtol=1e-3, atol=1e-3)


PREDICT_SCRIPT = textwrap.dedent(
    """
    import sys
    from cellflux_streaming_models.lightning._cli import main
    sys.exit(main(sys.argv[1:]))
    """
)


@pytest.mark.slow
def test_two_process_ddp_predict_writes_the_one_process_files(shard_dir, shard_paths, tmp_path, trainer_options):
    """Under DDP a shard's cells are split between processes; the joined files equal a one-process run's."""
    pca = {"class_path": "cellflux_streaming_models.models.IncrementalPCA", "init_args": {"n_components": 3}}
    transforms = [{"class_path": "cellflux_streaming_models.transforms.Log1p"}]
    config = _config(tmp_path, shard_dir, pca, trainer_options(max_epochs=1), transforms=transforms)
    spec = yaml.safe_load(config.read_text())
    spec["data"]["batch_size"] = 128  # 9 batches over 2 ranks: the second shard is split between them
    config.write_text(yaml.safe_dump(spec))
    assert stream_main(["fit", "--config", str(config)]) == 0
    checkpoint = str(tmp_path / "run" / "model.ckpt")
    one, two = tmp_path / "one", tmp_path / "two"
    assert stream_main(["predict", "--config", str(config), "--ckpt_path", checkpoint, "--output_dir", str(one)]) == 0
    spec["trainer"].update(devices=2, strategy="ddp", default_root_dir=str(tmp_path / "ddp"))
    ddp_config = tmp_path / "ddp.yaml"
    ddp_config.write_text(yaml.safe_dump(spec))
    two.mkdir()
    stale = two / f"{shard_paths[0].stem}.csv.rank1"  # a part left by a failed earlier run is not joined
    first_cell = (one / f"{shard_paths[0].stem}.csv").read_text().splitlines()[1].split(",")[0]
    stale.write_text(f"obs_names,PC1,PC2,PC3\n{first_cell},0,0,0\n")
    script = tmp_path / "predict.py"
    script.write_text(PREDICT_SCRIPT)
    argv = ["predict", "--config", str(ddp_config), "--ckpt_path", checkpoint, "--output_dir", str(two)]
    run = subprocess.run([sys.executable, str(script), *argv], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    assert (
        sorted(p.name for p in two.iterdir())
        == sorted(p.name for p in one.iterdir())
        == sorted(f"{p.stem}.csv" for p in shard_paths)
    )
    for path in one.iterdir():
        assert (two / path.name).read_bytes() == path.read_bytes(), path.name


def test_cli_logistic_regression_takes_n_obs_and_categories_from_data(shard_dir, full_adata, tmp_path, trainer_options):
    model = {"class_path": "cellflux_streaming_models.models.LogisticRegression"}
    transforms = [
        {"class_path": "cellflux_streaming_models.transforms.NormalizeTotal"},
        {"class_path": "cellflux_streaming_models.transforms.Log1p"},
    ]
    config = _config(tmp_path, shard_dir, model, trainer_options(max_epochs=1), transforms=transforms)
    spec = yaml.safe_load(config.read_text())
    spec["data"]["obs_columns"] = {"y_n": "clusters"}
    spec["trainer"]["max_epochs"] = 4
    config.write_text(yaml.safe_dump(spec))
    assert stream_main(["fit", "--config", str(config)]) == 0  # default optimiser: the model's
    out = tmp_path / "pred"
    checkpoint = tmp_path / "run" / "model.ckpt"
    argv = ["predict", "--config", str(config), "--ckpt_path", str(checkpoint), "--output_dir", str(out)]
    assert stream_main(argv) == 0
    logits = pd.concat([pd.read_csv(f, index_col=0) for f in sorted(out.glob("*.csv"))])
    labels = full_adata.obs["clusters"].astype(str)
    assert sorted(logits.columns) == sorted(labels.unique())
    accuracy = (logits.idxmax(axis=1).to_numpy() == labels.loc[logits.index].to_numpy()).mean()
    assert accuracy > 0.6  # 8 clusters (largest 15%), 80 genes, 4 epochs over 1,030 cells
    spec["data"]["obs_columns"] = {}
    config.write_text(yaml.safe_dump(spec))
    with pytest.raises(ValueError, match="y_n"):
        stream_main(["fit", "--config", str(config)])


def test_validation_of_a_trainable_model_logs_its_loss_on_held_out_shards(shard_paths, trainer_options):
    """A model without ``validate``: ``forward``'s scalars on the validation shards, as ``val_<key>`` epoch means."""
    import lightning.pytorch as pl

    from cellflux_streaming_models.models import LogisticRegression

    columns = {"y_n": "clusters"}
    data = StreamDataModule(
        [str(p) for p in shard_paths[:3]], batch_size=100, obs_columns=columns, val_paths=[str(shard_paths[3])]
    )
    assert data.val_collection.n_obs == 130
    np.testing.assert_array_equal(data.val_collection.categories["clusters"], data.collection.categories["clusters"])
    # average=False: Lightning validates before on_train_epoch_end, where averaging models swap in the average
    model = LogisticRegression(
        data.collection.n_obs, data.var_names_g, data.collection.categories["clusters"], average=False
    )
    transforms = [NormalizeTotal(), Log1p()]
    trainer = pl.Trainer(**trainer_options(max_epochs=2, enable_checkpointing=False), logger=False)
    trainer.fit(StreamingModule(model, transforms, validation=True), datamodule=data)
    # the logged values: the trained model's loss and accuracy over the 130 held-out cells (batches 100 + 30)
    losses, hits = [], []
    with torch.no_grad():
        for batch in ShardDataset(data.val_collection, batch_size=100):
            out = StreamingModule(model, transforms)(batch)
            losses.append(float(out["loss"]) * len(batch["y_n"]))
            hits.append(float(out["accuracy"]) * len(batch["y_n"]))
    assert float(trainer.callback_metrics["val_loss"]) == pytest.approx(sum(losses) / 130, rel=1e-5)
    assert float(trainer.callback_metrics["val_accuracy"]) == pytest.approx(sum(hits) / 130, rel=1e-5)
    # without val_paths the data module does not override Lightning's val_dataloader (no validation loop)
    assert "val_dataloader" in vars(data)
    assert "val_dataloader" not in vars(StreamDataModule([str(p) for p in shard_paths[:3]]))
    assert StreamDataModule.val_dataloader is pl.LightningDataModule.val_dataloader


def test_cli_refuses_unknown_keys_and_keeps_checkpoints(shard_dir, tmp_path, trainer_options):
    model = {"class_path": "cellflux_streaming_models.models.OnePassMeanVarStd"}
    config = _config(tmp_path, shard_dir, model, trainer_options(max_epochs=1))
    assert stream_main(["fit", "--config", str(config)]) == 0
    checkpoint = tmp_path / "run" / "model.ckpt"
    before = checkpoint.read_bytes()
    bad = yaml.safe_load(config.read_text())
    bad["data"]["bacth_size"] = 10
    config.write_text(yaml.safe_dump(bad))
    with pytest.raises(SystemExit):
        stream_main(["fit", "--config", str(config)])
    bad["data"].pop("bacth_size")
    bad["model"]["init_args"] = {"algorithm": "wrong"}
    config.write_text(yaml.safe_dump(bad))
    with pytest.raises(ValueError, match="algorithm"):
        stream_main(["fit", "--config", str(config)])
    assert checkpoint.read_bytes() == before
    assert stream_main([]) == 2


DDP_SCRIPT = textwrap.dedent(
    """
    import sys
    import numpy as np
    import lightning.pytorch as pl
    from cellflux_streaming_models.lightning import StreamDataModule, StreamingModule
    from cellflux_streaming_models.models import (
        HVGSeuratV3, IncrementalPCA, LogisticRegression, OnePassMeanVarStd, ProbabilisticPCA, TDigest
    )
    from cellflux_streaming_models.transforms import Log1p, NormalizeTotal

    QUANTILES = [0.1, 0.25, 0.5, 0.75, 0.9]
    shards, out = sys.argv[1], sys.argv[2]
    results = {}
    for name, epochs in [("meanvar", 1), ("pca", 1), ("hvg", 2), ("tdigest", 1), ("logreg", 3), ("ppca", 3)]:
        columns = {"batch_index_n": "sample", "y_n": "clusters"}
        data = StreamDataModule(shards, batch_size=100, shuffle=True, obs_columns=columns)
        genes = data.var_names_g
        if name == "meanvar":
            model, transforms = OnePassMeanVarStd(genes, n_batch=len(data.collection.categories["sample"])), []
        elif name == "pca":
            model, transforms = IncrementalPCA(genes, n_components=3, n_oversamples=20), [NormalizeTotal(), Log1p()]
        elif name == "hvg":
            model, transforms = HVGSeuratV3(genes, 20), []
        elif name == "tdigest":
            model, transforms = TDigest(genes), [NormalizeTotal(), Log1p()]
        elif name == "logreg":
            n_obs, categories = data.collection.n_obs, data.collection.categories["clusters"]
            model, transforms = LogisticRegression(n_obs, genes, categories), [NormalizeTotal(), Log1p()]
        else:
            model, transforms = ProbabilisticPCA(data.collection.n_obs, genes, 3), [NormalizeTotal(), Log1p()]
        trainer = pl.Trainer(max_epochs=epochs, accelerator="cpu", devices=2, strategy="ddp", logger=False,
                             enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
        trainer.fit(StreamingModule(model, transforms), datamodule=data)
        if name == "meanvar":
            results.update(mean=model.mean_g.numpy(), var=model.var_g.numpy(), batch_var=model.batch_var_bg.numpy())
        elif name == "pca":
            results.update(pca_var=model.explained_variance_k.numpy(), pca_mean=model.mean_g.numpy(),
                           pca_components=model.components_kg.numpy())
        elif name == "hvg":
            df = model.hvg_df
            results.update(hvg=df["highly_variable"].to_numpy(), hvg_norm=df["variances_norm"].to_numpy())
        elif name == "tdigest":
            results.update(quantiles=model.quantile(QUANTILES).numpy(), n_nonzero=model.n_nonzero_g.numpy())
        elif name == "logreg":
            results.update(logreg_W=model.W_gc.detach().numpy(), logreg_b=model.b_c.detach().numpy())
        else:
            results.update(ppca_W=model.W_kg.detach().numpy(), ppca_mean=model.mean_g.detach().numpy())
        results[name + "_rank"] = np.array(trainer.global_rank)
    np.savez(out + f".rank{trainer.global_rank}.npz", **results)
    """
)


@pytest.mark.slow
def test_two_process_ddp_equals_one_process(shard_dir, shard_paths, dense_x, rank_errors, tmp_path):
    script = tmp_path / "ddp_run.py"
    script.write_text(DDP_SCRIPT)
    out = tmp_path / "ddp"
    run = subprocess.run(
        [sys.executable, str(script), str(shard_dir / "*.h5ad"), str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    ranks = [np.load(f"{out}.rank{r}.npz") for r in range(2)]
    collection = ShardCollection(shard_paths, obs_columns={"batch_index_n": "sample"})
    dataset = ShardDataset(collection, batch_size=100, shuffle=True)

    def epochs(e):
        dataset.set_epoch(e)
        return dataset

    meanvar = stream_fit(OnePassMeanVarStd(collection.var_names, n_batch=len(collection.categories["sample"])), epochs)
    pca = stream_fit(
        IncrementalPCA(collection.var_names, 3, n_oversamples=20), epochs, transforms=[NormalizeTotal(), Log1p()]
    )
    hvg = stream_fit(HVGSeuratV3(collection.var_names, 20), epochs)
    y = Log1p()(NormalizeTotal()(torch.from_numpy(dense_x.astype(np.float32)))["x_ng"])["x_ng"].numpy()
    np.testing.assert_array_equal(ranks[0]["quantiles"], ranks[1]["quantiles"])
    # trainable models: DDP keeps one set of parameters (the learnt PPCA mean starts from all ranks' first batches)
    for key in ("logreg_W", "logreg_b", "ppca_W", "ppca_mean"):
        np.testing.assert_allclose(ranks[0][key], ranks[1][key], rtol=1e-5, atol=1e-6)
    for result in ranks:  # every rank holds the reduced answer
        np.testing.assert_allclose(result["mean"], meanvar.mean_g.numpy(), rtol=1e-12)
        np.testing.assert_allclose(result["var"], meanvar.var_g.numpy(), rtol=1e-10)
        np.testing.assert_allclose(result["batch_var"], meanvar.batch_var_bg.numpy(), rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(result["pca_mean"], pca.mean_g.numpy(), rtol=1e-9, atol=1e-10)
        np.testing.assert_allclose(result["pca_components"], pca.components_kg.numpy(), atol=1e-6)
        np.testing.assert_allclose(result["pca_var"], pca.explained_variance_k.numpy(), rtol=1e-6)  # float32 Gram
        np.testing.assert_array_equal(result["hvg"], hvg.hvg_df["highly_variable"].to_numpy())
        np.testing.assert_allclose(result["hvg_norm"], hvg.hvg_df["variances_norm"].to_numpy(), rtol=1e-10)
        # t-digests merged across the two processes: counts exact, quantiles within 1% in rank
        np.testing.assert_array_equal(result["n_nonzero"], (dense_x != 0).sum(0))
        assert rank_errors(y, result["quantiles"], np.array([0.1, 0.25, 0.5, 0.75, 0.9])).max() <= 0.01


def test_validation_shards_share_the_codes_of_categories_seen_only_there(full_adata, tmp_path):
    adata = full_adata[:400].copy()
    adata.obs["clusters"] = adata.obs["clusters"].astype(str)
    rare = adata.obs["clusters"].value_counts().index[-1]
    train, val = adata[adata.obs["clusters"] != rare].copy(), adata[:150].copy()
    for part in (train, val):
        part.obs["clusters"] = part.obs["clusters"].astype("category").cat.remove_unused_categories()
    assert rare not in set(train.obs["clusters"]) and rare in set(val.obs["clusters"])
    train.write_h5ad(tmp_path / "train.h5ad")
    val.write_h5ad(tmp_path / "val.h5ad")
    data = StreamDataModule(
        str(tmp_path / "train.h5ad"),
        batch_size=64,
        obs_columns={"y_n": "clusters"},
        val_paths=str(tmp_path / "val.h5ad"),
    )
    expected = sorted(adata.obs["clusters"].unique())
    assert list(data.collection.categories["clusters"]) == expected
    assert list(data.val_collection.categories["clusters"]) == expected
    for loader, part in ((data.train_dataloader(), train), (data.val_dataloader(), val)):
        codes = torch.cat([b["y_n"] for b in loader]).numpy()
        np.testing.assert_array_equal(np.asarray(expected, dtype=object)[codes], part.obs["clusters"].astype(str))
    with pytest.raises(ValueError, match="schema"):
        StreamDataModule(str(tmp_path / "train.h5ad"), val_paths=_other_genes(val, tmp_path))


def _other_genes(adata, folder):
    path = folder / "other_genes.h5ad"
    adata[:, ::-1].copy().write_h5ad(path)
    return str(path)


def test_cli_zscore_from_one_pass_statistics(shard_dir, full_adata, tmp_path, trainer_options):
    """One ``cellflux stream fit`` writes the statistics; the next standardises with them, in the model
    (``init_args: {zscore: stats.csv}``) or as a transform (``class_path: ...ZScore.from_csv``)."""
    import torch

    from cellflux_streaming_models.lightning._cli import _load
    from cellflux_streaming_models.transforms import ZScore

    log = [
        {"class_path": "cellflux_streaming_models.transforms.NormalizeTotal"},
        {"class_path": "cellflux_streaming_models.transforms.Log1p"},
    ]
    stats = tmp_path / "stats.csv"
    one_pass = "cellflux_streaming_models.models.OnePassMeanVarStd"
    model = {"class_path": one_pass, "init_args": {"output_path": str(stats)}}
    config = _config(tmp_path, shard_dir, model, trainer_options(max_epochs=1), transforms=log)
    assert stream_main(["fit", "--config", str(config)]) == 0
    expected = ZScore.from_csv(stats)
    from_csv = "cellflux_streaming_models.transforms.ZScore.from_csv"
    zscore_transform = {"class_path": from_csv, "init_args": {"path": str(stats)}}
    assert _load(zscore_transform["class_path"]) == ZScore.from_csv
    for name, init_args, transforms in (
        ("in_model", {"zscore": str(stats)}, log),
        ("transform", {}, [*log, zscore_transform]),
    ):
        root = tmp_path / name
        model = {"class_path": "cellflux_streaming_models.models.LogisticRegression", "init_args": init_args}
        options = trainer_options(max_epochs=4, default_root_dir=str(root))
        config = _config(tmp_path, shard_dir, model, options, transforms=transforms)
        spec = yaml.safe_load(config.read_text())
        spec["data"]["obs_columns"] = {"y_n": "clusters"}
        config.write_text(yaml.safe_dump(spec))
        assert stream_main(["fit", "--config", str(config)]) == 0
        state = torch.load(root / "model.ckpt", map_location="cpu", weights_only=False)["state_dict"]
        means = [v for k, v in state.items() if k.endswith("mean_g")]
        assert len(means) == 1 and torch.equal(means[0], expected.mean_g), name  # the statistics were used
        out = root / "pred"
        argv = ["predict", "--config", str(config), "--ckpt_path", str(root / "model.ckpt"), "--output_dir", str(out)]
        assert stream_main(argv) == 0
        logits = pd.concat([pd.read_csv(f, index_col=0) for f in sorted(out.glob("*.csv"))])
        labels = full_adata.obs["clusters"].astype(str).loc[logits.index].to_numpy()
        assert (logits.idxmax(axis=1).to_numpy() == labels).mean() > 0.6, name
    with pytest.raises(ValueError, match="Cannot import"):
        _load("cellflux_streaming_models.transforms.ZScore.from_parquet")
    with pytest.raises(ValueError, match="not an import path"):
        _load("ZScore")
    with pytest.raises(ValueError, match="No module named 'cellflux_no_such_package'"):
        _load("cellflux_no_such_package.Model")


def test_cli_load_reports_a_missing_dependency_of_an_existing_module(tmp_path, monkeypatch):
    from cellflux_streaming_models.lightning._cli import _load

    (tmp_path / "cellflux_plugin_with_missing_dependency.py").write_text("import cellflux_absent_dependency\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ValueError, match="No module named 'cellflux_absent_dependency'"):
        _load("cellflux_plugin_with_missing_dependency.Model")
