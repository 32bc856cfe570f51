"""The log-ratio estimator against an exact Laplace computation; DA fits on threads change no result."""

import itertools

import numpy as np
import pytest
from scipy.special import expit

from cellflux_gp_differential import DifferentialAbundance
from cellflux_gp_differential._density import design_inverse, fit_density
from cellflux_gp_differential._jax import matern52
from cellflux_gp_differential._ratio import fit_log_ratio


def _two_clouds(seed=0, n1=40, n2=30):
    rng = np.random.default_rng(seed)
    x1 = rng.normal(0.0, 1.0, (n1, 2))
    x2 = rng.normal(0.6, 1.0, (n2, 2))
    return x1, x2


def _exact_laplace(x, labels, offset, ls, scale, jitter):
    """Laplace approximation of GP classification with the full kernel ``scale^2 (K + jitter I)``, by Newton."""
    K = scale**2 * (np.asarray(matern52(x, x, ls)) + jitter * np.eye(len(x)))
    f = np.zeros(len(x))
    for _ in range(100):  # Newton on the posterior of f (Rasmussen & Williams, algorithm 3.1)
        p = expit(f + offset)
        w = p * (1 - p)
        b = w * f + (labels - p)
        sw = np.sqrt(w)
        B = np.eye(len(x)) + sw[:, None] * K * sw[None, :]
        a = b - sw * np.linalg.solve(B, sw * (K @ b))
        f_new = K @ a
        if np.max(np.abs(f_new - f)) < 1e-12:
            f = f_new
            break
        f = f_new
    p = expit(f + offset)
    w = p * (1 - p)
    cov = np.linalg.inv(np.linalg.inv(K) + np.diag(w))
    return f, np.diag(cov)


def test_log_ratio_matches_exact_laplace_on_all_cells_as_landmarks():
    """With every cell a landmark the low-rank model is the full GP: same mode and posterior variance."""
    x1, x2 = _two_clouds()
    x = np.vstack([x1, x2])
    labels = np.r_[np.zeros(len(x1)), np.ones(len(x2))]
    offset = np.log(len(x2) / len(x1))
    ls, scale, jitter = 1.5, 0.8, 1e-6
    fit = fit_log_ratio(x1, x2, x, ls=ls, scale=scale, jitter=jitter)
    mean, variance = fit.predict(x)
    f_exact, var_exact = _exact_laplace(x, labels, offset, ls, scale, jitter)
    # L-BFGS-B's default stopping rule (on the whitened latent) bounds the agreement of the modes: 1.2e-5
    # measured, against a Newton solution converged to 1e-12
    np.testing.assert_allclose(mean, f_exact, atol=1e-4 * np.abs(f_exact).max())
    np.testing.assert_allclose(variance, var_exact, rtol=1e-4)  # 3.8e-6 measured
    assert np.all(variance > 0) and np.all(variance < scale**2 * (1 + jitter))


def test_densities_share_the_landmark_inverse_without_changing_results():
    x1, x2 = _two_clouds(1, 60, 50)
    u = np.vstack([x1, x2])[::3]
    nn = np.sort(np.linalg.norm(x1[:, None] - x1[None], axis=2), axis=1)[:, 1]
    alone = fit_density(x1, u, ls=1.2, d=2.0, mu=-1.0, nn=nn)
    shared = fit_density(x1, u, ls=1.2, d=2.0, mu=-1.0, nn=nn, Linv=design_inverse(u, 1.2, 1e-6))
    np.testing.assert_array_equal(alone.Linv, shared.Linv)
    np.testing.assert_array_equal(alone.weights, shared.weights)
    np.testing.assert_array_equal(alone.std, shared.std)


