"""The steady-state models: the stochastic fit against scVelo's stochastic mode and its own formula."""

import subprocess
import sys
import warnings

import numpy as np
import pytest
from scipy import sparse

from cellflux_velocity_vae import fit_steady_state, fit_stochastic, second_order_moments


def _input(n_cells=150, n_genes=12, k=10, seed=0):
    """Counts with an oscillating spliced/unspliced phase shift and a 1-D kNN graph (self included)."""
    rng = np.random.default_rng(seed)
    t = rng.uniform(0, 1, n_cells)
    rate = rng.uniform(0.5, 5, n_genes)
    gamma = rng.uniform(0.2, 1.5, n_genes)
    u = rng.poisson(rate * (1 + np.sin(3 * t[:, None] + rng.uniform(0, 3, n_genes)))).astype(np.float32)
    s = rng.poisson(rate / gamma * (1 + np.sin(3 * t[:, None] + rng.uniform(0, 3, n_genes) - 0.5))).astype(np.float32)
    order = np.argsort(np.abs(t[:, None] - t[None, :]), axis=1)[:, :k]
    rows = np.repeat(np.arange(n_cells), k)
    graph = sparse.csr_matrix(
        (np.full(rows.size, 1.0 / k, dtype=np.float32), (rows, order.ravel())), shape=(n_cells, n_cells)
    )
    return s, u, graph


def _fit(s, u, graph):
    ms, mu = np.asarray(graph @ s, dtype=np.float32), np.asarray(graph @ u, dtype=np.float32)
    mss, mus = second_order_moments(graph, s, u)
    return ms, mu, mss, mus, fit_stochastic(ms, mu, mss, mus)


def test_stochastic_fit_solves_the_weighted_stacked_least_squares():
    s, u, graph = _input()
    ms, mu, mss, mus, fit = _fit(s, u, graph)
    det = fit_steady_state(ms, mu)
    assert fit["velocity_genes"].any() and not fit["velocity_genes"].all()
    np.testing.assert_allclose(fit["gamma"][~det["velocity_genes"]], det["gamma"][~det["velocity_genes"]], rtol=1e-6)
    ms, mu, mss, mus = (x.astype(np.float64) for x in (ms, mu, mss, mus))
    for g in np.flatnonzero(det["velocity_genes"]):
        x, y = ms[:, g], mu[:, g]
        x2, y2 = 2 * mss[:, g] - x, 2 * mus[:, g] + y
        norm = x / max(x.max(), 1e-3) + y / max(y.max(), 1e-3)
        keep = (norm >= np.percentile(norm, 95)) | (x >= np.percentile(x, 95))
        sd1 = np.std(y - det["gamma"][g] * x)
        sd2 = np.std(y2 - (x2 @ y2) / (x2 @ x2) * x2)
        design = np.concatenate([x * keep / sd1, x2 / sd2])[:, None]
        target = np.concatenate([y * keep / sd1, y2 / sd2])
        expected = np.linalg.lstsq(design, target, rcond=None)[0][0]
        np.testing.assert_allclose(fit["gamma"][g], expected, rtol=1e-5)
    np.testing.assert_allclose(fit["velocity"], mu - fit["gamma"] * ms, rtol=1e-5, atol=1e-5)


# scVelo 0.3.4 under numpy 2.2.6 (a temporary environment: its stochastic mode fails under
# numpy >= 2.3), scv.tl.velocity(adata, mode=..., use_highly_variable=False) on _input() with
# Ms = G s, Mu = G u and G as the neighbour graph.
SCVELO_STOCHASTIC_GAMMA = [
    0.25258246064186096,
    1.2356011867523193,
    1.0588722229003906,
    0.3722515404224396,
    0.38000354170799255,
    1.008310317993164,
    0.7164315581321716,
    0.8671378493309021,
    0.6527941226959229,
    1.667405605316162,
    0.42223525047302246,
    0.44091156125068665,
]
SCVELO_VELOCITY_GENES = [True, True, True, True, False, True, True, False, False, False, True, True]
SCVELO_STOCHASTIC_VELOCITY_SUM = [
    2.6581814289093018,
    -0.6700452566146851,
    -13.451239585876465,
    -29.874488830566406,
    -158.99032592773438,
    -30.478111267089844,
    -99.67493438720703,
    -44.841278076171875,
    577.6716918945312,
    -152.0713348388672,
    -29.16280174255371,
    29.36709213256836,
]


