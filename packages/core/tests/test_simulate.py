"""Tests of the branching-differentiation simulator and its kinetic engine."""

from __future__ import annotations

from itertools import combinations, pairwise

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from scipy import sparse
from scipy.integrate import solve_ivp

from cellflux._keys import TruthKey
from cellflux.datasets import iter_simulate, simulate, simulate_shards
from cellflux.datasets._kinetics import evolve, prepare_schedule, sample_negative_binomial, solve
from cellflux.datasets._simulator._config import make_config
from cellflux.datasets._simulator._constants import PROGRAMS
from cellflux.datasets._simulator._model import build_model

SMALL = {"n_cells": 1500, "n_genes": 60}


@pytest.fixture(scope="module")
def adata() -> ad.AnnData:
    """The default dataset at a moderate size."""
    return simulate(2000, 200, seed=7)


def _assert_uns_equal(left: object, right: object, path: str = "uns") -> None:
    """Recursively compare two ``uns``-like structures."""
    if isinstance(left, dict):
        assert isinstance(right, dict), path
        assert set(left) == set(right), path
        for key in left:
            _assert_uns_equal(left[key], right[key], f"{path}/{key}")
    elif isinstance(left, np.ndarray) or isinstance(right, np.ndarray):
        left, right = np.asarray(left), np.asarray(right)
        assert left.shape == right.shape, path
        assert left.dtype.kind == right.dtype.kind or {left.dtype.kind, right.dtype.kind} <= {"O", "U"}, path
        np.testing.assert_array_equal(left, right, err_msg=path)
    else:
        assert type(left) is type(right) or (np.isscalar(left) and np.isscalar(right)), path
        assert left == right, path


def _assert_matrix_equal(left: object, right: object, name: str) -> None:
    """Compare two dense or sparse matrices exactly, dtype included."""
    assert sparse.issparse(left) == sparse.issparse(right), name
    assert left.dtype == right.dtype, name
    assert left.shape == right.shape, name
    if sparse.issparse(left):
        assert left.format == right.format == "csr", name
        assert (left != right).nnz == 0, name
    else:
        np.testing.assert_array_equal(left, right, err_msg=name)


def _assert_adata_equal(left: ad.AnnData, right: ad.AnnData) -> None:
    """Every field of two AnnData objects is identical."""
    pd.testing.assert_frame_equal(left.obs, right.obs)
    pd.testing.assert_frame_equal(left.var, right.var)
    _assert_matrix_equal(left.X, right.X, "X")
    assert set(left.layers) == set(right.layers)
    for key in left.layers:
        _assert_matrix_equal(left.layers[key], right.layers[key], key)
    assert set(left.obsm) == set(right.obsm) and set(left.varm) == set(right.varm)
    for key in left.obsm:
        _assert_matrix_equal(left.obsm[key], right.obsm[key], key)
    for key in left.varm:
        _assert_matrix_equal(left.varm[key], right.varm[key], key)
    _assert_uns_equal(left.uns, right.uns)


# --------------------------------------------------------------------------------------------------
# structure
# --------------------------------------------------------------------------------------------------


def test_shapes_and_dtypes(adata: ad.AnnData) -> None:
    n, g, n_lineages = 2000, 200, 3
    assert adata.shape == (n, g)
    for key in (TruthKey.SPLICED, TruthKey.UNSPLICED):
        layer = adata.layers[key]
        assert sparse.isspmatrix_csr(layer) and layer.dtype == np.int32 and layer.shape == (n, g)
        assert layer.has_sorted_indices and (layer.data > 0).all()
    assert sparse.isspmatrix_csr(adata.X) and adata.X.dtype == np.float32
    np.testing.assert_array_equal(adata.X.toarray(), adata.layers[TruthKey.SPLICED].toarray())
    for key in (TruthKey.VELOCITY, TruthKey.VELOCITY_U):
        assert isinstance(adata.layers[key], np.ndarray) and adata.layers[key].dtype == np.float32
        assert np.isfinite(adata.layers[key]).all()
    fate = adata.obsm[TruthKey.FATE_PROBABILITIES]
    assert fate.shape == (n, n_lineages)
    for key in (TruthKey.SWITCH_ON, TruthKey.SWITCH_OFF):
        assert adata.varm[key].shape == (g, n_lineages)
    assert adata.obs_names.is_unique and adata.obs_names[0] == "cell_0000000"
    assert adata.var_names.is_unique and adata.var_names[0] == "gene_0000"
    categorical = (TruthKey.LINEAGE, TruthKey.STATE, TruthKey.CLUSTERS, TruthKey.CONDITION, TruthKey.SAMPLE)
    for key in categorical:
        assert isinstance(adata.obs[key].dtype, pd.CategoricalDtype), key
    for key in (TruthKey.TERMINAL, TruthKey.INITIAL, TruthKey.DA, TruthKey.DE_REGION):
        assert adata.obs[key].dtype == bool, key
    assert isinstance(adata.var[TruthKey.PROGRAM].dtype, pd.CategoricalDtype)
    for key in (TruthKey.CELL_CYCLE_GENE, TruthKey.DE):
        assert adata.var[key].dtype == bool
    info = adata.uns[TruthKey.SIMULATION]
    assert list(info["lineage_names"]) == ["lineage_1", "lineage_2", "lineage_3"]
    assert list(adata.obs[TruthKey.LINEAGE].cat.categories) == list(info["lineage_names"])
    assert info["lineage_weights"].shape == (2, n_lineages)
    assert info["params"]["n_cells"] == n and info["params"]["seed"] == 7


