"""The faster paths give the same answers: Krylov–Schur subspace, CFLARE's lazily computed right vectors,
and the two-level preconditioned fate solve on small chains."""

import numpy as np
from scipy import linalg
from scipy.linalg import subspace_angles

from cellflux._keys import TruthKey
from cellflux_estimators import CFLARE, GPCCA, partial_schur
from cellflux_estimators._engine._eigen import eigendecomposition
from cellflux_estimators._engine._krylov_schur import krylov_schur
from cellflux_estimators._engine._linsolve import solve_transient


def test_krylov_schur_spans_the_dominant_invariant_subspace(chain):
    _, t = chain
    res = krylov_schur(t, 6, m=30, tol=1e-12, seed=3)
    q = res.basis
    assert res.converged and res.residual <= 1e-12
    np.testing.assert_allclose(q.T @ q, np.eye(q.shape[1]), atol=1e-12)
    dense = partial_schur(t, q.shape[1], method="dense")
    assert subspace_angles(q, dense.vectors).max() < 1e-8
    projected = linalg.eigvals(q.T @ (t @ q))
    np.testing.assert_allclose(np.sort(projected.real)[::-1], dense.eigenvalues.real, atol=1e-10)
    # not converged within the product budget: said so, with the residual
    short = krylov_schur(t, 6, m=30, tol=1e-14, maxiter=35)
    assert not short.converged and short.residual > 1e-14 and short.n_matvecs <= 60


def test_cflare_fit_computes_only_the_right_vectors_it_uses(chain):
    adata, t = chain
    full = CFLARE(t, adata=adata, seed=0).compute_eigendecomposition(k=8)
    lazy = CFLARE(t, adata=adata, seed=0).fit(k=8, use=3, method="kmeans", cluster_key=TruthKey.CLUSTERS)
    assert lazy.eigendecomposition["V_r"].shape[1] == 3
    np.testing.assert_allclose(lazy.eigendecomposition["D"], full.eigendecomposition["D"], atol=1e-10)
    right_full, right_lazy = full.eigendecomposition["V_r"][:, :3].real, lazy.eigendecomposition["V_r"].real
    assert subspace_angles(right_full, right_lazy).max() < 1e-8
    full.predict(use=3, method="kmeans", cluster_key=TruthKey.CLUSTERS)
    assert (full.terminal_states.astype(str) == lazy.terminal_states.astype(str)).all()
    # asking for a vector beyond those computed computes it
    lazy.predict(use=[0, 4], method="kmeans")
    assert lazy.eigendecomposition["V_r"].shape[1] == 5
    none = eigendecomposition(t, 5, n_right=0)
    assert none.right is None and none.left.shape == (t.shape[0], 5)


def test_auto_solver_uses_two_level_on_small_chains_and_matches_direct(chain):
    _, t = chain
    n = t.shape[0]
    absorbing = np.zeros(n, dtype=bool)
    absorbing[np.argsort(np.asarray(t.sum(axis=0)).ravel())[-40:]] = True
    trans = np.flatnonzero(~absorbing)
    q = t[trans][:, trans]
    b = np.asarray(t[trans][:, np.flatnonzero(absorbing)].sum(axis=1))
    b = np.column_stack([b[:, 0] * 0.3, b[:, 0] * 0.7])
    from cellflux_estimators._engine import _linsolve

    _linsolve_min = _linsolve.AUTO_TWOLEVEL_MIN
    try:
        _linsolve.AUTO_TWOLEVEL_MIN = 100
        x, rep = solve_transient(q, b, solver="auto", tol=1e-10)
    finally:
        _linsolve.AUTO_TWOLEVEL_MIN = _linsolve_min
    xd, _ = solve_transient(q, b, solver="direct")
    assert rep.preconditioner == "twolevel" and rep.max_residual <= 1e-10
    np.testing.assert_allclose(x, xd, atol=1e-8)
    g = GPCCA(t).compute_schur(6).compute_macrostates(3)
    g.predict_terminal_states(method="top_n", n_states=2)
    g.compute_fate_probabilities()
    np.testing.assert_allclose(g.fate_probabilities.sum(axis=1), 1.0)


