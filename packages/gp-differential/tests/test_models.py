"""The model classes: invariants, planted signal, attributes, bad inputs."""

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from cellflux._keys import TruthKey
from cellflux_gp_differential import DifferentialAbundance, DifferentialExpression, ExpressionModel


def test_da_swapping_conditions_negates_and_finds_depletion(prepared, arrays):
    x, m1, m2 = arrays["x"], arrays["m1"], arrays["m2"]
    u = x[::4]
    a = DifferentialAbundance().fit(x[m1], x[m2], landmarks=u, ls=8.0)
    b = DifferentialAbundance().fit(x[m2], x[m1], landmarks=u, ls=8.0)
    ra, rb = a.predict(x, progress=False), b.predict(x, progress=False)
    np.testing.assert_allclose(ra["log_fold_change"], -rb["log_fold_change"], atol=1e-4)  # optimiser tolerance
    np.testing.assert_allclose(ra["log_fold_change_uncertainty"], rb["log_fold_change_uncertainty"], rtol=1e-4)
    assert a.log_fold_change is ra["log_fold_change"]
    depleted = prepared.obs[TruthKey.DA_LOG_FOLD_CHANGE].to_numpy() < 0
    assert roc_auc_score(depleted, -ra["log_fold_change_zscore"]) > 0.7
    calls = ra["log_fold_change_direction"]
    assert a.log_fold_change_threshold == 0.0  # the ratio estimator's default: call on the tail probability
    sig = (np.abs(ra["log_fold_change"]) > 0.0) & (ra["neg_log10_fold_change_ptp"] > -np.log10(0.05))
    assert set(np.unique(calls)) <= {"up", "down", "neutral"}
    np.testing.assert_array_equal(calls != "neutral", sig)
    assert DifferentialAbundance(method="density").log_fold_change_threshold == 1.0  # kompot's


def test_da_sample_variance_increases_uncertainty(arrays):
    x, m1, m2, s = arrays["x"], arrays["m1"], arrays["m2"], arrays["s"]
    plain = DifferentialAbundance(n_landmarks=100, random_state=0).fit(x[m1], x[m2], ls=8.0).predict(x, progress=False)
    with_s = (
        DifferentialAbundance(n_landmarks=100, random_state=0)
        .fit(x[m1], x[m2], ls=8.0, condition1_sample_indices=s[m1], condition2_sample_indices=s[m2])
        .predict(x, progress=False)
    )
    np.testing.assert_allclose(plain["log_fold_change"], with_s["log_fold_change"])
    assert np.all(with_s["log_fold_change_uncertainty"] >= plain["log_fold_change_uncertainty"] - 1e-12)


def test_da_bad_inputs(arrays):
    x, m1, m2 = arrays["x"], arrays["m1"], arrays["m2"]
    bad = x[m1].copy()
    bad[3, 1] = np.nan
    with pytest.raises(ValueError, match="NaN or inf"):
        DifferentialAbundance().fit(bad, x[m2])
    with pytest.raises(ValueError, match="features"):
        DifferentialAbundance().fit(x[m1], x[m2][:, :3])
    with pytest.raises(ValueError, match="at least 10"):
        DifferentialAbundance().fit(x[m1][:5], x[m2])
    with pytest.raises(ValueError, match="larger than the"):
        DifferentialAbundance(n_landmarks=10_000).fit(x[m1], x[m2])
    with pytest.raises(ValueError, match="condition 1"):
        DifferentialAbundance().fit(
            x[m1],
            x[m2],
            ls=8.0,
            condition1_sample_indices=np.zeros(m1.sum()),
            condition2_sample_indices=np.arange(m2.sum()) % 2,
        )
    with pytest.raises(TypeError, match="Unknown density options"):
        DifferentialAbundance().fit(x[m1], x[m2], bogus=1)
    with pytest.raises(ValueError, match="not fitted"):
        DifferentialAbundance().predict(x)


