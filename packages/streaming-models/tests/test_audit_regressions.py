"""Regressions of 0.3.6: equal DDP steps, unequal NT-Xent gathers, contrastive validation, count checks, ..."""

import itertools
import socket
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from cellflux_streaming_models.data import EpochPlan, ShardCollection, ShardDataset
from cellflux_streaming_models.models import ContrastiveMLP, nt_xent
from cellflux_streaming_models.models._tokenizers import rank_value_tokens
from cellflux_streaming_models.transforms import (
    BinomialResample,
    Duplicate,
    GaussianNoise,
    Log1p,
    RandomGeneDropout,
    apply_transforms,
)

pytestmark = [
    pytest.mark.filterwarnings("ignore:`isinstance\\(treespec, LeafSpec\\)`:FutureWarning"),
    pytest.mark.filterwarnings("ignore:The '\\w+_dataloader' does not have many workers"),
]


def _shards(folder, n_cells, shard_size, n_genes=20):
    import cellflux as cf

    cf.datasets.simulate_shards(
        folder, n_cells=n_cells, n_genes=n_genes, shard_size=shard_size, show_progress=False, seed=0
    )
    return sorted(folder.glob("*.h5ad"))


# -- two gloo processes ---------------------------------------------------------------------------------
DDP_SCRIPT = """
import datetime, os, sys
import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

{body}

def _worker(rank, port, out, arg):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=2, timeout=datetime.timedelta(seconds=60))
    result = work(rank, arg)
    dist.barrier()
    np.savez(f"{{out}}.rank{{rank}}.npz", **result)
    dist.destroy_process_group()

if __name__ == "__main__":
    mp.spawn(_worker, args=(int(sys.argv[1]), sys.argv[2], sys.argv[3]), nprocs=2)
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _two_processes(tmp_path, body: str, arg: str = "") -> list[dict[str, np.ndarray]]:
    """Run ``work(rank, arg) -> dict of arrays`` (defined in ``body``) on 2 gloo processes; their results."""
    script = tmp_path / "ddp_work.py"
    script.write_text(DDP_SCRIPT.format(body=textwrap.dedent(body)))
    out = tmp_path / "ddp_out"
    run = subprocess.run(
        [sys.executable, str(script), str(_free_port()), str(out), arg],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=tmp_path,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    return [dict(np.load(f"{out}.rank{r}.npz")) for r in range(2)]


# -- 1. equal steps on every rank ----------------------------------------------------------------------
@pytest.mark.parametrize("shards", [(401,), (200, 200, 1), (7, 3, 11), (5,), (64, 1, 64, 2)])
def test_plan_gives_every_rank_the_same_number_of_batches(shards):
    """For many batch sizes and world sizes: equal batch counts, batches of 1..batch_size cells, every cell once."""
    n = sum(shards)
    for batch_size, world_size in itertools.product(range(2, 13), range(1, 6)):
        plan = EpochPlan(np.array(shards), batch_size=batch_size, shuffle=False, seed=0, epoch=0)
        if n < world_size:
            with pytest.raises(ValueError, match="fewer than"):
                plan.rank_batches(0, world_size)
            continue
        spans = [plan.rank_batches(r, world_size) for r in range(world_size)]
        key = (n, batch_size, world_size)
        assert len({len(s) for s in spans}) == 1, (key, spans)
        assert all(0 < b - a <= batch_size for s in spans for a, b in s), (key, spans)
        covered = sorted(i for s in spans for a, b in s for i in range(a, b))
        assert covered == list(range(n)), key


def test_plan_401_cells_batch_100_on_2_ranks():
    """The audit's case: 401 cells, batch 100, 2 ranks gave rank 0 two batches and rank 1 three."""
    plan = EpochPlan(np.array([200, 200, 1]), batch_size=100, shuffle=True, seed=3, epoch=1)
    spans = [plan.rank_batches(r, 2) for r in range(2)]
    assert [len(s) for s in spans] == [3, 3]
    assert [[b - a for a, b in s] for s in spans] == [[100, 50, 50], [100, 50, 51]]
    # fewer cells than ranks, and a batch size of one with a remainder, cannot give equal steps
    with pytest.raises(ValueError, match="fewer than the 4 processes"):
        EpochPlan(np.array([3]), batch_size=2, shuffle=False, seed=0, epoch=0).rank_batches(0, 4)
    with pytest.raises(ValueError, match="batch_size=1"):
        EpochPlan(np.array([5]), batch_size=1, shuffle=False, seed=0, epoch=0).rank_batches(0, 2)


