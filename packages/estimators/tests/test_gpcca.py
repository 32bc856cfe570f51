import anndata as ad
import numpy as np
import pandas as pd
import pytest

from cellflux._keys import TruthKey
from cellflux_estimators import GPCCA, from_adata


@pytest.fixture
def g(chain):
    adata, t = chain
    est = GPCCA(t, adata=adata, seed=0)
    est.compute_schur(10)
    est.compute_macrostates(5, n_cells=15, cluster_key=TruthKey.CLUSTERS)
    return est


def test_macrostates_are_valid_and_named_from_clusters(g, chain):
    adata, _ = chain
    mem = g.macrostates_memberships.to_numpy()
    assert mem.min() >= 0 and np.allclose(mem.sum(axis=1), 1)
    np.testing.assert_allclose(g.coarse_T.to_numpy().sum(axis=1), 1, atol=1e-8)
    np.testing.assert_allclose(g.coarse_initial_distribution.sum(), 1, atol=1e-8)
    np.testing.assert_allclose(g.coarse_stationary_distribution.sum(), 1, atol=1e-8)
    names = list(g.macrostates.cat.categories)
    clusters = set(adata.obs[TruthKey.CLUSTERS].astype(str))
    assert all(n in clusters or n.rsplit("_", 1)[0] in clusters for n in names)
    assert (g.macrostates.value_counts() == 15).all()


def test_terminal_states_are_the_true_lineage_ends(g, chain):
    adata, _ = chain
    g.predict_terminal_states(method="top_n", n_states=3)
    term = g.terminal_states
    cells = term.notna().to_numpy()
    # the chosen cells are late cells, one true lineage per terminal state
    assert adata.obs[TruthKey.TIME].to_numpy()[cells].min() > 0.6
    lineage = adata.obs[TruthKey.LINEAGE].astype(str).to_numpy()
    purity = [
        pd.Series(lineage[(term == s).to_numpy()]).value_counts(normalize=True).iloc[0] for s in term.cat.categories
    ]
    assert min(purity) > 0.9
    assert len({pd.Series(lineage[(term == s).to_numpy()]).mode()[0] for s in term.cat.categories}) == 3


def test_predict_methods_and_initial_state(g, chain):
    adata, _ = chain
    g.predict_terminal_states(method="stability", stability_threshold=0.9)
    diag = np.diag(g.coarse_T.to_numpy())
    assert set(g.terminal_states.cat.categories) == set(g.coarse_T.columns[diag >= 0.9])
    g.predict_terminal_states(method="eigengap_coarse")
    assert len(g.terminal_states.cat.categories) >= 1
    g.predict_initial_states(1, allow_overlap=True)
    init = g.initial_states.notna().to_numpy()
    assert np.median(adata.obs[TruthKey.TIME].to_numpy()[init]) < 0.3
    with pytest.raises(ValueError, match="top_n"):
        g.predict_terminal_states(method="top_n")
    with pytest.raises(ValueError, match="only 5 macrostates"):
        g.predict_terminal_states(method="top_n", n_states=9)


def test_set_rename_and_merge_states(g, chain):
    adata, _ = chain
    names = list(g.macrostates.cat.categories)
    g.set_terminal_states(names[:2], n_cells=10)
    assert list(g.terminal_states.cat.categories) == names[:2]
    g.set_terminal_states({"A": adata.obs_names[:5], "B": [10, 11, 12]})
    assert g.terminal_states.value_counts().to_dict() == {"A": 5, "B": 3}
    g.set_terminal_states({"C": [20, 21]}, merge=True)
    assert set(g.terminal_states.cat.categories) == {"A", "B", "C"}
    last = adata.obs[TruthKey.CLUSTERS].cat.categories[-1]
    g.set_terminal_states({TruthKey.CLUSTERS: [last]})
    assert (g.terminal_states.notna() == (adata.obs[TruthKey.CLUSTERS] == last)).all()
    g.set_terminal_states({"A": [0, 1], "B": [2]})
    g.compute_fate_probabilities()
    g.rename_terminal_states({"A": "Alpha"})
    assert list(g.fate_probabilities.columns) == ["Alpha", "B"]
    with pytest.raises(ValueError, match="comma"):
        g.rename_terminal_states({"Alpha": "Alpha, Beta"})
    with pytest.raises(ValueError, match="comma"):
        g.set_terminal_states({"x,y": [0]})
    with pytest.raises(ValueError, match="overlaps"):
        g.set_terminal_states({"a": [0, 1], "b": [1]})
    with pytest.raises(KeyError, match="Unknown macrostate"):
        g.set_terminal_states(["nope"])


