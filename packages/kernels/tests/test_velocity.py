"""VelocityKernel: invariants, the softmax scale, modes, and bad input."""

import numpy as np
import pytest
from scipy import sparse

from cellflux_kernels import VelocityKernel


def reference_row(X, V, conn, i, scale, center=True):
    """One row computed the obvious way (a loop), for comparison with the vectorised engine."""
    nbrs = conn[i].indices
    D = X[nbrs] - X[i]
    v = V[i].copy()
    if center:
        D = D - D.mean(axis=1, keepdims=True)
        v = v - v.mean()
    corr = D @ v / (np.linalg.norm(D, axis=1) * np.linalg.norm(v))
    e = np.exp(scale * corr - (scale * corr).max())
    return nbrs, e / e.sum(), corr


def test_deterministic_matches_a_loop_and_is_stochastic(adata, assert_stochastic):
    vk = VelocityKernel(adata).compute_transition_matrix(softmax_scale=4.0, show_progress_bar=False)
    T = vk.transition_matrix
    assert_stochastic(T)
    X, V = adata.layers["Ms"], adata.layers["velocity"]
    conn = adata.obsp["connectivities"].tocsr()
    for i in (0, 17, 399):
        nbrs, p, _ = reference_row(X, V, conn, i, 4.0)
        np.testing.assert_allclose(T[i, nbrs].toarray().ravel(), p, atol=1e-12)
    # only edges of the kNN graph carry probability
    assert ((T != 0).astype(int) - (T != 0).multiply(conn != 0)).nnz == 0


def test_softmax_scale_is_estimated_from_the_logits(adata):
    vk = VelocityKernel(adata).compute_transition_matrix(show_progress_bar=False)
    logits = vk.logits.data
    assert vk.params["softmax_scale"] == pytest.approx(1.0 / np.median(np.abs(logits[logits != 0])), rel=1e-12)
    assert vk.params["mode"] == "deterministic"


@pytest.mark.parametrize("similarity", ["cosine", "dot_product"])
def test_other_similarities_match_a_loop(adata, similarity):
    vk = VelocityKernel(adata).compute_transition_matrix(
        similarity=similarity, softmax_scale=2.0, show_progress_bar=False
    )
    X, V = adata.layers["Ms"], adata.layers["velocity"]
    nbrs = adata.obsp["connectivities"][5].indices
    D = X[nbrs] - X[5]
    s = D @ V[5]
    if similarity == "cosine":
        s = s / (np.linalg.norm(D, axis=1) * np.linalg.norm(V[5]))
    e = np.exp(2.0 * (s - s.max()))
    np.testing.assert_allclose(vk.transition_matrix[5, nbrs].toarray().ravel(), e / e.sum(), atol=1e-12)


def test_callable_similarity_equals_builtin(adata):
    def correlation(v, D, scale):
        D = D - D.mean(axis=1, keepdims=True)
        v = v[0] - v[0].mean()
        c = D @ v / (np.linalg.norm(D, axis=1) * np.linalg.norm(v))
        e = np.exp(scale * c - (scale * c).max())
        return e / e.sum(), c

    a = VelocityKernel(adata).compute_transition_matrix(
        similarity=correlation, softmax_scale=3.0, show_progress_bar=False
    )
    b = VelocityKernel(adata).compute_transition_matrix(softmax_scale=3.0, show_progress_bar=False)
    assert abs(a.transition_matrix - b.transition_matrix).max() < 1e-12


def test_zero_velocity_cells_get_uniform_rows(adata):
    adata.layers["velocity"][[3, 7]] = 0.0
    T = VelocityKernel(adata).compute_transition_matrix(softmax_scale=4.0, show_progress_bar=False).transition_matrix
    for i in (3, 7):
        row = T[i].data
        np.testing.assert_allclose(row, 1.0 / len(row))


def test_backward_modes(adata, assert_stochastic):
    fwd = VelocityKernel(adata).compute_transition_matrix(softmax_scale=4.0, show_progress_bar=False)
    neg = VelocityKernel(adata, backward=True).compute_transition_matrix(
        backward_mode="negate", softmax_scale=4.0, show_progress_bar=False
    )
    assert_stochastic(neg.transition_matrix)
    # negating v flips the sign of every correlation
    np.testing.assert_allclose(neg.logits.toarray(), -fwd.logits.toarray(), atol=1e-12)
    tr = VelocityKernel(adata, backward=True).compute_transition_matrix(softmax_scale=4.0, show_progress_bar=False)
    X, V = adata.layers["Ms"], adata.layers["velocity"]
    conn = adata.obsp["connectivities"]
    i = 11
    nbrs = conn[i].indices
    D = X[i] - X[nbrs]
    D = D - D.mean(axis=1, keepdims=True)
    Vn = V[nbrs] - V[nbrs].mean(axis=1, keepdims=True)
    c = np.einsum("kg,kg->k", D, Vn) / (np.linalg.norm(D, axis=1) * np.linalg.norm(Vn, axis=1))
    e = np.exp(4.0 * (c - c.max()))
    np.testing.assert_allclose(tr.transition_matrix[i, nbrs].toarray().ravel(), e / e.sum(), atol=1e-12)
    assert tr.params["backward_mode"] == "transpose"


