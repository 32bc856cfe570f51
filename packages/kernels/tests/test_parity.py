"""Parity with CellRank (the reference): the same matrices from the same inputs.

Tolerances: 1e-6 per entry (deterministic, connectivity, pseudotime, CytoTRACE, precomputed),
1e-4 (stochastic: CellRank's Hessian is computed by jax in float32), 1e-3 relative for the
estimated ``softmax_scale``; Monte-Carlo: the difference to CellRank's estimate is of the size of
the difference between two of our estimates with different seeds.
"""

import warnings

import numpy as np
import pytest

import cellflux_kernels as ck

# the reference stack (CellRank 2.0, scVelo, numba, jax) warns a lot on current numpy/pandas
pytestmark = [pytest.mark.parity, pytest.mark.filterwarnings("ignore")]


@pytest.fixture(scope="module")
def cr():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pytest.importorskip("cellrank")


def _pancreas(request):
    import anndata as ad

    from cellflux.testing._shared import shared_file

    path = shared_file("pancreas.h5ad", request.config.rootpath)
    if path is None:
        pytest.skip("pancreas.h5ad is absent")
    import scanpy as sc
    import scvelo as scv

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        adata = ad.read_h5ad(path)
        scv.pp.filter_genes(adata, min_shared_counts=20)
        scv.pp.normalize_per_cell(adata)
        sc.pp.log1p(adata)
        sc.tl.pca(adata, n_comps=30, random_state=0)
        sc.pp.neighbors(adata, n_pcs=30, n_neighbors=30, random_state=0)
        scv.pp.moments(adata, n_pcs=None, n_neighbors=None)
        scv.tl.velocity(adata, mode="stochastic")
    adata.obs["pseudotime"] = adata.obsm["X_pca"][:, 0] - adata.obsm["X_pca"][:, 0].min()
    return adata


class _Datasets:
    """dentategyrus_100 (CI-sized) and the preprocessed pancreas (about a minute), loaded on first use."""

    def __init__(self, request):
        self._request, self._cache = request, {}

    def __getitem__(self, name):
        if name not in self._cache:
            self._cache[name] = _pancreas(self._request) if name == "pancreas" else _dentategyrus(self._request)
        return self._cache[name]


def _dentategyrus(request):
    import anndata as ad

    from cellflux.testing._shared import shared_file

    path = shared_file("dentategyrus_100.h5ad", request.config.rootpath)
    if path is None:
        pytest.skip("dentategyrus_100.h5ad is absent")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        adata = ad.read_h5ad(path)
    adata.obs["pseudotime"] = adata.obs["dpt_pseudotime"]
    return adata


@pytest.fixture(scope="module")
def datasets(cr, request):
    return _Datasets(request)


def maxdiff(a, b):
    return abs(a - b).max()


@pytest.mark.parametrize("name", ["dentategyrus_100", "pancreas"])
@pytest.mark.parametrize("backward", [False, True])
@pytest.mark.parametrize("similarity", ["correlation", "cosine", "dot_product"])
def test_deterministic(cr, datasets, name, backward, similarity):
    adata = datasets[name]
    ref = cr.kernels.VelocityKernel(adata, backward=backward).compute_transition_matrix(
        similarity=similarity, show_progress_bar=False
    )
    ours = ck.VelocityKernel(adata, backward=backward).compute_transition_matrix(
        similarity=similarity, show_progress_bar=False
    )
    assert ours.params["softmax_scale"] == pytest.approx(ref.params["softmax_scale"], rel=1e-3)
    assert maxdiff(ref.transition_matrix, ours.transition_matrix) < 1e-6


