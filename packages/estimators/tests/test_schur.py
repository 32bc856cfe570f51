import logging

import numpy as np
import pytest
from scipy import sparse
from scipy.linalg import subspace_angles

from cellflux_estimators import partial_schur
from cellflux_estimators._engine import _schur
from cellflux_estimators._engine._checks import as_transition_matrix


def test_krylov_matches_dense_and_is_invariant(chain):
    _, t = chain
    kry = partial_schur(t, 8, method="krylov")
    den = partial_schur(t, 8, method="dense")
    np.testing.assert_allclose(kry.eigenvalues, den.eigenvalues, atol=1e-10)
    assert subspace_angles(kry.vectors, den.vectors).max() < 1e-8
    x, r = kry.vectors, kry.matrix
    assert subspace_angles(t @ x, x).max() < 1e-8  # an invariant subspace
    assert kry.residual < 1e-10  # P Q = Q R for the orthonormal basis
    np.testing.assert_allclose(x[:, 0], 1.0)
    n = t.shape[0]
    np.testing.assert_allclose(x.T @ x / n, np.eye(8), atol=1e-10)  # eta-orthonormal for uniform eta
    assert np.all(np.diff(kry.eigenvalues.real) <= 1e-12)  # sorted descending
    assert np.tril(r, -2).max() == 0


def _rotation_chain(n_rest: int = 60) -> sparse.csr_matrix:
    """A 3-cycle (eigenvalues 0.9 exp(+-2 pi i / 3)) weakly coupled to a random, fast-mixing block."""
    rng = np.random.default_rng(0)
    n = 3 + n_rest
    dense = np.zeros((n, n))
    for i in range(3):
        dense[i, (i + 1) % 3] = 0.9
        dense[i, 3:] = 0.1 / n_rest
    dense[3:, 3:] = rng.random((n_rest, n_rest))
    dense[3:, :3] = 0.01
    dense /= dense.sum(axis=1, keepdims=True)
    return as_transition_matrix(sparse.csr_matrix(dense))


def test_conjugate_pairs_are_never_split(caplog):
    t = _rotation_chain()
    k = 2  # eigenvalues by magnitude: 1, then the pair of the cycle
    with caplog.at_level(logging.INFO, logger="cellflux_estimators._engine._schur"):
        res = partial_schur(t, k, method="dense", which="LM")
    assert res.vectors.shape[1] == k + 1
    assert "split a pair of complex-conjugate eigenvalues" in caplog.text
    assert not _schur.splits_pair(res.eigenvalues, len(res.eigenvalues))
    assert abs(res.eigenvalues[1].imag) > 0.5
    kry = partial_schur(t, k, method="krylov", which="LM")
    np.testing.assert_allclose(np.sort_complex(kry.eigenvalues), np.sort_complex(res.eigenvalues), atol=1e-8)
    assert subspace_angles(kry.vectors, res.vectors).max() < 1e-6


def test_dense_refused_above_limit(chain, monkeypatch):
    _, t = chain
    monkeypatch.setattr(_schur, "DENSE_MAX", 100)
    with pytest.raises(ValueError, match="densifies"):
        partial_schur(t, 5, method="dense")


def test_bad_matrices_are_refused(chain):
    _, t = chain
    bad = t.copy().tolil()
    bad[0, 0] += 0.5
    with pytest.raises(ValueError, match="not row-stochastic: row 0"):
        as_transition_matrix(bad)
    nan = t.copy()
    nan.data[0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        as_transition_matrix(nan)
    with pytest.raises(ValueError, match="square"):
        as_transition_matrix(sparse.random(4, 5, format="csr"))
    with pytest.raises(ValueError, match="n_components"):
        partial_schur(t, 1)


def test_reproducible(chain):
    _, t = chain
    a = partial_schur(t, 6, method="krylov", seed=3)
    b = partial_schur(t, 6, method="krylov", seed=3)
    np.testing.assert_array_equal(a.vectors, b.vectors)
