"""Regression tests for defects found by an audit (one test, or a few, per defect)."""

from __future__ import annotations

import logging

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from scipy import sparse

from cellflux._keys import TruthKey
from cellflux_estimators import GPCCA, from_adata
from cellflux_estimators._engine import _absorption, _linsolve
from cellflux_estimators._engine._absorption import absorption_probabilities, absorption_times
from cellflux_estimators._engine._priming import priming_degree
from cellflux_estimators._estimators import _gpcca as gpcca_module
from cellflux_estimators._tools import macrostates as tl_macrostates


def metastable_chain(m: int = 60, p: int = 40, eps: float = 1e-9, seed: int = 0) -> sparse.csr_matrix:
    """Terminal cells 0 and 1; ``p`` cells that reach them fast; a cluster of ``m`` cells that leaks ``~eps``.

    The fate probabilities of the cluster are O(1) but its right-hand side is O(eps), so GMRES meets a relative
    residual of 1e-6 long before it has resolved them: the system is ill-conditioned (near-metastable).
    """
    rng = np.random.default_rng(seed)
    n = 2 + p + m
    t = np.zeros((n, n))
    t[0, 0] = t[1, 1] = 1.0
    for i in range(2, 2 + p):
        t[i, 0] = t[i, 1] = 0.3
        t[i, 2 + (i - 1) % p] = 0.4
    c = np.arange(2 + p, n)
    w = rng.random((m, m)) * (rng.random((m, m)) < 0.2) + np.eye(m)
    t[np.ix_(c, c)] = w / w.sum(axis=1, keepdims=True) * (1 - 2 * eps)
    t[c, 0] += eps * rng.random(m)
    t[c, 1] += eps * rng.random(m)
    return sparse.csr_matrix(t / t.sum(axis=1, keepdims=True))


SETS = [np.array([0]), np.array([1])]


# ---------------------------------------------------------------- 1. solver="auto" on an ill-conditioned chain
def test_auto_solver_resolves_an_ill_conditioned_chain_instead_of_blaming_reachability():
    t = metastable_chain()
    direct = absorption_probabilities(t, SETS, solver="direct").probabilities
    res = absorption_probabilities(t, SETS)  # solver="auto": its GMRES solution has rows summing to ~0 here
    p = res.probabilities
    assert p.min() >= 0 and p.max() <= 1
    np.testing.assert_allclose(p.sum(axis=1), 1, atol=1e-10)
    np.testing.assert_allclose(p, direct, atol=1e-10)
    assert res.report.solver == "direct"
    assert 0.05 < p[-1, 0] < 0.95  # the cluster's fates are genuinely mixed, not 0
    # through the estimator, and for the conditional absorption times (which solve the same system first)
    g = GPCCA(t).set_terminal_states({"A": [0], "B": [1]}).compute_fate_probabilities()
    np.testing.assert_allclose(g.fate_probabilities.to_numpy(), direct, atol=1e-10)
    means, _ = absorption_times(t, SETS)
    assert np.all(np.isfinite(means[0][2:])) and np.all(means[0][2:] > 0)


def test_auto_solver_above_the_direct_limit_re_solves_more_tightly(monkeypatch):
    t = metastable_chain()
    direct = absorption_probabilities(t, SETS, solver="direct").probabilities
    monkeypatch.setattr(_absorption, "AUTO_DIRECT_MAX", 0, raising=False)
    monkeypatch.setattr(_linsolve, "AUTO_DIRECT_MAX", 0)
    p = absorption_probabilities(t, SETS).probabilities
    np.testing.assert_allclose(p.sum(axis=1), 1, atol=1e-10)
    np.testing.assert_allclose(p, direct, atol=1e-4)


def test_explicit_iterative_solver_names_solver_and_tol_when_inaccurate():
    t = metastable_chain()
    with pytest.raises(ValueError, match=r"after the gmres solve with tol=1e-06.*not accurate enough") as err:
        absorption_probabilities(t, SETS, solver="gmres")
    assert "cannot reach" not in str(err.value)


