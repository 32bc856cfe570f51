"""CellariumGPT: tokens and masks, attention structure, muP, training, perturbations, CLI, checkpoints, DDP."""

import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from cellflux_streaming_models._fit import stream_fit
from cellflux_streaming_models.lightning._cli import main as stream_main
from cellflux_streaming_models.models._cellarium_gpt import CellariumGPT
from cellflux_streaming_models.models._gpt_layers import prompt_diagonal_mask
from cellflux_streaming_models.models._tokenizers import CellariumGPTTokenizer

pytestmark = [
    pytest.mark.filterwarnings("ignore:`isinstance\\(treespec, LeafSpec\\)`:FutureWarning"),
    pytest.mark.filterwarnings("ignore:The '\\w+_dataloader' does not have many workers"),
]

VOCAB = 64


def _model(n_genes, n_types=8, **kwargs):
    options = {
        "d_model": 32,
        "d_ffn": 64,
        "n_heads": 2,
        "n_blocks": 1,
        "dropout_p": 0.0,
        "use_bias": True,
        "attention_backend": "torch",
        "attention_softmax_fp32": True,
        "loss_scale_dict": {"gene_value": 1.0, "cell_type": 1.0},
        "lr": 1e-2,
    }
    options.update(kwargs)
    sizes = {"gene_value": VOCAB, "gene_id": n_genes, "cell_type": n_types}
    return CellariumGPT(sizes, **options)


@pytest.fixture(scope="module")
def cells():
    import cellflux as cf

    adata = cf.datasets.simulate(n_cells=480, n_genes=40, n_conditions=1, cell_cycle=False, seed=1)
    x = torch.tensor(np.asarray(adata.X.toarray() if hasattr(adata.X, "toarray") else adata.X), dtype=torch.float32)
    clusters = adata.obs["clusters"].astype("category")
    return x, np.asarray(adata.var_names, dtype=object), clusters


def _epochs(x, genes, codes, batch_size=96):
    def batches(epoch):
        order = torch.from_numpy(np.random.default_rng([7, epoch]).permutation(len(x)))
        for s in range(0, len(x), batch_size):
            rows = order[s : s + batch_size]
            yield {"x_ng": x[rows], "var_names_g": genes, "cell_index_n": rows, "cell_type": codes[rows]}

    return batches


def _eval_loss(model, tokenizer, x, genes, codes):
    with torch.no_grad():
        return model(**tokenizer(x, genes, torch.arange(len(x)), cell_type=codes))


@pytest.fixture(scope="module")
def trained(cells):
    x, genes, clusters = cells
    codes = torch.tensor(clusters.cat.codes.to_numpy(), dtype=torch.long)
    tokenizer = CellariumGPTTokenizer(41, VOCAB, {"cell_type": 8}, var_names_g=genes)
    model = _model(len(genes))
    before = _eval_loss(model, tokenizer, x, genes, codes)
    stream_fit(model, _epochs(x, genes, codes), transforms=[tokenizer], n_epochs=30)
    after = _eval_loss(model, tokenizer, x, genes, codes)
    return model.eval(), before, after


