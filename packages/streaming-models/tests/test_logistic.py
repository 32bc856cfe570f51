"""Logistic regression: held-out accuracy against scikit-learn, stability across batch sizes, the prior."""

import numpy as np
import pytest
import torch

from cellflux_streaming_models._fit import stream_fit
from cellflux_streaming_models.models import LogisticRegression

N_TRAIN = 4000


@pytest.fixture(scope="module")
def labelled():
    """5,000 simulated cells: 40 most variable genes, log-normalised and standardised; cluster labels."""
    import cellflux as cf

    adata = cf.datasets.simulate(n_cells=5000, n_genes=200, seed=5, truth_layers=False)
    x = np.asarray(adata.X.toarray() if hasattr(adata.X, "toarray") else adata.X, dtype=np.float64)
    y = np.log1p(x / x.sum(1, keepdims=True) * 1e4)
    y = y[:, np.argsort(-y.var(0))[:40]]
    z = ((y - y[:N_TRAIN].mean(0)) / y[:N_TRAIN].std(0)).astype(np.float32)
    categories, codes = np.unique(adata.obs["clusters"].astype(str).to_numpy(), return_inverse=True)
    genes = np.array([f"g{i}" for i in range(z.shape[1])], dtype=object)
    return z, codes, categories, genes


def _batches(z, codes, genes, batch_size):
    def batches(epoch):
        order = np.random.default_rng(epoch).permutation(N_TRAIN)
        for start in range(0, N_TRAIN, batch_size):
            rows = order[start : start + batch_size]
            yield {"x_ng": torch.from_numpy(z[rows]), "var_names_g": genes, "y_n": torch.from_numpy(codes[rows])}

    return batches


def _accuracy(model, z, codes, genes):
    out = model.predict(torch.from_numpy(z[N_TRAIN:]), genes)
    return float((out["x_ng"].argmax(1).numpy() == codes[N_TRAIN:]).mean())


def test_accuracy_matches_sklearn_at_two_batch_sizes(labelled):
    sklearn = pytest.importorskip("sklearn.linear_model")
    z, codes, categories, genes = labelled
    reference = sklearn.LogisticRegression(max_iter=1000).fit(z[:N_TRAIN], codes[:N_TRAIN])
    expected = reference.score(z[N_TRAIN:], codes[N_TRAIN:])
    accuracies = []
    for batch_size in (64, 512):
        model = LogisticRegression(N_TRAIN, genes, categories)
        stream_fit(model, _batches(z, codes, genes, batch_size), n_epochs=6)
        accuracies.append(_accuracy(model, z, codes, genes))
        out = model.predict(torch.from_numpy(z[:3]), genes)
        np.testing.assert_array_equal(out["var_names_g"], categories)
        assert out["x_ng"].shape == (3, len(categories))
    assert max(abs(a - expected) for a in accuracies) <= 0.01, (accuracies, expected)
    assert abs(accuracies[0] - accuracies[1]) <= 0.01


def test_laplace_prior_shrinks_weights(labelled):
    z, codes, categories, genes = labelled
    weak = LogisticRegression(N_TRAIN, genes, categories, W_prior_scale=1.0)
    strong = LogisticRegression(N_TRAIN, genes, categories, W_prior_scale=1e-3)
    for model in (weak, strong):
        stream_fit(model, _batches(z, codes, genes, 256), n_epochs=3)
    assert strong.W_gc.abs().sum() < 0.1 * weak.W_gc.abs().sum()
    # the loss is the negative log posterior divided by n_obs
    batch = next(_batches(z, codes, genes, 100)(0))
    logits = batch["x_ng"] @ weak.W_gc + weak.b_c
    expected = torch.nn.functional.cross_entropy(logits, batch["y_n"]) + weak.W_gc.abs().sum() / N_TRAIN
    torch.testing.assert_close(weak(**batch)["loss"], expected)


def test_logistic_regression_bad_input(labelled):
    z, _, categories, genes = labelled
    model = LogisticRegression(N_TRAIN, genes, categories)
    x = torch.from_numpy(z[:4])
    with pytest.raises(ValueError, match="outside"):
        model(x, genes, torch.tensor([0, 1, -1, 2]))
    with pytest.raises(ValueError, match="shape"):
        model(x, genes, torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="y_categories"):
        model(x, genes, torch.tensor([0, 1, 1, 2]), y_categories=np.array(["a", "b"]))
    with pytest.raises(ValueError, match="two categories"):
        LogisticRegression(10, genes, ["only"])
    with pytest.raises(ValueError, match="n_obs"):
        LogisticRegression(0, genes, categories)
