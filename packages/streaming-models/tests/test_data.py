"""The shard collection, the epoch plan and the iterable dataset."""

import anndata as ad
import numpy as np
import pytest
import torch
from scipy import sparse
from torch.utils.data import DataLoader

from cellflux_streaming_models.data import (
    EpochPlan,
    ShardCollection,
    ShardDataset,
    ShardReadError,
    batches_per_worker_consumed,
)


def test_collection_reads_counts_and_genes(shard_dir, shard_paths, full_adata):
    collection = ShardCollection(str(shard_dir / "*.h5ad"))
    assert collection.paths == shard_paths
    assert collection.n_obs_per_shard.tolist() == [300, 300, 300, 130]
    assert collection.n_obs == full_adata.n_obs
    np.testing.assert_array_equal(collection.var_names, full_adata.var_names)


def test_batches_equal_the_data_and_obs(shard_paths, full_adata, dense_x):
    collection = ShardCollection(shard_paths, obs_columns={"batch_index_n": "sample"})
    dataset = ShardDataset(collection, batch_size=128, shuffle=True, seed=1)
    categories = list(collection.categories["sample"])
    seen = []
    for batch in DataLoader(dataset, batch_size=None):
        index = batch["cell_index_n"].numpy()
        np.testing.assert_array_equal(batch["x_ng"].numpy(), dense_x[index])
        expected = [categories.index(s) for s in full_adata.obs["sample"].astype(str).to_numpy()[index]]
        np.testing.assert_array_equal(batch["batch_index_n"].numpy(), expected)
        assert batch["x_ng"].dtype == torch.float32
        seen.append(index)
    assert np.array_equal(np.sort(np.concatenate(seen)), np.arange(full_adata.n_obs))


def test_gene_subset_at_read_time(shard_paths, full_adata, dense_x):
    genes = list(full_adata.var_names[[5, 2, 40]])
    collection = ShardCollection(shard_paths, genes=genes)
    batch = next(iter(ShardDataset(collection, batch_size=50)))
    np.testing.assert_array_equal(batch["var_names_g"], genes)
    np.testing.assert_array_equal(batch["x_ng"].numpy(), dense_x[:50][:, [5, 2, 40]])
    with pytest.raises(KeyError, match="not in the shards"):
        ShardCollection(shard_paths, genes=["nope"])


@pytest.mark.parametrize("shuffle", [False, True])
def test_every_cell_once_across_2_ranks_x_2_workers(shard_paths, shuffle):
    collection = ShardCollection(shard_paths)
    seen, steps = [], []
    for rank in range(2):
        dataset = ShardDataset(collection, batch_size=64, shuffle=shuffle, seed=3, rank=rank, world_size=2)
        batches = list(DataLoader(dataset, batch_size=None, num_workers=2))
        steps.append(len(batches))
        seen.extend(b["cell_index_n"].numpy() for b in batches)
    cells = np.concatenate(seen)
    assert len(cells) == collection.n_obs
    assert np.array_equal(np.sort(cells), np.arange(collection.n_obs))
    assert steps[0] == steps[1]  # DDP ranks run the same number of steps


def test_shuffle_is_deterministic_per_epoch_and_seed(shard_paths):
    collection = ShardCollection(shard_paths)

    def order(seed, epoch):
        dataset = ShardDataset(collection, batch_size=100, shuffle=True, seed=seed)
        dataset.set_epoch(epoch)
        return np.concatenate([b["cell_index_n"].numpy() for b in dataset])

    assert np.array_equal(order(0, 0), order(0, 0))
    assert not np.array_equal(order(0, 0), order(0, 1))
    assert not np.array_equal(order(0, 0), order(1, 0))