def test_tokenizer_masks_labels_and_draws(cells):
    x, genes, clusters = cells
    codes = torch.tensor(clusters.cat.codes.to_numpy(), dtype=torch.long)
    tokenizer = CellariumGPTTokenizer(21, VOCAB, {"cell_type": 8}, var_names_g=genes, seed=2)
    codes = codes.clone()
    codes[1] = -1  # an unmeasured label
    out = tokenizer(x[:50], genes, torch.arange(50), cell_type=codes[:50])
    values, masks = out["token_value_nc_dict"], out["token_mask_nc_dict"]
    prompt = out["prompt_mask_nc"]
    assert prompt.shape == (50, 21)
    ids = values["gene_id"][:, :20]
    assert all(len(set(row.tolist())) == 20 for row in ids)  # 20 distinct genes per cell
    query = values["gene_query_mask"][:, :20].bool()
    assert torch.equal(query, ~prompt[:, :20])
    # prompt values are shown as log1p counts, query values hidden; labels are the clipped counts
    counts = torch.gather(x[:50], 1, ids)
    torch.testing.assert_close(values["gene_value"][:, :20], torch.log1p(counts) * ~query)
    assert torch.equal(out["label_nc_dict"]["gene_value"][:, :20], counts.clamp(max=VOCAB - 1).long())
    assert torch.equal(out["label_weight_nc_dict"]["gene_value"][:, :20].bool(), query)
    # the metadata token: a mask code (8) when queried, never a prompt or a query when unmeasured
    meta = values["cell_type"][:, 20]
    queried = out["label_weight_nc_dict"]["cell_type"][:, 20].bool()
    assert torch.equal(meta[queried], torch.full_like(meta[queried], 8))
    assert not prompt[1, 20] and not queried[1]
    assert (
        masks["cell_type"][:, 20].all() and not masks["cell_type"][:, :20].any() and not masks["gene_id"][:, 20].any()
    )
    # draws are keyed by cell: a cell's tokens do not depend on its batch
    again = tokenizer(x[[3, 0]], genes, torch.tensor([3, 0]), cell_type=codes[[3, 0]])
    assert torch.equal(again["token_value_nc_dict"]["gene_id"][1], values["gene_id"][0])
    assert torch.equal(again["prompt_mask_nc"][0], prompt[3])


def test_queries_see_the_prompt_only(cells):
    """Tokens attend to the prompt and themselves: changing a query's token leaves other queries' logits unchanged."""
    x, genes, clusters = cells
    model = _model(len(genes)).eval()
    tokenizer = CellariumGPTTokenizer(41, VOCAB, {"cell_type": 8}, prefix_len=10, metadata_prompt=["cell_type"])
    codes = torch.tensor(clusters.cat.codes.to_numpy()[:4], dtype=torch.long)
    tokens = tokenizer(x[:4], genes, torch.arange(4), cell_type=codes)
    base = model.predict(tokens["token_value_nc_dict"], tokens["token_mask_nc_dict"], tokens["prompt_mask_nc"])[
        "gene_value"
    ]
    changed = {k: v.clone() for k, v in tokens["token_value_nc_dict"].items()}
    changed["gene_id"][:, 20], changed["gene_id"][:, 21] = (
        changed["gene_id"][:, 21].clone(),
        changed["gene_id"][:, 20].clone(),
    )
    logits = model.predict(changed, tokens["token_mask_nc_dict"], tokens["prompt_mask_nc"])["gene_value"]
    others = [c for c in range(10, 40) if c not in (20, 21)]
    torch.testing.assert_close(logits[:, others], base[:, others], rtol=1e-5, atol=1e-6)
    assert not torch.allclose(logits[:, 20], base[:, 20])
    # a prompt token's change reaches every query
    changed = {k: v.clone() for k, v in tokens["token_value_nc_dict"].items()}
    changed["gene_value"][:, 0] += 2.0
    logits = model.predict(changed, tokens["token_mask_nc_dict"], tokens["prompt_mask_nc"])["gene_value"]
    assert (logits[:, 10:40] - base[:, 10:40]).abs().amax(dim=(1, 2)).min() > 1e-5
    mask = prompt_diagonal_mask(torch.tensor([[True, False, True, False]]))[0]
    assert mask.tolist() == [
        [True, False, True, False],
        [True, True, True, False],
        [True, False, True, False],
        [True, False, True, True],
    ]


def test_attention_backends_agree(cells):
    x, genes, clusters = cells
    codes = torch.tensor(clusters.cat.codes.to_numpy()[:6], dtype=torch.long)
    tokens = CellariumGPTTokenizer(41, VOCAB, {"cell_type": 8})(x[:6], genes, torch.arange(6), cell_type=codes)
    model = _model(len(genes)).eval()
    args = (tokens["token_value_nc_dict"], tokens["token_mask_nc_dict"], tokens["prompt_mask_nc"])
    reference = model.predict(*args)
    for backend in ("math", "mem_efficient"):
        model.attention_backend = backend
        for key, logits in model.predict(*args).items():
            torch.testing.assert_close(logits, reference[key], rtol=1e-4, atol=1e-5)


