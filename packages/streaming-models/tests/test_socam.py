"""SOCAM: ontology-consistent probabilities, accuracy against plain logistic regression, CLI, checkpoints, errors."""

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from cellflux_streaming_models._fit import stream_fit
from cellflux_streaming_models.lightning._cli import main as stream_main
from cellflux_streaming_models.models._logistic import LogisticRegression
from cellflux_streaming_models.models._socam import SOCAM, propagate_probabilities

pytestmark = [
    pytest.mark.filterwarnings("ignore:`isinstance\\(treespec, LeafSpec\\)`:FutureWarning"),
    pytest.mark.filterwarnings("ignore:The '\\w+_dataloader' does not have many workers"),
]


def ontology(leaves):
    """cell -> progenitor / lineage_k -> their early/late clusters: (names, transitively closed descendant matrix)."""
    groups = sorted({leaf.rsplit("_", 1)[0] for leaf in leaves})
    names = ["cell", *groups, *sorted(leaves)]
    index = {c: i for i, c in enumerate(names)}
    desc = np.eye(len(names), dtype=np.float32)
    for leaf in leaves:
        group = leaf.rsplit("_", 1)[0]
        desc[index["cell"], index[leaf]] = desc[index[group], index[leaf]] = 1
    for group in groups:
        desc[index["cell"], index[group]] = 1
    return names, desc


@pytest.fixture(scope="module")
def labelled():
    """Simulated cells (log-normalised, standardised), fine labels, and labels coarsened for 60% of cells."""
    import cellflux as cf

    adata = cf.datasets.simulate(n_cells=1600, n_genes=60, n_conditions=1, seed=3)
    x = np.asarray(adata.X.toarray() if hasattr(adata.X, "toarray") else adata.X, dtype=np.float64)
    y = np.log1p(x / x.sum(1, keepdims=True) * 1e4)
    y = (y - y.mean(0)) / (y.std(0) + 1e-8)
    fine = adata.obs["clusters"].astype(str).to_numpy()
    rng = np.random.default_rng(0)
    coarse = np.array([f.rsplit("_", 1)[0] for f in fine], dtype=object)
    observed = np.where(rng.random(len(fine)) < 0.6, coarse, fine)
    names, desc = ontology(sorted(set(fine)))
    return torch.tensor(y, dtype=torch.float32), np.asarray(adata.var_names, dtype=object), fine, observed, names, desc


def _batches(x, genes, labels, batch_size=100, seed=0):
    def epochs(epoch):
        order = np.random.default_rng([seed, epoch]).permutation(len(x))
        for s in range(0, len(x), batch_size):
            rows = order[s : s + batch_size]
            yield {"x_ng": x[rows], "var_names_g": genes, "cl_names_n": labels[rows], "y_n": labels[rows]}

    return epochs


def test_probabilities_are_ontology_consistent(labelled):
    x, genes, _fine, _observed, names, desc = labelled
    model = SOCAM(1000, genes, desc, names, W_init_scale=3.0, seed=1)
    probs = model.predict(x[:300], genes)["y_probs_nc"].numpy()
    parents, children = np.nonzero(desc - np.eye(len(names)))
    assert len(parents) == 20  # the root over 4 groups and 8 leaves, each group over its 2 leaves
    assert (probs[:, parents] >= probs[:, children] - 1e-6).all()
    np.testing.assert_allclose(probs[:, names.index("cell")], 1.0, rtol=1e-5)
    # a group is exactly the sum of its leaves plus its own mass
    raw = torch.softmax(model.predict(x[:300], genes)["y_logits_nc"], 1).numpy()
    g = names.index("lineage_1")
    expected = raw[:, g] + raw[:, names.index("lineage_1_early")] + raw[:, names.index("lineage_1_late")]
    np.testing.assert_allclose(probs[:, g], expected, rtol=1e-5)
    flat = SOCAM(1000, genes, desc, names, probability_propagation_flag=False, W_init_scale=3.0, seed=1)
    np.testing.assert_allclose(flat.predict(x[:5], genes)["y_probs_nc"].sum(1).numpy(), 1.0, rtol=1e-5)