def test_stochastic_is_close_to_monte_carlo_and_seeded(adata, assert_stochastic):
    var = np.full_like(adata.layers["velocity"], 1e-4)
    adata.layers["variance_velocity"] = var
    st = VelocityKernel(adata).compute_transition_matrix(
        mode="stochastic", softmax_scale=4.0, variance_key="variance_velocity", show_progress_bar=False
    )
    mc = VelocityKernel(adata).compute_transition_matrix(
        mode="monte_carlo",
        softmax_scale=4.0,
        variance_key="variance_velocity",
        n_samples=2000,
        seed=0,
        show_progress_bar=False,
    )
    mc2 = VelocityKernel(adata).compute_transition_matrix(
        mode="monte_carlo",
        softmax_scale=4.0,
        variance_key="variance_velocity",
        n_samples=2000,
        seed=0,
        show_progress_bar=False,
    )
    assert_stochastic(st.transition_matrix)
    assert_stochastic(mc.transition_matrix)
    assert abs(mc.transition_matrix - mc2.transition_matrix).max() == 0
    # small variance: the second-order expansion and the Monte-Carlo average agree closely
    assert abs(st.transition_matrix - mc.transition_matrix).max() < 5e-3
    det = VelocityKernel(adata).compute_transition_matrix(softmax_scale=4.0, show_progress_bar=False)
    assert abs(st.transition_matrix - det.transition_matrix).max() > 0


def test_stochastic_second_order_term_matches_finite_differences(rng):
    from cellflux_kernels._engine._velocity import similarity_logits, softmax_from_logits, stochastic_probabilities

    n, G = 6, 5
    X = rng.normal(size=(n, G))
    V = rng.normal(size=(n, G))
    dense = np.ones((n, n)) - np.eye(n)
    g = sparse.csr_matrix(dense)
    var = rng.uniform(0.0, 0.02, size=(n, G))
    p_st, _ = stochastic_probabilities(g.indptr, g.indices, X, V, var, 2.0)

    def probs(Vx):
        r = similarity_logits(g.indptr, g.indices, X, Vx)
        return softmax_from_logits(r, g.indptr, 2.0)

    h = 1e-4
    expected = probs(V)
    for gene in range(G):
        up, down = V.copy(), V.copy()
        up[:, gene] += h
        down[:, gene] -= h
        second = (probs(up) - 2 * probs(V) + probs(down)) / h**2
        expected = expected + 0.5 * second * np.repeat(var[:, gene], np.diff(g.indptr))
    expected = expected / np.repeat(np.add.reduceat(expected, g.indptr[:-1]), np.diff(g.indptr))
    np.testing.assert_allclose(p_st, expected, atol=1e-6)


def test_sampling_mode_draws_one_velocity(adata, assert_stochastic):
    a = VelocityKernel(adata).compute_transition_matrix(
        mode="sampling", softmax_scale=4.0, seed=1, show_progress_bar=False
    )
    b = VelocityKernel(adata).compute_transition_matrix(
        mode="sampling", softmax_scale=4.0, seed=2, show_progress_bar=False
    )
    assert_stochastic(a.transition_matrix)
    assert abs(a.transition_matrix - b.transition_matrix).max() > 0
    assert a.params["n_samples"] == 1


def test_missing_keys_name_the_key_and_the_fix(adata):
    del adata.layers["Ms"]
    with pytest.raises(KeyError, match=r"layers\['Ms'\].*moments"):
        VelocityKernel(adata)
    with pytest.raises(KeyError, match=r"obsp\['knn'\].*neighbors"):
        VelocityKernel(adata, xkey="spliced", conn_key="knn")


def test_nan_genes_are_dropped_with_a_counted_warning(adata):
    adata.layers["velocity"][:, [1, 4, 9]] = np.nan
    with pytest.warns(UserWarning, match="3 of 80 genes"):
        vk = VelocityKernel(adata)
    assert vk.genes.shape == (77,)
    adata.layers["velocity"][:] = np.nan
    before = adata.copy()
    with pytest.raises(ValueError, match="every gene"):
        VelocityKernel(adata)
    np.testing.assert_array_equal(adata.layers["Ms"], before.layers["Ms"])
    assert set(adata.obsp) == set(before.obsp) and set(adata.uns) == set(before.uns)