def test_errors_for_bad_numbers_of_states(chain):
    adata, t = chain
    g = GPCCA(t, adata=adata)
    g.compute_schur(4)
    with pytest.raises(ValueError, match="compute_schur\\(n_components=9\\)"):
        g.compute_macrostates(8)
    with pytest.raises(ValueError, match="too many"):
        g.compute_macrostates(3, n_cells=300)


def test_empty_macrostate_is_refused():
    from cellflux_estimators._engine._states import top_cells

    rng = np.random.default_rng(0)
    mem = rng.dirichlet([1, 1, 1], size=100)
    mem[:, 2] = 0.5 * mem[:, 1]  # state 2 is nowhere the most likely among its own top cells
    mem /= mem.sum(axis=1, keepdims=True)
    with pytest.raises(ValueError, match=r"State\(s\) \[2\] keep fewer than"):
        top_cells(mem, 10)


def test_range_of_states_and_reproducibility(chain):
    adata, t = chain
    a = GPCCA(t, adata=adata, seed=1).compute_schur(10)
    a.compute_macrostates([3, 6], n_cells=10)
    b = GPCCA(t, adata=adata, seed=1).compute_schur(10)
    b.compute_macrostates([3, 6], n_cells=10)
    assert 3 <= a.macrostates_memberships.shape[1] <= 6
    pd.testing.assert_frame_equal(a.macrostates_memberships, b.macrostates_memberships)
    c = GPCCA(t, adata=adata).compute_schur(10)
    c.compute_macrostates([3, 6], select="crispness", n_cells=10)
    assert c.crispness.index.tolist() == [3, 4, 5, 6]
    assert c.macrostates_memberships.shape[1] == c.crispness.idxmax()


def test_tsi_score(g):
    score = g.tsi(
        5,
        terminal_states=["lineage_1_late", "lineage_2_late", "lineage_3_late"],
        cluster_key=TruthKey.CLUSTERS,
        n_cells=10,
    )
    assert 0 <= score <= 1
    table = g.tsi_table
    assert table["identified_terminal_states"].le(table["optimal_identification"]).all()


def test_round_trip_through_h5ad(g, chain, tmp_path):
    g.predict_terminal_states(method="top_n", n_states=3)
    g.predict_initial_states(1)
    g.compute_fate_probabilities()
    g.compute_absorption_times()
    g.compute_lineage_drivers(layer="log1p")
    out = g.to_adata()
    path = tmp_path / "est.h5ad"
    out.write_h5ad(path)
    back = from_adata(ad.read_h5ad(path))
    assert isinstance(back, GPCCA)
    pd.testing.assert_frame_equal(back.fate_probabilities, g.fate_probabilities, check_names=False)
    pd.testing.assert_frame_equal(back.coarse_T, g.coarse_T)
    pd.testing.assert_series_equal(back.terminal_states, g.terminal_states, check_names=False, check_index_type=False)
    pd.testing.assert_frame_equal(back.lineage_drivers.loc[g.lineage_drivers.index], g.lineage_drivers)
    np.testing.assert_allclose(back.schur_vectors, g.schur_vectors)
    back.compute_fate_probabilities()  # the restored estimator keeps working
    np.testing.assert_allclose(back.fate_probabilities.to_numpy(), g.fate_probabilities.to_numpy())