def test_counts_look_like_droplet_data(adata: ad.AnnData) -> None:
    spliced = adata.layers[TruthKey.SPLICED]
    zero_fraction = 1 - spliced.nnz / np.prod(spliced.shape)
    assert 0.4 < zero_fraction < 0.9
    gene_mean = np.asarray(spliced.mean(axis=0)).ravel()
    assert gene_mean.min() > 0.005 and 1 < gene_mean.max() < 60
    assert 0.05 < np.median(gene_mean) < 5
    unspliced_total = adata.layers[TruthKey.UNSPLICED].sum()
    assert 0.1 < unspliced_total / (unspliced_total + spliced.sum()) < 0.45
    # counts scale with the size factor
    size = adata.obs[TruthKey.SIZE_FACTOR].to_numpy()
    total = np.asarray(spliced.sum(axis=1)).ravel()
    assert np.corrcoef(np.log(size), np.log1p(total))[0, 1] > 0.5


def test_cell_annotation_is_consistent(adata: ad.AnnData) -> None:
    obs = adata.obs
    time = obs[TruthKey.TIME].to_numpy()
    branch = time >= 0.3
    lineage = obs[TruthKey.LINEAGE].astype(str).to_numpy()
    state = obs[TruthKey.STATE].astype(str).to_numpy()
    assert ((time >= 0) & (time < 1)).all()
    np.testing.assert_array_equal(state, np.where(branch, lineage, "progenitor"))
    clusters = obs[TruthKey.CLUSTERS].astype(str).to_numpy()
    stage = np.where(time >= np.where(branch, 0.65, 0.15), "late", "early")
    np.testing.assert_array_equal(clusters, np.char.add(np.char.add(state.astype(str), "_"), stage))
    np.testing.assert_array_equal(obs[TruthKey.TERMINAL], branch & (time >= 0.9))
    np.testing.assert_array_equal(obs[TruthKey.INITIAL], time <= 0.1)
    phase = obs[TruthKey.CELL_CYCLE_PHASE].to_numpy()
    assert ((phase >= 0) & (phase < 2 * np.pi)).all()
    sample_condition = obs[TruthKey.SAMPLE].astype(str).str.rsplit("_", n=1).str[0]
    np.testing.assert_array_equal(sample_condition, obs[TruthKey.CONDITION].astype(str))
    assert obs[TruthKey.SAMPLE].nunique() == 6


def test_gene_programs(adata: ad.AnnData) -> None:
    var, on, off = adata.var, adata.varm[TruthKey.SWITCH_ON], adata.varm[TruthKey.SWITCH_OFF]
    program = var[TruthKey.PROGRAM].astype(str).to_numpy()
    counts = pd.Series(program).value_counts()
    assert counts["lineage_specific"] > counts["housekeeping"] > 0 and counts["shared"] > 0
    constant = np.isin(program, ["housekeeping", "cell_cycle"])
    assert np.isinf(on[constant]).all() and np.isinf(off[constant]).all()
    np.testing.assert_array_equal(var[TruthKey.ALPHA_ON][constant], var[TruthKey.ALPHA_BASAL][constant])
    trunk = program == "trunk"
    assert (on[trunk] < 0.3).all() and (on[trunk] == on[trunk][:, :1]).all()
    assert (off[trunk] > on[trunk]).all()
    n_on = np.isfinite(on).sum(axis=1)
    specific, shared = program == "lineage_specific", program == "shared"
    assert (n_on[specific] == 1).all() and (n_on[shared] == 2).all()
    assert (on[specific | shared][np.isfinite(on[specific | shared])] >= 0.3).all()
    assert len({tuple(np.flatnonzero(np.isfinite(row))) for row in on[shared]}) == 3
    np.testing.assert_array_equal(var[TruthKey.CELL_CYCLE_GENE], program == "cell_cycle")
    assert (var[TruthKey.ALPHA_ON] >= var[TruthKey.ALPHA_BASAL]).all()
    beta, gamma = var[TruthKey.BETA], var[TruthKey.GAMMA]
    assert 6 < np.median(beta) < 15 and 3 < np.median(gamma) < 8
    assert (var[TruthKey.DISPERSION] > 0).all() and (var[TruthKey.SCALE] > 0).all()


