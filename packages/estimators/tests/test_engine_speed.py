"""The fast engine pieces against plain references: lockstep GMRES, column maxima, k-means, coarse pi."""

import numpy as np
import pytest
from scipy import sparse
from scipy.sparse import linalg as splinalg

from cellflux_estimators import GPCCA
from cellflux_estimators._engine import _support
from cellflux_estimators._engine._cluster import kmeans
from cellflux_estimators._engine._eigen import stationary_distribution
from cellflux_estimators._engine._gmres import gmres_many
from cellflux_estimators._engine._gpcca import fill_rotation, objective
from cellflux_estimators._engine._linsolve import solve_transient
from cellflux_estimators._engine._twolevel import TwoLevel, aggregate


def _transient(t: sparse.csr_matrix, absorbing: np.ndarray):
    trans = np.setdiff1d(np.arange(t.shape[0]), absorbing)
    rows = t[trans]
    return rows[:, trans], np.column_stack([np.asarray(rows[:, [a]].sum(axis=1)).ravel() for a in absorbing])


def test_gmres_many_matches_lu_for_every_column(chain):
    _, t = chain
    q, b = _transient(t, np.array([5, 300, 550]))
    a = sparse.eye(q.shape[0], format="csr") - q
    exact = splinalg.splu(sparse.csc_matrix(a)).solve(b)
    for restart in (20, 60):
        res = gmres_many(a, b, tol=1e-10, restart=restart, maxiter=5000)
        assert res.converged and res.residuals.max() <= 1e-10
        np.testing.assert_allclose(res.x, exact, atol=1e-6)  # residual 1e-10 x condition number
    # a warm start at the solution needs no iteration; a preconditioner (exact inverse) needs one
    assert gmres_many(a, b, x0=exact, tol=1e-8).iterations == 0
    lu = splinalg.splu(sparse.csc_matrix(a))
    res = gmres_many(a, b, tol=1e-10, preconditioner=lambda z: lu.solve(z.T).T)
    assert res.iterations <= 2 and res.residuals.max() <= 1e-10
    # an exhausted iteration budget is reported, not hidden
    res = gmres_many(a, b, tol=1e-14, restart=3, maxiter=3)
    assert not res.converged and res.iterations == 3


def test_two_level_preconditioner_is_exact_and_cuts_iterations(chain):
    _, t = chain
    q, b = _transient(t, np.array([5, 300, 550]))
    a = sparse.csr_matrix(sparse.eye(q.shape[0]) - q)
    exact = splinalg.splu(sparse.csc_matrix(a)).solve(b)
    labels = aggregate(a, 40)
    assert labels.min() == 0 and len(np.unique(labels)) == labels.max() + 1 >= 40
    plain = gmres_many(a, b, tol=1e-10, maxiter=5000)
    pre = gmres_many(a, b, tol=1e-10, maxiter=5000, preconditioner=TwoLevel(a, 40))
    assert pre.converged and pre.iterations < plain.iterations / 2
    np.testing.assert_allclose(pre.x, exact, atol=1e-6)
    x, report = solve_transient(q, b, solver="gmres", preconditioner="twolevel", tol=1e-10)
    assert report.preconditioner == "twolevel"
    np.testing.assert_allclose(x, exact, atol=1e-6)


def test_auto_solver_falls_back_and_reports(chain):
    _, t = chain
    q, b = _transient(t, np.array([5, 300, 550]))
    x, report = solve_transient(q, b, solver="auto", tol=1e-9)
    assert report.solver == "gmres" and report.max_residual <= 1e-9
    # too few iterations for GMRES: auto falls back to the sparse LU, and the answer is the same
    y, report = solve_transient(q, b, solver="auto", tol=1e-9, maxiter=2)
    assert report.solver == "direct"
    np.testing.assert_allclose(x, y, atol=1e-7)


@pytest.mark.parametrize("n", [500, _support.CHUNK + 1000])
def test_column_max_is_exact(rng, n):
    y = rng.normal(size=(n, 4))
    cm = _support.ColumnMax(y)
    for _ in range(5):
        b = rng.normal(size=(4, 5))
        np.testing.assert_array_equal(cm(b), (y @ b).max(axis=0))