def test_mup_scaling():
    base = _model(40, d_model=32, d_ffn=64, mup_base_d_model=32, mup_base_d_ffn=64)
    wide = _model(40, d_model=128, d_ffn=256, mup_base_d_model=32, mup_base_d_ffn=64)
    assert wide.width_mult == 4 and wide.head.output_logits_scale == pytest.approx(0.25)
    stds = {m: m.transformer.blocks[0].attention.Wq.weight.std().item() for m in (base, wide)}
    assert stds[wide] / stds[base] == pytest.approx(0.5, rel=0.1)  # width_mult ** -0.5
    dense2 = {m: m.transformer.blocks[0].dense2.weight.std().item() for m in (base, wide)}
    assert dense2[wide] / dense2[base] == pytest.approx(0.5, rel=0.1)
    rates = {}
    for group in wide.default_optimizer(100).param_groups:
        for p in group["params"]:
            rates[id(p)] = group["lr"]
    block = wide.transformer.blocks[0]
    assert rates[id(block.attention.Wq.weight)] == pytest.approx(1e-2 / 4)
    assert rates[id(block.dense2.weight)] == pytest.approx(1e-2 / 4)
    assert rates[id(wide.token_embedding.embedding["gene_id"].weight)] == pytest.approx(1e-2)
    assert rates[id(block.attention.Wq.bias)] == pytest.approx(1e-2)


def test_loss_decreases(trained):
    _, before, after = trained
    print(
        f"CellariumGPT query loss: gene_value {float(before['loss_gene_value']):.3f} -> "
        f"{float(after['loss_gene_value']):.3f}, cell_type {float(before['loss_cell_type']):.3f} -> "
        f"{float(after['loss_cell_type']):.3f}"
    )
    assert float(after["loss_gene_value"]) < float(before["loss_gene_value"]) - 1.0
    assert float(after["loss_cell_type"]) < float(before["loss_cell_type"]) - 0.2


def test_cell_type_predicted_from_genes(trained, cells):
    model, _, _ = trained
    x, genes, clusters = cells
    codes = torch.tensor(clusters.cat.codes.to_numpy(), dtype=torch.long)
    tokenizer = CellariumGPTTokenizer(41, VOCAB, {"cell_type": 8}, prefix_len=40, metadata_prompt=[])
    t = tokenizer(x, genes, torch.arange(len(x)), cell_type=codes)
    with torch.no_grad():
        logits = model.predict(t["token_value_nc_dict"], t["token_mask_nc_dict"], t["prompt_mask_nc"])["cell_type"]
    accuracy = float((logits[:, 40].argmax(1) == codes).float().mean())
    majority = float(np.bincount(codes.numpy()).max() / len(codes))
    print(f"CellariumGPT cell type from all 40 genes: accuracy {accuracy:.3f} (majority class {majority:.3f})")
    assert accuracy > majority + 0.15


def _markers(x, genes, clusters, target):
    frame = pd.DataFrame(x.numpy(), columns=range(len(genes))).groupby(clusters.to_numpy(), observed=True).mean()
    return list((frame.loc[target] / (frame.drop(index=target).mean() + 1)).nlargest(6).index)


