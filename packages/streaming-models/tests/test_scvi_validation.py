"""scVI's in-training validation metrics: reservoir samples, weighted Spearman, the cell-type classifier, Lightning."""

import logging

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from scipy import stats

from cellflux_streaming_models.lightning._cli import main as stream_main
from cellflux_streaming_models.models import SingleCellVariationalInference, _reservoir
from cellflux_streaming_models.models._reservoir import BottomKReservoir, cell_keys
from cellflux_streaming_models.models._scvi_metrics import (
    centroid_batch_silhouette,
    linear_classifier_accuracy,
    ontology_spearman,
    weighted_spearman,
)
from cellflux_streaming_models.models._scvi_validation import ScviValidation, ontology_matrix

pytestmark = [
    pytest.mark.filterwarnings("ignore:`isinstance\\(treespec, LeafSpec\\)`:FutureWarning"),
    pytest.mark.filterwarnings("ignore:The '\\w+_dataloader' does not have many workers"),
    pytest.mark.filterwarnings("ignore:Checkpoint directory .* exists and is not empty"),
]


def _stream(reservoir, n, batch, keyed_seed=None):
    for start in range(0, n, batch):
        rows = torch.arange(start, min(start + batch, n))
        keys = None if keyed_seed is None else cell_keys(rows, seed=keyed_seed, stream=0)
        reservoir.add(rows[:, None].double(), rows, keys)
        assert len(reservoir) == min(reservoir.capacity, int(rows[-1]) + 1)  # bounded, full as soon as possible