# ---------------------------------------------------------------- 2. states as a Series are aligned by index
def _small_estimator(n: int = 12) -> tuple[GPCCA, ad.AnnData]:
    rng = np.random.default_rng(0)
    w = rng.random((n, n)) + np.eye(n)
    adata = ad.AnnData(obs=pd.DataFrame(index=[f"cell{i}" for i in range(n)]))
    return GPCCA(sparse.csr_matrix(w / w.sum(axis=1, keepdims=True)), adata=adata), adata


def test_states_series_is_aligned_by_its_index_not_by_position():
    g, adata = _small_estimator()
    values = pd.Categorical(["A", "A", np.nan, "B", np.nan, np.nan, "B", np.nan, np.nan, np.nan, "A", np.nan])
    ordered = pd.Series(values, index=adata.obs_names)
    shuffled = ordered.sample(frac=1, random_state=0)
    assert not shuffled.index.equals(ordered.index)
    g.set_terminal_states(shuffled)
    pd.testing.assert_series_equal(
        g.terminal_states.astype(object), ordered.astype(object), check_names=False, check_index_type=False
    )
    g.set_initial_states(shuffled)
    assert g.initial_states.astype(object).equals(ordered.astype(object))
    # plain arrays and Categoricals are positional
    for positional in (values, np.asarray(values.astype(object))):
        g.set_terminal_states(positional)
        assert g.terminal_states.astype(object).equals(ordered.astype(object))
    # an index that is not the cell names is refused, not silently applied by position
    with pytest.raises(ValueError, match=r"aligned by its index, but 12 of the 12 cell names are not in it"):
        g.set_terminal_states(ordered.reset_index(drop=True).set_axis([f"x{i}" for i in range(12)]))
    with pytest.raises(ValueError, match="duplicate"):
        g.set_terminal_states(ordered.set_axis(["cell0"] * 12))


# ---------------------------------------------------------------- 3. to_adata leaves no stale results
def test_to_adata_in_place_removes_results_cleared_since_the_last_write(chain, tmp_path):
    adata, t = chain
    adata = adata.copy()
    g = GPCCA(t, adata=adata)
    g.compute_schur(10).compute_macrostates(5, n_cells=15, cluster_key=TruthKey.CLUSTERS)
    g.predict_terminal_states(method="top_n", n_states=3).compute_fate_probabilities(solver="direct")
    g.compute_lineage_priming()
    g.to_adata(adata, copy=False)
    assert "lineages_fwd" in adata.obsm and "term_states_fwd" in adata.obs and "priming_degree_fwd" in adata.obs
    g.compute_macrostates(4, n_cells=15)  # clears terminal states, fates and priming
    assert g.terminal_states is None and g.fate_probabilities is None
    g.to_adata(adata, copy=False)
    for key in ("term_states_fwd", "term_states_fwd_probs", "priming_degree_fwd"):
        assert key not in adata.obs
    assert "lineages_fwd" not in adata.obsm
    path = tmp_path / "est.h5ad"
    adata.write_h5ad(path)
    back = from_adata(ad.read_h5ad(path))
    assert back.terminal_states is None and back.fate_probabilities is None and back.priming_degree is None
    assert list(back.macrostates.cat.categories) == list(g.macrostates.cat.categories)
    # keys written by something else are left alone, and not read as the estimator's
    adata.obsm["lineages_fwd"] = np.zeros((adata.n_obs, 2))
    g.to_adata(adata, copy=False)
    assert "lineages_fwd" in adata.obsm
    assert from_adata(adata).fate_probabilities is None