def test_stochastic_fit_equals_recorded_scvelo_stochastic_mode():
    s, u, graph = _input()
    *_, fit = _fit(s, u, graph)
    np.testing.assert_allclose(fit["gamma"], SCVELO_STOCHASTIC_GAMMA, rtol=1e-5)
    np.testing.assert_array_equal(fit["velocity_genes"], SCVELO_VELOCITY_GENES)
    np.testing.assert_allclose(fit["velocity"].sum(0), SCVELO_STOCHASTIC_VELOCITY_SUM, rtol=1e-4, atol=1e-3)


def test_second_order_moments_are_neighbourhood_means_and_check_shapes():
    s, u, graph = _input(n_cells=20, n_genes=3, k=4)
    mss, mus = second_order_moments(graph, s, u)
    np.testing.assert_allclose(mss, graph @ (s * s), rtol=1e-6)
    np.testing.assert_allclose(mus, graph @ (s * u), rtol=1e-6)
    with pytest.raises(ValueError, match="do not match"):
        second_order_moments(graph, s[:10], u[:10])
    with pytest.raises(ValueError, match="same shape"):
        fit_stochastic(s, u, mss[:, :2], mus)


@pytest.mark.parity
def test_stochastic_fit_equals_scvelo_where_scvelo_runs():
    scv = pytest.importorskip("scvelo")
    import anndata as ad

    s, u, graph = _input()
    ms, mu, _, _, fit = _fit(s, u, graph)
    adata = ad.AnnData(X=s.copy(), layers={"spliced": s, "unspliced": u, "Ms": ms, "Mu": mu})
    adata.obsp["connectivities"] = graph.copy()
    adata.obsp["distances"] = graph.copy()
    adata.uns["neighbors"] = {"connectivities_key": "connectivities", "distances_key": "distances", "params": {}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            scv.tl.velocity(adata, mode="stochastic", use_highly_variable=False)
        except ValueError as error:  # scVelo 0.3.4's leastsq_generalized under numpy >= 2.3
            pytest.skip(f"scVelo's stochastic mode fails here (numpy {np.__version__}): {error}")
    np.testing.assert_allclose(fit["gamma"], adata.var["velocity_gamma"], rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(fit["velocity"], adata.layers["velocity"], rtol=1e-3, atol=1e-4)


def test_default_path_never_imports_scvelo():
    code = (
        "import sys, numpy as np, anndata as ad\n"
        "import cellflux_velocity_vae as vv\n"
        "rng = np.random.default_rng(0)\n"
        "a = ad.AnnData(layers={'spliced': rng.poisson(3, (80, 10)).astype('f4'),"
        " 'unspliced': rng.poisson(2, (80, 10)).astype('f4')})\n"
        "vv.moments(a, n_neighbors=10, n_pcs=5)\n"
        "b = vv.preprocess_data(a, filter_on_r2=False)\n"
        "vv.fit_steady_state(a.layers['Ms'], a.layers['Mu'])\n"
        "vv.VELOVI, vv.VELOVAE, vv.velocity_vae\n"
        "assert 'scvelo' not in sys.modules, 'scvelo was imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_stochastic_fit_of_an_exact_steady_state_is_its_ratio(dtype):
    rng = np.random.default_rng(0)
    s = rng.gamma(2.0, 1.0, (300, 3))
    u = 0.5 * s + rng.normal(0.0, 0.1, s.shape).clip(0)
    u[:, 1] = 0.3 * s[:, 1]  # u = 0.3 s exactly: the deterministic residual variance is 0 in float64
    result = fit_stochastic(*(m.astype(dtype) for m in (s, u, s * s, u * s)))
    assert result["gamma"][1] == pytest.approx(0.3, rel=1e-5)
    assert np.isfinite(result["gamma"]).all()
    np.testing.assert_allclose(result["velocity"][:, 1], 0.0, atol=1e-5)
    # the other genes are untouched by the exact one
    other = fit_stochastic(*(m[:, [0, 2]].astype(dtype) for m in (s, u, s * s, u * s)))
    np.testing.assert_allclose(result["gamma"][[0, 2]], other["gamma"], rtol=1e-6)