def test_plan_resume_with_the_leftover_round(tmp_path):
    """Resuming mid-epoch (workers, the split leftover round) still reads every cell of the rank once."""
    collection = ShardCollection(_shards(tmp_path, 401, 200))
    for rank in range(2):
        full = ShardDataset(collection, batch_size=100, shuffle=True, seed=1, rank=rank, world_size=2)
        cells = [b["cell_index_n"] for b in full]
        assert len(cells) == 3
        state = full.state_dict(batches_consumed=2)
        resumed = ShardDataset(collection, batch_size=100, shuffle=True, seed=1, rank=rank, world_size=2)
        resumed.load_state_dict(state)
        rest = [b["cell_index_n"] for b in resumed]
        assert np.array_equal(np.concatenate(rest), cells[2])


DDP_STEPS = """
def work(rank, folder):
    import glob
    from cellflux_streaming_models.data import ShardCollection, ShardDataset

    dataset = ShardDataset(ShardCollection(sorted(glob.glob(folder + "/*.h5ad"))), batch_size=100, shuffle=True)
    steps, cells, seen = 0, torch.zeros(1), []
    for batch in dataset:  # a collective every step, as SOCAM's forward
        count = torch.tensor([float(batch["x_ng"].shape[0])])
        dist.all_reduce(count)
        cells += count
        steps += 1
        seen.append(batch["cell_index_n"].numpy())
    return {"steps": np.array(steps), "cells": cells.numpy(), "seen": np.concatenate(seen)}
"""


@pytest.mark.slow
def test_two_process_epoch_with_fewer_leftover_cells_than_ranks(tmp_path):
    """401 cells, batch 100, 2 gloo processes: the same number of collectives, every cell read once."""
    folder = tmp_path / "shards"
    folder.mkdir()
    _shards(folder, 401, 200)
    ranks = _two_processes(tmp_path, DDP_STEPS, str(folder))
    assert int(ranks[0]["steps"]) == int(ranks[1]["steps"]) == 3
    assert float(ranks[0]["cells"][0]) == 401
    assert np.array_equal(np.sort(np.concatenate([r["seen"] for r in ranks])), np.arange(401))


# -- 2. NT-Xent gathers batches of different sizes ----------------------------------------------------------
NT_XENT = """
def work(rank, arg):
    from torch.nn import functional as F
    from cellflux_streaming_models.models import nt_xent

    result = {}
    for case, sizes in enumerate([(3, 4), (1, 2), (5, 5)]):
        g = torch.Generator().manual_seed(case)
        total = sum(sizes)
        z1, z2 = torch.randn(total, 5, generator=g), torch.randn(total, 5, generator=g)
        lo = sum(sizes[:rank])
        a = z1[lo : lo + sizes[rank]].clone().requires_grad_()
        b = z2[lo : lo + sizes[rank]].clone().requires_grad_()
        loss = nt_xent(F.normalize(a, dim=-1), F.normalize(b, dim=-1), 0.5)
        # this process's rows are sizes[rank] / total of the concatenated batch's rows
        (loss * sizes[rank] / total).backward()
        result[f"loss{case}"] = loss.detach().numpy()
        result[f"grad1_{case}"] = a.grad.numpy()
        result[f"grad2_{case}"] = b.grad.numpy()
    return result
"""


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_nt_xent_on_two_processes_with_unequal_batches(tmp_path):
    """Losses (weighted by cells) and gradients equal one process's on the concatenated batch."""
    ranks = _two_processes(tmp_path, NT_XENT)
    for case, sizes in enumerate([(3, 4), (1, 2), (5, 5)]):
        g = torch.Generator().manual_seed(case)
        total = sum(sizes)
        z1 = torch.randn(total, 5, generator=g).requires_grad_()
        z2 = torch.randn(total, 5, generator=g).requires_grad_()
        loss = nt_xent(F.normalize(z1, dim=-1), F.normalize(z2, dim=-1), 0.5)
        loss.backward()
        weighted = sum(float(r[f"loss{case}"]) * n / total for r, n in zip(ranks, sizes, strict=True))
        assert weighted == pytest.approx(float(loss.detach()), rel=1e-5)
        for view, z in (("grad1", z1), ("grad2", z2)):
            gathered = np.concatenate([r[f"{view}_{case}"] for r in ranks])
            np.testing.assert_allclose(gathered, z.grad.numpy(), rtol=1e-4, atol=1e-6)


