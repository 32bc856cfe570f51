import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest

import cellflux as cf
from cellflux._keys import TruthKey
from cellflux_estimators import CFLARE, GPCCA
from cellflux_estimators._engine._cluster import leiden_available


def test_cflare_finds_late_cells_and_matches_schur_spectrum(chain):
    adata, t = chain
    c = CFLARE(t, adata=adata, seed=0)
    c.compute_eigendecomposition(k=8)
    g = GPCCA(t).compute_schur(8)
    np.testing.assert_allclose(np.sort(c.eigendecomposition["D"].real)[::-1], g.eigendecomposition["D"].real, atol=1e-8)
    np.testing.assert_allclose(c.eigendecomposition["stationary_dist"].sum(), 1)
    c.predict(use=3, percentile=98, method="kmeans", cluster_key=TruthKey.CLUSTERS)
    cells = c.terminal_states.notna().to_numpy()
    assert cells.sum() > 0
    assert np.median(adata.obs[TruthKey.TIME].to_numpy()[cells]) > 0.7
    c.compute_fate_probabilities()
    np.testing.assert_allclose(c.fate_probabilities.sum(axis=1), 1)
    with pytest.raises(ValueError, match="compute_eigendecomposition\\(k=21\\)"):
        c.predict(use=[20])


def test_leiden_without_the_package_says_what_to_install(chain, monkeypatch):
    from cellflux_estimators._engine import _cluster

    monkeypatch.setattr(_cluster, "leiden_available", lambda: False)  # as without leidenalg/igraph
    adata, t = chain
    c = CFLARE(t, adata=adata).fit(k=5, use=3, method="kmeans")
    with pytest.raises(ImportError, match="pip install leidenalg igraph"):
        c.predict(use=3, method="leiden")


@pytest.mark.skipif(not leiden_available(), reason="needs leidenalg and igraph (the 'leiden' extra)")
def test_leiden_recovers_separated_groups_and_handles_tiny_inputs(chain):
    from cellflux_estimators._engine._cluster import cluster_rows

    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(centre, 0.1, size=(50, 3)) for centre in (0.0, 5.0, 10.0)])
    labels = cluster_rows(x, method="leiden", n_neighbors=10, resolution=0.1, seed=0)  # CFLARE's default
    groups = labels.reshape(3, 50)
    assert all(len(set(g)) == 1 for g in groups)  # each group is one cluster
    assert len(set(groups[:, 0])) == 3  # and the three are different clusters
    np.testing.assert_array_equal(labels, cluster_rows(x, method="leiden", n_neighbors=10, resolution=0.1, seed=0))
    assert cluster_rows(x[:1], method="leiden", n_neighbors=10, seed=0).tolist() == [0]  # one cell: one cluster
    adata, t = chain
    c = CFLARE(t, adata=adata, seed=0).fit(k=5, use=3, method="leiden", cluster_key=TruthKey.CLUSTERS)
    cells = c.terminal_states.notna().to_numpy()
    assert cells.sum() > 0
    assert np.median(adata.obs[TruthKey.TIME].to_numpy()[cells]) > 0.7  # late cells, as with k-means


def test_plots_render_what_was_computed(chain, tmp_path):
    adata, t = chain
    g = GPCCA(t, adata=adata).compute_schur(10)
    g.compute_macrostates(5, n_cells=15, cluster_key=TruthKey.CLUSTERS)
    g.predict_terminal_states(method="top_n", n_states=3)
    g.compute_fate_probabilities()
    g.compute_lineage_drivers(layer="log1p")
    n_lin = g.fate_probabilities.shape[1]
    fig = g.plot_spectrum(save=tmp_path / "spectrum.png")
    assert len(fig.axes[0].collections[0].get_offsets()) == 10
    fig = g.plot_coarse_T(save=tmp_path / "coarse.png")
    assert fig.axes[0].get_images()[0].get_array().shape == (5, 5)
    fig = g.plot_fate_probabilities(basis="umap", save=tmp_path / "fates.png")
    assert sum(ax.get_title() in g.fate_probabilities.columns for ax in fig.axes) == n_lin
    fig = g.plot_aggregate_fate_probabilities(cluster_key=TruthKey.CLUSTERS, mode="violin")
    assert sum(ax.get_title() in g.fate_probabilities.columns for ax in fig.axes) == n_lin
    lin = g.fate_probabilities.columns[0]
    fig = g.plot_lineage_drivers(lin, n_genes=5)
    assert len(fig.axes[0].get_yticklabels()) == 5
    fig = g.plot_macrostates("terminal", basis="umap")
    assert len(fig.axes[0].get_legend().get_texts()) == n_lin
    fig = g.plot_gene_trends(list(adata.var_names[:2]), time_key=TruthKey.TIME, layer="log1p")
    assert len(fig.axes[0].get_lines()) == n_lin
    for p in tmp_path.iterdir():
        assert p.stat().st_size > 5_000
    with pytest.raises(KeyError, match="X_tsne"):
        g.plot_fate_probabilities(basis="tsne")
    matplotlib.pyplot.close("all")


def test_scanpy_way_end_to_end(chain):
    adata, _ = chain
    before = set(adata.obs)
    cf.tl.macrostates(adata, n_states=5, n_cells=15, cluster_key=TruthKey.CLUSTERS)
    cf.tl.terminal_states(adata, method="top_n", n_states=3, n_cells=15)
    cf.tl.fate_probabilities(adata)
    cf.tl.absorption_times(adata, calculate_variance=True)
    cf.tl.lineage_drivers(adata, layer="log1p")
    assert {"macrostates_fwd", "term_states_fwd"} <= set(adata.obs) - before
    fp = adata.obsm["lineages_fwd"]
    np.testing.assert_allclose(fp.sum(axis=1), 1)
    g = GPCCA(t := adata.obsp["T_fwd"], adata=adata).compute_schur(20)
    g.compute_macrostates(5, n_cells=15, cluster_key=TruthKey.CLUSTERS)
    g.predict_terminal_states(method="top_n", n_states=3, n_cells=15)
    g.compute_fate_probabilities()
    np.testing.assert_allclose(fp.to_numpy(), g.fate_probabilities.to_numpy(), atol=1e-10)
    assert t.shape == (adata.n_obs, adata.n_obs)
    fig = cf.pl.aggregate_fate_probabilities(adata, cluster_key=TruthKey.CLUSTERS, mode="bar")
    assert fig.axes[0].get_ylabel() == "mean fate probability"
    with pytest.raises(KeyError, match="already exist"):
        cf.tl.fate_probabilities(adata)
    matplotlib.pyplot.close("all")