def test_de_planted_genes_and_attributes(prepared, arrays):
    x, y, m1, m2 = arrays["x"], arrays["y"], arrays["m1"], arrays["m2"]
    de = DifferentialExpression(n_landmarks=120, random_state=0).fit(x[m1], y[m1], x[m2], y[m2])
    r = de.predict(x, compute_mahalanobis=True, progress=False)
    assert r["fold_change"].shape == (prepared.n_obs, prepared.n_vars)
    # mixed precision (default): float32 per-cell outputs, the gene means accumulated in float64
    assert all(r[k].dtype == np.float32 for k in ("condition1_smoothed", "fold_change", "fold_change_zscores"))
    assert r["mean_log_fold_change"].dtype == np.float64
    np.testing.assert_allclose(r["fold_change"], r["condition2_smoothed"] - r["condition1_smoothed"])
    np.testing.assert_allclose(r["mean_log_fold_change"], r["fold_change"].mean(axis=0, dtype=np.float64))
    assert de.mahalanobis_distances is r["mahalanobis_distances"]
    truth = prepared.var[TruthKey.DE].to_numpy()
    region = prepared.obs[TruthKey.DE_REGION].to_numpy()
    # planted genes change in the planted region: their |z| there ranks above the other genes'
    assert roc_auc_score(truth, np.abs(r["fold_change_zscores"][region]).mean(axis=0)) > 0.75
    assert np.all(np.isfinite(r["mahalanobis_distances"])) and np.all(r["mahalanobis_distances"] >= 0)
    plan = de.estimate_memory()
    assert plan["bytes"] <= plan["budget"] and plan["gene_batch"] >= 1


def test_expression_model_variance_decomposition(arrays):
    x, y, m1, s = arrays["x"], arrays["y"][:, :8], arrays["m1"], arrays["s"]
    model = ExpressionModel(n_landmarks=80, use_empirical_variance=True, random_state=0)
    model.fit(x[m1], y[m1], sample_indices=s[m1])
    pts = x[:30]
    total = model.covariance(pts)[:, None] + model.obs_variance(pts) + model.sample_variance(pts)
    np.testing.assert_allclose(model.total_variance(pts), total)
    np.testing.assert_allclose(model.std(pts), np.sqrt(total + model.eps))
    assert model.ls > 0 and model.sigma == 1.0 and model.landmarks.shape == (80, x.shape[1])


def test_de_bad_inputs(arrays):
    x, y, m1, m2 = arrays["x"], arrays["y"], arrays["m1"], arrays["m2"]
    with pytest.raises(ValueError, match="genes"):
        DifferentialExpression().fit(x[m1], y[m1], x[m2], y[m2][:, :5])
    bad = y[m1].copy()
    bad[0, 0] = np.inf
    with pytest.raises(ValueError, match="NaN or inf"):
        DifferentialExpression().fit(x[m1], bad, x[m2], y[m2])
    with pytest.raises(ValueError, match="rows"):
        DifferentialExpression().fit(x[m1], y[m2], x[m2], y[m2])


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"sigma": np.nan}, "sigma must be a positive number"),
        ({"sigma": 0.0}, "sigma must be a positive number"),
        ({"ls": -2.0}, "ls must be a positive number"),
        ({"ls_factor": np.nan}, "ls_factor must be a positive number"),
    ],
)
def test_de_non_positive_scales_are_refused_before_any_work(arrays, options, match):
    x, y, m1, m2 = arrays["x"], arrays["y"], arrays["m1"], arrays["m2"]
    model = DifferentialExpression(random_state=0)
    with pytest.raises(ValueError, match=match):
        model.fit(x[m1], y[m1], x[m2], y[m2], **options)
    assert model.computed_landmarks is None and model.model1 is None


def test_expression_model_refuses_a_nan_noise(arrays):
    from cellflux_gp_differential import ExpressionModel

    x, y, m1 = arrays["x"], arrays["y"], arrays["m1"]
    with pytest.raises(ValueError, match="sigma must be a positive number"):
        ExpressionModel(random_state=0).fit(x[m1], y[m1], sigma=np.nan)


def test_de_depends_on_the_cells_not_their_order(arrays, rng):
    x, y, m1, m2 = arrays["x"], arrays["y"][:, :30], arrays["m1"], arrays["m2"]
    p1, p2 = rng.permutation(int(m1.sum())), rng.permutation(int(m2.sum()))

    def distances(order1, order2):
        model = DifferentialExpression(n_landmarks=100, random_state=0)
        model.fit(x[m1][order1], y[m1][order1], x[m2][order2], y[m2][order2])
        return model.predict(x, compute_mahalanobis=True, progress=False)["mahalanobis_distances"]

    reference = distances(np.arange(int(m1.sum())), np.arange(int(m2.sum())))
    # up to single-precision rounding of the mixed-precision products (the landmarks are the same)
    np.testing.assert_allclose(distances(p1, p2), reference, rtol=1e-4)