# -- 3. one-cell batches -------------------------------------------------------------------------------------
def test_contrastive_one_cell_batch():
    """A batch of one cell is two rows: a valid NT-Xent loss (0 on one process); odd rows stay an error."""
    genes = np.array([f"g{i}" for i in range(10)], dtype=object)
    model = ContrastiveMLP(genes, hidden_size=[8], embed_dim=4)
    x = apply_transforms([Duplicate(), GaussianNoise(0.1, 0.2)], {"x_ng": torch.ones(1, 10), "var_names_g": genes})
    loss = model(**x)["loss"]  # training mode: batch norm over the two rows
    assert loss.shape == () and float(loss.detach()) == pytest.approx(0.0, abs=1e-6)
    loss.backward()
    with pytest.raises(ValueError, match="even, non-zero number of rows.*got 3 rows"):
        model(torch.ones(3, 10), genes)
    with pytest.raises(ValueError, match="got 0 rows"):
        model(torch.ones(0, 10), genes)


def test_contrastive_fit_with_a_one_cell_last_batch(tmp_path, trainer_options):
    """n_obs % batch_size == 1 trains through Lightning (the last batch has one cell)."""
    import lightning.pytorch as pl

    from cellflux_streaming_models.lightning import StreamDataModule, StreamingModule

    _shards(tmp_path, 41, 30)
    data = StreamDataModule(str(tmp_path / "*.h5ad"), batch_size=20)
    model = ContrastiveMLP(data.var_names_g, hidden_size=[8], embed_dim=4)
    # batch norm in training mode needs two rows per channel: one cell gives two views
    module = StreamingModule(model, [Duplicate(), BinomialResample(0.5, 1.0), Log1p()])
    trainer = pl.Trainer(**trainer_options(max_epochs=1, logger=False, enable_checkpointing=False))
    trainer.fit(module, datamodule=data)
    assert trainer.global_step == 3


# -- 4. validation uses the two views ------------------------------------------------------------------------
def test_contrastive_validation_is_the_two_view_loss(tmp_path, trainer_options):
    """Validation (eval mode) duplicates the batch: the training-mode two-view loss; 101 cells work."""
    import lightning.pytorch as pl

    from cellflux_streaming_models.lightning import StreamDataModule, StreamingModule

    paths = _shards(tmp_path, 101, 60)
    data = StreamDataModule(str(tmp_path / "*.h5ad"), batch_size=50, val_paths=[str(p) for p in paths])
    model = ContrastiveMLP(data.var_names_g, hidden_size=[8], embed_dim=4, temperature=0.5)
    # augmentations that change nothing: the same draws in both computations
    transforms = [Duplicate(), GaussianNoise(0.0, 0.0), RandomGeneDropout(0.0, 0.0), Log1p()]
    module = StreamingModule(model, transforms, validation=True)
    trainer = pl.Trainer(**trainer_options(logger=False, enable_checkpointing=False))
    trainer.validate(module, datamodule=data)
    got = float(trainer.callback_metrics["val_loss"])

    model.eval()
    for t in transforms:
        t.train()
    losses, sizes = [], []
    with torch.no_grad():
        for batch in ShardDataset(ShardCollection(paths), batch_size=50):
            views = apply_transforms(transforms, batch)
            assert views["x_ng"].shape[0] == 2 * batch["x_ng"].shape[0]
            losses.append(float(model(views["x_ng"], views["var_names_g"])["loss"]))
            sizes.append(batch["x_ng"].shape[0])
    assert sizes == [50, 50, 1]
    assert got == pytest.approx(np.average(losses, weights=sizes), rel=1e-5)