def test_cell_cycle_switch() -> None:
    off = simulate(300, 100, cell_cycle=False, seed=1)
    on = simulate(300, 100, cell_cycle=True, seed=1)
    assert not off.var[TruthKey.CELL_CYCLE_GENE].any()
    assert "cell_cycle" not in set(off.var[TruthKey.PROGRAM])
    assert off.obs[TruthKey.CELL_CYCLE_PHASE].isna().all()
    cc = on.var[TruthKey.CELL_CYCLE_GENE].to_numpy()
    assert cc.any()
    # rates and time are unchanged; only the expression of the cell-cycle genes is modulated
    np.testing.assert_array_equal(on.var[TruthKey.BETA], off.var[TruthKey.BETA])
    np.testing.assert_array_equal(on.obs[TruthKey.TIME], off.obs[TruthKey.TIME])
    np.testing.assert_array_equal(on.layers[TruthKey.VELOCITY], off.layers[TruthKey.VELOCITY])
    assert (on.layers[TruthKey.VELOCITY][:, cc] == 0).all()
    # cell-cycle genes follow the per-cell phase
    phase = on.obs[TruthKey.CELL_CYCLE_PHASE].to_numpy()
    info = on.uns[TruthKey.SIMULATION]
    g = np.flatnonzero(cc)[np.argmax(on.var[TruthKey.SCALE].to_numpy()[cc])]
    modulation = np.sin(phase - info["cell_cycle_phase"][g])
    normalized = on.layers[TruthKey.SPLICED][:, g].toarray().ravel() / on.obs[TruthKey.SIZE_FACTOR]
    assert np.corrcoef(modulation, normalized)[0, 1] > 0.3


# --------------------------------------------------------------------------------------------------
# determinism and chunking
# --------------------------------------------------------------------------------------------------


def test_seed_determinism() -> None:
    first, second = simulate(seed=3, **SMALL), simulate(seed=3, **SMALL)
    _assert_adata_equal(first, second)
    other = simulate(seed=4, **SMALL)
    assert not np.array_equal(first.obs[TruthKey.TIME], other.obs[TruthKey.TIME])
    assert not np.array_equal(first.var[TruthKey.BETA], other.var[TruthKey.BETA])
    assert (first.layers[TruthKey.SPLICED] != other.layers[TruthKey.SPLICED]).nnz > 0


def test_chunks_threads_and_prefix_match_simulate() -> None:
    full = simulate(2345, 40, seed=5)
    chunks = list(iter_simulate(2345, 40, chunk_size=700, seed=5))
    assert [c.n_obs for c in chunks] == [700, 700, 700, 245]
    assert chunks[1].obs_names[0] == "cell_0000700"
    joined = ad.concat(chunks, merge="same", uns_merge="same")
    _assert_adata_equal(full, joined)
    _assert_adata_equal(full, simulate(2345, 40, seed=5, n_jobs=3))
    # cells do not depend on n_cells, except the record of n_cells itself
    prefix = simulate(1234, 40, seed=5)
    head = full[:1234].copy()
    head.uns[TruthKey.SIMULATION]["params"]["n_cells"] = 1234
    _assert_adata_equal(prefix, head)


def test_shards_match_simulate(tmp_path) -> None:
    paths = simulate_shards(tmp_path / "out", 2100, 30, shard_size=1000, show_progress=False, seed=2)
    assert [p.name for p in paths] == ["shard_00000.h5ad", "shard_00001.h5ad", "shard_00002.h5ad"]
    shards = [ad.read_h5ad(p) for p in paths]
    assert [s.n_obs for s in shards] == [1000, 1000, 100]
    _assert_adata_equal(simulate(2100, 30, seed=2), ad.concat(shards, merge="same", uns_merge="same"))


