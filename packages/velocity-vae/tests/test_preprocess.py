"""preprocess_data: min-max scaling and the steady-state R² filter (parity with scVelo / scikit-learn)."""

import numpy as np
import pytest

from cellflux_velocity_vae import fit_steady_state, knn_moments, preprocess_data
from cellflux_velocity_vae._preprocess import min_max_scale


@pytest.fixture(scope="module")
def with_moments():
    import cellflux as cf
    from cellflux_velocity_vae import moments

    adata = cf.datasets.simulate(n_cells=400, n_genes=60, seed=2)
    moments(adata, n_neighbors=15, n_pcs=15)
    return adata


def test_min_max_scale_equals_sklearn(rng):
    from sklearn.preprocessing import MinMaxScaler

    x = rng.gamma(2.0, size=(50, 8))
    x[:, 3] = 1.0  # constant column
    np.testing.assert_allclose(min_max_scale(x), MinMaxScaler().fit_transform(x), atol=1e-6)


def test_preprocess_scales_filters_and_copies(with_moments):
    before = with_moments.layers["Ms"].copy()
    out = preprocess_data(with_moments)
    np.testing.assert_array_equal(with_moments.layers["Ms"], before)
    assert out.n_vars < with_moments.n_vars and out.n_obs == with_moments.n_obs
    for layer in ("Ms", "Mu"):
        np.testing.assert_allclose(out.layers[layer].max(0), 1.0, rtol=1e-6)
        np.testing.assert_allclose(out.layers[layer].min(0), 0.0, atol=1e-6)
    assert np.all(out.var["velocity_r2"] > 0) and np.all(out.var["velocity_gamma"] > 0)
    unfiltered = preprocess_data(with_moments, filter_on_r2=False)
    assert unfiltered.n_vars == with_moments.n_vars


def test_moments_are_neighbourhood_means(with_moments):
    ms, mu = knn_moments(with_moments.layers["spliced"], with_moments.layers["unspliced"], n_neighbors=15, n_pcs=15)
    assert ms.shape == with_moments.shape and np.all(ms >= 0) and np.all(mu >= 0)
    np.testing.assert_allclose(ms, with_moments.layers["Ms"])


@pytest.mark.parity
def test_steady_state_fit_equals_scvelo(with_moments):
    scv = pytest.importorskip("scvelo")
    adata = preprocess_data(with_moments, filter_on_r2=False)
    ours = fit_steady_state(adata.layers["Ms"], adata.layers["Mu"])
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scv.tl.velocity(adata, mode="deterministic")
    np.testing.assert_allclose(ours["gamma"], adata.var["velocity_gamma"], rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(ours["r2"], adata.var["velocity_r2"], rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(ours["velocity_genes"], adata.var["velocity_genes"].to_numpy())
