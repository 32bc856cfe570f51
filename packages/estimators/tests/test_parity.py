"""Parity with CellRank/pyGPCCA on the same transition matrix (``nox -s "parity(package='estimators')"``).

CI-sized: the 100-cell dentate gyrus (CellRank's velocity + connectivity kernels) and a simulated 500-cell
differentiation (CellRank's pseudotime + connectivity kernels). Pancreas with ``CELLFLUX_FULL_PARITY=1``.
"""

from __future__ import annotations

import os
import warnings

import numpy as np
import pandas as pd
import pytest
from scipy.linalg import subspace_angles

from cellflux._keys import TruthKey
from cellflux_estimators import GPCCA

pytestmark = [
    pytest.mark.parity,
    # the shared dentate gyrus file is written in an old h5ad format; CellRank/scVelo warn on import and use
    pytest.mark.filterwarnings("ignore::anndata._warnings.OldFormatWarning"),
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
    pytest.mark.filterwarnings("ignore::FutureWarning"),
    pytest.mark.filterwarnings("ignore::UserWarning"),
    pytest.mark.filterwarnings("ignore::RuntimeWarning"),
]


def _cr():
    cr = pytest.importorskip("cellrank")
    pytest.importorskip("pygpcca")
    return cr


def _compare(cr, adata, t, *, n_states: int, n_cells: int, cluster_key: str, layer: str | None, n_terminal: int):
    from sklearn.metrics import adjusted_rand_score

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = cr.estimators.GPCCA(cr.kernels.PrecomputedKernel(t, adata=adata))
        ref.compute_schur(n_states + 2)
        ref.compute_macrostates(n_states, n_cells=n_cells, cluster_key=cluster_key)
        ref.predict_terminal_states(method="top_n", n_states=n_terminal, n_cells=n_cells)
        ref.compute_fate_probabilities(solver="gmres", tol=1e-12, use_petsc=False, show_progress_bar=False)
        ref.compute_absorption_times(solver="gmres", tol=1e-12, use_petsc=False, show_progress_bar=False)
        ref_drivers = ref.compute_lineage_drivers(layer=layer)
    ours = GPCCA(t, adata=adata)
    ours.compute_schur(n_states + 2, method="krylov")
    ours.compute_macrostates(n_states, n_cells=n_cells, cluster_key=cluster_key)
    ours.predict_terminal_states(method="top_n", n_states=n_terminal, n_cells=n_cells)
    ours.compute_fate_probabilities(solver="direct")
    ours.compute_absorption_times(solver="direct")
    drivers = ours.compute_lineage_drivers(layer=layer)

    k = ref.schur_vectors.shape[1]
    np.testing.assert_allclose(ours.eigendecomposition["D"][:k], ref.eigendecomposition["D"][:k], atol=1e-8)
    assert subspace_angles(ours.schur_vectors[:, :k], ref.schur_vectors).max() < 1e-6
    m_ref = ref.macrostates_memberships
    m_ours = ours.macrostates_memberships
    assert list(m_ours.columns) == list(m_ref.names)
    for name in m_ref.names:
        r = np.corrcoef(m_ours[name].to_numpy(), m_ref[name].X.ravel())[0, 1]
        assert r >= 0.999, (name, r)
    assert adjusted_rand_score(m_ours.to_numpy().argmax(1), m_ref.X.argmax(1)) >= 0.98
    # ours from the coarse chain, pyGPCCA's as chi^T pi: equal because chi spans an invariant subspace
    np.testing.assert_allclose(
        ours.coarse_stationary_distribution.to_numpy(), ref.coarse_stationary_distribution.to_numpy(), atol=1e-6
    )
    pd.testing.assert_series_equal(
        ours.terminal_states.astype(str), ref.terminal_states.astype(str), check_names=False, check_categorical=False
    )
    fp_ref = ref.fate_probabilities
    for name in fp_ref.names:
        np.testing.assert_allclose(ours.fate_probabilities[name].to_numpy(), fp_ref[name].X.ravel(), atol=1e-4)
    at_ref = ref.absorption_times
    for col in at_ref.columns:
        a, b = ours.absorption_times[col].to_numpy(), at_ref[col].to_numpy()
        finite = np.isfinite(b) & (b < 1e6)
        np.testing.assert_allclose(a[finite], b[finite], rtol=1e-4)
    n = adata.n_obs
    for name in fp_ref.names:
        # CellRank divides an (n - 1)-normalised covariance by population (ddof=0) standard deviations, so its
        # correlations are ours times n / (n - 1) (and can exceed 1, which it turns into NaN). We compute the
        # exact Pearson correlation; compare on CellRank's scale.
        c_ref = ref_drivers[f"{name}_corr"].dropna()
        c_ours = drivers.loc[c_ref.index, f"{name}_corr"] * n / (n - 1)
        np.testing.assert_allclose(c_ours.to_numpy(), c_ref.to_numpy(), atol=1e-6)
        top_ref = set(c_ref.sort_values(ascending=False).index[:50])
        top_ours = set(drivers[f"{name}_corr"].sort_values(ascending=False).index[:50])
        assert top_ref == top_ours