def test_truth_layers_off_drops_only_the_velocity_layers(tmp_path) -> None:
    kwargs = {"n_cells": 2345, "n_genes": 50, "seed": 6}
    full = simulate(**kwargs)
    lean = simulate(truth_layers=False, n_jobs=2, **kwargs)
    assert full.uns[TruthKey.SIMULATION]["params"]["truth_layers"] is True
    assert lean.uns[TruthKey.SIMULATION]["params"]["truth_layers"] is False
    assert set(lean.layers) == {TruthKey.SPLICED, TruthKey.UNSPLICED}
    # same counts, cells and truth: only the two dense layers and the recorded parameter differ
    expected = full.copy()
    del expected.layers[TruthKey.VELOCITY], expected.layers[TruthKey.VELOCITY_U]
    expected.uns[TruthKey.SIMULATION]["params"]["truth_layers"] = False
    _assert_adata_equal(lean, expected)
    # chunks cutting blocks, threads and shards stay consistent
    chunks = list(iter_simulate(chunk_size=1100, truth_layers=False, n_jobs=2, **kwargs))
    _assert_adata_equal(lean, ad.concat(chunks, merge="same", uns_merge="same"))
    paths = simulate_shards(tmp_path, shard_size=700, truth_layers=False, show_progress=False, **kwargs)
    shards = [ad.read_h5ad(path) for path in paths]
    assert all(set(s.layers) == {TruthKey.SPLICED, TruthKey.UNSPLICED} for s in shards)
    _assert_adata_equal(lean, ad.concat(shards, merge="same", uns_merge="same"))


def test_h5ad_round_trip(adata: ad.AnnData, tmp_path) -> None:
    path = tmp_path / "sim.h5ad"
    adata.write_h5ad(path)
    _assert_adata_equal(adata, ad.read_h5ad(path))


# --------------------------------------------------------------------------------------------------
# kinetics
# --------------------------------------------------------------------------------------------------


def _integrate(points, alphas, beta, gamma, times):
    """Reference: fixed-grid integration of the ODE with solve_ivp, restarted at every breakpoint."""
    state = np.array([alphas[0] / beta, alphas[0] / gamma])
    edges = [0.0, *[p for p in points if np.isfinite(p) and p < 1], 1.0]
    result = np.empty((times.size, 2))
    for k, (t0, t1) in enumerate(pairwise(edges)):
        last = k == len(edges) - 2
        mask = (times >= t0) & ((times <= t1) if last else (times < t1))
        alpha = alphas[k]
        if t1 <= t0:
            result[mask] = state
            continue
        sol = solve_ivp(
            lambda _, y, a=alpha: [a - beta * y[0], beta * y[0] - gamma * y[1]],
            (t0, t1),
            state,
            method="DOP853",
            dense_output=True,
            rtol=1e-12,
            atol=1e-14,
        )
        if mask.any():
            result[mask] = sol.sol(times[mask]).T
        state = sol.y[:, -1]
    return result


def test_analytic_solution_matches_numerical_integration() -> None:
    rng = np.random.default_rng(0)
    n_paths, n_genes, n_breaks = 2, 8, 3
    points = np.sort(rng.uniform(0, 1, (n_paths, n_genes, n_breaks)), axis=-1)
    points[0, 1, 2] = np.inf  # an unused breakpoint
    points[1, 2, :] = [0.0, 0.5, np.inf]  # a switch at t = 0
    points[1, 3, :] = [0.4, 0.4, 0.7]  # a zero-length segment
    alphas = np.exp(rng.normal(1, 1, (n_paths, n_genes, n_breaks + 1)))
    alphas[0, 4, 2] = 0.0  # switched off completely
    beta = np.exp(rng.normal(np.log(10), 0.5, n_genes))
    gamma = np.exp(rng.normal(np.log(5), 0.5, n_genes))
    gamma[0] = beta[0]  # exact limit
    gamma[1] = beta[1] * (1 + 1e-10)  # near the limit
    gamma[2] = beta[2] * (1 - 1e-6)
    beta[5], gamma[5] = 60.0, 0.7  # stiff
    schedule = prepare_schedule(points, alphas, beta, gamma)
    times = np.sort(np.concatenate([rng.uniform(0, 1, 60), [0.0, 0.4, 0.5, 1.0]]))
    for p in range(n_paths):
        state = solve(schedule, np.full(times.size, p), times)
        for g in range(n_genes):
            ref = _integrate(points[p, g], alphas[p, g], beta[g], gamma[g], times)
            scale = max(ref.max(), 1e-12)
            np.testing.assert_allclose(state.u[:, g], ref[:, 0], rtol=1e-8, atol=1e-9 * scale, err_msg=f"u {p} {g}")
            np.testing.assert_allclose(state.s[:, g], ref[:, 1], rtol=1e-8, atol=1e-9 * scale, err_msg=f"s {p} {g}")
            np.testing.assert_allclose(
                state.velocity_u[:, g], state.alpha[:, g] - beta[g] * state.u[:, g], atol=1e-9 * scale * beta[g]
            )
            np.testing.assert_allclose(
                state.velocity_s[:, g], beta[g] * state.u[:, g] - gamma[g] * state.s[:, g], atol=1e-9 * scale * beta[g]
            )


