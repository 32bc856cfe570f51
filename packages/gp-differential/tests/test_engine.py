"""Engine invariants: Mahalanobis against dense linear algebra, batching, memory plan, FDR, sample variance."""

import numpy as np
import pytest

from cellflux_gp_differential import SampleVarianceEstimator, compute_fdr
from cellflux_gp_differential._batching import map_batches
from cellflux_gp_differential._density import _predict_batch
from cellflux_gp_differential._jax import matern52
from cellflux_gp_differential._mahalanobis import gene_batch_for_budget, mahalanobis, mahalanobis_memory


def _spd(rng, m):
    a = rng.normal(size=(m, m))
    return a @ a.T / m + 0.5 * np.eye(m)


@pytest.mark.parametrize("with_diag", [False, True])
def test_mahalanobis_with_sample_factors_equals_dense(rng, with_diag):
    m, g, s = 25, 13, 4
    cov, diff = _spd(rng, m), rng.normal(size=(m, g))
    factors = rng.normal(size=(g, m, s)) * 0.4
    dvar = rng.uniform(0.1, 1.0, size=(m, g)) if with_diag else None
    got = mahalanobis(diff, cov, diag_variance=dvar, factors=lambda genes: factors[genes], eps=0.0, gene_batch=5)
    want = []
    for j in range(g):
        c = cov + factors[j] @ factors[j].T + (np.diag(dvar[:, j]) if with_diag else 0)
        want.append(np.sqrt(diff[:, j] @ np.linalg.solve(c, diff[:, j])))
    np.testing.assert_allclose(got, want, rtol=1e-8)


def test_mahalanobis_shared_covariance_exact_and_diag_trick(rng):
    m, g = 20, 7
    cov, diff = _spd(rng, m), rng.normal(size=(m, g))
    got = mahalanobis(diff, cov, eps=0.0)
    want = [np.sqrt(d @ np.linalg.solve(cov, d)) for d in diff.T]
    np.testing.assert_allclose(got, want, rtol=1e-10)
    dvar = rng.uniform(0.1, 1.0, size=(m, g))
    trick = mahalanobis(diff, cov, diag_variance=dvar, eps=0.0)
    linv = np.linalg.inv(np.linalg.cholesky(cov))
    z = linv @ diff
    expected = np.sqrt(np.sum(z**2 / (1 + (linv**2) @ dvar), axis=0))  # kompot's factor trick
    np.testing.assert_allclose(trick, expected, rtol=1e-10)


def test_mahalanobis_independent_of_gene_batch(rng):
    m, g = 15, 40
    cov, diff = _spd(rng, m), rng.normal(size=(m, g))
    f = rng.normal(size=(g, m, 3))
    a = mahalanobis(diff, cov, factors=lambda genes: f[genes], gene_batch=7)
    b = mahalanobis(diff, cov, factors=lambda genes: f[genes], gene_batch=64)
    np.testing.assert_allclose(a, b, rtol=1e-12)


def test_memory_plan_respects_budget():
    budget = 300e6
    batch = gene_batch_for_budget(1000, 2000, 6, budget)
    assert mahalanobis_memory(1000, 2000, 6, batch) <= budget
    assert mahalanobis_memory(1000, 2000, 6, batch + 1) > budget or batch == 2000
    assert mahalanobis_memory(1000, 2000, 6, 10) < mahalanobis_memory(1000, 2000, 6, 100)


def test_prediction_compiles_once_per_batch_shape(rng):
    """The jitted kernel sees padded batches only: other cell counts compile nothing new."""
    u, w, linv, s2 = rng.normal(size=(30, 3)), rng.normal(size=30), np.eye(30), np.ones(30)
    func = lambda xb: _predict_batch(xb, u, w, linv, s2, 1.0)  # noqa: E731
    map_batches(func, rng.normal(size=(700, 3)), batch_size=256)
    before = matern52._cache_size()
    map_batches(func, rng.normal(size=(900, 3)), batch_size=256)
    map_batches(func, rng.normal(size=(260, 3)), batch_size=256)
    assert matern52._cache_size() == before


def test_fdr_calls_planted_genes_and_spares_nulls(rng):
    null = rng.chisquare(10, size=2000) ** 0.5
    real = np.concatenate([rng.chisquare(10, size=180) ** 0.5, 3 * rng.chisquare(10, size=20) ** 0.5])
    table = compute_fdr(real, null, threshold=0.05)
    assert list(table.columns) == ["mahalanobis", "pvalue", "local_fdr", "tail_fdr", "is_de"]
    assert table["is_de"].iloc[180:].mean() > 0.8
    assert table["is_de"].iloc[:180].mean() < 0.05
    assert ((table["pvalue"] > 0) & (table["pvalue"] <= 1)).all()
    order = np.argsort(real)
    assert np.all(np.diff(table["tail_fdr"].to_numpy()[order]) <= 1e-12)  # monotone in the distance
    with pytest.raises(ValueError, match="null distribution is empty"):
        compute_fdr(real, np.array([]))


def test_sample_variance_is_bessel_corrected_and_factors_match(arrays):
    x, y, s = arrays["x"][arrays["m1"]], arrays["y"][arrays["m1"]][:, :6], arrays["s"][arrays["m1"]]
    est = SampleVarianceEstimator().fit(x, y, grouping_vector=s, estimator_kwargs={"n_landmarks": 40})
    assert est.n_groups == len(np.unique(s))
    pts = x[:25]
    preds = np.stack([p(pts) for p in est.group_predictors.values()])
    np.testing.assert_allclose(est.predict(pts, diag=True), preds.var(axis=0, ddof=1), rtol=1e-10)
    full = est.predict(pts, diag=False)
    for g in range(6):
        np.testing.assert_allclose(full[:, :, g], np.cov(preds[:, :, g].T, ddof=1), rtol=1e-8, atol=1e-12)
    with pytest.raises(ValueError, match="at least 2 samples"):
        SampleVarianceEstimator().fit(x, y, grouping_vector=np.zeros(len(x)))
