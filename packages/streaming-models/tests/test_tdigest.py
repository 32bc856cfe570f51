"""Per-gene t-digests against exact quantiles of the nonzero values."""

import numpy as np
import pytest
import torch

from cellflux_streaming_models._fit import stream_fit
from cellflux_streaming_models.data import ShardCollection, ShardDataset
from cellflux_streaming_models.models import GeneDigests, TDigest
from cellflux_streaming_models.models._digest import float_keys, keys_to_values

QUANTILES = np.array([0.001, 0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99, 0.999])


@pytest.fixture(scope="module")
def continuous():
    """20,000 cells x 40 genes: lognormal values, 40% nonzero, different scales per gene."""
    rng = np.random.default_rng(0)
    scale = rng.lognormal(0, 1, 40)
    x = rng.lognormal(0, 1, (20_000, 40)) * scale * (rng.random((20_000, 40)) < 0.4)
    return x.astype(np.float32)


def test_float_keys_preserve_order_and_values():
    values = np.array([-3.5, -1e-30, 1e-30, 0.5, 2.0, 7.25, 1e30, -1e30], dtype=np.float32)
    keys = float_keys(values)
    np.testing.assert_array_equal(keys_to_values(keys), values)
    np.testing.assert_array_equal(np.argsort(keys), np.argsort(values))


def test_continuous_quantiles_within_one_percent_in_rank(continuous, rank_errors):
    digests = GeneDigests(continuous.shape[1], compression=300, buffer_size=20_000)
    for start in range(0, len(continuous), 1000):
        digests.add_dense(continuous[start : start + 1000])
    estimates = digests.quantile(QUANTILES)
    errors = rank_errors(continuous, estimates, QUANTILES)
    assert errors.max() <= 0.01
    assert errors.mean() <= 1e-3
    np.testing.assert_array_equal(digests.count_g, (continuous != 0).sum(0))
    # extremes are exact; the digest stays small
    np.testing.assert_array_equal(digests.quantile(0.0), np.where(continuous == 0, np.inf, continuous).min(0))
    np.testing.assert_array_equal(digests.quantile(1.0), continuous.max(0))
    assert np.bincount(digests.gene).max() <= 300


def test_merge_of_halves_matches_exact(continuous, rank_errors):
    a, b = GeneDigests(40, 300), GeneDigests(40, 300)
    a.add_dense(continuous[:7_000])
    b.add_dense(continuous[7_000:])
    a.merge(b)
    errors = rank_errors(continuous, a.quantile(QUANTILES), QUANTILES)
    assert errors.max() <= 0.01
    np.testing.assert_array_equal(a.count_g, (continuous != 0).sum(0))
    with pytest.raises(ValueError, match="genes"):
        a.merge(GeneDigests(3))


def test_counts_from_shards_are_exact(shard_paths, dense_x, rank_errors):
    collection = ShardCollection(shard_paths)
    model = TDigest(collection.var_names)

    def epochs(epoch):
        dataset = ShardDataset(collection, batch_size=128, shuffle=True)
        dataset.set_epoch(epoch)
        return dataset

    stream_fit(model, epochs)
    estimates = model.quantile(QUANTILES).numpy()
    # counts: repeated values stay point masses, every quantile is a value of the right rank
    assert rank_errors(dense_x, estimates, QUANTILES).max() == 0
    np.testing.assert_array_equal(model.n_nonzero_g.numpy(), (dense_x != 0).sum(0))
    medians = model.median_g.numpy()
    for j in range(dense_x.shape[1]):
        values = dense_x[:, j][dense_x[:, j] != 0]
        if len(values) % 2 == 1:
            assert medians[j] == np.median(values)
    # checkpoint round trip
    restored = TDigest(collection.var_names)
    restored.load_state_dict(model.state_dict())
    np.testing.assert_array_equal(restored.quantile(QUANTILES).numpy(), estimates)


def test_tdigest_bad_input(continuous):
    genes = np.array([f"g{i}" for i in range(40)], dtype=object)
    model = TDigest(genes)
    assert torch.isnan(model.median_g).all()  # nothing seen yet
    x = torch.from_numpy(continuous[:10].copy())
    x[3, 4] = float("inf")
    with pytest.raises(ValueError, match="NaN or infinite"):
        model(x, genes)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        model.quantile([0.5, 1.5])
    with pytest.raises(ValueError, match="compression"):
        TDigest(genes, compression=1)
    with pytest.raises(ValueError, match="differ from the model"):
        model(x[:, :39], genes[:39])