def test_perturbations_move_predictions_in_the_expected_direction(trained, cells):
    """Prompting a lineage's cell type, or raising its marker genes, raises predicted counts of its other markers."""
    model, _, _ = trained
    x, genes, clusters = cells
    target = "lineage_1_late"
    markers = _markers(x, genes, clusters, target)
    prompt_genes, query_genes = markers[:3], markers[3:]
    others = [g for g in range(len(genes)) if g not in markers]
    progenitors = np.flatnonzero(clusters.to_numpy() == "progenitor_early")[:40]
    cells_x = x[progenitors]
    n = len(progenitors)
    order = torch.tensor(others[:10] + prompt_genes + query_genes).expand(n, -1)
    categories = list(clusters.cat.categories)

    def predicted(x_ng, cell_type):
        tokenizer = CellariumGPTTokenizer(17, VOCAB, {"cell_type": 8}, prefix_len=13, metadata_prompt=["cell_type"])
        codes = torch.full((n,), categories.index(cell_type))
        t = tokenizer(x_ng, genes, gene_order_nj=order, cell_type=codes)
        logits = model.predict(t["token_value_nc_dict"], t["token_mask_nc_dict"], t["prompt_mask_nc"])["gene_value"]
        return model.expected_value(logits[:, 13:16]).mean(0)

    with torch.no_grad():
        base = predicted(cells_x, "progenitor_early")
        as_type = predicted(cells_x, target)
        activated = cells_x.clone()
        activated[:, prompt_genes] = x[np.flatnonzero(clusters.to_numpy() == target)][:, prompt_genes].mean(0)
        by_genes = predicted(activated, "progenitor_early")
    truth = x[np.flatnonzero(clusters.to_numpy() == target)][:, query_genes].mean(0)
    print(f"predicted marker counts: base {base.numpy().round(2)}, cell type {as_type.numpy().round(2)}, "
          f"genes {by_genes.numpy().round(2)}, in {target} {truth.numpy().round(2)}")  # fmt: skip
    assert (as_type > base).all() and (by_genes > base).all()
    # a one-block model after 150 CPU steps under-predicts the counts; the direction is what it learnt
    assert float(as_type.sum()) > 1.25 * float(base.sum()) and float(by_genes.sum()) > 1.25 * float(base.sum())


def test_checkpoint_reload(trained, cells, tmp_path):
    model, _, _ = trained
    x, genes, clusters = cells
    codes = torch.tensor(clusters.cat.codes.to_numpy()[:8], dtype=torch.long)
    tokens = CellariumGPTTokenizer(41, VOCAB, {"cell_type": 8})(x[:8], genes, torch.arange(8), cell_type=codes)
    args = (tokens["token_value_nc_dict"], tokens["token_mask_nc_dict"], tokens["prompt_mask_nc"])
    torch.save(model.state_dict(), tmp_path / "gpt.pt")
    fresh = _model(len(genes), seed=3).eval()
    fresh.load_state_dict(torch.load(tmp_path / "gpt.pt", weights_only=True))
    for key, logits in model.predict(*args).items():
        torch.testing.assert_close(fresh.predict(*args)[key], logits)


def test_bad_inputs(cells):
    x, genes, _clusters = cells
    with pytest.raises(ValueError, match="gene_value"):
        CellariumGPT({"gene_id": 4}, 8, 8, 2, 1, 0.0, True, "torch", True, {"gene_id": 1.0})
    with pytest.raises(ValueError, match="loss_scale_dict"):
        _model(40, loss_scale_dict={"tissue": 1.0})
    with pytest.raises(ValueError, match="divisible"):
        _model(40, n_heads=3)
    with pytest.raises(ValueError, match="attention_backend"):
        _model(40, attention_backend="flash")
    with pytest.raises(ValueError, match="gene_id"):
        CellariumGPT({"gene_value": 8, "gene_id": 5}, 8, 8, 2, 1, 0.0, True, "torch", True, {"gene_value": 1.0},
                     var_names_g=["a", "b"])  # fmt: skip
    with pytest.raises(ValueError, match="context_len"):
        CellariumGPTTokenizer(1, VOCAB, {"cell_type": 8})
    tokenizer = CellariumGPTTokenizer(41, VOCAB, {"cell_type": 8}, var_names_g=genes)
    with pytest.raises(KeyError, match="cell_type"):
        tokenizer(x[:2], genes, torch.arange(2))
    with pytest.raises(ValueError, match="vocabulary"):
        tokenizer(x[:2], genes, torch.arange(2), cell_type=torch.tensor([0, 8]))
    with pytest.raises(ValueError, match="differ"):
        tokenizer(x[:2, :5], genes[:5], torch.arange(2), cell_type=torch.tensor([0, 1]))
    small = _model(10)
    tokens = CellariumGPTTokenizer(41, VOCAB, {"cell_type": 8})(x[:2], genes, cell_type=torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="gene_id"):
        small(**tokens)  # 40 genes into a 10-gene vocabulary
    model = _model(40)
    with pytest.raises(ValueError, match="keys of loss_scale_dict"):
        model(**{**tokens, "label_nc_dict": {"gene_value": tokens["label_nc_dict"]["gene_value"]}})


