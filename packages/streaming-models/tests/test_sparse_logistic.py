"""Sparse batches and the folded z-score of logistic regression: the same numbers as the dense, unfused math."""

import numpy as np
import pytest
import torch
from scipy import sparse
from torch.nn import functional as F
from torch.utils.data import DataLoader

from cellflux_streaming_models._fit import stream_fit
from cellflux_streaming_models._sparse import csr_tensor
from cellflux_streaming_models.data import ShardCollection, ShardDataset
from cellflux_streaming_models.models import LogisticRegression
from cellflux_streaming_models.transforms import Log1p, NormalizeTotal, ZScore, apply_transforms


def _csr(x: torch.Tensor) -> torch.Tensor:
    m = sparse.csr_matrix(x.numpy())
    return csr_tensor(m.indptr.astype(np.int64), m.indices.astype(np.int64), m.data, m.shape)


def _log_normalised(dense_x):
    x = dense_x.astype(np.float64)
    return np.log1p(x * 1e4 / (x.sum(1, keepdims=True) + 1e-6))


def test_sparse_batches_equal_dense_and_stay_sparse_through_transforms(shard_paths, dense_x):
    collection = ShardCollection(shard_paths)
    dense = ShardDataset(collection, batch_size=100, shuffle=True, seed=3)
    sparse = ShardDataset(collection, batch_size=100, shuffle=True, seed=3, sparse=True)
    transforms = [NormalizeTotal(1e4), Log1p()]
    n = 0
    for a, b in zip(DataLoader(dense, batch_size=None), DataLoader(sparse, batch_size=None), strict=True):
        assert b["x_ng"].layout == torch.sparse_csr and b["x_ng"].values().dtype == torch.float32
        np.testing.assert_array_equal(b["cell_index_n"].numpy(), a["cell_index_n"].numpy())
        np.testing.assert_array_equal(b["x_ng"].to_dense().numpy(), a["x_ng"].numpy())
        ta, tb = apply_transforms(transforms, a)["x_ng"], apply_transforms(transforms, b)["x_ng"]
        assert tb.layout == torch.sparse_csr and tb.values().numel() == b["x_ng"].values().numel()
        np.testing.assert_allclose(tb.to_dense().numpy(), ta.numpy(), rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(
            ta.numpy(), _log_normalised(dense_x[a["cell_index_n"].numpy()]), rtol=1e-5, atol=1e-5
        )
        n += len(a["cell_index_n"])
    assert n == len(dense_x)


@pytest.fixture(scope="module")
def problem(dense_x):
    y = _log_normalised(dense_x).astype(np.float32)
    labels = (y[:, :5].sum(1) > np.median(y[:, :5].sum(1))).astype(np.int64) + (y[:, 5] > y[:, 5].mean())
    genes = np.array([f"g{i}" for i in range(y.shape[1])], dtype=object)
    zscore = ZScore(y.mean(0), y.std(0) + 0.1, genes)
    return dense_x.astype(np.float32), labels, genes, zscore


def _models(problem, **kwargs):
    x, _, genes, zscore = problem
    common = {"n_obs": len(x), "var_names_g": genes, "y_categories": ["a", "b", "c"], "seed": 2, **kwargs}
    return LogisticRegression(**common), LogisticRegression(**common, zscore=zscore)


def test_folded_zscore_loss_gradient_and_logits_equal_autograd_on_standardised_data(problem):
    x, labels, genes, zscore = problem
    reference, folded = _models(problem, W_prior_scale=0.05)
    batch = {"x_ng": torch.from_numpy(x[:300]), "var_names_g": genes, "y_n": torch.from_numpy(labels[:300])}
    log_batch = apply_transforms([NormalizeTotal(1e4), Log1p()], batch)
    z = apply_transforms([zscore], log_batch)["x_ng"]
    # the unfused math with autograd
    W, b = reference.W_gc, reference.b_c
    expected = F.cross_entropy(z @ W + b, batch["y_n"]) + W.abs().sum() / (0.05 * len(x))
    expected.backward()
    sparse_x = _csr(log_batch["x_ng"])
    for x_in in (log_batch["x_ng"], sparse_x):
        folded.zero_grad()
        out = folded(x_in, genes, batch["y_n"])
        out["loss"].backward()
        torch.testing.assert_close(out["loss"], expected.detach(), rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(folded.W_gc.grad, W.grad, rtol=1e-4, atol=1e-6)
        torch.testing.assert_close(folded.b_c.grad, b.grad, rtol=1e-4, atol=1e-6)
        torch.testing.assert_close(
            folded.predict(x_in, genes)["x_ng"], reference.predict(z, genes)["x_ng"], rtol=1e-4, atol=1e-4
        )
    # without a z-score: the closed-form gradient equals autograd's on the same input
    reference.zero_grad()
    (F.cross_entropy(z @ W + b, batch["y_n"]) + W.abs().sum() / (0.05 * len(x))).backward()
    plain = _models(problem, W_prior_scale=0.05)[0]
    plain(z, genes, batch["y_n"])["loss"].backward()
    torch.testing.assert_close(plain.W_gc.grad, W.grad, rtol=1e-4, atol=1e-6)
    with pytest.raises(ValueError, match="differ"):
        folded(sparse_x, genes[::-1], batch["y_n"])


def test_sparse_folded_training_equals_dense_zscore_training(problem):
    """Two epochs of Adam with tail averaging: sparse input + folded z-score vs dense ZScore transform."""
    x, labels, genes, zscore = problem

    def batches(as_csr):
        def epoch_batches(epoch):
            order = np.random.default_rng(epoch).permutation(len(x))
            for start in range(0, len(x), 64):
                rows = order[start : start + 64]
                xt = torch.from_numpy(x[rows])
                yield {"x_ng": _csr(xt) if as_csr else xt, "var_names_g": genes, "y_n": torch.from_numpy(labels[rows])}

        return epoch_batches

    reference, folded = _models(problem)
    log = [NormalizeTotal(1e4), Log1p()]
    stream_fit(reference, batches(False), transforms=[*log, zscore], n_epochs=2)
    stream_fit(folded, batches(True), transforms=log, n_epochs=2)
    torch.testing.assert_close(folded.W_gc, reference.W_gc, rtol=1e-3, atol=1e-5)
    torch.testing.assert_close(folded.b_c, reference.b_c, rtol=1e-3, atol=1e-5)
    z = torch.from_numpy(
        ((_log_normalised(x) - zscore.mean_g.numpy()) * zscore.inverse_std_g().numpy()).astype(np.float32)
    )
    assert (
        reference.predict(z, genes)["x_ng"].argmax(1).numpy() == labels
    ).mean() > 0.7  # it learnt (chance: below 0.5)


def test_zscore_must_cover_the_models_genes(problem):
    _, _, genes, zscore = problem
    with pytest.raises(ValueError, match="ZScore transform over the model's genes"):
        LogisticRegression(10, genes[:3], ["a", "b"], zscore=zscore)


def test_torch_implementation_used_off_cpu_equals_the_numpy_one(problem):
    """The torch path (GPU) and the numpy/scipy path (CPU) give the same loss, logits and gradients."""
    from cellflux_streaming_models.models._linear_softmax import _loss_and_gradients_cpu, _loss_and_gradients_torch

    x, labels, _, zscore = problem
    model = _models(problem)[1]
    log = apply_transforms([NormalizeTotal(1e4), Log1p()], {"x_ng": torch.from_numpy(x[:200])})["x_ng"]
    y = torch.from_numpy(labels[:200])
    args = (model.W_gc.detach(), model.b_c.detach(), y, zscore.mean_g, zscore.inverse_std_g(), 0.01, True)
    for x_in in (log, _csr(log)):
        numpy_out = _loss_and_gradients_cpu(x_in, *args)
        torch_out = _loss_and_gradients_torch(x_in, *args)
        for a, b in zip(numpy_out, torch_out, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.filterwarnings("ignore:`isinstance\\(treespec, LeafSpec\\)`:FutureWarning")
@pytest.mark.filterwarnings("ignore:The '\\w+_dataloader' does not have many workers")
def test_cli_sparse_data_gives_the_dense_results(shard_dir, tmp_path, trainer_options):
    """``data.sparse: true`` through ``cellflux stream fit|predict``: the same logits as dense batches."""
    import pandas as pd
    import yaml

    from cellflux_streaming_models.lightning._cli import main as stream_main

    logits = {}
    for as_csr in (False, True):
        run = tmp_path / f"sparse{as_csr}"
        config = {
            "data": {
                "paths": str(shard_dir / "*.h5ad"),
                "batch_size": 256,
                "sparse": as_csr,
                "obs_columns": {"y_n": "clusters"},
            },
            "model": {"class_path": "cellflux_streaming_models.models.LogisticRegression"},
            "transforms": [
                {"class_path": "cellflux_streaming_models.transforms.NormalizeTotal"},
                {"class_path": "cellflux_streaming_models.transforms.Log1p"},
            ],
            "trainer": trainer_options(max_epochs=2, default_root_dir=str(run)),
        }
        path = tmp_path / f"config{as_csr}.yaml"
        path.write_text(yaml.safe_dump(config))
        assert stream_main(["fit", "--config", str(path)]) == 0
        argv = ["--config", str(path), "--ckpt_path", str(run / "model.ckpt"), "--output_dir", str(run / "out")]
        assert stream_main(["predict", *argv]) == 0
        logits[as_csr] = pd.concat([pd.read_csv(f, index_col=0) for f in sorted((run / "out").glob("*.csv"))])
    assert logits[True].index.equals(logits[False].index)
    np.testing.assert_allclose(logits[True].to_numpy(), logits[False].to_numpy(), rtol=1e-4, atol=1e-4)


def test_zscore_from_the_csv_of_one_pass_statistics(problem, tmp_path):
    """``ZScore.from_csv`` reads what ``OnePassMeanVarStd(output_path=...)`` writes; a model takes its path."""
    import pandas as pd

    x, _, genes, zscore = problem
    table = pd.DataFrame(
        {"var_names_g": genes, "mean_g": zscore.mean_g.numpy(), "var_g": 0.0, "std_g": zscore.std_g.numpy()}
    )
    path = tmp_path / "stats.csv"
    table.to_csv(path, index=False)  # the columns and format of OnePassMeanVarStd.to_dataframe().to_csv
    read = ZScore.from_csv(path)
    torch.testing.assert_close(read.mean_g, zscore.mean_g, rtol=0, atol=0)
    torch.testing.assert_close(read.std_g, zscore.std_g, rtol=0, atol=0)
    assert list(read.var_names_g) == list(genes)
    _, with_object = _models(problem)
    common = {"n_obs": len(x), "var_names_g": genes, "y_categories": ["a", "b", "c"], "seed": 2}
    with_path = LogisticRegression(**common, zscore=str(path))
    batch = {"x_ng": torch.as_tensor(np.log1p(x[:50])), "var_names_g": genes}
    torch.testing.assert_close(with_path.predict(**batch)["x_ng"], with_object.predict(**batch)["x_ng"])
    table.drop(columns="std_g").to_csv(path, index=False)
    with pytest.raises(ValueError, match=r"lacks the columns \['std_g'\]"):
        LogisticRegression(**common, zscore=path)