def test_equal_rates_limit_is_exact_and_finite() -> None:
    tau = np.array([0.0, 1e-12, 0.01, 0.3, 1.0, 50.0, 1e4])
    beta = 7.0
    du0, ds0, alpha = -2.0, 0.5, 3.0
    exact = evolve(du0, ds0, alpha, beta, beta, tau)
    # closed form for gamma == beta: ds = ds0 e^{-beta tau} + beta du0 tau e^{-beta tau}
    expected_s = alpha / beta + ds0 * np.exp(-beta * tau) + beta * du0 * tau * np.exp(-beta * tau)
    np.testing.assert_allclose(exact.s, expected_s, rtol=1e-13, atol=1e-15)
    for eps in (1e-15, 1e-9, 1e-5):
        near = evolve(du0, ds0, alpha, beta, beta * (1 + eps), tau)
        np.testing.assert_allclose(near.s, exact.s, rtol=20 * eps + 1e-13, atol=1e-14)
    extreme = evolve(
        np.array([1e3, -1e3]), np.array([1.0, 2.0]), 1.0, np.array([1e4, 1e-4]), np.array([1e-4, 1e4]), 1e3
    )
    for field in (extreme.u, extreme.s, extreme.velocity_u, extreme.velocity_s):
        assert np.isfinite(field).all()


def test_true_velocity_is_the_time_derivative() -> None:
    model = build_model(make_config(n_genes=150, seed=11))
    n_lineages = model.config.n_lineages
    path = n_lineages + model.config.de_lineage  # treated x DE lineage: carries the DE breakpoint too
    times = np.linspace(0.002, 0.998, 800)
    h = 1e-6
    at = solve(model.schedule, np.full(times.size, path), times)
    ahead = solve(model.schedule, np.full(times.size, path), times + h)
    behind = solve(model.schedule, np.full(times.size, path), times - h)
    breaks = model.schedule.breakpoints[path]  # (genes, K)
    near_break = (np.abs(times[:, None, None] - breaks[None]) < 3 * h).any(axis=-1)
    for field, velocity in (("s", at.velocity_s), ("u", at.velocity_u)):
        fd = (getattr(ahead, field) - getattr(behind, field)) / (2 * h)
        scale = np.abs(velocity).max(axis=0) + 1e-12
        error = np.abs(fd - velocity) / scale
        assert error[~near_break].max() < 1e-5, field
    moving = (np.abs(at.velocity_s) > 1e-6 * scale) & ~near_break
    step = ahead.s - at.s
    assert (np.sign(step[moving]) == np.sign(at.velocity_s[moving])).mean() > 0.999
    assert (at.velocity_s[:, model.genes.program == PROGRAMS.index("housekeeping")] == 0).all()