def test_accuracy_at_least_plain_logistic_regression_with_mixed_granularity(labelled):
    """60% of the training cells carry only their lineage: SOCAM uses them, logistic regression cannot."""
    x, genes, fine, observed, names, desc = labelled
    train, test = slice(0, 1200), slice(1200, None)
    socam = SOCAM(1200, genes, desc, names)
    stream_fit(socam, _batches(x[train], genes, observed[train]), n_epochs=8)
    socam_pred = socam.active_cl_names[socam.best_leaf(socam.predict(x[test], genes)["y_logits_nc"]).numpy()]
    socam_acc = float((socam_pred == fine[test]).mean())
    # plain logistic regression on the cells with fine labels only (same optimiser, prior and epochs)
    keep = np.flatnonzero(observed[train] == fine[train])
    leaves = sorted(set(fine))
    codes = torch.tensor(pd.Categorical(fine[train][keep], categories=leaves).codes, dtype=torch.long)
    logreg = LogisticRegression(len(keep), genes, leaves)

    def lr_batches(epoch):
        order = np.random.default_rng([0, epoch]).permutation(len(keep))
        for s in range(0, len(keep), 100):
            rows = order[s : s + 100]
            yield {"x_ng": x[train][keep][rows], "var_names_g": genes, "y_n": codes[rows]}

    stream_fit(logreg, lr_batches, n_epochs=8)
    lr_acc = float((np.asarray(leaves)[logreg.predict(x[test], genes)["x_ng"].argmax(1).numpy()] == fine[test]).mean())
    print(f"fine-label accuracy: SOCAM {socam_acc:.3f}, logistic regression {lr_acc:.3f}")
    assert socam_acc >= lr_acc
    assert socam_acc > 0.6  # 8 clusters; early/late within a lineage overlap in time
    # coarse accuracy: the predicted leaf's lineage
    coarse = np.array([f.rsplit("_", 1)[0] for f in fine[test]])
    assert (np.array([p.rsplit("_", 1)[0] for p in socam_pred]) == coarse).mean() > 0.85


def test_subset_adds_ancestors_and_refuses_other_labels(labelled):
    x, genes, _fine, _observed, names, desc = labelled
    model = SOCAM(100, genes, desc, names, cl_name_subset=["lineage_1_early", "lineage_2_late"])
    assert list(model.active_cl_names) == ["cell", "lineage_1", "lineage_2", "lineage_1_early", "lineage_2_late"]
    bare = SOCAM(100, genes, desc, names, cl_name_subset=["lineage_1_early", "lineage_2_late"],
                 include_ancestors_of_cl_name_subset=False)  # fmt: skip
    assert list(bare.active_cl_names) == ["lineage_1_early", "lineage_2_late"]
    with pytest.raises(ValueError, match="not active categories"):
        model(x[:3], genes, cl_names_n=np.array(["lineage_1_early", "lineage_3_late", "cell"], dtype=object))
    loss = model(x[:2], genes, cl_names_n=np.array(["lineage_1_early", "cell"], dtype=object))["loss"]
    assert torch.isfinite(loss)