def test_augmenting_switches_only_the_view_transforms_and_restores_them():
    from cellflux_streaming_models.transforms import augmenting

    x = torch.poisson(torch.full((6, 5), 3.0))
    log1p, duplicate, noise = Log1p(), Duplicate(), GaussianNoise(0.5, 0.5)
    modules = torch.nn.ModuleList([duplicate, noise, log1p]).eval()
    with augmenting(modules):
        assert duplicate.training and noise.training and not log1p.training
        assert duplicate(x)["x_ng"].shape == (12, 5)
        assert not torch.equal(noise(x)["x_ng"], x)
    assert not any(m.training for m in modules.modules())
    assert torch.equal(duplicate(x)["x_ng"], x)  # prediction: the identity
    assert torch.equal(Duplicate(enabled=False).train()(x)["x_ng"], x)


# -- 5. CellariumGPT's per-type losses under DDP ------------------------------------------------------------
GPT = """
def build():
    from cellflux_streaming_models.models import CellariumGPT, CellariumGPTTokenizer

    genes = [f"g{i}" for i in range(20)]
    model = CellariumGPT({"gene_value": 8, "cell_type": 3}, 16, 32, 2, 1, 0.0, True, "torch", True,
                         {"gene_value": 1.0, "cell_type": 1.0}, var_names_g=genes)
    tokenizer = CellariumGPTTokenizer(11, 8, {"cell_type": 3})
    g = torch.Generator().manual_seed(0)
    x = torch.poisson(torch.full((40, 20), 2.0), generator=g)
    cell_type = torch.randint(0, 3, (40,), generator=g)
    return model, tokenizer(x, genes, cell_index_n=torch.arange(40), cell_type=cell_type)


def rows(batch, index):
    return {k: ({kk: vv[index] for kk, vv in v.items()} if isinstance(v, dict) else v[index]) for k, v in batch.items()}


def work(rank, arg):
    model, batch = build()
    # unequal query weights per process: rank 0 has 15 cells, rank 1 has 25
    out = model(**rows(batch, slice(0, 15) if rank == 0 else slice(15, 40)))
    return {k: v.detach().numpy() for k, v in out.items() if k.startswith("loss")}
"""


@pytest.mark.slow
def test_cellarium_gpt_per_type_losses_on_two_processes(tmp_path):
    """``loss_<type>`` averaged over 2 gloo processes equals one process's, like ``loss``."""
    ranks = _two_processes(tmp_path, GPT)
    namespace = {"torch": torch}
    exec(textwrap.dedent(GPT), namespace)
    model, batch = namespace["build"]()
    out = model(**batch)
    for key in ("loss", "loss_gene_value", "loss_cell_type"):
        mean = (float(ranks[0][key]) + float(ranks[1][key])) / 2
        assert mean == pytest.approx(float(out[key].detach()), rel=1e-4), key


# -- 6. DataLoader workers started with spawn ------------------------------------------------------------------
@pytest.mark.slow
def test_spawned_workers_read_their_ranks_cells(shard_paths, monkeypatch):
    """A worker started with "spawn" has no process group: it uses the rank of the main process."""
    from torch.utils.data import DataLoader

    import cellflux_streaming_models.data._dataset as dataset_module

    collection = ShardCollection(shard_paths)
    read = []
    for rank in range(2):
        monkeypatch.setattr(dataset_module, "distributed_context", lambda rank=rank: (rank, 2))
        dataset = ShardDataset(collection, batch_size=100, shuffle=True, seed=2)
        assert dataset.n_batches() == len(dataset.plan().rank_batches(rank, 2))
        loader = DataLoader(dataset, batch_size=None, num_workers=1, multiprocessing_context="spawn")
        read.append(np.concatenate([b["cell_index_n"].numpy() for b in loader]))
        expected = np.concatenate([b["cell_index_n"].numpy() for b in dataset])  # in the main process
        assert np.array_equal(read[-1], expected)
    assert len(np.intersect1d(read[0], read[1])) == 0
    assert np.array_equal(np.sort(np.concatenate(read)), np.arange(collection.n_obs))