def test_resume_mid_epoch_with_workers(shard_paths):
    collection = ShardCollection(shard_paths)
    dataset = ShardDataset(collection, batch_size=50, shuffle=True, seed=5)
    dataset.set_epoch(2)
    full = [b["cell_index_n"].numpy() for b in DataLoader(dataset, batch_size=None, num_workers=2)]
    consumed = 7
    state = dataset.state_dict(batches_consumed=consumed)
    resumed = ShardDataset(collection, batch_size=50, shuffle=True, seed=5)
    resumed.load_state_dict(state)
    rest = [b["cell_index_n"].numpy() for b in DataLoader(resumed, batch_size=None, num_workers=2)]
    before = np.concatenate(full[:consumed])
    after = np.concatenate(rest)
    assert len(np.intersect1d(before, after)) == 0
    assert np.array_equal(np.sort(np.concatenate([before, after])), np.arange(collection.n_obs))


def test_plan_uneven_world():
    plan = EpochPlan(np.array([7, 3, 11]), batch_size=4, shuffle=False, seed=0, epoch=0)
    spans = [plan.rank_batches(r, 3) for r in range(3)]
    assert len({len(s) for s in spans}) == 1
    covered = sorted(i for s in spans for a, b in s for i in range(a, b))
    assert covered == list(range(21))
    assert batches_per_worker_consumed([3, 1, 2], 5) == [2, 1, 2]
    with pytest.raises(ValueError, match="only 6"):
        batches_per_worker_consumed([3, 1, 2], 7)


def test_genes_disagree_names_the_shard(shard_paths, tmp_path):
    adata = ad.read_h5ad(shard_paths[1])
    names = adata.var_names.to_numpy().copy()
    names[3] = "renamed"
    adata.var_names = names
    bad = tmp_path / "bad.h5ad"
    adata.write_h5ad(bad)
    with pytest.raises(ValueError, match=r"bad\.h5ad.*position 3: 'renamed'"):
        ShardCollection([shard_paths[0], bad])


def test_empty_and_unreadable_shards(shard_paths, tmp_path):
    empty = tmp_path / "empty.h5ad"
    ad.AnnData(sparse.csr_matrix((0, 80), dtype=np.float32)).write_h5ad(empty)
    with pytest.raises(ShardReadError, match="empty.h5ad.*no cells"):
        ShardCollection([shard_paths[0], empty])
    broken = tmp_path / "broken.h5ad"
    broken.write_bytes(b"not an hdf5 file")
    with pytest.raises(ShardReadError, match="broken.h5ad"):
        ShardCollection([broken])
    with pytest.raises(FileNotFoundError, match="matches no shard"):
        ShardCollection(str(tmp_path / "none*.h5ad"))


def test_nan_in_shard_is_an_error(shard_paths, tmp_path):
    adata = ad.read_h5ad(shard_paths[3])
    adata.X = adata.X.tocsr()
    adata.X.data[0] = np.nan
    bad = tmp_path / "nan.h5ad"
    adata.write_h5ad(bad)
    dataset = ShardDataset(ShardCollection([bad]), batch_size=50)
    with pytest.raises(ValueError, match="nan.h5ad.*NaN"):
        list(dataset)


def test_nullable_obs_columns_are_read_and_missing_values_named(tmp_path):
    import pandas as pd

    adata = ad.AnnData(sparse.random(50, 10, density=0.3, format="csr", dtype=np.float32, random_state=0))
    adata.obs["batch"] = pd.array(np.arange(50) % 3, dtype="Int64")
    adata.obs["flag"] = pd.array(np.arange(50) % 2 == 0, dtype="boolean")
    path = tmp_path / "nullable.h5ad"
    adata.write_h5ad(path)
    collection = ShardCollection([path], obs_columns={"batch_index_n": "batch", "flag_n": "flag"})
    np.testing.assert_array_equal(collection.obs_values(0, "batch"), np.arange(50) % 3)
    np.testing.assert_array_equal(collection.obs_values(0, "flag"), np.arange(50) % 2 == 0)
    adata.obs["batch"] = pd.array([None, *(np.arange(49) % 3)], dtype="Int64")
    missing = tmp_path / "missing.h5ad"
    adata.write_h5ad(missing)
    with pytest.raises(ValueError, match=r"obs column 'batch' of shard .*missing.h5ad.* 1 missing value"):
        ShardCollection([missing], obs_columns={"batch_index_n": "batch"}).obs_values(0, "batch")
