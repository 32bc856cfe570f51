"""Small simulated shards shared by the tests (written once per session, read-only)."""

from __future__ import annotations

import functools

import anndata as ad
import numpy as np
import pytest
from scipy import sparse


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    """Small models on 2 shared cores: one intra-op thread avoids OpenMP contention (and is much faster)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _quiet_cpu_trainer(root, **options) -> dict:
    defaults = {"accelerator": "cpu", "devices": 1, "enable_progress_bar": False, "enable_model_summary": False}
    return {**defaults, "default_root_dir": str(root), **options}


@pytest.fixture
def trainer_options(tmp_path):
    """``trainer_options(**options)``: options of a quiet one-process CPU Lightning trainer in ``tmp_path/run``.

    The ``trainer:`` section of a ``cellflux stream`` config, or ``lightning.pytorch.Trainer(**options)``;
    keyword arguments add or override options (``max_epochs=2``, ``default_root_dir=...``).
    """
    return functools.partial(_quiet_cpu_trainer, tmp_path / "run")


@pytest.fixture(scope="session")
def shard_dir(tmp_path_factory):
    """1,030 cells x 80 genes in shards of 300 (the last has 130): uneven on purpose."""
    import cellflux as cf

    folder = tmp_path_factory.mktemp("shards")
    cf.datasets.simulate_shards(folder, n_cells=1030, n_genes=80, shard_size=300, show_progress=False, seed=0)
    return folder


@pytest.fixture(scope="session")
def shard_paths(shard_dir):
    return sorted(shard_dir.glob("*.h5ad"))


@pytest.fixture(scope="session")
def full_adata(shard_paths):
    """The shards concatenated in memory (the exact reference)."""
    adata = ad.concat([ad.read_h5ad(p) for p in shard_paths], merge="same")
    adata.X = sparse.csr_matrix(adata.X)
    return adata


@pytest.fixture(scope="session")
def dense_x(full_adata):
    return full_adata.X.toarray().astype(np.float64)


def _rank_errors(x_ng, estimates_gq, quantiles, min_count=1):
    """Distance of each quantile level from the rank interval of its estimate among a gene's nonzero values."""
    errors = []
    for j in range(x_ng.shape[1]):
        values = np.sort(x_ng[:, j][x_ng[:, j] != 0])
        if len(values) < min_count:
            continue
        lo = np.searchsorted(values, estimates_gq[j], side="left") / len(values)
        hi = np.searchsorted(values, estimates_gq[j], side="right") / len(values)
        errors.append(np.maximum(0, np.maximum(lo - quantiles, quantiles - hi)))
    return np.array(errors)


@pytest.fixture(scope="session")
def rank_errors():
    """``rank_errors(x_ng, estimates_gq, quantiles)``: rank error of per-gene quantile estimates (genes x levels)."""
    return _rank_errors
