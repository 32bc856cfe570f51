"""RealTimeKernel on a small synthetic time course: simulated cells binned by their true time."""

from __future__ import annotations

import logging

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from scipy import sparse

import cellflux_kernels as ck
from cellflux_kernels._engine._realtime import sparsify_couplings

N_BINS = 4


def sinkhorn(x: np.ndarray, y: np.ndarray, eps: float = 0.05, n_iter: int = 500) -> np.ndarray:
    """A small balanced entropic OT coupling (log-free Sinkhorn on a scaled cost), for the tests only."""
    cost = ((x[:, None, :] - y[None, :, :]) ** 2).sum(-1)
    K = np.exp(-cost / (eps * cost.mean()))
    a, b = np.full(len(x), 1.0 / len(x)), np.full(len(y), 1.0 / len(y))
    u = np.ones(len(x))
    for _ in range(n_iter):
        v = b / (K.T @ u)
        u = a / (K @ v)
    return u[:, None] * K * v[None, :]


@pytest.fixture
def course(adata):
    """The simulated cells with ``obs["day"]`` (true time in 4 bins) and OT couplings between consecutive days."""
    t = adata.obs["true_time"].to_numpy()
    edges = np.quantile(t, np.linspace(0, 1, N_BINS + 1)[1:-1])
    days = np.digitize(t, edges)
    adata.obs["day"] = pd.Categorical([f"d{d}" for d in days], categories=[f"d{d}" for d in range(N_BINS)])
    Y = adata.obsm["X_pca"][:, :10]
    couplings = {(f"d{a}", f"d{a + 1}"): sinkhorn(Y[days == a], Y[days == a + 1]) for a in range(N_BINS - 1)}
    return adata, days, couplings


def test_row_stochastic_and_forward_in_time(course, assert_stochastic):
    adata, days, couplings = course
    k = ck.RealTimeKernel(adata, time_key="day", couplings=couplings).compute_transition_matrix()
    T = k.transition_matrix
    assert_stochastic(T)
    onehot = np.eye(N_BINS)[days]  # cells x days
    mass = np.asarray(T @ onehot)
    for a in range(N_BINS - 1):
        # every early cell moves to the next day only (self_transitions="connectivities": the last day only)
        np.testing.assert_allclose(mass[days == a, a + 1], 1.0, atol=1e-12)
    np.testing.assert_allclose(mass[days == N_BINS - 1, N_BINS - 1], 1.0, atol=1e-12)
    # mass flows forward in the true (continuous) time too
    t = adata.obs["true_time"].to_numpy()
    early = days < N_BINS - 1
    assert np.mean((T @ t)[early] - t[early]) > 0.05
    assert np.all((T @ t)[days == 0] > t[days == 0].mean())


def test_all_mixes_within_time_point_transitions(course, assert_stochastic):
    adata, days, couplings = course
    k = ck.RealTimeKernel(adata, time_key="day", couplings=couplings)
    k.compute_transition_matrix(self_transitions="all", conn_weight=0.3)
    T = k.transition_matrix
    assert_stochastic(T)
    mass = np.asarray(T @ np.eye(N_BINS)[days])
    for a in range(N_BINS - 1):
        np.testing.assert_allclose(mass[days == a, a], 0.3, atol=1e-12)
        np.testing.assert_allclose(mass[days == a, a + 1], 0.7, atol=1e-12)
    # within a day, transitions follow a kNN graph of that day's cells
    from cellflux_kernels._engine._neighbors import knn_connectivities
    from cellflux_kernels._kernels._connectivity import density_normalize

    d0 = np.flatnonzero(days == 0)
    conn, _ = knn_connectivities(adata.obsm["X_pca"][d0], 15)
    expected = density_normalize(conn, conn)
    expected = sparse.diags(1 / np.asarray(expected.sum(axis=1)).ravel()) @ expected
    assert abs(T[d0][:, d0] - 0.3 * expected).max() < 1e-12
    with pytest.raises(ValueError, match="no neighbour at the same time point"):
        k.compute_transition_matrix(self_transitions="all", conn_weight=0.3, conn_kwargs={"use_rep": None})
    assert k.params["conn_weight"] == 0.3 and k.params["self_transitions"] == "all"


