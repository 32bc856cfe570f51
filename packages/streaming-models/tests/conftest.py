"""Small simulated shards shared by the tests (written once per session, read-only)."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pytest
from scipy import sparse


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
