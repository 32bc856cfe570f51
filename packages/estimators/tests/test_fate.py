import numpy as np
import pandas as pd
import pytest
from scipy import sparse, stats

from cellflux._keys import TruthKey
from cellflux_estimators import GPCCA, ReducibleChainError, SolveError, absorption_times, driver_test
from cellflux_estimators._engine._drivers import benjamini_hochberg
from cellflux_estimators._engine._linsolve import solve_transient
from cellflux_estimators._engine._trends import fit_trends


@pytest.fixture
def fates(chain):
    adata, t = chain
    g = GPCCA(t, adata=adata)
    g.compute_schur(10)
    g.compute_macrostates(5, n_cells=15, cluster_key=TruthKey.CLUSTERS)
    g.predict_terminal_states(method="top_n", n_states=3)
    g.compute_fate_probabilities()
    return g


def test_fate_probabilities_are_probabilities_and_match_truth(fates, chain):
    adata, _ = chain
    fp = fates.fate_probabilities
    assert fp.to_numpy().min() >= 0 and fp.to_numpy().max() <= 1
    np.testing.assert_allclose(fp.sum(axis=1), 1, atol=1e-12)
    truth = pd.DataFrame(adata.obsm[TruthKey.FATE_PROBABILITIES])
    # each lineage's fate probabilities correlate best with one true lineage's
    corr = np.corrcoef(fp.to_numpy().T, np.asarray(truth).T)[:3, 3:]
    assert sorted(np.argmax(corr, axis=1).tolist()) == [0, 1, 2]
    assert corr.max(axis=1).min() > 0.5


def test_solvers_agree_and_keys_merge(fates):
    auto = fates.fate_probabilities.copy()
    fates.compute_fate_probabilities(solver="direct")
    direct = fates.fate_probabilities.copy()
    np.testing.assert_allclose(auto.to_numpy(), direct.to_numpy(), atol=1e-5)
    for solver in ("gmres", "lgmres", "bicgstab"):
        fates.compute_fate_probabilities(solver=solver, preconditioner="ilu", tol=1e-10)
        np.testing.assert_allclose(fates.fate_probabilities.to_numpy(), direct.to_numpy(), atol=1e-6)
    a, b, c = direct.columns
    fates.compute_fate_probabilities([f"{b}, {a}", c], solver="direct")
    merged = fates.fate_probabilities
    assert list(merged.columns) == [f"{a}, {b}", c]
    np.testing.assert_allclose(merged[f"{a}, {b}"], direct[a] + direct[b], atol=1e-10)
    with pytest.raises(KeyError, match="Unknown terminal state"):
        fates.compute_fate_probabilities(["nope"])
    with pytest.raises(ValueError, match="more than one lineage key"):
        fates.compute_fate_probabilities([a, f"{a}, {b}"])


def test_n_jobs_threads_over_lineages_with_the_same_results(fates):
    for solver in ("lgmres", "bicgstab"):
        fates.compute_fate_probabilities(solver=solver, preconditioner="ilu", tol=1e-10)
        one = fates.fate_probabilities.to_numpy()
        fates.compute_fate_probabilities(solver=solver, preconditioner="ilu", tol=1e-10, n_jobs=-1)
        np.testing.assert_array_equal(fates.fate_probabilities.to_numpy(), one)  # same solves, other threads
        fates.compute_fate_probabilities(solver=solver, tol=1e-10, n_jobs=3)
        np.testing.assert_allclose(fates.fate_probabilities.to_numpy(), one, atol=1e-6)
    fates.compute_absorption_times(solver="lgmres", tol=1e-10, n_jobs=2)
    threaded = fates.absorption_times.to_numpy()
    fates.compute_absorption_times(solver="lgmres", tol=1e-10)
    np.testing.assert_array_equal(fates.absorption_times.to_numpy(), threaded)
    for bad in (0, 1.5, True):
        with pytest.raises(ValueError, match="n_jobs must be a non-zero integer"):
            fates.compute_fate_probabilities(n_jobs=bad)


def test_unconverged_solve_is_reported_with_residual(chain):
    _, t = chain
    q = t[:500][:, :500]
    with pytest.raises(SolveError, match="relative residual"):
        solve_transient(q, np.ones(500), solver="gmres", tol=1e-12, maxiter=1)


def test_reducible_chain_is_explained():
    rng = np.random.default_rng(0)
    blocks = [rng.random((20, 20)) for _ in range(2)]
    t = sparse.block_diag(blocks).tocsr()
    t = sparse.csr_matrix(sparse.diags(1 / np.asarray(t.sum(1)).ravel()) @ t)
    g = GPCCA(t)
    g.set_terminal_states({"A": [0, 1]})
    with pytest.raises(ReducibleChainError, match="2 communicating classes.*contain no terminal state"):
        g.compute_fate_probabilities()
    g.set_terminal_states({"A": [0, 1], "B": [30]})
    g.compute_fate_probabilities()
    fp = g.fate_probabilities.to_numpy()
    assert np.allclose(fp[:20, 0], 1) and np.allclose(fp[20:, 1], 1)


def _small_chain():
    rng = np.random.default_rng(1)
    dense = rng.random((30, 30)) * (rng.random((30, 30)) < 0.3) + np.eye(30) * 0.1
    dense /= dense.sum(1, keepdims=True)
    return sparse.csr_matrix(dense)