def test_anndata_couplings_match_arrays(course):
    adata, _, couplings = course
    names = adata.obs_names.to_numpy()
    as_adata = {}
    rng = np.random.default_rng(0)
    for (s, t), P in couplings.items():
        src, tgt = names[adata.obs["day"] == s], names[adata.obs["day"] == t]
        ro, co = rng.permutation(len(src)), rng.permutation(len(tgt))
        as_adata[(s, t)] = ad.AnnData(P[ro][:, co], obs=pd.DataFrame(index=src[ro]), var=pd.DataFrame(index=tgt[co]))
    a = ck.RealTimeKernel(adata, time_key="day", couplings=couplings).compute_transition_matrix()
    b = ck.RealTimeKernel(adata, time_key="day", couplings=as_adata).compute_transition_matrix()
    assert abs(a.transition_matrix - b.transition_matrix).max() < 1e-14


def test_threshold_sparsifies_but_keeps_every_row():
    rng = np.random.default_rng(0)
    P = rng.random((20, 30)) ** 4
    out = sparsify_couplings({(0, 1): P}, "auto")[(0, 1)]
    assert out.nnz < P.size and np.all(np.diff(out.indptr) >= 1)
    assert out.max(axis=1).toarray().ravel() == pytest.approx(P.max(axis=1))
    kept = sparsify_couplings({(0, 1): P}, 90.0)[(0, 1)]
    assert kept.nnz == pytest.approx(0.1 * P.size, abs=2)
    S = sparse.random(5, 6, density=0.5, random_state=0, format="csr")
    assert (sparsify_couplings({(0, 1): S}, "auto")[(0, 1)] != S).nnz == 0


def test_empty_rows_move_uniformly_with_a_warning(course, caplog):
    adata, days, couplings = course
    couplings = dict(couplings)
    P = couplings[("d0", "d1")].copy()
    P[:3] = 0.0
    couplings[("d0", "d1")] = sparse.csr_matrix(P)
    with caplog.at_level(logging.WARNING, logger="cellflux_kernels"):
        k = ck.RealTimeKernel(adata, time_key="day", couplings=couplings).compute_transition_matrix()
    assert "3 empty rows" in caplog.text
    first = np.flatnonzero(days == 0)[:3]
    row = k.transition_matrix[first[0]].toarray().ravel()
    np.testing.assert_allclose(row[days == 1], 1.0 / (days == 1).sum())


def test_write_and_read_back(course, tmp_path):
    adata, _, couplings = course
    k = ck.RealTimeKernel(adata, time_key="day", couplings=couplings).compute_transition_matrix(
        self_transitions="all", conn_weight=0.2
    )
    key = k.write_to_adata()
    path = tmp_path / "rt.h5ad"
    adata.write_h5ad(path)
    back = ck.read_kernel(ad.read_h5ad(path), key)
    assert isinstance(back, ck.RealTimeKernel)
    assert abs(back.transition_matrix - k.transition_matrix).max() == 0
    assert back.params["conn_weight"] == 0.2
    with pytest.raises(TypeError, match="forward"):
        k.__invert__()


def test_threshold_none_survives_an_h5ad_round_trip(course, tmp_path):
    adata, _, couplings = course
    k = ck.RealTimeKernel(adata, time_key="day", couplings=couplings).compute_transition_matrix(
        threshold=None, show_progress_bar=False
    )
    key = k.write_to_adata()
    adata.write_h5ad(tmp_path / "rt.h5ad")
    back = ck.read_kernel(ad.read_h5ad(tmp_path / "rt.h5ad"), key)
    assert back.params["threshold"] is None and back.params["conn_weight"] is None
    replay = {name: back.params[name] for name in ("threshold", "self_transitions", "conn_weight")}
    # replaying the stored parameters (couplings are not stored) gives the same matrix, not threshold="auto"'s
    fresh = ck.RealTimeKernel(adata, time_key="day", couplings=couplings)
    again = fresh.compute_transition_matrix(**replay, show_progress_bar=False).transition_matrix
    assert abs(again - k.transition_matrix).max() < 1e-12
    auto = fresh.compute_transition_matrix(show_progress_bar=False).transition_matrix
    assert abs(auto - k.transition_matrix).max() > 1e-6


