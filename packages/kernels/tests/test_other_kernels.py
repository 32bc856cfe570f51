"""Connectivity, pseudotime, Palantir, CytoTRACE and precomputed kernels."""

import anndata as ad
import numpy as np
import pytest
from scipy import sparse

from cellflux_kernels import (
    ConnectivityKernel,
    CytoTRACEKernel,
    PalantirKernel,
    PrecomputedKernel,
    PseudotimeKernel,
)


def test_connectivity_density_normalisation(adata, assert_stochastic):
    C = adata.obsp["connectivities"].toarray()
    q = C.sum(axis=0)
    expected = (C / q[:, None]) / q[None, :]
    expected /= expected.sum(axis=1, keepdims=True)
    T = ConnectivityKernel(adata).compute_transition_matrix().transition_matrix
    assert_stochastic(T)
    np.testing.assert_allclose(T.toarray(), expected, atol=1e-14)
    plain = ConnectivityKernel(adata).compute_transition_matrix(density_normalize=False).transition_matrix
    np.testing.assert_allclose(plain.toarray(), C / C.sum(axis=1, keepdims=True), atol=1e-14)


@pytest.fixture
def tiny():
    """Five cells on a line with pseudotime 0..4, fully connected with distinct weights."""
    n = 5
    W = np.array([[0, 5, 4, 3, 2], [5, 0, 6, 2, 1], [4, 6, 0, 7, 3], [3, 2, 7, 0, 8], [2, 1, 3, 8, 0]], dtype=float)
    adata = ad.AnnData(np.zeros((n, 1)))
    adata.obsp["connectivities"] = sparse.csr_matrix(W)
    adata.obs["t"] = np.arange(n, dtype=float)
    return adata, W


def test_hard_threshold_keeps_future_and_strongest(tiny):
    adata, W = tiny
    T = PseudotimeKernel(adata, time_key="t").compute_transition_matrix(frac_to_keep=0.5).transition_matrix.toarray()
    # row 2: degree 4 -> keep floor(2) strongest (3: 7, 1: 6) + future (3, 4)
    kept = W[2] * np.array([0, 1, 0, 1, 1])
    np.testing.assert_allclose(T[2], kept / kept.sum())
    # the last cell keeps only its two strongest neighbours
    kept = W[4] * np.array([0, 0, 1, 1, 0])
    np.testing.assert_allclose(T[4], kept / kept.sum())


def test_soft_threshold_downweights_the_past(tiny):
    adata, W = tiny
    T = (
        PseudotimeKernel(adata, time_key="t")
        .compute_transition_matrix(threshold_scheme="soft", b=2.0, nu=0.5)
        .transition_matrix.toarray()
    )
    dt = np.arange(5)[3] - np.arange(5)
    w = np.where(dt > 0, 2.0 / (1.0 + np.exp(2.0 * dt)) ** 2, 1.0)
    expected = W[3] * w
    np.testing.assert_allclose(T[3], expected / expected.sum())


def test_callable_scheme_and_backward_and_palantir(tiny, assert_stochastic):
    adata, _ = tiny
    pk = PseudotimeKernel(adata, time_key="t").compute_transition_matrix(
        threshold_scheme=lambda t, nt, c: c * (nt >= t) + 1e-3 * c
    )
    assert_stochastic(pk.transition_matrix)
    bk = PseudotimeKernel(adata, time_key="t", backward=True)
    np.testing.assert_allclose(bk.pseudotime, 4 - np.arange(5.0))
    pal = PalantirKernel(adata, time_key="t").compute_transition_matrix(k=2)
    assert_stochastic(pal.transition_matrix)
    assert pal.params["k"] == 2


def test_palantir_refuses_pseudotime_keywords_instead_of_ignoring_them(tiny, assert_stochastic):
    adata, _ = tiny
    pal = PalantirKernel(adata, time_key="t")
    with pytest.raises(TypeError, match=r"\['frac_to_keep', 'threshold_scheme'\].*use PseudotimeKernel"):
        pal.compute_transition_matrix(frac_to_keep=0.9, threshold_scheme="soft")
    with pytest.raises(TypeError, match=r"\['nu'\]"):
        pal.compute_transition_matrix(nu=0.2)
    assert pal._transition_matrix is None
    # CellRank's no-op keywords stay accepted
    pal.compute_transition_matrix(k=2, show_progress_bar=False, n_jobs=2)
    assert_stochastic(pal.transition_matrix)
    assert pal.params == {"k": 2, "density_normalize": True, "time_key": "t"}


def test_pseudotime_bad_input(tiny):
    adata, _ = tiny
    adata.obs["bad"] = [0.0, np.nan, 1.0, 2.0, 3.0]
    with pytest.raises(ValueError, match="1 NaN"):
        PseudotimeKernel(adata, time_key="bad")
    with pytest.raises(KeyError, match="obs\\['nope'\\]"):
        PseudotimeKernel(adata, time_key="nope")
    with pytest.raises(ValueError, match="lost every edge"):
        PseudotimeKernel(adata, time_key="t").compute_transition_matrix(frac_to_keep=0.0)


