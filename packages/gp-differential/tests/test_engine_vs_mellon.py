"""The engine computes mellon's models: same numbers as mellon on the same parameters (tolerances stated)."""

import warnings

import numpy as np
import pytest

from cellflux_gp_differential import _density, _jax, _params, _regression

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import mellon
    from mellon.cov import Matern52
    from mellon.parameters import compute_d_factal


@pytest.fixture
def blobs(rng):
    x = np.concatenate([rng.normal(size=(250, 4)), rng.normal(size=(150, 4)) + 3.0])
    return x, _params.landmarks_kmeans(x, 60, 0)


def test_matern52_equals_mellon(rng):
    x, y = rng.normal(size=(30, 5)), rng.normal(size=(20, 5))
    np.testing.assert_allclose(
        np.asarray(_jax.matern52(x, y, 1.7)), np.asarray(Matern52(ls=1.7)(x, y)), rtol=1e-12, atol=1e-14
    )


def test_fractal_dimension_equals_mellon(rng):
    x = rng.normal(size=(800, 6))
    x[:, 3:] *= 0.01
    assert _params.fractal_dimension(x) == pytest.approx(float(compute_d_factal(x)), rel=1e-10)


def test_density_equals_mellon_fixed_landmarks(blobs):
    x, u = blobs
    nn = _params.nn_distances(x)
    d = _params.fractal_dimension(x)
    mu = _params.prior_mean(nn, d)
    ls = 3 * _params.mellon_length_scale(nn)
    ours = _density.fit_density(x, u, ls=ls, d=d, mu=mu, nn=nn)
    est = mellon.DensityEstimator(
        landmarks=u, gp_type="fixed", ls=ls, d=d, mu=mu, nn_distances=nn, predictor_with_uncertainty=True
    )
    est.fit(x)
    grid = np.random.default_rng(1).normal(size=(200, 4)) * 2
    # the MAP is unique (convex loss); L-BFGS-B tolerances leave ~1e-4 differences in log density
    np.testing.assert_allclose(ours(grid, normalize=True), np.asarray(est.predict(grid, normalize=True)), atol=1e-3)
    np.testing.assert_allclose(ours.uncertainty(grid), np.asarray(est.predict.uncertainty(grid)), rtol=1e-4, atol=1e-6)


def test_knn_likelihood_reduces_to_mellon_at_k1(blobs):
    x, u = blobs
    nn1 = _params.nn_distances(x, 1)
    d = 4.0
    a = _density.fit_density(x, u, ls=5.0, d=d, mu=_params.prior_mean(nn1, d), nn=nn1, n_neighbors=1)
    nn10 = _params.nn_distances(x, 10)
    b = _density.fit_density(x, u, ls=5.0, d=d, mu=_params.prior_mean(nn10, d, 10), nn=nn10, n_neighbors=10)
    # both estimate the same density; the 10-NN likelihood is less noisy but agrees on average
    assert np.corrcoef(a(x), b(x))[0, 1] > 0.9
    assert (nn10 > nn1).all()


def test_regression_equals_mellon_function_estimator(rng):
    x = rng.normal(size=(500, 3))
    y = np.sin(x[:, :1] * np.arange(1, 5)) + 0.3 * rng.normal(size=(500, 4))
    u = _params.landmarks_kmeans(x, 80, 0)
    design = _regression.landmark_design(u, 1.5)
    ours = _regression.fit_regression(x, y, design, sigma=0.5, obs_variance=True, cell_batch=256, precision="double")
    est = mellon.FunctionEstimator(
        landmarks=u, gp_type="fixed", cov_func=Matern52(ls=1.5), ls=1.5, sigma=0.5, predictor_with_uncertainty=True
    )
    est.fit(x, y, obs_variance=True)
    new = rng.normal(size=(100, 3))
    np.testing.assert_allclose(ours(new), np.asarray(est.predict(new)), atol=1e-10)
    np.testing.assert_allclose(ours.covariance(new), np.asarray(est.predict.covariance(new, diag=True)), atol=1e-10)
    np.testing.assert_allclose(
        ours.covariance(u[:20], diag=False), np.asarray(est.predict.covariance(u[:20], diag=False)), atol=1e-10
    )
    # mellon adds its jitter to the leverage system; ours uses the exact SoR hat matrix
    np.testing.assert_allclose(ours.obs_variance(new), np.asarray(est.predict.obs_variance(new)), rtol=1e-3, atol=1e-5)
    np.testing.assert_allclose(
        ours.loo_residuals_squared(x, y), np.asarray(est.predict.loo_residuals_squared(x, y)), rtol=1e-3, atol=1e-6
    )


def test_regression_independent_of_cell_batch(rng):
    x = rng.normal(size=(700, 3))
    y = rng.normal(size=(700, 5))
    design = _regression.landmark_design(_params.landmarks_kmeans(x, 50, 0), 1.0)
    # mixed: single-precision sums accumulate in a different order per batching; the observation-variance
    # coefficients smooth LOO residuals divided by (1 - h)^2, which amplifies that rounding at
    # high-leverage cells, hence 1e-4 of their largest value
    for precision, tol, var_tol in (("double", 1e-10, 1e-10), ("mixed", 1e-5, 1e-4)):
        a = _regression.fit_regression(x, y, design, obs_variance=True, cell_batch=256, precision=precision)
        b = _regression.fit_regression(x, y, design, obs_variance=True, cell_batch=4096, precision=precision)
        np.testing.assert_allclose(a.coef, b.coef, atol=tol)
        scale = np.abs(b.variance_coef).max() if precision == "mixed" else 1.0
        np.testing.assert_allclose(a.variance_coef, b.variance_coef, atol=var_tol * scale)
