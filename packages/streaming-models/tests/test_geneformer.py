"""Geneformer: rank-value tokens, masked-gene pre-training, in-silico perturbations, CLI, checkpoints, errors."""

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

pytest.importorskip("transformers")

from cellflux_streaming_models._fit import stream_fit
from cellflux_streaming_models.lightning._cli import main as stream_main
from cellflux_streaming_models.models._geneformer import Geneformer
from cellflux_streaming_models.models._tokenizers import cell_uniforms, rank_value_tokens

pytestmark = [
    pytest.mark.filterwarnings("ignore:`isinstance\\(treespec, LeafSpec\\)`:FutureWarning"),
    pytest.mark.filterwarnings("ignore:The '\\w+_dataloader' does not have many workers"),
]


SMALL = {
    "hidden_size": 32,
    "num_hidden_layers": 1,
    "num_attention_heads": 2,
    "intermediate_size": 64,
    "hidden_dropout_prob": 0.0,
    "attention_probs_dropout_prob": 0.0,
    "max_position_embeddings": 64,
}


@pytest.fixture(scope="module")
def cells():
    import cellflux as cf

    adata = cf.datasets.simulate(n_cells=480, n_genes=40, n_conditions=1, cell_cycle=False, seed=1)
    x = torch.tensor(np.asarray(adata.X.toarray() if hasattr(adata.X, "toarray") else adata.X), dtype=torch.float32)
    return x, np.asarray(adata.var_names, dtype=object), adata.obs["clusters"].astype(str).to_numpy()


def _epochs(x, genes, batch_size=96):
    def batches(epoch):
        order = torch.from_numpy(np.random.default_rng([7, epoch]).permutation(len(x)))
        for s in range(0, len(x), batch_size):
            rows = order[s : s + batch_size]
            yield {"x_ng": x[rows], "var_names_g": genes, "cell_index_n": rows}

    return batches


def _eval_loss(model, x, genes):
    model.current_epoch = 0
    with torch.no_grad():
        return float(model(x, genes, torch.arange(len(x)))["loss"])


@pytest.fixture(scope="module")
def trained(cells):
    x, genes, _ = cells
    model = Geneformer(genes, **SMALL, lr=3e-3)
    before = _eval_loss(model, x, genes)
    stream_fit(model, _epochs(x, genes), n_epochs=6)
    after = _eval_loss(model, x, genes)
    model.eval()
    return model, before, after


def test_rank_value_tokens():
    x = torch.tensor([[0.0, 5.0, 1.0, 5.0], [2.0, 0.0, 0.0, 0.0]])
    ids, mask = rank_value_tokens(x, max_length=10)
    # most expressed first, ties in gene order, zeros padded; cut to the longest cell (3 genes)
    assert ids.tolist() == [[3, 5, 4], [2, 0, 0]]
    assert mask.tolist() == [[True, True, True], [True, False, False]]
    ids, _ = rank_value_tokens(x, max_length=2)
    assert ids.tolist() == [[3, 5], [2, 0]]
    # the gene-median scaling changes the ranks
    model = Geneformer(["a", "b", "c", "d"], **SMALL, gene_median_g=[1.0, 10.0, 1.0, 1.0])
    ids, _ = model.tokenize(x)
    assert ids.tolist() == [[5, 4, 3], [2, 0, 0]]


def test_cell_keyed_draws_do_not_depend_on_the_batch():
    a = cell_uniforms(torch.tensor([3, 10, 11]), 5, seed=0, stream=1)
    b = cell_uniforms(torch.tensor([11, 3]), 5, seed=0, stream=1)
    np.testing.assert_array_equal(a[[2, 0]].numpy(), b.numpy())
    assert not torch.equal(a, cell_uniforms(torch.tensor([3, 10, 11]), 5, seed=0, stream=2))
    u = cell_uniforms(torch.arange(2000), 50, seed=3, stream=0)
    assert float(u.min()) >= 0 and float(u.max()) < 1 and abs(float(u.mean()) - 0.5) < 0.01