def test_cytotrace_writes_scores_and_biases_the_graph(adata, assert_stochastic):
    counts = sparse.csr_matrix(adata.layers["spliced"])
    adata.X = counts
    ctk = CytoTRACEKernel(adata).compute_cytotrace(n_genes=20)
    assert adata.obs["ct_score"].between(0, 1).all() and adata.obs["ct_score"].max() == 1.0
    np.testing.assert_allclose(adata.obs["ct_pseudotime"], 1 - adata.obs["ct_score"])
    np.testing.assert_array_equal(adata.obs["ct_num_exp_genes"], np.asarray((counts > 0).sum(axis=1)).ravel())
    assert adata.var["ct_correlates"].sum() == 20
    top = adata.var["ct_gene_corr"].sort_values(ascending=False).index[:20]
    assert set(top) == set(adata.var_names[adata.var["ct_correlates"]])
    score = adata.layers["Ms"][:, adata.var["ct_correlates"].to_numpy()].mean(axis=1)
    score = (score - score.min()) / (score.max() - score.min())
    np.testing.assert_allclose(adata.obs["ct_score"], score, atol=1e-12)
    assert adata.uns["ct_params"]["params"]["n_genes"] == 20
    assert_stochastic(ctk.compute_transition_matrix().transition_matrix)
    with pytest.raises(KeyError, match="already exist"):
        CytoTRACEKernel(adata).compute_cytotrace(n_genes=20)
    with pytest.raises(KeyError, match="layers\\['nope'\\]"):
        CytoTRACEKernel(adata).compute_cytotrace(layer="nope")


@pytest.mark.parametrize("aggregation", ["gmean", "hmean"])
def test_cytotrace_refuses_a_nan_or_constant_score_and_writes_nothing(adata, aggregation):
    adata.X = sparse.csr_matrix(adata.layers["spliced"])
    Ms = np.asarray(adata.layers["Ms"])
    adata.layers["scaled"] = Ms - Ms.mean(axis=0)
    ctk = CytoTRACEKernel(adata)
    with pytest.raises(
        ValueError, match=r"NaN or infinite for \d+ of 400 cells: adata.layers\['scaled'\] has negative"
    ):
        ctk.compute_cytotrace(layer="scaled", aggregation=aggregation, n_genes=20)
    adata.layers["ones"] = np.ones_like(Ms)
    with pytest.raises(ValueError, match="same .* for every cell"):
        ctk.compute_cytotrace(layer="ones", aggregation=aggregation, n_genes=20)
    assert not {"ct_score", "ct_pseudotime", "ct_num_exp_genes"} & set(adata.obs)
    assert not {"ct_gene_corr", "ct_correlates"} & set(adata.var) and "ct_params" not in adata.uns
    with pytest.raises(ValueError, match="compute_cytotrace"):
        ctk.compute_transition_matrix()
    # on the non-negative default layer the same aggregation works
    ctk.compute_cytotrace(aggregation=aggregation, n_genes=20)
    assert np.isfinite(adata.obs["ct_pseudotime"]).all() and adata.obs["ct_score"].max() == 1.0


def test_precomputed_from_key_array_sparse_and_alone(adata, assert_stochastic):
    T = np.full((4, 4), 0.25)
    pk = PrecomputedKernel(T)
    assert pk.adata.shape == (4, 1) and sparse.issparse(pk.transition_matrix)
    assert_stochastic(pk.transition_matrix)
    assert pk.params["origin"] == "array"
    S = sparse.random(adata.n_obs, adata.n_obs, density=0.05, random_state=0, format="csr") + sparse.eye(adata.n_obs)
    with pytest.raises(ValueError, match="row_normalize=True"):
        PrecomputedKernel(S, adata=adata)
    pk = PrecomputedKernel(S, adata=adata, row_normalize=True)
    assert_stochastic(pk.transition_matrix)
    adata.obsp["T_fwd"] = pk.transition_matrix
    from_key = PrecomputedKernel("T_fwd", adata=adata)
    assert abs(from_key.transition_matrix - pk.transition_matrix).max() == 0


def test_precomputed_bad_input(adata):
    with pytest.raises(ValueError, match="negative"):
        PrecomputedKernel(np.array([[1.5, -0.5], [0.5, 0.5]]))
    with pytest.raises(ValueError, match="square"):
        PrecomputedKernel(np.ones((2, 3)) / 3)
    with pytest.raises(ValueError, match="400 cells"):
        PrecomputedKernel(np.eye(3), adata=adata)
    with pytest.raises(KeyError, match="obsp\\['missing'\\]"):
        PrecomputedKernel("missing", adata=adata)
    with pytest.raises(ValueError, match="NaN"):
        PrecomputedKernel(np.array([[np.nan, 1.0], [0.5, 0.5]]))
