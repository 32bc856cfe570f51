"""The ratio estimator's length scale by type-II maximum likelihood (``ratio_ls="evidence"``)."""

import numpy as np
import pytest

from cellflux_gp_differential import DifferentialAbundance
from cellflux_gp_differential._jax import matern52
from cellflux_gp_differential._params import default_length_scale
from cellflux_gp_differential._ratio import fit_log_ratio
from cellflux_gp_differential._ratio_evidence import DEFAULT_EVIDENCE_LS_FACTORS, select_ratio_length_scale


def _two_conditions(ls_true: float, scale: float, n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cells uniform on [0, 1]; condition 2 with probability ``sigmoid(g)``, ``g`` a Matérn-5/2 GP draw."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(0.0, 1.0, (n, 1))
    K = np.asarray(matern52(x, x, ls_true)) + 1e-6 * np.eye(n)
    g = scale * np.linalg.cholesky(K) @ rng.standard_normal(n)
    second = rng.random(n) < 1.0 / (1.0 + np.exp(-g))
    return x[~second], x[second], np.linspace(0.0, 1.0, 80)[:, None]


def test_evidence_is_largest_near_the_true_length_scale():
    """Labels drawn from the model itself (length scale 0.1): the evidence peaks at 0.1 (measured exactly
    there; any grid point within a factor 2 passes) and falls by > 10 log units at 8x too short or long."""
    ls_true = 0.1
    x1, x2, u = _two_conditions(ls_true, 1.5, 1500, seed=0)
    grid = ls_true * np.array([0.125, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0])
    sel = select_ratio_length_scale(x1, x2, u, ls=grid, scales=[1.5])
    assert 0.5 * ls_true <= sel.best_ls <= 2.0 * ls_true
    evidence = sel.log_evidence[:, 0]
    assert evidence.max() > evidence[0] + 10 and evidence.max() > evidence[-1] + 10
    assert sel.log_evidence.shape == (7, 1)
    assert sel.predictor.log_evidence == pytest.approx(evidence.max())


def test_laplace_evidence_matches_the_exact_integral():
    """Two landmarks (a two-dimensional latent ``z``): the Laplace log evidence the fit returns is within
    0.05 of ``log int p(y | z) N(z; 0, I) dz`` by quadrature on a fine grid."""
    rng = np.random.default_rng(3)
    x1, x2 = rng.uniform(0.0, 1.0, (150, 1)), rng.uniform(0.3, 1.0, (100, 1))
    u = np.array([[0.2], [0.8]])
    fit = fit_log_ratio(x1, x2, u, ls=0.5, scale=1.0)
    K = np.asarray(matern52(np.vstack([x1, x2]), u, 0.5))
    L = K @ np.linalg.inv(np.linalg.cholesky(np.asarray(matern52(u, u, 0.5)) + 1e-6 * np.eye(2))).T
    labels = np.r_[np.zeros(len(x1)), np.ones(len(x2))]
    t = np.linspace(-8.0, 8.0, 801)
    z = np.stack(np.meshgrid(t, t, indexing="ij"), axis=-1).reshape(-1, 2)
    f = z @ L.T + np.log(len(x2) / len(x1))
    log_lik = (labels * f - np.logaddexp(0.0, f)).sum(axis=1)
    log_integrand = log_lik - 0.5 * (z * z).sum(axis=1) - np.log(2 * np.pi)
    top = log_integrand.max()
    exact = top + np.log(np.exp(log_integrand - top).sum() * (t[1] - t[0]) ** 2)
    assert np.isfinite(fit.log_evidence)
    assert fit.log_evidence == pytest.approx(exact, abs=0.05)


def test_single_point_grid_is_the_plain_fit():
    """A one-point grid returns exactly the fit at that length scale and prior scale."""
    x1, x2, u = _two_conditions(0.2, 1.0, 400, seed=1)
    sel = select_ratio_length_scale(x1, x2, u, ls=[0.2], scales=[0.7])
    plain = fit_log_ratio(x1, x2, u, ls=0.2, scale=0.7)
    np.testing.assert_allclose(sel.predictor.weights, plain.weights, rtol=1e-6, atol=1e-9)
    assert sel.predictor.log_evidence == pytest.approx(plain.log_evidence, rel=1e-9)


@pytest.fixture(scope="module")
def evidence_model():
    """``ratio_ls="evidence"`` with a small grid (length scale and prior std) on a small simulation."""
    import cellflux as cf
    from cellflux_gp_differential._representation import log_normalize, pca

    adata = cf.datasets.simulate(n_cells=400, n_genes=60, n_conditions=2, seed=2)
    x = pca(log_normalize(adata.layers["spliced"]), 8)
    c = adata.obs["condition"].astype(str).to_numpy()
    names = list(adata.uns["simulation"]["condition_names"])[:2]
    m1, m2 = c == names[0], c == names[1]
    model = DifferentialAbundance(
        random_state=0, ratio_ls="evidence", ratio_ls_factors=(8, 1, 2, 4), ratio_prior_std_factors=(1, 2)
    ).fit(x[m1], x[m2])
    return model, x, m1, m2


def test_evidence_choice_is_in_the_grid_and_finite(evidence_model):
    model, x, m1, m2 = evidence_model
    base = default_length_scale(np.vstack([x[m1], x[m2]]))
    sel = model.ratio_evidence
    np.testing.assert_allclose(sel.ls / base, [1, 2, 4, 8])  # sorted grid
    assert sel.log_evidence.shape == (4, 2) and np.all(np.isfinite(sel.log_evidence))
    i, j = np.unravel_index(np.argmax(sel.log_evidence), sel.log_evidence.shape)
    assert model.ratio_ls == pytest.approx(sel.ls[i]) and model.ratio_prior_std == pytest.approx(sel.scales[j])
    assert model.ratio_predictor is sel.predictor
    result = model.predict(x, progress=False)
    assert np.all(np.isfinite(result["log_fold_change"])) and np.all(result["log_fold_change_uncertainty"] > 0)
    assert set(np.unique(result["log_fold_change_direction"])) <= {"up", "down", "neutral"}


def test_evidence_with_sample_variance_uses_the_chosen_length_scale(evidence_model):
    """The jackknife refits take the evidence's length scale and prior std (they do not search again)."""
    model, x, m1, m2 = evidence_model
    import cellflux as cf

    s = cf.datasets.simulate(n_cells=400, n_genes=60, n_conditions=2, seed=2).obs["sample"].astype(str).to_numpy()
    again = DifferentialAbundance(
        random_state=0,
        ratio_ls="evidence",
        ratio_ls_factors=(1, 2, 4, 8),
        ratio_prior_std_factors=(1, 2),
        density_predictor1=model.density_predictor1,
        density_predictor2=model.density_predictor2,
    ).fit(x[m1], x[m2], condition1_sample_indices=s[m1], condition2_sample_indices=s[m2])
    assert again.ratio_ls == model.ratio_ls
    for predictor in again.variance_predictor1.predictors:
        assert predictor.ls == model.ratio_ls and predictor.scale == model.ratio_prior_std
    assert np.all(np.isfinite(again.predict(x, progress=False)["log_fold_change_uncertainty"]))


def test_fixed_rule_is_the_default():
    model = DifferentialAbundance()
    assert model.ratio_ls_rule == "fixed" and model.ratio_evidence is None
    np.testing.assert_array_equal(model.ratio_ls_factors, DEFAULT_EVIDENCE_LS_FACTORS)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"ratio_ls": "marginal"}, "ratio_ls must be one of"),
        ({"ratio_ls": 4.0}, "ratio_ls must be one of"),
        ({"ratio_ls_factors": []}, "ratio_ls_factors must be a non-empty"),
        ({"ratio_ls_factors": [0, 1]}, "ratio_ls_factors must be a non-empty"),
        ({"ratio_ls_factors": [1, np.nan]}, "ratio_ls_factors must be a non-empty"),
        ({"ratio_ls_factors": ["a"]}, "ratio_ls_factors must be a sequence"),
        ({"ratio_prior_std_factors": [-1.0]}, "ratio_prior_std_factors must be a non-empty"),
    ],
)
def test_bad_evidence_options_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        DifferentialAbundance(**kwargs)


def test_bad_grids_and_starts_raise_in_the_engine():
    x1, x2, u = _two_conditions(0.2, 1.0, 200, seed=4)
    with pytest.raises(ValueError, match="ls must be a non-empty"):
        select_ratio_length_scale(x1, x2, u, ls=[-0.1], scales=[1.0])
    with pytest.raises(ValueError, match="scales must be a non-empty"):
        select_ratio_length_scale(x1, x2, u, ls=[0.1], scales=[np.inf])
    with pytest.raises(ValueError, match="z0 must have shape"):
        fit_log_ratio(x1, x2, u, ls=0.1, scale=1.0, z0=np.zeros(3))
