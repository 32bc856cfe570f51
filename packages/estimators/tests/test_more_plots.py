import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest
from scipy import sparse

import cellflux as cf
from cellflux._keys import TruthKey
from cellflux_estimators import GPCCA
from cellflux_estimators._plotting._circular import circular_coordinates
from cellflux_estimators._plotting._logodds import log_odds_values
from cellflux_estimators._plotting._pie import cluster_transitions


@pytest.fixture
def fitted(chain):
    adata, t = chain
    g = GPCCA(t, adata=adata).compute_schur(10)
    g.compute_macrostates(5, n_cells=15, cluster_key=TruthKey.CLUSTERS)
    g.predict_terminal_states(method="top_n", n_states=3)
    g.compute_fate_probabilities()
    g.compute_lineage_drivers(layer="log1p")
    return g


def test_projection_helpers():
    p = np.array([[1.0, 0, 0], [0, 0, 1], [1 / 3, 1 / 3, 1 / 3]])
    anchors, xy = circular_coordinates(p)
    np.testing.assert_allclose(np.linalg.norm(anchors, axis=1), 1)
    np.testing.assert_allclose(xy[0], anchors[0])  # committed cells sit on their lineage
    np.testing.assert_allclose(xy[1], anchors[2])
    np.testing.assert_allclose(xy[2], 0, atol=1e-12)  # undecided cells in the centre
    np.testing.assert_allclose(log_odds_values([0.5, 0.9], [0.5, 0.1]), [0, np.log(9)], rtol=1e-5)
    t = sparse.csr_matrix(np.array([[0.5, 0.5, 0], [0, 0.5, 0.5], [0, 0, 1.0]]))
    w = cluster_transitions(t, np.array([0, 0, 1]), 2)
    np.testing.assert_allclose(w, [[0.75, 0.25], [0.0, 1.0]])


def test_new_plots_render(fitted, chain, tmp_path):
    adata, _ = chain
    g = fitted
    lins = list(g.fate_probabilities.columns)
    fig = g.plot_circular_projection(save=tmp_path / "circular.png")
    assert [t.get_text() for t in fig.axes[0].texts] == lins
    fig = g.plot_circular_projection(color=TruthKey.CLUSTERS)
    assert len(fig.axes[0].get_legend().get_texts()) == adata.obs[TruthKey.CLUSTERS].nunique()
    fig = g.plot_log_odds(lins[0], lins[1], time_key=TruthKey.TIME, cluster_key=TruthKey.CLUSTERS, threshold=2.0)
    fig.savefig(tmp_path / "log_odds.png")
    assert fig.axes[0].get_ylabel() == f"log odds {lins[0]} : {lins[1]}"
    fig = g.plot_fate_pies(cluster_key=TruthKey.CLUSTERS, basis="umap", save=tmp_path / "pies.png")
    n_clusters = adata.obs[TruthKey.CLUSTERS].nunique()
    assert len(fig.axes[0].patches) == n_clusters * len(lins)  # one wedge per cluster and lineage
    genes = list(adata.var_names[:12])
    fig = g.plot_cluster_trends(genes, time_key=TruthKey.TIME, lineage=lins[0], n_clusters=3, layer="log1p")
    fig.savefig(tmp_path / "cluster_trends.png")
    assert set(fig.gene_clusters.index) == set(genes) and fig.gene_clusters.nunique() <= 3
    fig = g.plot_drivers_correlation(lins[0], lins[1], n_genes=3, save=tmp_path / "drivers_corr.png")
    assert 3 <= len(fig.axes[0].texts) <= 6
    for p in tmp_path.iterdir():
        assert p.stat().st_size > 5_000
    with pytest.raises(KeyError, match="not among"):
        g.plot_log_odds("nope", time_key=TruthKey.TIME)
    with pytest.raises(ValueError, match="n_clusters"):
        g.plot_cluster_trends(genes[:2], time_key=TruthKey.TIME, lineage=lins[0], n_clusters=3)
    matplotlib.pyplot.close("all")


def test_new_plots_through_cf_pl(chain):
    adata, _ = chain
    cf.tl.macrostates(adata, n_states=5, n_cells=15, cluster_key=TruthKey.CLUSTERS)
    cf.tl.terminal_states(adata, method="top_n", n_states=3, n_cells=15)
    cf.tl.fate_probabilities(adata)
    fig = cf.pl.fate_pies(adata, cluster_key=TruthKey.CLUSTERS, basis="umap")
    # the edges come from obsp["T_fwd"]: at least one line joins two clusters
    assert len(fig.axes[0].get_lines()) >= 1
    fig = cf.pl.circular_projection(adata)
    assert fig.axes[0].get_title() == "circular projection of fates"
    matplotlib.pyplot.close("all")