@pytest.mark.parametrize("method", ["ratio", "density"])
def test_da_threads_give_identical_results(arrays, method, monkeypatch):
    """The densities and the log ratio fitted and predicted on threads: bit-identical to one thread."""
    from threadpoolctl import threadpool_limits

    from cellflux_gp_differential import _abundance

    x, m1, m2 = arrays["x"], arrays["m1"], arrays["m2"]
    monkeypatch.setattr(_abundance, "PART_CELLS", 256)  # predict's densities in several parts, over the threads
    assert len(_abundance._cell_parts(len(x))) >= 2
    with threadpool_limits(limits=1, user_api="blas"):  # the threads hold BLAS to one thread each
        results = [
            DifferentialAbundance(n_landmarks=150, random_state=0, method=method, n_jobs=n)
            .fit(x[m1], x[m2])
            .predict(x, progress=False)
            for n in (1, 2)
        ]
    for key, value in results[0].items():
        np.testing.assert_array_equal(value, results[1][key], err_msg=key)
    assert np.all(np.isfinite(results[0]["log_fold_change_zscore"]))


def test_cell_parts_cover_the_cells_in_whole_batches():
    from cellflux_gp_differential._abundance import PART_CELLS, _cell_parts

    assert PART_CELLS % 256 == 0
    assert _cell_parts(100) == [slice(0, 100)]
    for n_cells in (PART_CELLS, 2000, 3500, 5000):
        parts = _cell_parts(n_cells)
        assert parts[0].start == 0 and parts[-1].stop == n_cells and len(parts) == -(-n_cells // PART_CELLS)
        assert all(a.stop == b.start for a, b in itertools.pairwise(parts))
        assert all(p.stop - p.start == PART_CELLS for p in parts[:-1])


def test_ratio_landmarks_default_and_explicit(arrays):
    x, m1, m2 = arrays["x"], arrays["m1"], arrays["m2"]
    default = DifferentialAbundance(n_landmarks=120, random_state=0).fit(x[m1], x[m2])
    assert len(default.landmarks) == 120 and len(default.ratio_landmarks) == 30  # 120 / RATIO_LS_FACTOR
    assert default.ratio_predictor.landmarks.shape == (30, x.shape[1])
    given = DifferentialAbundance(random_state=0).fit(x[m1], x[m2], landmarks=default.landmarks)
    assert given.ratio_landmarks is given.landmarks  # landmarks given: the ratio uses them too
    explicit = DifferentialAbundance(n_landmarks=120, ratio_n_landmarks=60, random_state=0).fit(x[m1], x[m2])
    assert len(explicit.ratio_landmarks) == 60
    evidence = DifferentialAbundance(n_landmarks=120, ratio_ls="evidence", ratio_ls_factors=(2, 4), random_state=0)
    assert evidence.fit(x[m1], x[m2]).ratio_landmarks is evidence.landmarks  # its grid may start at 1x
    evidence = DifferentialAbundance(
        n_landmarks=120, ratio_n_landmarks=60, ratio_ls="evidence", ratio_ls_factors=(2, 4), random_state=0
    )
    assert evidence.fit(x[m1], x[m2]).ratio_predictor.landmarks.shape[0] == 60  # a number applies to it too
    # fewer landmarks for the (4x smoother) ratio: the same log fold change to within a small fraction
    full = DifferentialAbundance(n_landmarks=120, ratio_n_landmarks=120, random_state=0).fit(x[m1], x[m2])
    lfc_default, lfc_full = (
        default.predict(x, progress=False)["log_fold_change"],
        full.predict(x, progress=False)["log_fold_change"],
    )
    assert np.corrcoef(lfc_default, lfc_full)[0, 1] > 0.99
    with pytest.raises(ValueError, match="ratio_n_landmarks"):
        DifferentialAbundance(ratio_n_landmarks=1)
    with pytest.raises(ValueError, match="ratio_n_landmarks=100000 is larger than"):
        DifferentialAbundance(ratio_n_landmarks=100_000).fit(x[m1], x[m2])


@pytest.mark.parametrize(
    ("init", "fit", "match"),
    [
        ({"ratio_n_landmarks": 100_000}, {}, "ratio_n_landmarks"),
        ({"n_landmarks": 100_000}, {}, "n_landmarks"),
        ({}, {"n_neighbors": 0}, "n_neighbors"),
        ({}, {"landmarks": np.zeros((5, 2))}, "landmarks"),
        ({}, {"ls_factor": np.nan}, "ls_factor must be a positive number"),
        ({}, {"ls_factor": -1.0}, "ls_factor must be a positive number"),
        ({}, {"ls": 0.0}, "ls must be a positive number"),
        ({}, {"ls": np.nan}, "ls must be a positive number"),
        ({}, {"d": 0}, "d must be a positive number"),
    ],
)
def test_da_bad_fit_inputs_are_refused_before_any_work(arrays, init, fit, match):
    x, m1, m2 = arrays["x"], arrays["m1"], arrays["m2"]
    model = DifferentialAbundance(random_state=0, **init)
    with pytest.raises(ValueError, match=match):
        model.fit(x[m1], x[m2], **fit)
    assert model.landmarks is None and model.d1 is None and model.density_predictor1 is None


@pytest.mark.parametrize("bad", [0, True, 1.5, "2"])
def test_da_bad_n_jobs(bad):
    with pytest.raises(ValueError, match="n_jobs"):
        DifferentialAbundance(n_jobs=bad)


def test_design_is_exact_aligned_and_reaches_jax_without_a_copy(rng):
    from cellflux_gp_differential._density import _design
    from cellflux_gp_differential._jax import matern52, on_device

    x, u = rng.normal(size=(300, 4)), rng.normal(size=(40, 4))
    Linv, L = _design(x, u, 1.3, 1e-6)
    Lp = np.linalg.cholesky(np.asarray(matern52(u, u, 1.3)) + 1e-6 * np.eye(40))
    np.testing.assert_allclose(Linv, np.linalg.inv(Lp), rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(L, np.asarray(matern52(x, u, 1.3)) @ np.linalg.inv(Lp).T, rtol=1e-9, atol=1e-12)
    assert L.flags.c_contiguous and L.ctypes.data % 64 == 0
    # the optimisers' loss gets L once, sharing its memory (a copy per evaluation made 100k-cell DA 4x slower)
    assert on_device(L).unsafe_buffer_pointer() == L.ctypes.data


def test_landmarks_do_not_depend_on_the_order_of_the_cells(rng):
    from cellflux_gp_differential._params import default_length_scale, landmarks_kmeans

    x = rng.normal(size=(3000, 5))
    order = rng.permutation(len(x))
    u, u_reordered = landmarks_kmeans(x, 120, 0), landmarks_kmeans(x[order], 120, 0)
    np.testing.assert_allclose(np.sort(u, axis=0), np.sort(u_reordered, axis=0), rtol=0, atol=1e-12)
    # the length scale's sample of 2,000 of the 3,000 cells too
    assert default_length_scale(x) == pytest.approx(default_length_scale(x[order]), rel=1e-12)


@pytest.mark.parametrize("method", ["ratio", "density"])
def test_da_depends_on_the_cells_not_their_order_and_is_antisymmetric(arrays, rng, method):
    x, m1, m2 = arrays["x"], arrays["m1"], arrays["m2"]
    x1, x2 = x[m1], x[m2]
    p1, p2 = rng.permutation(len(x1)), rng.permutation(len(x2))

    def z(a, b):
        model = DifferentialAbundance(n_landmarks=100, random_state=0, method=method).fit(a, b)
        return model.predict(x, progress=False)["log_fold_change_zscore"]

    reference = z(x1, x2)
    # reordering a condition's cells changed z by up to 0.15 (ratio) and 1.0 (density) with k-means landmarks
    np.testing.assert_allclose(z(x1[p1], x2[p2]), reference, rtol=0, atol=1e-9)
    np.testing.assert_allclose(z(x2, x1), -reference, rtol=0, atol=1e-9)
