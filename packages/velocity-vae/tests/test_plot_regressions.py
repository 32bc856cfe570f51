"""Regressions of the ``cf.pl.velocity_vae_*`` plots: units, scatter options, gene lists, statistics, kinetics."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pytest

import cellflux as cf
from cellflux_velocity_vae import moments
from cellflux_velocity_vae._plotting import fitted_trajectory
from cellflux_velocity_vae._uncertainty import STATISTICS

_SHORT_RUN = {"max_epochs": 10, "n_samples": 4, "batch_size": 128, "n_hidden": 32}


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


@pytest.fixture(scope="module")
def with_moments():
    """200 simulated cells with first-order moments and a stand-in embedding (do not mutate)."""
    adata = cf.datasets.simulate(n_cells=200, n_genes=40, seed=0)
    moments(adata, n_neighbors=15, n_pcs=20)
    adata.obsm["X_umap"] = np.random.default_rng(0).normal(size=(adata.n_obs, 2))
    return adata


def _run(adata, **kwargs):
    out = adata.copy()
    cf.tl.velocity_vae(out, **_SHORT_RUN, **kwargs)
    return out


@pytest.fixture(scope="module")
def scaled(with_moments):
    """A short run on min-max scaled moments (the default)."""
    return _run(with_moments)


@pytest.fixture(scope="module")
def unscaled(with_moments):
    """A short run on the raw moments (``min_max_scale=False``)."""
    with pytest.warns(UserWarning, match="not min-max scaled"):
        return _run(with_moments, min_max_scale=False)


@pytest.fixture(scope="module")
def time_dependent(with_moments):
    """A short run with a time-dependent transcription rate (``alpha`` relaxing to ``alpha_1``)."""
    return _run(with_moments, model_kwargs={"time_dep_transcription_rate": True})


def _modelled(adata, n):
    return list(adata.var_names[adata.var["velocity_vae_genes"].to_numpy(dtype=bool)][:n])


def _panels(fig):
    return [a for a in fig.axes if a.get_label() != "<colorbar>" and a.get_visible()]


def test_phase_portraits_of_a_model_trained_on_raw_moments_stay_in_raw_units(unscaled):
    assert unscaled.uns["velocity_vae"]["params"]["min_max_scale"] is False
    genes = _modelled(unscaled, 40)
    idx = unscaled.var_names.get_indexer(genes)
    raw_s, raw_u = np.asarray(unscaled.layers["Ms"])[:, idx], np.asarray(unscaled.layers["Mu"])[:, idx]
    widest = int(np.argmax(raw_s.max(axis=0)))
    assert raw_s[:, widest].max() > 3  # the check below needs a gene far outside [0, 1]
    fig = cf.pl.velocity_vae_phase_portraits(unscaled, genes=[genes[0], genes[widest]])
    for ax, j in zip(_panels(fig), (0, widest), strict=True):
        points = ax.collections[0].get_offsets()
        np.testing.assert_allclose(points[:, 0], raw_s[:, j], rtol=1e-5)
        np.testing.assert_allclose(points[:, 1], raw_u[:, j], rtol=1e-5)
        line = ax.lines[0].get_xydata()
        assert ax.get_xlim()[1] >= max(points[:, 0].max(), line[:, 0].max())
        assert ax.get_ylim()[1] >= max(points[:, 1].max(), line[:, 1].max())
        assert "scaled" not in ax.get_xlabel()
    # the fitted curve (model units = raw units) spans the data, not 15x the plotted points
    ax = _panels(fig)[1]
    points, line = ax.collections[0].get_offsets(), ax.lines[0].get_xydata()
    for k in (0, 1):
        assert 1 / 3 < line[:, k].max() / points[:, k].max() < 3


def test_phase_portraits_of_a_model_trained_on_scaled_moments_are_scaled(scaled):
    genes = _modelled(scaled, 2)
    fig = cf.pl.velocity_vae_phase_portraits(scaled, genes=genes)
    for ax in _panels(fig):
        points = ax.collections[0].get_offsets()
        assert points.min() == 0 and points.max() == pytest.approx(1)
        assert ax.get_xlim() == pytest.approx((-0.05, 1.05)) and ax.get_ylim() == pytest.approx((-0.05, 1.05))
        assert ax.get_xlabel() == "spliced (scaled)"


def test_phase_portraits_scatter_kwargs_reach_the_points(scaled):
    genes = _modelled(scaled, 2)
    fig = cf.pl.velocity_vae_phase_portraits(scaled, genes=genes, s=17, cmap="viridis", lw=0.5, vmax=10)
    for ax in _panels(fig):
        points = ax.collections[0]
        np.testing.assert_array_equal(points.get_sizes(), [17])
        np.testing.assert_array_equal(points.get_linewidths(), [0.5])
        assert points.get_cmap().name == "viridis"
        assert (points.norm.vmin, points.norm.vmax) == (0, 10)
        assert points.get_array() is not None  # still coloured by the gene-wise latent time
    assert len(fig.axes) - len(_panels(fig)) == 1
    assert fig.axes[-1].get_ylabel() == "gene-wise latent time"

    fig = cf.pl.velocity_vae_phase_portraits(scaled, genes=genes, color="grey", linewidths=1)
    for ax in _panels(fig):
        points = ax.collections[0]
        assert points.get_array() is None
        np.testing.assert_allclose(points.get_facecolors()[:, :3], [matplotlib.colors.to_rgb("grey")])
        np.testing.assert_array_equal(points.get_linewidths(), [1])
    assert len(fig.axes) == len(_panels(fig))  # nothing colour-mapped: no colour bar

    colours = np.linspace(0, 1, scaled.n_obs)
    fig = cf.pl.velocity_vae_phase_portraits(scaled, genes=genes, c=colours)
    for ax in _panels(fig):
        np.testing.assert_allclose(ax.collections[0].get_array(), colours)
        assert ax.collections[0].norm.vmax == pytest.approx(1)  # not the latent-time range
    assert fig.axes[-1].get_ylabel() == ""


def test_phase_portraits_take_one_gene_as_a_string(scaled):
    gene = _modelled(scaled, 1)[0]
    fig = cf.pl.velocity_vae_phase_portraits(scaled, genes=gene)
    panels = _panels(fig)
    assert [a.get_title() for a in panels] == [gene]
    with pytest.raises(ValueError, match="genes is empty"):
        cf.pl.velocity_vae_phase_portraits(scaled, genes=[])


def test_uncertainty_names_the_valid_statistics_for_a_typo(scaled):
    with pytest.raises(ValueError, match="Unknown statistic 'cosine_sim_variance'") as info:
        cf.pl.velocity_vae_uncertainty(scaled, statistic="cosine_sim_variance")
    assert all(name in str(info.value) for name in STATISTICS)
    ax = cf.pl.velocity_vae_uncertainty(scaled, statistic="directional_cosine_sim_mean")
    assert ax.collections[0].get_offsets().shape == (scaled.n_obs, 2)


def test_fitted_trajectory_with_a_time_dependent_transcription_rate_solves_the_ode():
    alpha, alpha_1, lambda_alpha, beta, gamma, switch = 1.0, 2.5, 0.3, 0.8, 0.4, 8.0
    n, t_max = 8001, 40.0
    u, s = fitted_trajectory(
        alpha, beta, gamma, switch, t_max=t_max, n_points=n, alpha_1=alpha_1, lambda_alpha=lambda_alpha
    )
    t = np.linspace(0, t_max, n)
    du, ds = np.gradient(u, t, edge_order=2), np.gradient(s, t, edge_order=2)
    rate = np.where(t <= switch, alpha_1 - (alpha_1 - alpha) * np.exp(-lambda_alpha * t), 0.0)
    inside = np.abs(t - switch) > 2 * t_max / n  # the derivative jumps at the switch
    np.testing.assert_allclose(du[inside], (rate - beta * u)[inside], atol=1e-3)
    np.testing.assert_allclose(ds[inside], (beta * u - gamma * s)[inside], atol=1e-3)
    assert u[0] == 0 and s[0] == 0
    # without the relaxation it is the constant-rate curve
    constant = fitted_trajectory(alpha, beta, gamma, switch, t_max=t_max, n_points=n)
    same = fitted_trajectory(alpha, beta, gamma, switch, t_max=t_max, n_points=n, alpha_1=alpha, lambda_alpha=0.3)
    np.testing.assert_allclose(same, constant, atol=1e-6)
    assert np.abs(u - constant[0]).max() > 0.5
    with pytest.raises(ValueError, match="alpha_1 and lambda_alpha"):
        fitted_trajectory(alpha, beta, gamma, switch, alpha_1=alpha_1)


def test_phase_portraits_draw_the_time_dependent_transcription_curve(time_dependent, scaled):
    var = time_dependent.var
    assert time_dependent.uns["velocity_vae"]["params"]["time_dep_transcription_rate"] is True
    assert scaled.uns["velocity_vae"]["params"]["time_dep_transcription_rate"] is False
    assert "velocity_vae_alpha_1" not in scaled.var and "velocity_vae_lambda_alpha" not in scaled.var
    genes = _modelled(time_dependent, 2)
    modelled = var["velocity_vae_genes"].to_numpy(dtype=bool)
    for name in ("alpha_1", "lambda_alpha"):
        values = var[f"velocity_vae_{name}"].to_numpy()
        assert np.all(np.isfinite(values[modelled]) & (values[modelled] > 0)) and np.isnan(values[~modelled]).all()
    fig = cf.pl.velocity_vae_phase_portraits(time_dependent, genes=genes)
    for ax, gene in zip(_panels(fig), genes, strict=True):
        row = var.loc[gene]
        k = float(row["velocity_vae_scaling"])
        rates = [float(row[f"velocity_vae_{n}"]) * k for n in ("alpha", "beta", "gamma")]
        switch = float(row["velocity_vae_switch_time"]) / k
        u, s = fitted_trajectory(
            *rates,
            switch,
            alpha_1=float(row["velocity_vae_alpha_1"]) * k,
            lambda_alpha=float(row["velocity_vae_lambda_alpha"]) * k,
        )
        line = ax.lines[0].get_xydata()
        np.testing.assert_allclose(line, np.column_stack([s, u]), rtol=1e-6)
        u_constant, _ = fitted_trajectory(*rates, switch)
        assert np.abs(u_constant - u).max() > 0.05 * u.max()  # the constant-rate curve is another one


def test_phase_portraits_follow_the_models_time_axis(with_moments):
    short_axis = _run(with_moments, model_kwargs={"t_max": 10.0})
    assert short_axis.uns["velocity_vae"]["params"]["t_max"] == 10.0
    gene = _modelled(short_axis, 1)[0]
    assert np.nanmax(short_axis.layers["velocity_vae_fit_t"]) == pytest.approx(10.0, rel=1e-5)
    fig = cf.pl.velocity_vae_phase_portraits(short_axis, genes=gene)
    ax = _panels(fig)[0]
    assert ax.collections[0].get_clim() == (0.0, 10.0)  # the colour scale spans the model's time axis
    var = short_axis.var.loc[gene]
    scaling = float(var["velocity_vae_scaling"])
    u, s = fitted_trajectory(
        var["velocity_vae_alpha"] * scaling,
        var["velocity_vae_beta"] * scaling,
        var["velocity_vae_gamma"] * scaling,
        var["velocity_vae_switch_time"] / scaling,
        t_max=10.0,
    )
    np.testing.assert_allclose(ax.lines[0].get_xydata(), np.c_[s, u])  # the curve ends where the time axis does