def _random_chain(n: int, seed: int):
    from scipy import sparse

    rng = np.random.default_rng(seed)
    m = sparse.random(n, n, density=8 / n, random_state=rng, format="csr") + sparse.eye(n, format="csr") * 0.1
    return sparse.csr_matrix(m.multiply(1.0 / np.asarray(m.sum(axis=1)))), rng


def test_deflated_right_eigenvectors_match_the_plain_run(chain):
    from scipy import sparse

    from cellflux_estimators._engine._eigen import _deflation_basis, right_eigenvectors

    _, t = chain
    reducible = sparse.block_diag([_random_chain(150, 2)[0], _random_chain(120, 3)[0]], format="csr")
    for mat in (t, _random_chain(400, 1)[0], reducible):  # the random chains have complex eigenvalues
        e = eigendecomposition(mat, 12, n_right=0)
        for m in (1, 2, 4, 6) if mat is not reducible else (2, 4, 6):  # eigenvalue 1 is double in `reducible`
            plain = right_eigenvectors(mat, m)
            deflated = right_eigenvectors(mat, m, eigenvalues=e.eigenvalues, left=e.left)
            assert deflated.shape == plain.shape
            basis = np.concatenate([plain.real, plain.imag], axis=1)
            other = np.concatenate([deflated.real, deflated.imag], axis=1)
            keep = np.linalg.norm(basis, axis=0) > 1e-8
            assert subspace_angles(basis[:, keep], other[:, np.linalg.norm(other, axis=0) > 1e-8]).max() < 1e-7
            # each column is an eigenvector of P for the same eigenvalue as the left run found
            lam = e.eigenvalues[:m]
            np.testing.assert_allclose(mat @ deflated, deflated * lam, atol=1e-8)
            if mat is not reducible:  # a simple eigenvalue 1: its right eigenvector is the constant, exactly
                np.testing.assert_array_equal(deflated[:, 0], np.full(mat.shape[0], 1 / np.sqrt(mat.shape[0])))
    # the deflated set never holds half of a complex pair, and its basis is orthonormal
    vals = np.array([1.0, 0.9 + 0.1j, 0.9 - 0.1j, 0.5])
    rng = np.random.default_rng(0)
    left = rng.random((50, 4)) + 1j * rng.random((50, 4))
    q = _deflation_basis(vals, left, 2)
    np.testing.assert_allclose(q.T @ q, np.eye(q.shape[1]), atol=1e-12)
    assert subspace_angles(q, np.stack([left[:, 3].real, left[:, 3].imag], axis=1)).max() < 1e-10


def test_sort_schur_single_sort_equals_block_by_block_rescan():
    from cellflux_estimators._engine._sort_schur import _sort_schur_rescan, schur_eigenvalues, sort_key, sort_schur

    rng = np.random.default_rng(3)
    for trial in range(40):
        m = int(rng.integers(3, 30))
        a = rng.standard_normal((m, m))
        if trial % 2:  # mostly complex pairs, close together
            rot = np.kron(np.eye(m // 2), [[0.9, 0.2], [-0.2, 0.9]])
            a = np.pad(rot, (0, m % 2)) + 1e-3 * a
        t, z = linalg.schur(a, output="real")
        for which in ("LR", "LM"):
            k = int(rng.integers(1, m + 1))
            t1, z1 = sort_schur(t, z, k, which)
            t2, z2 = _sort_schur_rescan(np.asfortranarray(t), np.eye(m, order="F"), z, 0, k, which)
            np.testing.assert_array_equal(t1, t2)
            np.testing.assert_array_equal(z1, z2)
            np.testing.assert_allclose(z1 @ t1 @ z1.T, z @ t @ z.T, atol=1e-12)
            keys = sort_key(schur_eigenvalues(t1), which)
            kk = k + (k < m and t1[k, k - 1] != 0)
            assert np.all(np.diff(keys[:kk]) <= 1e-12)
            assert keys[:kk].min() >= keys[kk:].max() - 1e-12 if kk < m else True