def test_velocity_layers_match_the_engine(adata: ad.AnnData) -> None:
    config = make_config(2000, 200, seed=7)
    model = build_model(config)
    obs = adata.obs
    condition = obs[TruthKey.CONDITION].cat.codes.to_numpy()
    path = condition * config.n_lineages + obs[TruthKey.LINEAGE].cat.codes.to_numpy()
    state = solve(model.schedule, path, obs[TruthKey.TIME].to_numpy())
    scale = adata.var[TruthKey.SCALE].to_numpy()
    np.testing.assert_allclose(adata.layers[TruthKey.VELOCITY], state.velocity_s * scale, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(
        adata.layers[TruthKey.VELOCITY_U], state.velocity_u * scale * config.unspliced_ratio, rtol=1e-6, atol=1e-6
    )
    program = adata.var[TruthKey.PROGRAM].astype(str).to_numpy()
    constant = np.isin(program, ["housekeeping", "cell_cycle"]) & ~adata.var[TruthKey.DE].to_numpy()
    assert (adata.layers[TruthKey.VELOCITY][:, constant] == 0).all()
    assert (adata.layers[TruthKey.VELOCITY_U][:, constant] == 0).all()
    # observed counts track the noise-free abundance
    size = obs[TruthKey.SIZE_FACTOR].to_numpy()[:, None]
    dynamic = np.isin(program, ["trunk", "lineage_specific", "shared"])
    mu = (state.s * scale * size)[:, dynamic]
    counts = adata.layers[TruthKey.SPLICED][:, dynamic].toarray()
    assert abs(counts.sum() / mu.sum() - 1) < 0.03
    # the trunk is identical for every lineage and condition before the branch point
    trunk_time = np.linspace(0, 0.299, 50)
    states = [solve(model.schedule, np.full(50, p), trunk_time).s for p in range(model.schedule.n_paths)]
    for other in states[1:]:
        np.testing.assert_array_equal(states[0], other)


# --------------------------------------------------------------------------------------------------
# fates, differential abundance, differential expression
# --------------------------------------------------------------------------------------------------


def test_fate_probabilities(adata: ad.AnnData) -> None:
    fate = adata.obsm[TruthKey.FATE_PROBABILITIES]
    np.testing.assert_allclose(fate.sum(axis=1), 1.0, atol=1e-12)
    assert ((fate >= 0) & (fate <= 1)).all()
    branch = adata.obs[TruthKey.TIME].to_numpy() >= 0.3
    lineage = adata.obs[TruthKey.LINEAGE].cat.codes.to_numpy()
    np.testing.assert_array_equal(fate[branch], np.eye(3)[lineage[branch]])
    weights = adata.uns[TruthKey.SIMULATION]["lineage_weights"]
    condition = adata.obs[TruthKey.CONDITION].cat.codes.to_numpy()
    np.testing.assert_allclose(fate[~branch], weights[condition[~branch]])


@pytest.mark.parametrize("da_factor", [0.3, 2.5])
def test_differential_abundance_truth(da_factor: float) -> None:
    data = simulate(40_000, 12, da_factor=da_factor, sample_variability=0.0, seed=21)
    obs = data.obs
    w1 = np.full(3, 1 / 3)
    w2 = w1 * np.array([1, 1, da_factor])
    w2 /= w2.sum()
    expected_lfc = np.log(w2 / w1)
    info = data.uns[TruthKey.SIMULATION]
    np.testing.assert_allclose(info["lineage_weights"], np.vstack([w1, w2]))
    np.testing.assert_allclose(info["da_log_fold_change"], expected_lfc)

    branch = obs[TruthKey.TIME].to_numpy() >= 0.3
    lineage = obs[TruthKey.LINEAGE].cat.codes.to_numpy()
    lfc = obs[TruthKey.DA_LOG_FOLD_CHANGE].to_numpy()
    np.testing.assert_array_equal(lfc[~branch], 0.0)
    np.testing.assert_allclose(lfc[branch], expected_lfc[lineage[branch]])
    np.testing.assert_array_equal(obs[TruthKey.DA], branch)

    treated = obs[TruthKey.CONDITION].cat.codes.to_numpy() == 1
    for index in range(3):
        p1 = np.mean(lineage[branch & ~treated] == index)
        p2 = np.mean(lineage[branch & treated] == index)
        n1, n2 = (branch & ~treated).sum(), (branch & treated).sum()
        se = np.sqrt((1 - p1) / (n1 * p1) + (1 - p2) / (n2 * p2))
        assert abs(np.log(p2 / p1) - expected_lfc[index]) < 4 * se, index


def test_sample_variability_jitters_weights() -> None:
    info = simulate(100, 20, sample_variability=0.1, seed=2).uns[TruthKey.SIMULATION]
    sample_weights, weights = info["sample_lineage_weights"], info["lineage_weights"]
    assert sample_weights.shape == (6, 3)
    np.testing.assert_allclose(sample_weights.sum(axis=1), 1.0)
    condition = np.repeat([0, 1], 3)
    deviation = np.abs(sample_weights - weights[condition])
    assert 0.005 < deviation.mean() < 0.1
    still = simulate(100, 20, sample_variability=0.0, seed=2).uns[TruthKey.SIMULATION]
    np.testing.assert_array_equal(still["sample_lineage_weights"], still["lineage_weights"][condition])


def test_differential_expression_truth() -> None:
    model = build_model(make_config(n_genes=300, seed=4))
    config, n_lineages = model.config, model.config.n_lineages
    de, lfc = model.de_genes, model.de_log_fold_change
    assert de.size == 30 and set(np.abs(np.round(lfc, 12))) == {np.round(np.log(3.0), 12)}
    assert (lfc > 0).any() and (lfc < 0).any()
    dynamic = np.isin(model.genes.program, [PROGRAMS.index(p) for p in ("trunk", "lineage_specific", "shared")])
    assert dynamic[de].all()

    scale = model.genes.scale
    late = np.linspace(0.7, 0.999, 100)
    control = solve(model.schedule, np.full(late.size, config.de_lineage), late).s * scale
    treated = solve(model.schedule, np.full(late.size, n_lineages + config.de_lineage), late).s * scale
    ratio = np.log(treated.mean(axis=0) / control.mean(axis=0))
    np.testing.assert_array_equal(np.delete(ratio, de), 0.0)  # non-DE genes: identical expected counts
    assert (np.sign(ratio[de]) == np.sign(lfc)).all()
    assert np.median(np.abs(ratio[de] - lfc) / np.abs(lfc)) < 0.05
    # other lineages and the trunk are not affected at all
    for lineage in range(n_lineages):
        if lineage == config.de_lineage:
            continue
        times = np.linspace(0, 0.999, 80)
        a = solve(model.schedule, np.full(80, lineage), times).s
        b = solve(model.schedule, np.full(80, n_lineages + lineage), times).s
        np.testing.assert_array_equal(a, b)
    early = np.linspace(0, 0.2999, 20)
    np.testing.assert_array_equal(
        solve(model.schedule, np.full(20, config.de_lineage), early).s,
        solve(model.schedule, np.full(20, n_lineages + config.de_lineage), early).s,
    )


def test_differential_expression_in_the_counts() -> None:
    data = simulate(12_000, 100, de_direction="up", de_fold_change=4.0, seed=8)
    var, obs = data.var, data.obs
    assert (var.loc[var[TruthKey.DE], TruthKey.DE_LOG_FOLD_CHANGE] == np.log(4.0)).all()
    assert (var.loc[~var[TruthKey.DE], TruthKey.DE_LOG_FOLD_CHANGE] == 0).all()
    region = obs[TruthKey.DE_REGION].to_numpy()
    np.testing.assert_array_equal(
        region, (obs[TruthKey.LINEAGE].cat.codes.to_numpy() == 0) & (obs[TruthKey.TIME].to_numpy() >= 0.3)
    )
    late = region & (obs[TruthKey.TIME].to_numpy() >= 0.7)
    treated = obs[TruthKey.CONDITION].cat.codes.to_numpy() == 1
    normalized = data.layers[TruthKey.SPLICED].toarray() / obs[TruthKey.SIZE_FACTOR].to_numpy()[:, None]
    log_ratio = np.log(normalized[late & treated].mean(axis=0) / normalized[late & ~treated].mean(axis=0))
    de = var[TruthKey.DE].to_numpy()
    assert abs(np.median(log_ratio[de]) - np.log(4.0)) < 0.25
    assert abs(np.median(log_ratio[~de])) < 0.1


def test_down_direction_and_explicit_genes() -> None:
    down = simulate(200, 80, de_direction="down", seed=1).var
    assert (down.loc[down[TruthKey.DE], TruthKey.DE_LOG_FOLD_CHANGE] == -np.log(3.0)).all()
    explicit = simulate(200, 80, de_genes=[3, 1, 40], de_direction="up", seed=1).var
    np.testing.assert_array_equal(np.flatnonzero(explicit[TruthKey.DE]), [1, 3, 40])
    none = simulate(200, 80, de_genes=0, seed=1)
    assert not none.var[TruthKey.DE].any() and not none.obs[TruthKey.DE_REGION].any()


def test_single_condition_plants_nothing() -> None:
    data = simulate(800, 60, n_conditions=1, seed=6)
    obs = data.obs
    assert list(obs[TruthKey.CONDITION].cat.categories) == ["control"]
    assert list(obs[TruthKey.SAMPLE].cat.categories) == ["control_1", "control_2", "control_3"]
    assert (obs[TruthKey.DA_LOG_FOLD_CHANGE] == 0).all() and not obs[TruthKey.DA].any()
    assert not obs[TruthKey.DE_REGION].any()
    assert not data.var[TruthKey.DE].any() and (data.var[TruthKey.DE_LOG_FOLD_CHANGE] == 0).all()
    assert data.uns[TruthKey.SIMULATION]["lineage_weights"].shape == (1, 3)


def test_custom_lineages_and_weights() -> None:
    data = simulate(
        3000, 50, n_lineages=4, lineage_names=["a", "b", "c", "d"], lineage_weights=[4, 3, 2, 1], n_conditions=1
    )
    assert list(data.obs[TruthKey.LINEAGE].cat.categories) == ["a", "b", "c", "d"]
    assert list(data.obs[TruthKey.STATE].cat.categories) == ["progenitor", "a", "b", "c", "d"]
    fractions = data.obs[TruthKey.LINEAGE].value_counts(normalize=True).sort_index().to_numpy()
    assert np.all(np.abs(fractions - [0.4, 0.3, 0.2, 0.1]) < 0.05)
    tree = data.uns[TruthKey.SIMULATION]["tree"]
    assert tree["edges"].shape == (4, 2) and set(tree["edges"][:, 0]) == {"progenitor"}
    shared = data.var[TruthKey.PROGRAM].to_numpy() == "shared"
    pairs = {tuple(np.flatnonzero(np.isfinite(r))) for r in data.varm[TruthKey.SWITCH_ON][shared]}
    assert pairs <= set(combinations(range(4), 2))


# --------------------------------------------------------------------------------------------------
# count model
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("mu", "theta"), [(0.3, 0.5), (3.0, 2.0), (40.0, 10.0)])
def test_negative_binomial_moments(mu: float, theta: float) -> None:
    n = 400_000
    counts = sample_negative_binomial(np.full(n, mu), theta, np.random.default_rng(1), np.random.default_rng(2))
    assert counts.dtype == np.int32
    variance = mu + mu**2 / theta
    assert abs(counts.mean() - mu) < 5 * np.sqrt(variance / n)
    assert abs(counts.var() / variance - 1) < 0.03
    assert abs(np.mean(counts == 0) - (theta / (theta + mu)) ** theta) < 0.005