# -- 8. BinomialResample needs counts ----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("x", "what"),
    [
        (torch.tensor([[2.7, 0.9, 7.0]]), "non-integer"),
        (torch.tensor([[2.0, -1.0, 7.0]]), "negative"),
        (torch.log1p(torch.tensor([[0.0, 1.0, 3.0, 20.0]])), "non-integer"),
        (torch.tensor([[float("inf"), 1.0]]), "NaN or infinite"),
    ],
)
def test_binomial_resample_refuses_non_counts(x, what):
    with pytest.raises(ValueError, match=f"needs counts.*{what}"):
        BinomialResample(0.5, 0.9)(x)


def test_binomial_resample_refuses_nan_before_sampling():
    """NaN made torch.binomial loop forever, even with p_apply=0: the check comes first (in a subprocess)."""
    code = (
        "import torch\n"
        "from cellflux_streaming_models.transforms import BinomialResample\n"
        "try:\n"
        "    BinomialResample(0.5, 0.5, p_apply=0.0)(torch.tensor([[float('nan'), 1.0]]))\n"
        "except ValueError as error:\n"
        "    print('ValueError', error)\n"
    )
    try:
        run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired:
        pytest.fail("BinomialResample did not return on NaN input")
    assert run.stdout.startswith("ValueError") and "NaN" in run.stdout, run.stdout + run.stderr[-2000:]


def test_binomial_resample_resamples_only_the_chosen_rows():
    torch.manual_seed(0)
    x = torch.poisson(torch.full((400, 30), 5.0))
    out = BinomialResample(0.5, 0.5, p_apply=0.5)(x)["x_ng"]
    changed = (out != x).any(1)
    assert 120 < int(changed.sum()) < 280
    assert torch.all(out <= x) and torch.equal(out, out.round())
    # the resampled rows have about half the counts
    assert float(out[changed].sum() / x[changed].sum()) == pytest.approx(0.5, abs=0.05)
    not_counts = torch.tensor([[0.5, -1.0]])
    assert torch.equal(BinomialResample(0.5, 0.5).eval()(not_counts)["x_ng"], not_counts)  # prediction: identity


# -- 9. Geneformer tokens ------------------------------------------------------------------------------------
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -1.0])
def test_rank_value_tokens_refuses_non_finite_and_negative_values(bad):
    x = torch.tensor([[5.0, 4.0, bad, 2.0], [1.0, 0.0, 0.0, 3.0]])
    with pytest.raises(ValueError, match="finite" if bad != -1.0 else "non-negative"):
        rank_value_tokens(x, max_length=3)


def test_geneformer_feature_map_to_pad_is_padding():
    """``feature_map={gene: 0}`` clears the gene's attention mask: the embedding of a cell without it."""
    pytest.importorskip("transformers")
    from cellflux_streaming_models.models import Geneformer

    genes = [f"g{i}" for i in range(10)]
    options = {"num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 32}
    model = Geneformer(genes, hidden_size=16, max_position_embeddings=16, **options).eval()
    # g4 is each cell's least expressed gene: padding it leaves the other genes' positions
    x = torch.tensor([[5.0, 4, 3, 2, 1, 0, 0, 0, 0, 0], [0.0, 6, 2, 7, 1, 0, 3, 0, 0, 0]])
    padded = model.predict(x, model.var_names_g, feature_map={"g4": 0})
    deleted = model.predict(x, model.var_names_g, feature_deletion=["g4"])
    assert not bool(padded["attention_mask"][padded["input_ids"] == 0].any())
    torch.testing.assert_close(padded["x_ng"], deleted["x_ng"], rtol=1e-5, atol=1e-6)
    # a gene in the middle of the ranking: the mask of that position only is cleared
    middle = model.predict(x, model.var_names_g, feature_map={"g2": 0})
    plain = model.predict(x, model.var_names_g)
    assert torch.equal(middle["attention_mask"], plain["attention_mask"] & (plain["input_ids"] != 4))