def test_shape_mismatch_and_bad_options(adata):
    adata.obsm["a"] = np.zeros((adata.n_obs, 3))
    adata.obsm["b"] = np.zeros((adata.n_obs, 4))
    with pytest.raises(ValueError, match="shape"):
        VelocityKernel(adata, attr="obsm", xkey="a", vkey="b")
    vk = VelocityKernel(adata)
    with pytest.raises(ValueError, match="mode"):
        vk.compute_transition_matrix(mode="magic")
    with pytest.raises(ValueError, match="similarity"):
        vk.compute_transition_matrix(similarity="euclid")


def test_cells_without_neighbours_and_disconnected_graphs(adata, caplog):
    conn = adata.obsp["connectivities"].tolil()
    conn[0, :] = 0
    conn[:, 0] = 0
    adata.obsp["connectivities"] = conn.tocsr()
    with pytest.raises(ValueError, match="no neighbours"):
        VelocityKernel(adata)
    n = adata.n_obs
    block = sparse.block_diag(
        [sparse.random(n // 2, n // 2, density=0.1, random_state=0) + sparse.eye(n // 2)] * 2
    ).tocsr()
    block.setdiag(0)
    adata.obsp["connectivities"] = (block + block.T).tocsr()
    with caplog.at_level("WARNING"):
        VelocityKernel(adata)
    assert "2 components" in caplog.text and "200 cells" in caplog.text


def _powered_correlation(power):
    def sim(v, D, scale):
        c = D @ v.ravel() / (np.linalg.norm(D, axis=1) * np.linalg.norm(v) + 1e-12)
        c = np.sign(c) * np.abs(c) ** power
        e = np.exp(scale * c - (scale * c).max())
        return e / e.sum(), c

    return sim


def test_a_different_callable_similarity_is_not_served_from_the_cache(adata, monkeypatch):
    vk = VelocityKernel(adata)
    first, cubed = _powered_correlation(1), _powered_correlation(3)
    T1 = vk.compute_transition_matrix(similarity=first, softmax_scale=4.0, show_progress_bar=False).transition_matrix
    T2 = vk.compute_transition_matrix(similarity=cubed, softmax_scale=4.0, show_progress_bar=False).transition_matrix
    fresh = VelocityKernel(adata).compute_transition_matrix(
        similarity=cubed, softmax_scale=4.0, show_progress_bar=False
    )
    assert abs(T1 - T2).max() > 1e-3
    assert abs(T2 - fresh.transition_matrix).max() < 1e-12
    # both callables are called "..._powered_correlation.<locals>.sim": params keep a storable string
    assert isinstance(vk.params["similarity"], str) and vk.params["similarity"] == fresh.params["similarity"]
    # the same callable object again reuses the matrix without recomputing
    import cellflux_kernels._kernels._velocity as velocity_module

    def fail(*args, **kwargs):
        raise AssertionError("recomputed")

    monkeypatch.setattr(velocity_module, "similarity_callable", fail)
    again = vk.compute_transition_matrix(similarity=cubed, softmax_scale=4.0, show_progress_bar=False)
    assert again.transition_matrix is T2


def test_gene_subset_survives_an_h5ad_round_trip(adata, tmp_path):
    import anndata as ad

    from cellflux_kernels import read_kernel

    subset = list(adata.var_names[:30])
    vk = VelocityKernel(adata, gene_subset=subset).compute_transition_matrix(softmax_scale=4.0, show_progress_bar=False)
    key = vk.write_to_adata()
    adata.write_h5ad(tmp_path / "vk.h5ad")
    back = read_kernel(ad.read_h5ad(tmp_path / "vk.h5ad"), key)
    assert isinstance(back, VelocityKernel)
    assert list(back.genes) == subset
    recomputed = back.compute_transition_matrix(softmax_scale=4.0, show_progress_bar=False).transition_matrix
    assert abs(recomputed - vk.transition_matrix).max() < 1e-12
    # all genes: nothing stored, all genes again
    full = VelocityKernel(adata)
    assert "gene_subset" not in full._init_kwargs() or full._init_kwargs()["gene_subset"] is None


@pytest.mark.parametrize("mode", ["deterministic", "stochastic", "monte_carlo", "sampling"])
def test_a_cell_whose_neighbours_share_its_expression_moves_uniformly(adata, assert_stochastic, mode):
    conn = adata.obsp["connectivities"].tocsr()
    nbrs = conn.indices[conn.indptr[0] : conn.indptr[1]]
    adata.layers["Ms"][nbrs] = adata.layers["Ms"][0]  # every displacement from cell 0 is zero
    vk = VelocityKernel(adata).compute_transition_matrix(
        mode=mode, softmax_scale=4.0, seed=0, n_samples=20, show_progress_bar=False
    )
    T = vk.transition_matrix
    assert_stochastic(T)
    assert np.isfinite(T.data).all()
    np.testing.assert_array_equal(np.sort(T[0].indices), np.sort(nbrs))
    np.testing.assert_allclose(T[0].data, 1.0 / len(nbrs), rtol=1e-12)
    np.testing.assert_array_equal(vk.logits[0].data, 0.0)