def test_negative_binomial_streams_are_prefix_stable() -> None:
    mu = np.random.default_rng(0).gamma(1.0, 2.0, (50, 7))
    theta = np.linspace(0.5, 5, 7)
    whole = sample_negative_binomial(mu, theta, np.random.default_rng(1), np.random.default_rng(2))
    head = sample_negative_binomial(mu[:20], theta, np.random.default_rng(1), np.random.default_rng(2))
    np.testing.assert_array_equal(whole[:20], head)


# --------------------------------------------------------------------------------------------------
# validation
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"n_cells": 0}, "n_cells"),
        ({"n_cells": 2.5}, "n_cells"),
        ({"n_genes": 0}, "n_genes"),
        ({"n_lineages": 1}, "n_lineages"),
        ({"lineage_names": ["a", "a", "b"]}, "lineage_names"),
        ({"lineage_names": ["a", "b"]}, "lineage_names"),
        ({"lineage_weights": [1, 0, 1]}, "lineage_weights"),
        ({"n_conditions": 3}, "n_conditions"),
        ({"t_branch": 0.0}, "t_branch"),
        ({"t_branch": 1.0}, "t_branch"),
        ({"terminal_time": 0.2}, "terminal_time"),
        ({"initial_time": 0.5}, "initial_time"),
        ({"n_samples_per_condition": 0}, "n_samples_per_condition"),
        ({"sample_variability": -0.1}, "sample_variability"),
        ({"da_factor": 0.0}, "da_factor"),
        ({"da_factor": -1.0}, "da_factor"),
        ({"da_lineage": "nope"}, "da_lineage"),
        ({"de_lineage": 7}, "de_lineage"),
        ({"de_genes": 10_000}, "de_genes"),
        ({"de_genes": [1, 1]}, "de_genes"),
        ({"de_genes": [500]}, "de_genes"),
        ({"de_fold_change": 0.5}, "de_fold_change"),
        ({"de_direction": "sideways"}, "de_direction"),
        ({"de_time_start": 0.1}, "de_time_start"),
        ({"unspliced_ratio": 0}, "unspliced_ratio"),
        ({"seed": -1}, "seed"),
        ({"truth_layers": 1}, "truth_layers"),
        ({"n_jobs": 0}, "n_jobs"),
    ],
)
def test_invalid_parameters(kwargs: dict, name: str) -> None:
    with pytest.raises(ValueError, match=f"`{name}`"):
        simulate(**{"n_cells": 10, "n_genes": 500, **kwargs})


def test_invalid_chunking_parameters(tmp_path) -> None:
    with pytest.raises(ValueError, match="`chunk_size`"):
        iter_simulate(10, 10, chunk_size=0)
    with pytest.raises(ValueError, match="`da_factor`"):
        iter_simulate(10, 10, da_factor=0)  # validated eagerly, before the first chunk
    with pytest.raises(ValueError, match="`shard_size`"):
        simulate_shards(tmp_path / "x", 10, 10, shard_size=0, show_progress=False)
    with pytest.raises(ValueError, match="`n_cells`"):
        simulate_shards(tmp_path / "y", 0, 10, show_progress=False)
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()
    with pytest.raises(TypeError):
        iter_simulate(10, 10, not_a_parameter=1)