def test_cli_fit(shard_dir, tmp_path, trainer_options):
    """Tokenizer as the transform, the cluster column as the metadata token, two epochs from a YAML file."""
    config = {
        "data": {"paths": str(shard_dir / "*.h5ad"), "batch_size": 256, "obs_columns": {"cell_type": "clusters"}},
        "model": {
            "class_path": "cellflux_streaming_models.models._cellarium_gpt.CellariumGPT",
            "init_args": {
                "categorical_token_size_dict": {"gene_value": 32, "cell_type": 8},
                "d_model": 16,
                "d_ffn": 32,
                "n_heads": 2,
                "n_blocks": 1,
                "dropout_p": 0.0,
                "use_bias": True,
                "attention_backend": "math",
                "attention_softmax_fp32": True,
                "loss_scale_dict": {"gene_value": 1.0, "cell_type": 0.5},
                "mup_base_d_model": 8,
            },
        },
        "transforms": [
            {
                "class_path": "cellflux_streaming_models.models._tokenizers.CellariumGPTTokenizer",
                "init_args": {"context_len": 33, "gene_value_vocab": 32, "metadata_vocab_sizes": {"cell_type": 8}},
            }
        ],
        "trainer": trainer_options(max_epochs=2),
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    assert stream_main(["fit", "--config", str(path)]) == 0
    state = torch.load(tmp_path / "run" / "model_state.pt", weights_only=True)
    assert state["token_embedding.embedding.gene_id.weight"].shape == (80, 16)  # gene_id from the data's 80 genes
    assert state["token_embedding.embedding.cell_type.weight"].shape == (9, 16)  # plus the mask code
    checkpoint = torch.load(tmp_path / "run" / "model.ckpt", weights_only=False)
    assert checkpoint["epoch"] == 2 and any(k.startswith("model.transformer") for k in checkpoint["state_dict"])


DDP_SCRIPT = textwrap.dedent(
    """
    import sys
    import numpy as np
    import torch
    import lightning.pytorch as pl
    from cellflux_streaming_models.lightning import StreamDataModule, StreamingModule
    from cellflux_streaming_models.models._cellarium_gpt import CellariumGPT
    from cellflux_streaming_models.models._geneformer import Geneformer
    from cellflux_streaming_models.models._socam import SOCAM
    from cellflux_streaming_models.models._tokenizers import CellariumGPTTokenizer
    from cellflux_streaming_models.transforms import Log1p, NormalizeTotal

    torch.set_num_threads(1)
    shards, out, config = sys.argv[1], sys.argv[2], sys.argv[3]
    exec(open(config).read())  # builders shared with the one-process reference
    results = {}
    for name in ("socam", "geneformer", "gpt"):
        columns = {"y_n": "clusters", "cell_type": "clusters"}
        data = StreamDataModule(shards, batch_size=64, shuffle=True, obs_columns=columns)
        model, transforms = build(name, data.var_names_g, data.collection)
        trainer = pl.Trainer(max_epochs=2, accelerator="cpu", devices=2, strategy="ddp", logger=False,
                             enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
        trainer.fit(StreamingModule(model, transforms), datamodule=data)
        for key, value in model.state_dict().items():
            if isinstance(value, torch.Tensor) and value.is_floating_point():
                results[f"{name}/{key}"] = value.detach().numpy()
    np.savez(out + f".rank{trainer.global_rank}.npz", **results)
    """
)

BUILDERS = textwrap.dedent(
    """
    def build(name, genes, collection):
        import numpy as np
        from cellflux_streaming_models.models._cellarium_gpt import CellariumGPT
        from cellflux_streaming_models.models._geneformer import Geneformer
        from cellflux_streaming_models.models._socam import SOCAM
        from cellflux_streaming_models.models._tokenizers import CellariumGPTTokenizer
        from cellflux_streaming_models.transforms import Log1p, NormalizeTotal

        categories = list(collection.categories["clusters"])
        if name == "socam":
            names = ["cell", *categories]
            desc = np.eye(len(names), dtype=np.float32)
            desc[0] = 1
            model = SOCAM(collection.n_obs, genes, desc, names, y_categories=categories)
            return model, [NormalizeTotal(), Log1p()]
        if name == "geneformer":
            model = Geneformer(genes, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
                               hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, max_position_embeddings=32)
            return model, []
        model = CellariumGPT({"gene_value": 16, "cell_type": len(categories)}, 16, 32, 2, 1, 0.0, True, "torch", True,
                             {"gene_value": 1.0, "cell_type": 1.0}, var_names_g=genes)
        return model, [CellariumGPTTokenizer(21, 16, {"cell_type": len(categories)})]
    """
)


@pytest.mark.slow
def test_two_process_ddp_equals_one_process(shard_dir, shard_paths, tmp_path):
    """Geneformer, CellariumGPT and SOCAM on 2 DDP processes train to the one-process result on the same batches."""
    pytest.importorskip("transformers")
    from cellflux_streaming_models.data import ShardCollection, ShardDataset

    (tmp_path / "builders.py").write_text(BUILDERS)
    script = tmp_path / "ddp_run.py"
    script.write_text(DDP_SCRIPT)
    out = tmp_path / "ddp"
    run = subprocess.run(
        [sys.executable, str(script), str(shard_dir / "*.h5ad"), str(out), str(tmp_path / "builders.py")],
        capture_output=True,
        text=True,
        timeout=500,
        cwd=tmp_path,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    ranks = [np.load(f"{out}.rank{r}.npz") for r in range(2)]
    namespace = {}
    exec(BUILDERS, namespace)
    collection = ShardCollection(shard_paths, obs_columns={"y_n": "clusters", "cell_type": "clusters"})
    # one process sees, at each step, the two ranks' batches put together
    datasets = [ShardDataset(collection, batch_size=64, shuffle=True, rank=r, world_size=2) for r in range(2)]

    def epochs(epoch):
        for d in datasets:
            d.set_epoch(epoch)
        for parts in zip(*datasets, strict=True):
            yield {
                k: (torch.cat([p[k] for p in parts]) if isinstance(parts[0][k], torch.Tensor) else parts[0][k])
                for k in parts[0]
            }

    for name in ("socam", "geneformer", "gpt"):
        model, transforms = namespace["build"](name, collection.var_names, collection)
        # the per-rank batch size sets the default learning rate of SOCAM, as in the Lightning module
        stream_fit(model, epochs, transforms=transforms, n_epochs=2, optimizer=model.default_optimizer(64))
        far, total = 0, 0
        for key, value in model.state_dict().items():
            if not (isinstance(value, torch.Tensor) and value.is_floating_point()):
                continue
            mine, theirs = value.detach().numpy(), [r[f"{name}/{key}"] for r in ranks]
            np.testing.assert_allclose(theirs[0], theirs[1], rtol=1e-5, atol=1e-6, err_msg=key)
            # Adam turns summation-order noise in near-zero gradients into steps of up to the learning
            # rate (1e-3 to 1e-2 here): no weight differs by more than two steps, nearly all agree to 1e-4
            np.testing.assert_allclose(
                theirs[0], mine, rtol=1e-2, atol=2e-2 if name == "gpt" else 2e-3, err_msg=f"{name}/{key}"
            )
            far, total = far + int((np.abs(theirs[0] - mine) > 1e-4).sum()), total + mine.size
        assert far / total < 0.02, (name, far, total)