@pytest.mark.parametrize("name", ["dentategyrus_100", "pancreas"])
def test_negate_with_a_given_scale(cr, datasets, name):
    adata = datasets[name]
    ref = cr.kernels.VelocityKernel(adata, backward=True).compute_transition_matrix(
        backward_mode="negate", softmax_scale=4.0, show_progress_bar=False
    )
    ours = ck.VelocityKernel(adata, backward=True).compute_transition_matrix(
        backward_mode="negate", softmax_scale=4.0, show_progress_bar=False
    )
    assert maxdiff(ref.transition_matrix, ours.transition_matrix) < 1e-6


def test_stochastic(cr, datasets):
    adata = datasets["dentategyrus_100"]
    ref = cr.kernels.VelocityKernel(adata).compute_transition_matrix(model="stochastic", show_progress_bar=False)
    ours = ck.VelocityKernel(adata).compute_transition_matrix(mode="stochastic", show_progress_bar=False)
    assert ours.params["softmax_scale"] == pytest.approx(ref.params["softmax_scale"], rel=1e-3)
    assert maxdiff(ref.transition_matrix, ours.transition_matrix) < 1e-4


def test_stochastic_pancreas_subsample(cr, request):
    import scanpy as sc
    import scvelo as scv

    adata = _pancreas(request)
    adata = adata[np.random.default_rng(0).choice(adata.n_obs, 400, replace=False)].copy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sc.pp.neighbors(adata, n_pcs=30, n_neighbors=30, random_state=0)
        scv.pp.moments(adata, n_pcs=None, n_neighbors=None)
        scv.tl.velocity(adata, mode="stochastic")
    ref = cr.kernels.VelocityKernel(adata).compute_transition_matrix(
        model="stochastic", softmax_scale=4.0, show_progress_bar=False
    )
    ours = ck.VelocityKernel(adata).compute_transition_matrix(
        mode="stochastic", softmax_scale=4.0, show_progress_bar=False
    )
    assert maxdiff(ref.transition_matrix, ours.transition_matrix) < 1e-4


def test_monte_carlo_within_monte_carlo_error(cr, datasets):
    adata = datasets["dentategyrus_100"]
    ref = cr.kernels.VelocityKernel(adata).compute_transition_matrix(
        model="monte_carlo", softmax_scale=4.0, seed=0, show_progress_bar=False
    )
    ours = [
        ck.VelocityKernel(adata).compute_transition_matrix(
            mode="monte_carlo", softmax_scale=4.0, seed=s, show_progress_bar=False
        )
        for s in (1, 2)
    ]
    ours_spread = abs(ours[0].transition_matrix - ours[1].transition_matrix)
    to_ref = abs(ours[0].transition_matrix - ref.transition_matrix)
    assert to_ref.max() < 2.0 * ours_spread.max()
    assert to_ref.mean() < 1.5 * ours_spread.mean()


@pytest.mark.parametrize("name", ["dentategyrus_100", "pancreas"])
def test_connectivity(cr, datasets, name):
    adata = datasets[name]
    for dnorm in (True, False):
        ref = cr.kernels.ConnectivityKernel(adata).compute_transition_matrix(density_normalize=dnorm)
        ours = ck.ConnectivityKernel(adata).compute_transition_matrix(density_normalize=dnorm)
        assert maxdiff(ref.transition_matrix, ours.transition_matrix) < 1e-6


@pytest.mark.parametrize("name", ["dentategyrus_100", "pancreas"])
@pytest.mark.parametrize("scheme", ["hard", "soft"])
@pytest.mark.parametrize("backward", [False, True])
def test_pseudotime(cr, datasets, name, scheme, backward):
    adata = datasets[name]
    ref = cr.kernels.PseudotimeKernel(adata, time_key="pseudotime", backward=backward).compute_transition_matrix(
        threshold_scheme=scheme, show_progress_bar=False
    )
    ours = ck.PseudotimeKernel(adata, time_key="pseudotime", backward=backward).compute_transition_matrix(
        threshold_scheme=scheme
    )
    assert maxdiff(ref.transition_matrix, ours.transition_matrix) < 1e-6


