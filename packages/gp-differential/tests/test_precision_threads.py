"""Mixed precision stays within stated bounds of double precision; threads do not change any result."""

import numpy as np
import pytest
from scipy.stats import spearmanr

from cellflux_gp_differential import DifferentialExpression
from cellflux_gp_differential._expression import PREDICT_KEYS as KEYS
from cellflux_gp_differential._threads import resolve_n_jobs, thread_map


def _predict(arrays, samples=False, **options):
    x, y, m1, m2, s = arrays["x"], arrays["y"], arrays["m1"], arrays["m2"], arrays["s"]
    kw = {"condition1_sample_indices": s[m1], "condition2_sample_indices": s[m2]} if samples else {}
    model = DifferentialExpression(n_landmarks=120, random_state=0, use_empirical_variance=True, **options)
    model.fit(x[m1], y[m1], x[m2], y[m2], **kw)
    return model, model.predict(x, compute_mahalanobis=True, progress=False)


@pytest.mark.parametrize("distance", ["calibrated", "kompot"])
def test_mixed_precision_close_to_double(arrays, distance):
    model, mixed = _predict(arrays, distance=distance)
    _, double = _predict(arrays, distance=distance, precision="double")
    assert model.precision == "mixed"  # the default
    for key in ("condition1_smoothed", "condition2_smoothed", "condition1_std", "condition2_std"):
        np.testing.assert_allclose(mixed[key], double[key], atol=2e-5 * np.abs(double[key]).max(), err_msg=key)
    for key in ("fold_change", "mean_log_fold_change"):  # differences of smoothed values: 1e-4 of their range
        np.testing.assert_allclose(mixed[key], double[key], atol=1e-4 * np.abs(double[key]).max(), err_msg=key)
    np.testing.assert_allclose(mixed["mahalanobis_distances"], double["mahalanobis_distances"], rtol=1e-3)
    assert spearmanr(mixed["mahalanobis_distances"], double["mahalanobis_distances"])[0] > 0.9999
    np.testing.assert_allclose(
        model.noise_variance(), _predict(arrays, precision="double")[0].noise_variance(), rtol=1e-3
    )
    assert not np.array_equal(mixed["fold_change"], double["fold_change"])  # the precisions do differ


@pytest.mark.parametrize("samples", [False, True])
def test_threads_give_identical_results(arrays, samples, monkeypatch):
    from cellflux_gp_differential import _outputs

    # chunks of 64 cells (the default ~64 MB would be one chunk here): several per thread
    monkeypatch.setattr(_outputs, "PAIR_CHUNK_BYTES", 64 * 120 * _outputs.PAIR_BYTES_PER_LANDMARK)
    _, one = _predict(arrays, samples=samples, n_jobs=1, batch_size=64)
    _, two = _predict(arrays, samples=samples, n_jobs=2, batch_size=64)
    for key in (*KEYS, "mahalanobis_distances"):
        np.testing.assert_array_equal(one[key], two[key], err_msg=key)


def test_threaded_mahalanobis_stage_with_single_threaded_blas(arrays):
    """With BLAS on one thread the Mahalanobis step splits its products over ``n_jobs`` threads: same results."""
    from threadpoolctl import threadpool_limits

    from cellflux_gp_differential._threads import blas_threads, stage_jobs

    with threadpool_limits(limits=1, user_api="blas"):
        assert blas_threads() == 1 and stage_jobs(2) == 2 and stage_jobs(1) == 1
        results = [_predict(arrays, distance="kompot", n_jobs=n)[1] for n in (1, 2)]
    assert stage_jobs(2) == (2 if blas_threads() < 2 else 1)
    for key in (*KEYS, "mahalanobis_distances"):
        np.testing.assert_array_equal(results[0][key], results[1][key], err_msg=key)


def test_thread_map_keeps_order_and_raises():
    assert thread_map(lambda i: i * i, range(7), 3) == [i * i for i in range(7)]

    def fail(i):
        if i == 2:
            raise ValueError("piece 2")
        return i

    with pytest.raises(ValueError, match="piece 2"):
        thread_map(fail, range(4), 2)


@pytest.mark.parametrize("bad", [0, True, 1.5, "2"])
def test_bad_n_jobs(bad):
    with pytest.raises(ValueError, match="n_jobs"):
        DifferentialExpression(n_jobs=bad)


def test_bad_precision():
    with pytest.raises(ValueError, match="precision must be one of"):
        DifferentialExpression(precision="half")


def test_n_jobs_resolution():
    assert resolve_n_jobs(1) == 1 and resolve_n_jobs(3) == 3
    assert resolve_n_jobs(None) == resolve_n_jobs(-1) >= 1
    assert resolve_n_jobs(-1000) == 1


def test_per_cell_variances_without_empirical_variance(arrays):
    """Without observation/sample variance the standard deviations are per cell, the same for every gene."""
    x, y, m1, m2 = arrays["x"], arrays["y"], arrays["m1"], arrays["m2"]
    model = DifferentialExpression(n_landmarks=120, random_state=0, use_empirical_variance=False, batch_size=64)
    out = model.fit(x[m1], y[m1], x[m2], y[m2]).predict(x, progress=False)
    v1, v2 = model.model1.covariance(x), model.model2.covariance(x)
    # (predict sums |L_B^{-1} a|^2 in single precision, covariance() in double: rtol 1e-6)
    for std, v in ((out["condition1_std"], v1), (out["condition2_std"], v2)):
        np.testing.assert_allclose(std, np.broadcast_to(np.sqrt(v + model.eps)[:, None], y.shape), rtol=1e-6)
    expected = out["fold_change"] / np.sqrt(v1 + v2 + model.eps)[:, None]
    np.testing.assert_allclose(out["fold_change_zscores"], expected, rtol=1e-6)
    assert (v1 > 0).all() and (v2 > 0).all()