def test_parity_dentategyrus(dentategyrus_adata):
    cr = _cr()
    adata = dentategyrus_adata
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # CellRank 2.0.7's VelocityKernel fails under numpy 2 (np.testing.assert_array_equal(x=...)), so the
        # matrix comes from its pseudotime and connectivity kernels on scVelo's latent time
        pk = cr.kernels.PseudotimeKernel(adata, time_key="latent_time").compute_transition_matrix(
            show_progress_bar=False
        )
        ck = cr.kernels.ConnectivityKernel(adata).compute_transition_matrix()
        t = (0.8 * pk + 0.2 * ck).transition_matrix
    adata.layers["Ms64"] = np.asarray(adata.layers["Ms"], dtype=np.float64)  # CellRank keeps float32 otherwise
    _compare(cr, adata, t, n_states=3, n_cells=5, cluster_key="clusters", layer="Ms64", n_terminal=2)


def test_parity_simulated(simulated):
    cr = _cr()
    sc = pytest.importorskip("scanpy")
    adata = simulated(n_cells=500, n_genes=100, n_lineages=3, seed=2)
    adata.obs[TruthKey.CLUSTERS] = adata.obs[TruthKey.CLUSTERS].astype("category")
    sc.pp.normalize_total(adata)
    sc.pp.log1p(adata)
    adata.X = adata.X.astype(np.float64)  # CellRank correlates in the input's precision
    sc.pp.pca(adata, n_comps=20)
    sc.pp.neighbors(adata, n_neighbors=30)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pk = cr.kernels.PseudotimeKernel(adata, time_key=TruthKey.TIME).compute_transition_matrix(
            show_progress_bar=False
        )
        ck = cr.kernels.ConnectivityKernel(adata).compute_transition_matrix()
        t = (0.8 * pk + 0.2 * ck).transition_matrix
    _compare(cr, adata, t, n_states=6, n_cells=20, cluster_key=TruthKey.CLUSTERS, layer=None, n_terminal=3)


@pytest.mark.skipif(os.environ.get("CELLFLUX_FULL_PARITY") != "1", reason="full parity: set CELLFLUX_FULL_PARITY=1")
def test_parity_pancreas(pancreas_adata):
    cr = _cr()
    scv = pytest.importorskip("scvelo")
    sc = pytest.importorskip("scanpy")
    adata = pancreas_adata
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scv.pp.filter_and_normalize(adata, min_shared_counts=20)  # the file holds 2,000 genes already
        sc.pp.log1p(adata)
        sc.pp.pca(adata, n_comps=30)
        sc.pp.neighbors(adata, n_neighbors=30, n_pcs=30)
        # scVelo 0.3's stochastic velocities fail under numpy 2 (scalar assignment in its least squares), so
        # the pseudotime is diffusion pseudotime rooted in the Ductal cell at the end of the first component
        sc.tl.diffmap(adata)
        ductal = np.flatnonzero((adata.obs["clusters"] == "Ductal").to_numpy())
        adata.uns["iroot"] = int(ductal[np.argmax(adata.obsm["X_diffmap"][ductal, 1])])
        sc.tl.dpt(adata)
        adata.X = adata.X.astype(np.float64)  # CellRank correlates in the input's precision (float32 here)
        pk = cr.kernels.PseudotimeKernel(adata, time_key="dpt_pseudotime").compute_transition_matrix(
            show_progress_bar=False
        )
        ck = cr.kernels.ConnectivityKernel(adata).compute_transition_matrix()
        t = (0.8 * pk + 0.2 * ck).transition_matrix
    _compare(cr, adata, t, n_states=8, n_cells=30, cluster_key="clusters", layer=None, n_terminal=4)
