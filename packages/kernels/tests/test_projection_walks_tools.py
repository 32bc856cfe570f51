"""Projection onto an embedding, random walks, plots and the registered functions."""

import itertools

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest

import cellflux as cf
from cellflux_kernels import ConnectivityKernel, PrecomputedKernel, VelocityKernel, read_kernel
from cellflux_kernels._engine._projection import project


def test_projection_matches_a_loop(adata):
    vk = VelocityKernel(adata).compute_transition_matrix(softmax_scale=4.0, show_progress_bar=False)
    emb = adata.obsm["X_pca"][:, :2]
    conn = adata.obsp["connectivities"]
    raw = project(vk.transition_matrix, conn, emb)
    T = vk.transition_matrix.toarray()
    for i in (0, 50, 399):
        nbrs = conn[i].indices
        d = emb[nbrs] - emb[i]
        d /= np.linalg.norm(d, axis=1)[:, None]
        np.testing.assert_allclose(raw[i], T[i, nbrs] @ d - d.mean(axis=0), atol=1e-12)
    out = vk.compute_projection(basis="pca")
    assert "T_fwd_pca" in adata.obsm and out.shape == (adata.n_obs, 2)
    np.testing.assert_allclose(out, raw * (out[0, 0] / raw[0, 0]), rtol=1e-9, atol=1e-15)  # one display scale
    with pytest.raises(KeyError, match="already exist"):
        vk.compute_projection(basis="pca")
    with pytest.raises(KeyError, match="X_umap"):
        vk.compute_projection(basis="umap")


def test_random_walks_start_and_stop(adata):
    ck = ConnectivityKernel(adata).compute_transition_matrix()
    start = {"true_time": (0.0, 0.2)}
    stop = {"true_terminal": [True]} if adata.obs["true_terminal"].dtype == bool else None
    walks = ck.simulate_random_walks(50, max_iter=100, seed=0, start_ixs=start)
    early = np.flatnonzero((adata.obs["true_time"] >= 0) & (adata.obs["true_time"] <= 0.2))
    assert all(w[0] in early for w in walks) and all(len(w) == 101 for w in walks)
    T = ck.transition_matrix
    for w in walks[:5]:
        assert all(T[a, b] > 0 for a, b in itertools.pairwise(w))
    again = ck.simulate_random_walks(50, max_iter=100, seed=0, start_ixs=start)
    assert all(np.array_equal(a, b) for a, b in zip(walks, again, strict=True))
    targets = adata.obs_names[:100].tolist()
    stopped = ck.simulate_random_walks(30, max_iter=500, seed=1, stop_ixs=targets, successive_hits=1)
    for w in stopped:
        if len(w) < 501:
            assert set(adata.obs_names[w[-2:]]) <= set(targets)
    with pytest.raises(ValueError, match="selects no cell"):
        ck.simulate_random_walks(5, start_ixs={"true_time": (5.0, 6.0)})
    del stop


def test_plots_draw_what_they_say(adata):
    vk = VelocityKernel(adata).compute_transition_matrix(softmax_scale=4.0, show_progress_bar=False)
    vk.write_to_adata()
    vk.compute_projection(basis="pca")
    ax = cf.pl.kernel_projection(adata, basis="pca", stream=False, color="clusters")
    assert len(ax.collections) >= 2  # the cells and the arrows
    ax = cf.pl.kernel_projection(adata, basis="pca", stream=True)
    assert any(type(c).__name__ == "LineCollection" for c in ax.collections)
    ax = cf.pl.random_walks(adata, basis="pca", n_sims=7, max_iter=20, seed=0)
    lines = [c for c in ax.collections if type(c).__name__ == "LineCollection"]
    assert len(lines) == 7
    with pytest.raises(KeyError, match="compute_projection"):
        cf.pl.kernel_projection(adata, key="T_bwd", basis="pca")


def test_tl_transition_matrix_writes_the_usual_mix(adata):
    cf.tl.transition_matrix(adata)
    T = adata.obsp["T_fwd"]
    vk = VelocityKernel(adata).compute_transition_matrix(show_progress_bar=False)
    ck = ConnectivityKernel(adata).compute_transition_matrix()
    assert abs(T - (0.8 * vk.transition_matrix + 0.2 * ck.transition_matrix)).max() < 1e-12
    info = adata.uns["T_fwd"]
    assert info["params"]["weights"] == {"velocity": 0.8, "connectivity": 0.2}
    assert info["expression"].startswith("((0.8 * <VelocityKernel")
    k = read_kernel(adata, "T_fwd")
    assert isinstance(k, PrecomputedKernel) and k.backward is False
    cf.tl.transition_matrix(
        adata, weights={"pseudotime": 1.0, "connectivity": 1.0}, time_key="true_time", backward=True
    )
    assert "T_bwd" in adata.obsp and adata.uns["T_bwd"]["params"]["backward"]
    before = set(adata.obsp)
    with pytest.raises(ValueError, match="time_key"):
        cf.tl.transition_matrix(adata, weights={"pseudotime": 1.0}, key_added="x")
    with pytest.raises(ValueError, match="weights"):
        cf.tl.transition_matrix(adata, weights={"magic": 1.0}, key_added="x")
    assert set(adata.obsp) == before


def test_stream_grid_leaves_empty_space_blank():
    from cellflux_kernels._plotting import _grid

    rng = np.random.default_rng(0)
    left = rng.normal(loc=(-5.0, 0.0), scale=0.3, size=(300, 2))
    right = rng.normal(loc=(5.0, 0.0), scale=0.3, size=(300, 2))
    emb = np.vstack([left, right])
    vectors = np.tile([1.0, 0.0], (600, 1))
    xs, ys, u, v = _grid(emb, vectors, density=1.0)
    gap = np.abs(xs) < 2.0  # columns in the empty band between the two groups
    assert np.isnan(u[:, gap]).all() and np.isnan(v[:, gap]).all()
    centre = np.argmin(np.abs(ys))
    near_cells = np.abs(xs + 5.0) < 0.3
    np.testing.assert_allclose(u[centre, near_cells], 1.0)  # the field is kept where the cells are


def test_the_readme_example_runs_as_written(adata):
    import re
    from pathlib import Path

    readme = (Path(__file__).parents[1] / "README.md").read_text()
    code = re.search(r"```python\n(.*?)```", readme, re.S).group(1)
    assert "cf.tl.transition_matrix(adata" in code
    exec(code, {"adata": adata})  # our own README
    assert abs(adata.obsp["T_fwd"] - adata.obsp["T_one_call"]).max() < 1e-12