def test_masking_follows_mlm_probability(cells):
    x, genes, _ = cells
    model = Geneformer(genes, **SMALL, mlm_probability=0.3)
    ids, mask = model.tokenize(x)
    masked, labels = model._mask(ids, mask, torch.arange(len(x)))
    chosen = labels != -100
    assert not (chosen & ~mask).any()  # padding is never chosen
    assert abs(chosen.sum() / mask.sum() - 0.3) < 0.02
    assert abs((masked[chosen] == 1).float().mean() - 0.8) < 0.04  # 80% mask tokens
    assert torch.equal(labels[chosen], ids[chosen])
    again, _ = model._mask(ids, mask, torch.arange(len(x)))
    assert torch.equal(masked, again)
    # a cell's masks do not depend on its batch (nor on the batch's padded length)
    alone, _ = model._mask(*model.tokenize(x[5:6]), torch.tensor([5]))
    assert torch.equal(alone[0], masked[5, : alone.shape[1]])
    model.current_epoch = 1  # a new epoch draws new masks
    assert not torch.equal(model._mask(ids, mask, torch.arange(len(x)))[0], masked)


def test_masked_gene_loss_decreases(trained):
    _model, before, after = trained
    print(f"Geneformer masked-gene loss (fixed masks): {before:.3f} -> {after:.3f} (uniform: {np.log(42):.3f})")
    assert after < before - 0.3


def test_predict_outputs(trained, cells):
    model, _, _ = trained
    x, genes, _ = cells
    out = model.predict(x[:20], genes)
    ids, mask = out["input_ids"], out["attention_mask"]
    length = ids.shape[1]
    assert out["logits"].shape == (20, length, 42)
    assert len(out["hidden_states"]) == 2 and out["hidden_states"][0].shape == (20, length, 32)
    attention = out["attentions"][0]
    assert attention.shape == (20, 2, length, length)
    np.testing.assert_allclose(attention.sum(-1).numpy(), 1.0, rtol=1e-5)
    # padded keys get no attention
    assert float(attention.masked_select(~mask[:, None, None, :].expand_as(attention)).abs().max()) < 1e-6
    assert out["x_ng"].shape == (20, 32) and len(out["var_names_g"]) == 32
    lean = model.predict(x[:20], genes, output_hidden_states=False, output_attentions=False)
    assert "hidden_states" not in lean and "attentions" not in lean
    np.testing.assert_allclose(lean["x_ng"].numpy(), out["x_ng"].numpy(), rtol=1e-5, atol=1e-6)


def test_perturbation_tokens(trained, cells):
    model, _, _ = trained
    x, genes, _ = cells
    x0 = x[:30].clone()
    base = model.predict(x0, genes)["input_ids"]
    gene = genes[int(base[0, 0]) - 2]  # the first cell's top gene
    deleted = model.predict(x0, genes, feature_deletion=[gene])["input_ids"]
    assert torch.equal(x0, x[:30])  # the input is not modified
    assert not (deleted == base[0, 0]).any()
    np.testing.assert_array_equal(deleted[0, : base.shape[1] - 1].numpy(), base[0, 1:].numpy())  # the rest moves up
    activated = model.predict(x0, genes, feature_activation=[genes[5], genes[3]])["input_ids"]
    assert (activated[:, 0] == 7).all() and (activated[:, 1] == 5).all()
    mapped = model.predict(x0, genes, feature_map={gene: 1})["input_ids"]
    assert torch.equal(mapped == 1, base == base[0, 0]) and torch.equal(
        mapped[base != base[0, 0]], base[base != base[0, 0]]
    )


