"""Regression tests for plotting (and neighbouring) defects found by an audit (one test, or a few, per defect)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from matplotlib.colors import to_hex
from scipy import sparse

import cellflux as cf
from cellflux._keys import TruthKey
from cellflux_estimators import CFLARE, GPCCA
from cellflux_estimators._engine._cluster import cluster_rows
from cellflux_estimators._plotting._pie import cluster_transitions


@pytest.fixture
def scanpy_way(chain):
    """(adata, T): ``cf.tl`` results (5 macrostates, 3 terminal states, fates) stored in the AnnData."""
    adata, t = chain
    adata = adata.copy()
    cf.tl.macrostates(adata, n_states=5, n_cells=15, cluster_key=TruthKey.CLUSTERS)
    cf.tl.terminal_states(adata, method="top_n", n_states=3, n_cells=15)
    cf.tl.fate_probabilities(adata)
    return adata, t


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _real_spectrum(fig) -> np.ndarray:
    """The real parts plotted by ``spectrum(real_only=True)``."""
    return fig.axes[0].collections[0].get_offsets()[:, 1].data


def _ylabels(ax) -> list[str]:
    return [t.get_text() for t in ax.get_yticklabels()]


def _panel_values(fig) -> list[np.ndarray]:
    """The colour values of each scatter panel of an embedding plot, sorted."""
    return [np.sort(ax.collections[0].get_array().data) for ax in fig.axes if ax.get_title().startswith("Schur")]


# ---------------------------------------------------------------- 1. an estimator plots its own results
def test_estimator_plots_its_own_results_not_those_stored_in_its_anndata(scanpy_way):
    adata, t = scanpy_way
    stored_names = [str(n) for n in adata.uns["macrostates_fwd"]["names"]]
    g = GPCCA(adata, obsp_key="T_fwd").compute_schur(6).compute_macrostates(2, n_cells=15)
    own = g._schur.eigenvalues
    assert len(adata.uns["macrostates_fwd"]["eigenvalues_real"]) != len(own)
    for fig in (cf.pl.spectrum(g, real_only=True), g.plot_spectrum(real_only=True)):
        np.testing.assert_allclose(_real_spectrum(fig), own.real)
    names = list(g.coarse_T.index)
    assert set(names).isdisjoint(stored_names)
    for fig in (cf.pl.coarse_T(g, order=None), g.plot_coarse_T(order=None)):
        assert _ylabels(fig.axes[0]) == names
        np.testing.assert_allclose(fig.axes[0].get_images()[0].get_array(), g.coarse_T.to_numpy())
    fig = cf.pl.macrostates(g)
    shown = {c.get_label(): to_hex(c.get_facecolor()[0]) for c in fig.axes[0].collections[1:]}
    assert shown == {n: to_hex(g.colors[n]) for n in g.macrostates.cat.categories}
    fig = cf.pl.schur_vectors(g, n=2)
    for got, col in zip(_panel_values(fig), (1, 2), strict=True):
        np.testing.assert_allclose(got, np.sort(g.schur_vectors[:, col]))
    # results the estimator does not have are not taken from the AnnData (cf.tl's fates, terminal states)
    with pytest.raises(KeyError, match="lineages_fwd"):
        cf.pl.fate_probabilities(g)
    with pytest.raises(KeyError, match="term_states_fwd"):
        g.plot_macrostates("terminal")
    # the AnnData itself still plots what cf.tl stored
    assert _ylabels(cf.pl.coarse_T(adata, order=None).axes[0]) == stored_names
    # a backward estimator plots its own results too, with the default (forward) key
    gb = GPCCA(t, adata=adata, backward=True).compute_schur(4).compute_macrostates(2, n_cells=15)
    np.testing.assert_allclose(_real_spectrum(cf.pl.spectrum(gb, real_only=True)), gb._schur.eigenvalues.real)
    assert _ylabels(cf.pl.coarse_T(gb, order=None).axes[0]) == list(gb.coarse_T.index)
    # and its plot methods read the backward keys, not cf.tl's forward fate probabilities
    gb.predict_terminal_states(method="top_n", n_states=2).compute_fate_probabilities()
    fp = gb.fate_probabilities
    fig = gb.plot_fate_probabilities()
    panels = [ax for ax in fig.axes if ax.get_title()]
    assert [ax.get_title() for ax in panels] == list(fp.columns)
    for ax, name in zip(panels, fp.columns, strict=True):
        np.testing.assert_allclose(np.sort(ax.collections[0].get_array().data), np.sort(fp[name].to_numpy()))
    with pytest.raises(KeyError, match=r"estimator is backward: pass key='lineages_bwd'"):
        cf.pl.fate_probabilities(gb)


# ---------------------------------------------------------------- 2. the key's direction is respected
def test_key_direction_selects_the_estimator_state_it_names(chain):
    adata, t = chain
    g = GPCCA(t, adata=adata).compute_schur(6).compute_macrostates(3, n_cells=15)
    written = g.to_adata()
    assert "estimator_fwd" in written.uns and "macrostates_fwd" not in written.uns
    backward = r"adata.(uns|obsm)\['(estimator|schur_vectors)_bwd'\]; .* backward estimator"
    for fn in (cf.pl.spectrum, cf.pl.coarse_T, cf.pl.schur_vectors):
        with pytest.raises(KeyError, match=backward):
            fn(written, key="macrostates_bwd")
        with pytest.raises(KeyError, match="my_states"):
            fn(written, key="my_states")
    # the forward key reads the forward estimator
    np.testing.assert_allclose(
        _real_spectrum(cf.pl.spectrum(written, key="macrostates_fwd", real_only=True)), g._schur.eigenvalues.real
    )
    assert _ylabels(cf.pl.coarse_T(written, order=None).axes[0]) == list(g.coarse_T.index)
    # a backward estimator written next to it is read for the backward key, and not for the forward one
    gb = GPCCA(t, adata=written, backward=True).compute_schur(4).compute_macrostates(2, n_cells=15)
    both = gb.to_adata()
    np.testing.assert_allclose(
        _real_spectrum(cf.pl.spectrum(both, key="macrostates_bwd", real_only=True)), gb._schur.eigenvalues.real
    )
    np.testing.assert_allclose(
        _real_spectrum(cf.pl.spectrum(both, key="macrostates_fwd", real_only=True)), g._schur.eigenvalues.real
    )
    assert _ylabels(cf.pl.coarse_T(both, key="macrostates_bwd", order=None).axes[0]) == list(gb.coarse_T.index)


# ---------------------------------------------------------------- 5. fate pies with unlabelled cells
def test_fate_pies_ignore_unlabelled_cells(scanpy_way):
    adata, _ = scanpy_way
    fp = adata.obsm["lineages_fwd"]
    lins = list(fp.columns)
    cl = adata.obs[TruthKey.CLUSTERS].copy()
    cl[adata.obs_names[:40]] = np.nan
    adata.obs["cl"] = cl
    fig = cf.pl.fate_pies(adata, cluster_key="cl")
    ax = fig.axes[0]
    cats = [str(c) for c in cl.cat.categories if (cl == c).any()]
    assert [t.get_text() for t in ax.texts if t.get_text()] == cats
    fractions = np.array([(w.theta2 - w.theta1) / 360 for w in ax.patches]).reshape(len(cats), len(lins))
    for i, c in enumerate(cats):
        mean = fp.to_numpy()[(cl == c).to_numpy()].mean(axis=0)
        np.testing.assert_allclose(fractions[i], mean / mean.sum(), atol=1e-6)
    # the terminal states as clusters: NaN outside the states; each state's pie is (almost) its own lineage
    fig = cf.pl.fate_pies(adata, cluster_key="term_states_fwd")
    ax = fig.axes[0]
    states = [t.get_text() for t in ax.texts if t.get_text()]
    assert sorted(states) == sorted(lins)
    fractions = np.array([(w.theta2 - w.theta1) / 360 for w in ax.patches]).reshape(len(states), len(lins))
    for i, s in enumerate(states):
        assert fractions[i, lins.index(s)] > 0.99
    # the cluster graph counts steps into labelled cells only
    t = sparse.csr_matrix(np.array([[0.5, 0.25, 0.25], [0, 0.5, 0.5], [0, 0, 1.0]]))
    np.testing.assert_allclose(cluster_transitions(t, np.array([0, -1, 1]), 2), [[0.5, 0.25], [0.0, 1.0]])


# ---------------------------------------------------------------- 12. non-finite features are refused
def test_cluster_rows_and_cflare_refuse_non_finite_features(chain):
    x = np.array([[np.nan, 0.0], [0.0, 0.0], [5.0, 5.0], [5.0, 6.0]])
    for method in ("kmeans", "leiden"):
        with pytest.raises(ValueError, match=r"1 of the 4 rows.*not finite"):
            cluster_rows(x, method=method, n_clusters=2)
    with pytest.raises(ValueError, match="not finite"):
        cluster_rows(np.array([[np.inf, 0.0], [0.0, 0.0]]), n_clusters=1)
    adata, t = chain
    adata = adata.copy()
    adata.obsm["X_bad"] = np.full((adata.n_obs, 2), np.nan)
    c = CFLARE(t, adata=adata).compute_eigendecomposition(6, n_right=0)
    with pytest.raises(ValueError, match=r"adata.obsm\['X_bad'\].*600 cells.*not finite"):
        c.predict(use=3, basis="bad")
    assert c.terminal_states is None
    # a constant column of the basis carries no information: ignored, not turned into NaN by the scaling
    adata.obsm["X_flat"] = np.column_stack([adata.obsm["X_umap"][:, 0], np.zeros(adata.n_obs)])
    c.predict(use=3, basis="flat", n_comps=2)
    assert c.terminal_states.notna().sum() > 0
    assert c.terminal_states.cat.categories.size == 3


# ---------------------------------------------------------------- 13. scanpy's cluster colours are used
def test_scanpy_cluster_colours_are_used_by_category_position(scanpy_way):
    adata, _ = scanpy_way
    col = adata.obs[TruthKey.CLUSTERS]
    used = [str(c) for c in col.cat.categories]
    # an unused first category shifts the positions: colours must follow the categories, not the shown names
    adata.obs[TruthKey.CLUSTERS] = col.cat.set_categories(["unused", *used])
    palette = ["#000000", "#111111", "#222222", "#333333", "#444444", "#555555", "#666666", "#777777", "#888888"]
    adata.uns[f"{TruthKey.CLUSTERS}_colors"] = palette[: len(used) + 1]
    expected = dict(zip(["unused", *used], adata.uns[f"{TruthKey.CLUSTERS}_colors"], strict=True))
    lin = adata.obsm["lineages_fwd"].columns[0]
    fig = cf.pl.log_odds(adata, lineage_1=lin, time_key=TruthKey.TIME, cluster_key=TruthKey.CLUSTERS)
    shown = {c.get_label(): to_hex(c.get_facecolor()[0]) for c in fig.axes[0].collections}
    assert shown == {c: expected[c] for c in used}
    fig = cf.pl.circular_projection(adata, color=TruthKey.CLUSTERS)
    shown = {c.get_label(): to_hex(c.get_facecolor()[0]) for c in fig.axes[0].collections if c.get_label() in used}
    assert shown == {c: expected[c] for c in used}
    # the state keys too (scanpy writes uns["macrostates_fwd_colors"] when it plots them)
    names = [str(c) for c in adata.obs["macrostates_fwd"].cat.categories]
    adata.uns["macrostates_fwd_colors"] = ["#0000ff", "#00ff00", "#ff0000", "#00ffff", "#ff00ff"][: len(names)]
    fig = cf.pl.macrostates(adata)
    shown = {c.get_label(): to_hex(c.get_facecolor()[0]) for c in fig.axes[0].collections[1:]}
    assert shown == dict(zip(names, adata.uns["macrostates_fwd_colors"], strict=True))
    # too few colours for the categories (scanpy would not use them either): the usual colours
    adata.uns[f"{TruthKey.CLUSTERS}_colors"] = ["#000000"]
    fig = cf.pl.log_odds(adata, lineage_1=lin, time_key=TruthKey.TIME, cluster_key=TruthKey.CLUSTERS)
    assert "#000000" not in {to_hex(c.get_facecolor()[0]) for c in fig.axes[0].collections}


# ---------------------------------------------------------------- 14. one gene given as a string
def test_a_single_gene_name_is_one_gene_and_no_genes_is_refused(scanpy_way):
    adata, _ = scanpy_way
    lin = adata.obsm["lineages_fwd"].columns[0]
    gene = adata.var_names[0]
    assert len(gene) > 1
    fig = cf.pl.trend_heatmap(adata, genes=gene, time_key=TruthKey.TIME, lineage=lin, layer="log1p")
    assert _ylabels(fig.axes[0]) == [gene]
    fig = cf.pl.cluster_trends(adata, genes=gene, time_key=TruthKey.TIME, lineage=lin, n_clusters=1, layer="log1p")
    assert list(fig.gene_clusters.index) == [gene]
    with pytest.raises(ValueError, match="No genes"):
        cf.pl.trend_heatmap(adata, genes=[], time_key=TruthKey.TIME, lineage=lin)
    with pytest.raises(ValueError, match="No genes"):
        cf.pl.cluster_trends(adata, genes=[], time_key=TruthKey.TIME, lineage=lin)
    with pytest.raises(ValueError, match="No genes"):
        cf.pl.gene_trends(adata, genes=[], time_key=TruthKey.TIME)


# ---------------------------------------------------------------- 15. messages in the user's terms
def test_coarse_T_stat_dist_order_without_a_stationary_distribution_says_what_is_missing(scanpy_way):
    adata, _ = scanpy_way
    d = dict(adata.uns["macrostates_fwd"])
    d.pop("coarse_stat")
    adata.uns["macrostates_fwd"] = d
    with pytest.raises(ValueError, match=r"no coarse stationary distribution.*irreducible.*order='stability'") as err:
        cf.pl.coarse_T(adata, order="stat_dist")
    assert "not supported" not in str(err.value)
    with pytest.raises(ValueError, match="not supported"):
        cf.pl.coarse_T(adata, order="size")


def test_macrostates_plot_accepts_a_non_categorical_column(scanpy_way):
    adata, _ = scanpy_way
    states = adata.obs["macrostates_fwd"]
    adata.obs["ms"] = states.astype(object)  # labels with None outside the states
    fig = cf.pl.macrostates(adata, key="ms")
    names = sorted(str(c) for c in states.cat.categories)
    assert [t.get_text() for t in fig.axes[0].get_legend().get_texts()] == names
    for c in fig.axes[0].collections[1:]:
        assert len(c.get_offsets()) == (states == c.get_label()).sum()
    adata.obs["pt"] = adata.obs[TruthKey.TIME].astype(float)
    with pytest.raises(ValueError, match=r"adata.obs\['pt'\] is numeric"):
        cf.pl.macrostates(adata, key="pt")


def test_unknown_lineages_are_named_with_the_valid_ones(scanpy_way):
    adata, _ = scanpy_way
    lins = list(adata.obsm["lineages_fwd"].columns)
    listed = r"'Alpha'.*not among \[" + ", ".join(repr(n) for n in lins).replace("[", r"\[") + r"\]"
    calls = [
        lambda: cf.pl.fate_probabilities(adata, lineages=["Alpha"]),
        lambda: cf.pl.fate_probabilities(adata, lineages=[lins[0], "Alpha"]),
        lambda: cf.pl.aggregate_fate_probabilities(adata, cluster_key=TruthKey.CLUSTERS, lineages=["Alpha"]),
        lambda: cf.pl.trend_heatmap(adata, genes=list(adata.var_names[:3]), time_key=TruthKey.TIME, lineage="Alpha"),
        lambda: cf.pl.cluster_trends(
            adata, genes=list(adata.var_names[:3]), time_key=TruthKey.TIME, lineage="Alpha", n_clusters=2
        ),
        lambda: cf.pl.gene_trends(adata, genes=adata.var_names[0], time_key=TruthKey.TIME, lineages=["Alpha"]),
        lambda: cf.pl.circular_projection(adata, lineages=["Alpha", *lins]),
    ]
    for call in calls:
        with pytest.raises(KeyError, match=listed):
            call()
    with pytest.raises(ValueError, match="No lineages"):
        cf.pl.fate_probabilities(adata, lineages=[])
    # valid subsets still work
    fig = cf.pl.fate_probabilities(adata, lineages=[lins[1]])
    assert [ax.get_title() for ax in fig.axes if ax.get_title()] == [lins[1]]
    pd.testing.assert_index_equal(adata.obsm["lineages_fwd"].columns, pd.Index(lins))
