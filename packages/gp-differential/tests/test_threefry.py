"""JAX's sample without replacement, drawn in numpy: the same indices as JAX, nothing compiled."""

import warnings

import jax
import numpy as np
import pytest

from cellflux_gp_differential import _params
from cellflux_gp_differential._threefry import choice_without_replacement, threefry2x32

needs_partitionable = pytest.mark.skipif(
    not jax.config.jax_threefry_partitionable, reason="this JAX uses the older Threefry scheme (JAX draws then)"
)


def test_threefry_matches_the_published_known_answer():
    # Random123's known-answer vectors for Threefry-2x32 with 20 rounds
    a, b = threefry2x32((0x13198A2E, 0x03707344), np.array([0x243F6A88], np.uint32), np.array([0x85A308D3], np.uint32))
    assert (int(a[0]), int(b[0])) == (0xC4923A9C, 0x483DF7A0)
    a, b = threefry2x32((0, 0), np.zeros(1, np.uint32), np.zeros(1, np.uint32))
    assert (int(a[0]), int(b[0])) == (0x6B200159, 0x99BA4EFE)


@needs_partitionable
@pytest.mark.parametrize("seed", [0, 432, 2**32 - 1])
@pytest.mark.parametrize("n", [1, 7, 500, 1625, 1626, 2000, 3500, 100_000, 3_000_000])
def test_choice_equals_jax(seed, n):
    m = min(500, n)
    expected = np.asarray(jax.random.choice(jax.random.PRNGKey(seed), n, shape=(m,), replace=False))
    np.testing.assert_array_equal(choice_without_replacement(seed, n, m), expected)


def test_choice_draws_distinct_indices_in_range():
    idx = choice_without_replacement(432, 10_000, 10_000)
    np.testing.assert_array_equal(np.sort(idx), np.arange(10_000))


@pytest.mark.parametrize(
    ("seed", "n", "m", "message"),
    [(-1, 10, 5, "seed must be"), (2**32, 10, 5, "seed must be"), (0, 10, 11, "0 <= m <= n"), (0, 2**32, 5, "n < 2")],
)
def test_choice_refuses_what_jax_would_not_draw(seed, n, m, message):
    with pytest.raises(ValueError, match=message):
        choice_without_replacement(seed, n, m)


@needs_partitionable
def test_fractal_dimension_is_mellons_without_jax_drawing(rng, monkeypatch):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from mellon.parameters import compute_d_factal

    x = rng.normal(size=(900, 5))
    expected = float(compute_d_factal(x))  # mellon draws its sample with jax.random.choice

    def refuse(*args, **kwargs):
        raise AssertionError("jax.random.choice was called")

    monkeypatch.setattr(jax.random, "choice", refuse)
    assert _params.fractal_dimension(x) == pytest.approx(expected, rel=1e-10)


def test_under_the_older_threefry_scheme_jax_draws_and_mellon_is_still_matched(rng):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from mellon.parameters import compute_d_factal

    x = rng.normal(size=(900, 5))
    ours_now = _params.fractal_dimension(x)
    before = jax.config.jax_threefry_partitionable
    jax.config.update("jax_threefry_partitionable", False)
    try:
        assert _params.fractal_dimension(x) == pytest.approx(float(compute_d_factal(x)), rel=1e-10)
        # JAX draws other cells under this scheme: the numpy draw alone would have missed mellon
        old_scheme = np.asarray(jax.random.choice(jax.random.PRNGKey(432), 900, shape=(500,), replace=False))
        assert not np.array_equal(old_scheme, choice_without_replacement(432, 900, 500))
    finally:
        jax.config.update("jax_threefry_partitionable", before)
    assert _params.fractal_dimension(x) == ours_now
