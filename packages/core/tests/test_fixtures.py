"""The shared pytest fixtures every package's tests use."""

import pytest


def test_sim_adata_is_a_fresh_copy_each_time(sim_adata, simulated):
    other = simulated(n_cells=600, n_genes=120, n_conditions=2, seed=0)
    assert other is not sim_adata
    sim_adata.obs["touched"] = 1
    assert "touched" not in other.obs
    assert sim_adata.shape == (600, 120)


@pytest.mark.shared_data
def test_dentategyrus_loads_without_format_warnings(dentategyrus_adata):
    assert dentategyrus_adata.n_obs == 100
    assert {"Ms", "Mu", "velocity"} <= set(dentategyrus_adata.layers)


@pytest.mark.shared_data
def test_pancreas_fixture(pancreas_adata):
    assert pancreas_adata.shape == (3696, 2000)
    assert {"spliced", "unspliced"} <= set(pancreas_adata.layers)
