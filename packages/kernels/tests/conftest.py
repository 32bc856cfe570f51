"""Shared inputs for the kernels tests: a small simulated dataset with a kNN graph and velocities."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pytest


@pytest.fixture(scope="session")
def _prepared() -> ad.AnnData:
    from cellflux.datasets import simulate
    from cellflux_kernels._tools import kernel_inputs

    adata = simulate(n_cells=400, n_genes=80, n_conditions=1, seed=1)
    kernel_inputs(adata, n_pcs=15, n_neighbors=15)
    return adata


@pytest.fixture
def adata(_prepared: ad.AnnData) -> ad.AnnData:
    """Simulated cells with ``Ms``, ``velocity``, ``X_pca`` and ``connectivities``, copied per test."""
    return _prepared.copy()


def _assert_stochastic(matrix) -> None:
    from scipy import sparse

    assert sparse.issparse(matrix) and matrix.format == "csr"
    assert np.all(matrix.data >= 0)
    np.testing.assert_allclose(np.asarray(matrix.sum(axis=1)).ravel(), 1.0, rtol=1e-10)


@pytest.fixture
def assert_stochastic():
    """Assert a CSR, non-negative, row-stochastic matrix."""
    return _assert_stochastic


def preprocess_pancreas(adata: ad.AnnData) -> ad.AnnData:
    """The usual scVelo preprocessing of the shared pancreas data (see the data README)."""
    import scanpy as sc
    import scvelo as scv

    scv.pp.filter_genes(adata, min_shared_counts=20)
    scv.pp.normalize_per_cell(adata)
    sc.pp.log1p(adata)
    sc.tl.pca(adata, n_comps=30, random_state=0)
    sc.pp.neighbors(adata, n_pcs=30, n_neighbors=30, random_state=0)
    scv.pp.moments(adata, n_pcs=None, n_neighbors=None)
    scv.tl.velocity(adata, mode="stochastic")
    return adata