@pytest.mark.parametrize("name", ["dentategyrus_100", "pancreas"])
def test_cytotrace(cr, datasets, name):
    a, b = datasets[name].copy(), datasets[name].copy()
    ref = cr.kernels.CytoTRACEKernel(a).compute_cytotrace().compute_transition_matrix(show_progress_bar=False)
    ours = ck.CytoTRACEKernel(b).compute_cytotrace().compute_transition_matrix()
    assert maxdiff(ref.transition_matrix, ours.transition_matrix) < 1e-6
    np.testing.assert_allclose(b.obs["ct_score"], a.obs["ct_score"], atol=1e-6)
    np.testing.assert_array_equal(b.var["ct_correlates"], a.var["ct_correlates"])
    # CellRank accumulates the gene moments of sparse float32 data in float32 (E[x^2] - E[x]^2
    # cancels); ours are float64, so the correlations differ by up to ~1e-4 there
    np.testing.assert_allclose(b.var["ct_gene_corr"], a.var["ct_gene_corr"], atol=2e-4, equal_nan=True)


def test_precomputed_and_combination(cr, datasets):
    adata = datasets["dentategyrus_100"]
    rv = cr.kernels.VelocityKernel(adata).compute_transition_matrix(show_progress_bar=False)
    rc = cr.kernels.ConnectivityKernel(adata).compute_transition_matrix()
    ref = 0.8 * rv + 0.2 * rc
    ref.compute_transition_matrix()
    ov = ck.VelocityKernel(adata).compute_transition_matrix(show_progress_bar=False)
    oc = ck.ConnectivityKernel(adata).compute_transition_matrix()
    ours = (0.8 * ov + 0.2 * oc).compute_transition_matrix()
    assert maxdiff(ref.transition_matrix, ours.transition_matrix) < 1e-6
    rp = cr.kernels.PrecomputedKernel(ref.transition_matrix, adata=adata)
    op = ck.PrecomputedKernel(ref.transition_matrix, adata=adata)
    assert maxdiff(rp.transition_matrix, op.transition_matrix) < 1e-6


def test_projection(cr, datasets):
    adata = datasets["dentategyrus_100"].copy()
    rv = cr.kernels.VelocityKernel(adata).compute_transition_matrix(show_progress_bar=False)
    from cellrank.kernels.utils import TmatProjection

    TmatProjection(rv, basis="umap").project()
    ov = ck.VelocityKernel(adata).compute_transition_matrix(show_progress_bar=False)
    ours = ov.compute_projection(basis="umap", key_added="ours_umap")
    np.testing.assert_allclose(ours, adata.obsm["T_fwd_umap"], atol=1e-6)


@pytest.mark.parametrize("threshold", ["auto", "auto_local", 50.0, None])
def test_real_time_couplings(cr, threshold):
    """The stitched matrix from the same couplings (within-time-point transitions: CellRank's 'diagonal')."""
    import pandas as pd

    from cellflux.datasets import simulate

    adata = simulate(n_cells=240, n_genes=20, n_conditions=1, seed=3)
    t = adata.obs["true_time"].to_numpy()
    day = np.digitize(t, np.quantile(t, [1 / 3, 2 / 3]))
    adata.obs["day"] = pd.Categorical(day)
    rng = np.random.default_rng(0)
    couplings = {(a, a + 1): rng.random(((day == a).sum(), (day == a + 1).sum())) ** 3 for a in range(2)}
    ref = cr.kernels.RealTimeKernel(adata, time_key="day", couplings={k: v.copy() for k, v in couplings.items()})
    ref.compute_transition_matrix(threshold=threshold, self_transitions="diagonal")
    ours = ck.RealTimeKernel(adata, time_key="day", couplings=couplings)
    ours.compute_transition_matrix(threshold=threshold, self_transitions="diagonal", show_progress_bar=False)
    assert maxdiff(ref.transition_matrix, ours.transition_matrix) < 1e-6