def test_fast_objective_equals_the_definition(chain, rng):
    from cellflux_estimators._engine._gpcca import _objective_fast

    _, t = chain
    g = GPCCA(t)
    g.compute_schur(6)
    x = g.schur_vectors[:, :5]
    cm = _support.ColumnMax(-x[:, 1:])
    for _ in range(5):
        alpha = rng.normal(size=16)
        assert _objective_fast(alpha, 5, cm) == pytest.approx(objective(alpha, x), rel=1e-12)
    rot = np.zeros((5, 5))
    rot[1:, 1:] = rng.normal(size=(4, 4))
    assert (x @ fill_rotation(rot, x)).min() == pytest.approx(0.0, abs=1e-12)


def test_kmeans_recovers_separated_blobs_and_is_seeded(rng):
    centers = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    truth = np.repeat(np.arange(3), 50)
    x = centers[truth] + rng.normal(scale=0.5, size=(150, 2))
    labels = kmeans(x, 3, seed=1)
    # the same partition up to the names of the clusters
    assert len({(a, b) for a, b in zip(truth, labels, strict=True)}) == 3
    np.testing.assert_array_equal(labels, kmeans(x, 3, seed=1))


def _kmeans_one_restart_at_a_time(x: np.ndarray, k: int, seed: int, n_init: int = 10) -> np.ndarray:
    """Plain Lloyd's k-means, restart after restart, with ``rng.choice`` seeding (what 0.3.1 ran)."""
    x2 = (x**2).sum(axis=1)
    rng = np.random.default_rng(seed)

    def sq(c):
        return np.maximum(x2[:, None] - 2.0 * x @ c.T + (c**2).sum(axis=1)[None, :], 0.0)

    best, best_inertia = None, np.inf
    for _ in range(n_init):
        centers = np.empty((k, x.shape[1]))
        centers[0] = x[rng.integers(len(x))]
        closest = sq(centers[:1])[:, 0]
        for j in range(1, k):
            total = closest.sum()
            centers[j] = x[rng.choice(len(x), p=closest / total) if total > 0 else rng.integers(len(x))]
            closest = np.minimum(closest, sq(centers[j : j + 1])[:, 0])
        labels = None
        for _ in range(100):
            d = sq(centers)
            new = np.argmin(d, axis=1)
            if labels is not None and np.array_equal(new, labels):
                break
            labels = new
            counts = np.bincount(labels, minlength=k)
            sums = np.zeros_like(centers)
            np.add.at(sums, labels, x)
            centers[counts > 0] = sums[counts > 0] / counts[counts > 0, None]
        inertia = float(d[np.arange(len(x)), labels].sum())
        if inertia < best_inertia:
            best, best_inertia = labels, inertia
    return best


def test_batched_kmeans_equals_restarts_run_one_at_a_time(rng):
    from cellflux_estimators._engine._cluster import _argmin_last

    for trial in range(30):
        n, d, k = int(rng.integers(10, 200)), int(rng.integers(1, 6)), int(rng.integers(1, 7))
        x = rng.normal(size=(n, d)) + rng.integers(0, 3, size=(n, 1))
        if trial % 5 == 0:
            x = np.round(x)  # ties in the distances and duplicated points
        np.testing.assert_array_equal(kmeans(x, k, seed=trial), _kmeans_one_restart_at_a_time(x, k, trial))
    d = rng.integers(0, 3, size=(4, 50, 5)).astype(float)  # many ties: the first minimum wins
    np.testing.assert_array_equal(_argmin_last(d), np.argmin(d, axis=-1))


def test_coarse_stationary_distribution_is_chi_t_pi(chain):
    _, t = chain
    g = GPCCA(t)
    g.compute_schur(8)
    g.compute_macrostates(4)
    pi = stationary_distribution(t)
    chi = g.macrostates_memberships.to_numpy()
    np.testing.assert_allclose(g.coarse_stationary_distribution.to_numpy(), chi.T @ pi, atol=1e-8)