def test_activating_lineage_genes_moves_cells_toward_that_lineage(trained, cells):
    """In silico activation of a lineage's top genes in progenitor cells moves their embeddings toward the lineage."""
    model, _, _ = trained
    x, genes, clusters = cells
    frame = pd.DataFrame(x.numpy(), columns=genes).groupby(clusters).mean()
    target = "lineage_1_late"
    markers = list((frame.loc[target] / (frame.drop(index=target).mean() + 1)).nlargest(3).index)
    progenitors = torch.from_numpy(np.flatnonzero(clusters == "progenitor_early"))
    lineage = torch.from_numpy(np.flatnonzero(clusters == target))
    centroid = model.predict(x[lineage], genes, output_attentions=False)["x_ng"].mean(0)

    def distance(out):
        return float((out["x_ng"] - centroid).norm(dim=1).mean())

    before = distance(model.predict(x[progenitors], genes, output_attentions=False))
    after = distance(model.predict(x[progenitors], genes, output_attentions=False, feature_activation=markers))
    # deleting the markers from the lineage's own cells moves them away from their centroid
    own = distance(model.predict(x[lineage], genes, output_attentions=False))
    deleted = distance(model.predict(x[lineage], genes, output_attentions=False, feature_deletion=markers))
    print(
        f"distance to {target}: progenitors {before:.3f} -> activated {after:.3f}; "
        f"own {own:.3f} -> deleted {deleted:.3f}"
    )
    assert after < 0.9 * before
    assert deleted > 1.1 * own


def test_checkpoint_reload(trained, cells, tmp_path):
    model, _, _ = trained
    x, genes, _ = cells
    torch.save(model.state_dict(), tmp_path / "geneformer.pt")
    fresh = Geneformer(genes, **SMALL, seed=9).eval()
    assert not torch.allclose(fresh.predict(x[:8], genes)["logits"], model.predict(x[:8], genes)["logits"])
    fresh.load_state_dict(torch.load(tmp_path / "geneformer.pt", weights_only=True))
    torch.testing.assert_close(fresh.predict(x[:8], genes)["logits"], model.predict(x[:8], genes)["logits"])


def test_bad_inputs(cells):
    x, genes, _ = cells
    with pytest.raises(ValueError, match="divisible"):
        Geneformer(genes, hidden_size=30, num_attention_heads=4)
    with pytest.raises(ValueError, match="mlm_probability"):
        Geneformer(genes, **SMALL, mlm_probability=1.0)
    with pytest.raises(ValueError, match="gene_median_g"):
        Geneformer(genes, **SMALL, gene_median_g=np.zeros(len(genes)))
    model = Geneformer(genes, **SMALL)
    with pytest.raises(ValueError, match="differ"):
        model(x[:4], genes[::-1].copy())
    with pytest.raises(ValueError, match="non-negative"):
        model(-x[:4], genes)
    with pytest.raises(ValueError, match="not in var_names_g"):
        model.predict(x[:4], genes, feature_deletion=["no_such_gene"])
    with pytest.raises(ValueError, match="twice"):
        model.predict(x[:4], genes, feature_activation=[genes[0], genes[0]])
    with pytest.raises(ValueError, match="outside"):
        model.predict(x[:4], genes, feature_map={genes[0]: 1000})


def test_cli_fit_and_predict_embeddings(shard_dir, shard_paths, tmp_path, trainer_options):
    config = {
        "data": {"paths": str(shard_dir / "*.h5ad"), "batch_size": 256},
        "model": {"class_path": "cellflux_streaming_models.models._geneformer.Geneformer", "init_args": SMALL},
        "trainer": trainer_options(max_epochs=1),
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    assert stream_main(["fit", "--config", str(path)]) == 0
    checkpoint = tmp_path / "run" / "model.ckpt"
    out = tmp_path / "pred"
    assert (
        stream_main(["predict", "--config", str(path), "--ckpt_path", str(checkpoint), "--output_dir", str(out)]) == 0
    )
    first = pd.read_csv(sorted(out.glob("*.csv"))[0], index_col=0)
    assert first.shape == (300, 32)
    import anndata as ad

    shard = ad.read_h5ad(shard_paths[0])
    fresh = Geneformer(np.asarray(shard.var_names, dtype=object), **SMALL, seed=4).eval()
    fresh.load_state_dict(torch.load(tmp_path / "run" / "model_state.pt", weights_only=True))
    x = torch.tensor(shard.X.toarray(), dtype=torch.float32)
    embedding = fresh.predict(x[:40], fresh.var_names_g, output_attentions=False)["x_ng"].numpy()
    np.testing.assert_allclose(embedding, first.iloc[:40].to_numpy(), rtol=1e-4, atol=1e-5)