def test_bad_inputs(course):
    adata, _, couplings = course
    before = adata.copy()
    with pytest.raises(KeyError, match="'nope'"):
        ck.RealTimeKernel(adata, time_key="nope", couplings=couplings)
    with pytest.raises(KeyError, match="'d9'"):
        ck.RealTimeKernel(adata, time_key="day", couplings={("d0", "d9"): couplings[("d0", "d1")]})
    with pytest.raises(ValueError, match="forward in time"):
        ck.RealTimeKernel(adata, time_key="day", couplings={("d1", "d0"): couplings[("d0", "d1")].T})
    with pytest.raises(ValueError, match="expected"):
        ck.RealTimeKernel(adata, time_key="day", couplings={("d0", "d1"): couplings[("d0", "d1")][:-1]})
    with pytest.raises(ValueError, match="negative"):
        ck.RealTimeKernel(adata, time_key="day", couplings={("d0", "d1"): -couplings[("d0", "d1")]})
    k = ck.RealTimeKernel(adata, time_key="day", couplings=couplings)
    with pytest.raises(ValueError, match="conn_weight"):
        k.compute_transition_matrix(self_transitions="all")
    with pytest.raises(ValueError, match="threshold"):
        k.compute_transition_matrix(threshold=120)
    one = adata.copy()
    one.obs["day"] = "d0"
    with pytest.raises(ValueError, match="two"):
        ck.RealTimeKernel(one, time_key="day")
    assert adata.obs.equals(before.obs) and set(adata.obsp) == set(before.obsp) and set(adata.uns) == set(before.uns)


def test_couplings_need_ott_jax_when_not_given(course):
    import importlib.util

    adata, _, _ = course
    k = ck.RealTimeKernel(adata, time_key="day")
    assert k.couplings == {("d0", "d1"): None, ("d1", "d2"): None, ("d2", "d3"): None}
    if importlib.util.find_spec("ott") is None:
        with pytest.raises(ImportError, match="ott-jax"):
            k.compute_transition_matrix(show_progress_bar=False)
        return
    # with ott-jax: entropic couplings on the PCA, balanced, and the mass flows forward in time
    k.compute_transition_matrix(show_progress_bar=False, epsilon=0.5)
    P = k.couplings[("d0", "d1")]
    n0, n1 = (adata.obs["day"] == "d0").sum(), (adata.obs["day"] == "d1").sum()
    assert P.shape == (n0, n1)
    np.testing.assert_allclose(P.sum(axis=1), 1.0 / n0, rtol=1e-2)
    T = k.transition_matrix
    t = adata.obs["true_time"].to_numpy()
    early = adata.obs["day"].to_numpy() != "d3"
    assert np.mean((T @ t)[early] - t[early]) > 0.05


def test_single_flow_table_and_plot(course, tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from cellflux_kernels._engine._flow import single_flow

    adata, days, couplings = course
    k = ck.RealTimeKernel(adata, time_key="day", couplings=couplings).compute_transition_matrix()
    clusters = adata.obs["clusters"].astype("category").array
    source = str(clusters[np.flatnonzero(days == 0)[0]])
    table = single_flow(k.transition_matrix, clusters, adata.obs["day"].array, source)
    assert list(table.index) == [("d0", "d1"), ("d1", "d2"), ("d2", "d3")]
    present = table.notna().all(axis=1)
    # without self-transitions all of the cluster's mass reaches the next day
    np.testing.assert_allclose(table[present].sum(axis=1), 1.0, atol=1e-12)
    # by hand for the first pair
    T = k.transition_matrix.toarray()
    src = np.flatnonzero((np.asarray(clusters) == source) & (days == 0))
    for c in table.columns:
        tgt = np.flatnonzero((np.asarray(clusters) == c) & (days == 1))
        assert table.loc[("d0", "d1"), c] == pytest.approx(T[np.ix_(src, tgt)].sum() / len(src))
    ax = k.plot_single_flow("clusters", source, min_flow=0.01)
    assert ax.get_xticklabels()[0].get_text() == "d0" and source in [t.get_text() for t in ax.get_yticklabels()]
    assert len(ax.collections) > 0
    ax.figure.savefig(tmp_path / "flow.png")
    plt.close(ax.figure)
    with pytest.raises(KeyError, match="not one of"):
        single_flow(k.transition_matrix, clusters, adata.obs["day"].array, "no such cluster")
    import cellflux as cf

    with pytest.raises(KeyError, match="T_fwd"):
        cf.pl.single_flow(adata, cluster_key="clusters", time_key="day", cluster=source)