def test_bad_inputs_are_refused(labelled):
    x, genes, _fine, _observed, names, desc = labelled
    with pytest.raises(ValueError, match="square"):
        SOCAM(10, genes, desc[:, :3], names)
    with pytest.raises(ValueError, match="diagonal"):
        SOCAM(10, genes, desc - np.eye(len(names), dtype=np.float32), names)
    open_desc = desc.copy()
    open_desc[0, -1] = 0  # the root no longer reaches a leaf its group reaches
    with pytest.raises(ValueError, match="transitively closed"):
        SOCAM(10, genes, open_desc, names)
    cyclic = desc.copy()
    cyclic[1, 0] = 1
    cyclic[1] = np.maximum(cyclic[1], cyclic[0])
    cyclic[0] = np.maximum(cyclic[0], cyclic[1])
    with pytest.raises(ValueError, match="cycle"):
        SOCAM(10, genes, cyclic, names)
    with pytest.raises(ValueError, match="cl_names has"):
        SOCAM(10, genes, desc, names[:-1])
    with pytest.raises(ValueError, match="not in cl_names"):
        SOCAM(10, genes, desc, names, cl_name_subset=["neuron"])
    with pytest.raises(ValueError, match="n_obs"):
        SOCAM(0, genes, desc, names)
    model = SOCAM(10, genes, desc, names)
    with pytest.raises(ValueError, match="y_categories"):
        model(x[:2], genes, y_n=torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="needs labels"):
        model(x[:2], genes)
    with pytest.raises(ValueError, match="differ"):
        model.predict(x[:2, :-1], genes[:-1])
    coded = SOCAM(10, genes, desc, names, y_categories=["lineage_1", "neuron"])
    with pytest.raises(ValueError, match="neuron"):
        coded(x[:2], genes, y_n=torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="outside"):
        coded(x[:2], genes, y_n=torch.tensor([0, -1]))
    assert torch.isfinite(coded(x[:2], genes, y_n=torch.tensor([0, 0]))["loss"])


def test_propagation_is_sum_over_subtree():
    desc = torch.tensor([[1, 1, 1], [0, 1, 0], [0, 0, 1]], dtype=torch.float32)
    probs = torch.tensor([[0.2, 0.5, 0.3], [0.0, 0.1, 0.9]])
    np.testing.assert_allclose(
        propagate_probabilities(probs, desc).numpy(), [[1.0, 0.5, 0.3], [1.0, 0.1, 0.9]], rtol=1e-6
    )


def test_cli_fit_predict_and_checkpoint_reload(shard_dir, shard_paths, full_adata, tmp_path, trainer_options):
    leaves = sorted(full_adata.obs["clusters"].astype(str).unique())
    names, desc = ontology(leaves)
    np.save(tmp_path / "desc.npy", desc)
    config = {
        "data": {
            "paths": str(shard_dir / "*.h5ad"),
            "batch_size": 256,
            "shuffle": True,
            "obs_columns": {"y_n": "clusters"},
        },
        "model": {
            "class_path": "cellflux_streaming_models.models._socam.SOCAM",
            "init_args": {"descendant_tensor": str(tmp_path / "desc.npy"), "cl_names": names},
        },
        "transforms": [
            {"class_path": "cellflux_streaming_models.transforms.NormalizeTotal"},
            {"class_path": "cellflux_streaming_models.transforms.Log1p"},
        ],
        "trainer": trainer_options(max_epochs=4),
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    assert stream_main(["fit", "--config", str(path)]) == 0
    out = tmp_path / "pred"
    checkpoint = tmp_path / "run" / "model.ckpt"
    assert (
        stream_main(["predict", "--config", str(path), "--ckpt_path", str(checkpoint), "--output_dir", str(out)]) == 0
    )
    probs = pd.concat([pd.read_csv(f, index_col=0) for f in sorted(out.glob("*.csv"))])
    assert list(probs.columns) == names
    np.testing.assert_allclose(probs["cell"], 1.0, rtol=1e-5)
    labels = full_adata.obs["clusters"].astype(str).loc[probs.index].to_numpy()
    best = probs[leaves].idxmax(axis=1).to_numpy()
    assert (best == labels).mean() > 0.6
    # the saved weights reload into a fresh model and give the same probabilities
    state = torch.load(tmp_path / "run" / "model_state.pt", weights_only=True)
    genes = np.asarray(full_adata.var_names, dtype=object)
    fresh = SOCAM(full_adata.n_obs, genes, desc, names, y_categories=leaves, seed=5)
    fresh.load_state_dict(state)
    x = torch.tensor(full_adata[probs.index[:50]].X.toarray(), dtype=torch.float32)
    y = torch.log1p(x / x.sum(1, keepdim=True) * 1e4)
    np.testing.assert_allclose(
        fresh.predict(y, genes)["y_probs_nc"].numpy(), probs.iloc[:50].to_numpy(), rtol=1e-4, atol=1e-5
    )