# ---------------------------------------------------------------- 4. lineage priming stays finite
def test_priming_is_finite_when_the_early_cells_never_reach_a_lineage(caplog):
    probs = np.array([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5], [0.2, 0.8]])
    deg = priming_degree(probs, early=np.array([True, False, False, False]))
    assert np.all(np.isfinite(deg)) and deg.min() == 0 and deg.max() == 1
    assert deg[0] == 0 and deg[1] == 1 and deg[3] > deg[2]  # more mass on the unreached lineage: more primed
    # a reference without zeros is not changed by the floor
    full = priming_degree(probs)
    ref = probs.mean(axis=0)
    kl = np.sum(np.where(probs > 0, probs * np.log2(np.where(probs > 0, probs, 1) / ref), 0), axis=1)
    np.testing.assert_allclose(full, (kl - kl.min()) / (kl.max() - kl.min()), atol=1e-12)
    # through the estimator: a warning names the lineage
    t = metastable_chain()
    g = GPCCA(t).set_terminal_states({"A": [0], "B": [1]}).compute_fate_probabilities(solver="direct")
    with caplog.at_level(logging.WARNING):
        p = g.compute_lineage_priming(early_cells=g.obs_names[[0]])
    assert p.notna().all() and p.between(0, 1).all()
    assert "['B']" in caplog.text


# ---------------------------------------------------------------- 5. compute_macrostates refuses early, fails cleanly
def test_macrostates_refuse_impossible_n_cells_and_unknown_clusters_before_optimising(chain, monkeypatch):
    adata, t = chain
    g = GPCCA(t, adata=adata)

    def fail(*args, **kwargs):
        raise AssertionError("the optimisation must not run")

    monkeypatch.setattr(gpcca_module, "optimize_gpcca", fail)
    with pytest.raises(ValueError, match=r"n_cells=30 is too many: 25 macrostates with 30 cells each need 750"):
        g.compute_macrostates(25)
    with pytest.raises(ValueError, match="n_cells=201 is too many"):
        g.compute_macrostates([3, 5], n_cells=201)
    with pytest.raises(KeyError, match="nope"):
        g.compute_macrostates(3, cluster_key="nope")
    assert g._schur is None  # refused before the Schur vectors too


def test_failed_macrostates_leave_the_previous_results(chain, monkeypatch):
    adata, t = chain
    g = GPCCA(t, adata=adata).compute_schur(10).compute_macrostates(3, n_cells=15)
    crisp, macro, coarse = g.crispness.copy(), g.macrostates.copy(), g.coarse_T.copy()

    def fail(*args, **kwargs):
        raise ValueError("no cells")

    monkeypatch.setattr(gpcca_module, "top_cells", fail)
    with pytest.raises(ValueError, match="no cells"):
        g.compute_macrostates(5, n_cells=15)
    pd.testing.assert_series_equal(g.crispness, crisp)
    pd.testing.assert_series_equal(g.macrostates, macro)
    pd.testing.assert_frame_equal(g.coarse_T, coarse)


# ---------------------------------------------------------------- 6. cf.tl.macrostates with one state
def test_tl_macrostates_with_one_state():
    g, adata = _small_estimator(30)
    adata.obsp["T_fwd"] = g.transition_matrix
    tl_macrostates(adata, n_states=1, n_cells=5, n_components=5)
    assert list(adata.obs["macrostates_fwd"].cat.categories) == ["0"]
    assert adata.obs["macrostates_fwd"].notna().sum() == 5
    assert "crispness" not in adata.uns["macrostates_fwd"]


# ---------------------------------------------------------------- 7. messages in the user's terms
def test_small_chain_macrostates_and_plot_choice_errors():
    t = sparse.csr_matrix(np.array([[0.9, 0.05, 0.05], [0.05, 0.9, 0.05], [0.05, 0.05, 0.9]]))
    g = GPCCA(t).compute_macrostates(2, n_cells=1)
    assert g.macrostates_memberships.shape == (3, 2)
    np.testing.assert_allclose(g.macrostates_memberships.sum(axis=1), 1, atol=1e-8)
    with pytest.raises(ValueError, match=r"3 macrostates need 3 Schur vectors.*use n_states < 3") as err:
        GPCCA(t).compute_macrostates(3, n_cells=1)
    assert "n_components" not in str(err.value)
    with pytest.raises(ValueError, match=r"which='all' is not supported; use one of \['macrostates', 'terminal'"):
        g.plot_macrostates(which="all")
