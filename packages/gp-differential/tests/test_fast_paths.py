"""The shortcuts of the shared-landmark path give what the plain computation gives.

Each shortcut is compared with the computation it replaces, in double precision (to rounding) and in the
default mixed precision (to float32 rounding of the outputs).
"""

import numpy as np
import pytest

from cellflux_gp_differential import DifferentialExpression
from cellflux_gp_differential._expression import PREDICT_KEYS as KEYS
from cellflux_gp_differential._mahalanobis import mahalanobis
from cellflux_gp_differential._outputs import pair_chunk_rows
from cellflux_gp_differential._pair import covariance_pair
from cellflux_gp_differential._regression import whiten


def _fit(arrays, **options):
    x, y, m1, m2 = arrays["x"], arrays["y"], arrays["m1"], arrays["m2"]
    model = DifferentialExpression(n_landmarks=120, random_state=0, distance="kompot", **options)
    return model.fit(x[m1], y[m1], x[m2], y[m2])


@pytest.mark.parametrize("precision", ["mixed", "double"])
@pytest.mark.parametrize("empirical", [False, True])
def test_training_cells_reuse_their_whitened_columns(arrays, precision, empirical):
    """Predicting at the training cells reuses the fit's whitened cross-kernels: same results as recomputing."""
    x = arrays["x"]
    model = _fit(arrays, precision=precision, use_empirical_variance=empirical)
    assert model._training_whitened is not None
    which, cols = model._training_columns(x)
    np.testing.assert_array_equal(which, np.where(arrays["m1"], 0, 1))
    np.testing.assert_array_equal(x[arrays["m1"]][cols[which == 0]], x[which == 0])
    np.testing.assert_array_equal(x[arrays["m2"]][cols[which == 1]], x[which == 1])
    reused = {k: np.array(v) for k, v in model.predict(x, progress=False).items()}
    assert model._training_whitened is None  # released by the first predict (memory)
    assert model._training_columns(x) is None
    plain = model.predict(x, progress=False)  # the plain path
    dtype = np.float32 if precision == "mixed" else np.float64
    for key in KEYS:
        assert reused[key].dtype == (np.float64 if key == "mean_log_fold_change" else dtype), key
        scale = np.abs(plain[key]).max()
        tol = 1e-6 if precision == "mixed" else 1e-12
        np.testing.assert_allclose(reused[key], plain[key], atol=tol * scale, err_msg=key)


def test_points_not_all_training_cells_are_whitened_afresh(arrays):
    import pickle

    x = arrays["x"]
    model = _fit(arrays, precision="double")
    new = np.vstack([x[:5], x[:1] + 1e-3])  # one point that is no training cell
    assert model._training_columns(new) is None
    assert model._training_columns(x[::-1]) is not None  # any order, any subset of training cells
    assert pickle.loads(pickle.dumps(model))._training_whitened is None  # the cache is not pickled
    assert model._training_whitened is not None
    got = model.predict(new, progress=False)["fold_change"]
    assert model._training_whitened is None
    np.testing.assert_allclose(got, model.predict(new, progress=False)["fold_change"], rtol=0, atol=0)


def test_no_whitened_cache_beyond_its_budget(arrays, monkeypatch):
    from cellflux_gp_differential import _expression

    monkeypatch.setattr(_expression, "WHITENED_CACHE_BYTES", 1000)
    model = _fit(arrays)
    assert model._training_whitened is None
    assert model._training_columns(arrays["x"]) is None


def test_landmark_whitening_in_closed_form(arrays):
    """``Lp^{-1} K_uu = Lp^T - jitter Lp^{-1}``, used when whitening the landmarks themselves."""
    design = _fit(arrays, precision="double").model1.predictor.design
    closed = whiten(design, design.landmarks)
    product = whiten(design, design.landmarks.copy())  # not the same object: the matrix product
    np.testing.assert_allclose(closed, product, atol=1e-9)


def test_upper_stored_covariance_and_distances(arrays):
    model = _fit(arrays, precision="double")
    p1, p2 = model.model1.predictor, model.model2.predictor
    points = p1.design.landmarks
    full = covariance_pair(p1, p2, points)
    upper = covariance_pair(p1, p2, points, upper=True)
    assert upper.flags.f_contiguous
    np.testing.assert_array_equal(np.triu(upper), np.triu(full))
    np.testing.assert_allclose(full, full.T, atol=0)
    diff = np.random.default_rng(0).normal(size=(points.shape[0], 7))
    expected = np.sqrt(np.sum(diff * np.linalg.solve(full + 1e-8 * np.eye(len(full)), diff), axis=0))
    np.testing.assert_allclose(mahalanobis(diff, upper.copy(order="F"), upper=True), expected, rtol=1e-6)
    np.testing.assert_allclose(mahalanobis(diff, full), expected, rtol=1e-6)
    kept = upper.copy(order="F")
    mahalanobis(diff, kept, upper=True)  # without overwrite_cov the caller's matrix is left alone
    np.testing.assert_array_equal(kept, upper)


@pytest.mark.parametrize(
    ("n", "landmarks", "batch", "rows", "expected"),
    [
        (3500, 1000, 500, None, 1792),  # two equal chunks of ~64 MB, rounded up to 256
        (100, 1000, 500, None, 256),  # small: one padded chunk
        (3500, 1000, 3000, None, 1792),  # chunks of at most max(batch_size, budget), split equally
        (9000, 1000, 4500, None, 4608),  # batch_size above the budget: larger chunks
        (3500, 1000, 500, 37, 37),  # explicit rows
        (20, 1000, 500, 37, 20),
    ],
)
def test_pair_chunk_rows(n, landmarks, batch, rows, expected):
    assert pair_chunk_rows(n, landmarks, batch, rows) == expected