def test_absorption_times_match_the_fundamental_matrix():
    t = _small_chain()
    absorbing = np.array([0, 1])
    trans = np.setdiff1d(np.arange(30), absorbing)
    q = t.toarray()[np.ix_(trans, trans)]
    n = np.linalg.inv(np.eye(len(trans)) - q)
    mean_true = n @ np.ones(len(trans))
    var_true = (2 * n - np.eye(len(trans))) @ mean_true - mean_true**2
    means, variances = absorption_times(t, [absorbing], calculate_variance=True, solver="direct")
    np.testing.assert_allclose(means[0][trans], mean_true, rtol=1e-10)
    np.testing.assert_allclose(variances[0][trans], var_true, rtol=1e-8)
    assert np.all(means[0][absorbing] == 0)
    # conditional times: h-transform with the absorption probabilities into {0}
    means, _ = absorption_times(t, [np.array([0]), np.array([1])], solver="direct")
    r = t.toarray()[np.ix_(trans, [0])].ravel()
    h = n @ r
    cond = (n @ (h)) / h  # E[T | absorbed in 0] = (N h) / h
    np.testing.assert_allclose(means[0][trans], cond, rtol=1e-8)


def test_drivers_match_scipy(fates, chain):
    adata, _ = chain
    df = fates.compute_lineage_drivers(layer="log1p")
    lin = fates.fate_probabilities.columns[0]
    x = adata.layers["log1p"]
    y = fates.fate_probabilities[lin].to_numpy()
    for gene in adata.var_names[:10]:
        col = x[:, adata.var_names.get_loc(gene)]
        if np.ptp(col) == 0:
            assert np.isnan(df.loc[gene, f"{lin}_corr"])
            continue
        r, p = stats.pearsonr(col, y)
        assert df.loc[gene, f"{lin}_corr"] == pytest.approx(r, abs=1e-10)
        assert df.loc[gene, f"{lin}_ci_low"] < r < df.loc[gene, f"{lin}_ci_high"]
    p = df[f"{lin}_pval"].to_numpy()
    np.testing.assert_allclose(
        df[f"{lin}_qval"],
        stats.false_discovery_control(np.nan_to_num(p, nan=1.0)) if not np.isnan(p).any() else benjamini_hochberg(p),
        equal_nan=True,
    )
    assert df[f"{lin}_corr"].is_monotonic_decreasing or df.index[0] == df[f"{lin}_corr"].idxmax()
    sp = fates.compute_lineage_drivers(lin, correlation="spearman", layer="log1p")
    gene = sp[f"{lin}_corr"].idxmax()
    rho = stats.spearmanr(x[:, adata.var_names.get_loc(gene)], y).statistic
    assert sp.loc[gene, f"{lin}_corr"] == pytest.approx(rho, abs=1e-10)
    assert "log1p" in adata.layers  # input untouched


def test_permutation_test_is_seeded(rng):
    x = rng.normal(size=(200, 5))
    y = np.column_stack([x[:, 0] + rng.normal(size=200), rng.random(200)])
    a = driver_test(x, y, method="perm_test", n_perms=50, seed=3, show_progress_bar=False)
    b = driver_test(x, y, method="perm_test", n_perms=50, seed=3, show_progress_bar=False)
    np.testing.assert_array_equal(a.pval, b.pval)
    assert a.pval[0, 0] == 0.0 and a.ci_low[0, 0] < a.corr[0, 0] < a.ci_high[0, 0]
    with pytest.raises(ValueError, match="n_perms"):
        driver_test(x, y, method="perm_test", n_perms=0)


def test_priming_and_trends(fates, chain, rng):
    adata, _ = chain
    prim = fates.compute_lineage_priming(
        early_cells={TruthKey.CLUSTERS: [adata.obs[TruthKey.CLUSTERS].cat.categories[0]]}
    )
    assert prim.between(0, 1).all()
    t = adata.obs[TruthKey.TIME].to_numpy()
    assert stats.spearmanr(prim, t).statistic > 0.3  # later cells are more committed
    # the smoother recovers a known curve
    time = np.sort(rng.random(500))
    truth = np.sin(2 * np.pi * time)
    x = (truth + rng.normal(scale=0.3, size=500))[:, None]
    res = fit_trends(x, time, np.ones((500, 1)), n_points=50)
    np.testing.assert_allclose(res.values[0][:, 0], np.sin(2 * np.pi * res.grid), atol=0.15)
    # sparse expression (scanpy's log-normalised X) gives the same trends as dense
    from scipy import sparse

    xs = np.column_stack([x[:, 0] + 1.5, np.zeros(500)])
    dense_res = fit_trends(xs, time, np.ones((500, 1)), n_points=50)
    sparse_res = fit_trends(sparse.csr_matrix(xs), time, np.ones((500, 1)), n_points=50)
    np.testing.assert_allclose(sparse_res.values[0], dense_res.values[0], rtol=1e-10, atol=1e-12)
    trends = fates.compute_gene_trends(list(adata.var_names[:3]), time_key=TruthKey.TIME, layer="log1p")
    assert set(trends) == set(fates.fate_probabilities.columns)
    assert all(df.shape == (200, 3) for df in trends.values())
