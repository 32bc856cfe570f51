"""cf.tl.velocity_vae writes what kernels need; plots render from its results."""

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest
from scipy.stats import spearmanr

import cellflux as cf
from cellflux._keys import TruthKey
from cellflux_velocity_vae import moments
from cellflux_velocity_vae._plotting import fitted_trajectory


@pytest.fixture(scope="module")
def result():
    adata = cf.datasets.simulate(n_cells=500, n_genes=60, seed=4)
    adata.obsm["X_umap"] = np.column_stack(
        [adata.obs[TruthKey.TIME], np.random.default_rng(0).normal(size=adata.n_obs)]
    )
    moments(adata, n_neighbors=20, n_pcs=15)
    cf.tl.velocity_vae(adata, max_epochs=15, n_samples=6, n_hidden=64, batch_size=128, n_velocity_samples=3)
    return adata


def test_fields_written(result):
    genes = result.var["velocity_vae_genes"].to_numpy()
    assert 0 < genes.sum() < result.n_vars
    for layer in ("velocity", "velocity_u", "variance_velocity", "velocity_vae_fit_t"):
        values = result.layers[layer]
        assert np.isnan(values[:, ~genes]).all() and np.isfinite(values[:, genes]).all(), layer
    assert np.all(result.layers["variance_velocity"][:, genes] >= 0)
    time = result.obs["latent_time"].to_numpy()
    assert time.min() == 0 and time.max() == 1
    assert np.all(result.var.loc[genes, "velocity_vae_gamma"] > 0)
    samples = result.uns["velocity_vae"]["velocity_samples"]
    assert samples.shape == (3, *result.shape)
    assert result.uns["velocity_vae"]["n_epochs"] == 15
    assert result.uns["velocity_vae"]["params"]["max_epochs"] == 15


def test_velocity_is_in_the_units_of_the_input_layers(result):
    # the min-max scaled inputs are the same, so the same seed trains the same model: only the units change
    kwargs = {"max_epochs": 3, "n_samples": 4, "n_hidden": 32, "batch_size": 128}
    base = result.copy()
    for key in [k for k in base.uns if k.startswith("velocity_vae")]:
        del base.uns[key]
    tripled = base.copy()
    tripled.layers["Ms"] = tripled.layers["Ms"] * 3.0
    tripled.layers["Mu"] = tripled.layers["Mu"] * 5.0
    cf.tl.velocity_vae(base, overwrite=True, **kwargs)
    cf.tl.velocity_vae(tripled, overwrite=True, **kwargs)
    genes = base.var["velocity_vae_genes"].to_numpy()
    np.testing.assert_allclose(
        tripled.layers["velocity"][:, genes], 3 * base.layers["velocity"][:, genes], rtol=1e-4, atol=1e-6
    )
    np.testing.assert_allclose(
        tripled.layers["velocity_u"][:, genes], 5 * base.layers["velocity_u"][:, genes], rtol=1e-4, atol=1e-6
    )
    np.testing.assert_allclose(tripled.obs["latent_time"], base.obs["latent_time"], atol=1e-6)


def test_latent_time_is_the_scaled_mean_gene_time(result):
    from cellflux_velocity_vae._tools import cell_latent_time

    genes = result.var["velocity_vae_genes"].to_numpy()
    gene_time = result.layers["velocity_vae_fit_t"][:, genes]
    np.testing.assert_allclose(result.obs["latent_time"], cell_latent_time(gene_time), atol=1e-6)
    assert np.all(gene_time >= 0) and np.all(gene_time <= 20 + 1e-4)
    assert np.all(np.isfinite(spearmanr(gene_time[:, 0], result.obs[TruthKey.TIME])))


def test_fitted_trajectory_is_continuous_and_returns_to_zero():
    u, s = fitted_trajectory(alpha=1.0, beta=0.8, gamma=0.4, switch_time=6.0, t_max=40.0, n_points=4001)
    assert u[0] == 0 and s[0] == 0
    assert np.max(np.abs(np.diff(u))) < 0.01 and np.max(np.abs(np.diff(s))) < 0.01
    assert u[-1] < 0.01 * u.max() and s[-1] < 0.05 * s.max()


def test_plots_render(result, tmp_path):
    ax = cf.pl.velocity_vae_latent_time(result)
    assert ax.collections[0].get_offsets().shape == (result.n_obs, 2)
    ax.figure.savefig(tmp_path / "time.png")
    ax = cf.pl.velocity_vae_uncertainty(result)
    assert ax.collections[0].get_offsets().shape == (result.n_obs, 2)
    genes = list(result.var_names[result.var["velocity_vae_genes"]][:4])
    fig = cf.pl.velocity_vae_phase_portraits(result, genes=genes, ncols=2)
    panels = [a for a in fig.axes if a.get_label() != "<colorbar>"]
    assert len(fig.axes) - len(panels) == 1  # one shared colour bar for the gene-wise time
    assert sum(a.get_visible() for a in panels) == 4 and all(len(a.lines) == 1 for a in panels)
    fig.savefig(tmp_path / "phase.png")
    assert (tmp_path / "phase.png").stat().st_size > 1000
    with pytest.raises(KeyError, match="not modelled"):
        cf.pl.velocity_vae_phase_portraits(result, genes=["nope"])
    import matplotlib.pyplot as plt

    plt.close("all")