@pytest.mark.parametrize("keyed", [False, True])
def test_reservoir_is_a_bounded_uniform_sample(keyed):
    n, capacity, repeats = 400, 40, 300
    hits = np.zeros(n)
    for r in range(repeats):
        reservoir = BottomKReservoir(capacity, 1, seed=r)
        _stream(reservoir, n, batch=37, keyed_seed=r if keyed else None)
        labels = reservoir.labels.numpy()
        assert reservoir.seen == n and len(labels) == capacity and len(np.unique(labels)) == capacity
        np.testing.assert_array_equal(reservoir.values[:, 0].numpy(), labels)  # rows stay whole
        hits[labels] += 1
    # every row is kept with probability capacity / n: inclusion counts pass a chi-square test, and the
    # stream's first and last rows are not favoured
    expected = repeats * capacity / n
    chi2 = ((hits - expected) ** 2 / expected).sum()
    assert stats.chi2.sf(chi2, n - 1) > 1e-3, chi2
    assert abs(hits[: n // 4].mean() - expected) < 0.15 * expected
    assert abs(hits[-n // 4 :].mean() - expected) < 0.15 * expected


def test_keyed_reservoir_ignores_order_and_merges_exactly(monkeypatch):
    n, capacity = 1000, 64
    one = BottomKReservoir(capacity, 1)
    _stream(one, n, batch=100, keyed_seed=7)
    # two "processes" see interleaved halves in another order and batch size; merging gives the same sample
    parts = []
    for rank in range(2):
        part = BottomKReservoir(capacity, 1)
        rows = torch.arange(rank, n, 2).flip(0)
        for chunk in rows.split(33):
            part.add(chunk[:, None].double(), chunk, cell_keys(chunk, seed=7, stream=0))
        parts.append(part)
    gathered = [(p.keys, p.values, p.labels, p.seen) for p in parts]
    monkeypatch.setattr(_reservoir, "all_gather_objects", lambda value: gathered)
    parts[0].merge()
    assert parts[0].seen == n
    np.testing.assert_array_equal(np.sort(parts[0].labels.numpy()), np.sort(one.labels.numpy()))


def test_reservoir_refuses_bad_input():
    with pytest.raises(ValueError, match="positive integer"):
        BottomKReservoir(0, 3)
    reservoir = BottomKReservoir(5, 3)
    with pytest.raises(ValueError, match="3 features"):
        reservoir.add(torch.zeros(4, 2), torch.zeros(4))
    with pytest.raises(ValueError, match="keys"):
        reservoir.add(torch.zeros(4, 3), torch.zeros(4), torch.zeros(3))
    with pytest.raises(ValueError, match="cell_index_n"):
        cell_keys(torch.tensor([-1]), seed=0, stream=0)


def test_weighted_spearman_is_spearmans_rho_of_weighted_pairs(caplog):
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=40), rng.normal(size=40)
    y[:20] += x[:20]
    y[5] = 2.0
    y[6] = 2.0  # a tie: average ranks, as spearmanr
    # equal weights: scipy's Spearman correlation
    assert weighted_spearman(x, y, np.full(40, 3.0)) == pytest.approx(stats.spearmanr(x, y).statistic, abs=1e-12)
    # integer weights: the Pearson correlation of the (unweighted) ranks, each pair counted w times
    w = rng.integers(1, 5, size=40)
    rx, ry = np.repeat(stats.rankdata(x), w), np.repeat(stats.rankdata(y), w)
    assert weighted_spearman(x, y, w) == pytest.approx(stats.pearsonr(rx, ry).statistic, abs=1e-12)
    # pairs with an infinite ontology distance are left out
    y_inf = y.copy()
    y_inf[:4] = np.inf
    expected = stats.spearmanr(x[4:], y[4:]).statistic
    assert weighted_spearman(x, y_inf, np.ones(40)) == pytest.approx(expected, abs=1e-12)
    assert np.isnan(weighted_spearman(x[:2], y[:2], np.ones(2)))
    with caplog.at_level(logging.WARNING):
        assert weighted_spearman(x, np.ones(40), np.ones(40)) == 0.0
    assert "constant" in caplog.text
    with pytest.raises(ValueError, match="one entry per pair"):
        weighted_spearman(x, y, np.ones(3))
    with pytest.raises(ValueError, match="non-negative"):
        weighted_spearman(x, y, -np.ones(40))


def test_ontology_spearman_on_a_constructed_example():
    # four types evenly spaced on a line in the order of a chain ontology: perfect agreement, whatever the counts
    centroids = np.array([[0.0, 0], [1, 0], [2, 0], [3, 0]])
    chain = np.abs(np.subtract.outer(np.arange(4), np.arange(4))).astype(float)
    assert ontology_spearman(centroids, np.array([5, 1, 9, 2]), chain) == pytest.approx(1.0)
    # a shuffled ontology: equal counts give scipy's Spearman correlation over the type pairs
    rng = np.random.default_rng(1)
    centroids = rng.normal(size=(6, 3))
    onto = rng.integers(1, 9, size=(6, 6)).astype(float)
    onto = onto + onto.T
    i, j = np.triu_indices(6, k=1)
    latent = np.linalg.norm(centroids[i] - centroids[j], axis=1)
    expected = stats.spearmanr(latent, onto[i, j]).statistic
    assert ontology_spearman(centroids, np.full(6, 10), onto) == pytest.approx(expected, abs=1e-12)
    # an absent type drops out
    counts = np.array([10, 10, 0, 10, 10, 10])
    keep = np.array([0, 1, 3, 4, 5])
    i2, j2 = np.triu_indices(5, k=1)
    c = centroids[keep]
    expected = stats.spearmanr(np.linalg.norm(c[i2] - c[j2], axis=1), onto[np.ix_(keep, keep)][i2, j2]).statistic
    assert ontology_spearman(centroids, counts, onto) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parity
def test_weighted_spearman_parity_with_cellarium():
    scvi = pytest.importorskip("cellarium.ml.models.scvi")
    rng = np.random.default_rng(2)
    latent = torch.as_tensor(rng.random((7, 7)), dtype=torch.float32)
    latent = latent + latent.T
    onto = torch.as_tensor(rng.integers(1, 6, (7, 7)), dtype=torch.float32)
    onto = onto + onto.T
    onto[0, 3] = onto[3, 0] = float("inf")
    counts = torch.as_tensor(rng.integers(1, 50, 7), dtype=torch.float32)
    theirs = scvi.SingleCellVariationalInference._weighted_spearman(latent, onto, counts)
    i, j = np.triu_indices(7, k=1)
    ours = weighted_spearman(latent.numpy()[i, j], onto.numpy()[i, j], (counts.numpy()[i] * counts.numpy()[j]))
    assert ours == pytest.approx(theirs, abs=1e-5)


def _planted(n, k, d, seed, spread=0.4, centres=False):
    rng = np.random.default_rng(seed)
    mu = rng.normal(scale=3.0, size=(k, d))
    y = rng.integers(0, k, n)
    z, y = torch.as_tensor(mu[y] + rng.normal(scale=spread, size=(n, d))), torch.as_tensor(y)
    return (z, y, mu) if centres else (z, y)


def test_classifier_accuracy_high_on_planted_labels_and_chance_on_shuffled():
    k = 5
    z, y = _planted(3000, k, 6, seed=0)
    validation = ScviValidation(6, 0, [f"CL:{i}" for i in range(k)], None, reservoir_size=400, seed=0)
    shuffled = ScviValidation(6, 0, [f"CL:{i}" for i in range(k)], None, reservoir_size=400, seed=0)
    y_shuffled = y[torch.randperm(len(y), generator=torch.Generator().manual_seed(0))]
    for rows in torch.arange(len(z)).split(250):
        loss = torch.zeros(len(rows))
        validation.add(loss, loss, z[rows], None, y[rows], rows)
        shuffled.add(loss, loss, z[rows], None, y_shuffled[rows], rows)
    planted, chance = validation.compute(), shuffled.compute()
    assert len(validation.train) == len(validation.test) == 400  # bounded samples
    assert validation.train.seen + validation.test.seen == 3000
    assert planted["val_cell_type_top1_accuracy"] > 0.97
    assert abs(chance["val_cell_type_top1_accuracy"] - 1 / k) < 0.08
    # the classifier itself, directly
    accuracy, predicted = linear_classifier_accuracy(z[:1000], y[:1000], z[1000:], y[1000:], k)
    assert accuracy > 0.97 and predicted.shape == (2000,)
    with torch.inference_mode():  # as in Lightning's validation loop
        assert linear_classifier_accuracy(z[:1000], y[:1000], z[1000:], y[1000:], k)[0] == accuracy
    with pytest.raises(ValueError, match="outside"):
        linear_classifier_accuracy(z[:10], y[:10] + k, z[10:20], y[10:20], k)


def test_batch_silhouette_separated_vs_mixed():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(600, 4))
    batch = rng.integers(0, 3, 600)

    def score(latent):
        sums = np.stack([latent[batch == b].sum(0) for b in range(3)])
        squares = np.array([(latent[batch == b] ** 2).sum() for b in range(3)])
        return centroid_batch_silhouette(sums, squares, np.bincount(batch))

    assert score(z) < 0 < 0.8 < score(z + 10.0 * np.eye(4)[batch])


def test_ontology_matrix_slices_reorders_and_refuses(tmp_path):
    ids = ["CL:3", "CL:1", "CL:2"]
    m = np.array([[0, 1, 2], [1, 0, np.inf], [2, np.inf, 0]])
    frame = pd.DataFrame(m, index=ids, columns=ids)
    out = ontology_matrix(frame, ["CL:1", "CL:2"])
    np.testing.assert_array_equal(out, [[0, np.inf], [np.inf, 0]])
    frame.to_csv(tmp_path / "onto.csv")
    np.testing.assert_array_equal(ontology_matrix(tmp_path / "onto.csv", ["CL:1", "CL:2"]), out)
    with pytest.raises(ValueError, match=r"\['CL:9'\] are absent"):
        ontology_matrix(frame, ["CL:1", "CL:9"])
    with pytest.raises(ValueError, match="square"):
        ontology_matrix(frame.iloc[:2], ["CL:1"])
    with pytest.raises(TypeError, match="DataFrame"):
        ontology_matrix(m, ["CL:1"])
    with pytest.raises(FileNotFoundError):
        ontology_matrix(tmp_path / "missing.csv", ["CL:1"])
    with pytest.raises(ValueError, match="non-negative"):
        ontology_matrix(-frame, ["CL:1", "CL:3"])


def test_model_arguments_and_bad_inputs(caplog):
    genes = np.array([f"g{i}" for i in range(20)], dtype=object)
    cats = ["CL:1", "CL:2", "CL:3"]
    frame = pd.DataFrame(np.ones((4, 4)) - np.eye(4), index=[*cats, "CL:4"], columns=[*cats, "CL:4"])
    model = SingleCellVariationalInference(genes, n_batch=2, cell_type_categories=cats, ontology_distance_matrix=frame)
    assert model.ontology_distance_matrix.shape == (3, 3)
    assert "ontology_distance_matrix" not in model.state_dict()  # not saved in checkpoints
    with caplog.at_level(logging.WARNING):
        model = SingleCellVariationalInference(genes, n_batch=2, ontology_distance_matrix=frame)
    assert model.ontology_distance_matrix is None and "ignored" in caplog.text
    for kwargs, match in [
        ({"cell_type_categories": ["CL:1", "CL:7"], "ontology_distance_matrix": frame}, r"\['CL:7'\] are absent"),
        ({"cell_type_categories": ["CL:1", "CL:1"]}, "duplicates"),
        ({"cell_type_categories": "CL:1"}, "list of at least two"),
        ({"val_cell_type_classifier_reservoir_size": 0}, "reservoir_size"),
    ]:
        with pytest.raises(ValueError, match=match):
            SingleCellVariationalInference(genes, n_batch=2, **kwargs)
    model = SingleCellVariationalInference(genes, n_batch=2, cell_type_categories=cats)
    x = torch.poisson(torch.full((8, 20), 2.0))
    batch = torch.zeros(8, dtype=torch.long)
    with pytest.raises(ValueError, match="outside"):
        model.validate(x, genes, batch, validation_cell_type_index_n=torch.full((8,), 3))


def _shard_config(tmp_path, shard_dir, trainer, onto_path):
    paths = sorted(str(p) for p in shard_dir.glob("*.h5ad"))
    config = {
        "data": {
            "paths": paths[:3],
            "val_paths": paths[3:],
            "batch_size": 128,
            "shuffle": True,
            "obs_columns": {"batch_index_n": "sample", "validation_cell_type_index_n": "clusters"},
        },
        "model": {
            "class_path": "cellflux_streaming_models.models.SingleCellVariationalInference",
            "init_args": {"n_latent": 5, "kl_warmup_epochs": 2, "ontology_distance_matrix": str(onto_path)},
        },
        "trainer": trainer,
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_cli_fit_with_validation_logs_the_metrics(shard_dir, full_adata, tmp_path, trainer_options):
    types = list(full_adata.obs["clusters"].cat.categories)
    # an ontology: progenitor -> lineage early -> lineage late
    depth = {t: (0 if t.startswith("progenitor") else 1 if t.endswith("early") else 2) for t in types}
    lineage = {t: t.rsplit("_", 1)[0] for t in types}
    onto = pd.DataFrame(
        [
            [0.0 if a == b else abs(depth[a] - depth[b]) + 2.0 * (lineage[a] != lineage[b]) for b in types]
            for a in types
        ],
        index=types,
        columns=types,
    )
    onto.to_csv(tmp_path / "onto.csv")
    config = _shard_config(tmp_path, shard_dir, trainer_options(max_epochs=3), tmp_path / "onto.csv")
    assert stream_main(["fit", "--config", str(config)]) == 0
    logs = list((tmp_path / "run" / "logs").glob("version_*/metrics.csv"))
    assert len(logs) == 1
    metrics = pd.read_csv(logs[0])
    keys = {
        "val_loss",
        "val_elbo",
        "val_reconstruction_loss",
        "val_batch_silhouette",
        "val_cell_type_top1_accuracy",
        "val_ontology_spearman",
        "val_cell_type_mean_error_distance",
    }
    assert keys <= set(metrics.columns)
    per_epoch = metrics.dropna(subset=["val_elbo"])
    assert len(per_epoch) == 3  # once per epoch, not in the sanity check
    last = per_epoch.iloc[-1]
    assert last["val_elbo"] == pytest.approx(-last["val_loss"], rel=1e-5)
    assert -1 <= last["val_ontology_spearman"] <= 1
    # 8 clusters: the classifier on the latent means beats chance
    assert last["val_cell_type_top1_accuracy"] > 2 / len(types)


def test_ontology_metrics_follow_the_planted_geometry():
    """An ontology equal to the distances between the planted centres: Spearman near 1; a shuffled one: lower."""
    k = 8
    z, y, mu = _planted(4000, k, 6, seed=3, spread=1.5, centres=True)
    true = np.linalg.norm(mu[:, None] - mu[None], axis=-1).round(1)
    rng = np.random.default_rng(0)
    perm = rng.permutation(k)
    scores = {}
    for name, onto in (("true", true), ("shuffled", true[np.ix_(perm, perm)])):
        validation = ScviValidation(6, 0, [f"CL:{i}" for i in range(k)], onto, reservoir_size=500, seed=0)
        for rows in torch.arange(len(z)).split(300):
            loss = torch.zeros(len(rows))
            validation.add(loss, loss, z[rows], None, y[rows], rows)
        scores[name] = validation.compute()
    assert scores["true"]["val_ontology_spearman"] > 0.95
    assert scores["shuffled"]["val_ontology_spearman"] < 0.5
    # mistakes happen between nearby types: their mean ontology distance is below the mean over type pairs
    off_diagonal = true[~np.eye(k, dtype=bool)].mean()
    assert scores["true"]["val_cell_type_mean_error_distance"] < 0.8 * off_diagonal
