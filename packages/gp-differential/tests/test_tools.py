"""The AnnData layer: what it writes, h5ad round trips, bad inputs leave the AnnData untouched, plots."""

import anndata as ad
import numpy as np
import pytest

import cellflux as cf
from cellflux_gp_differential import DifferentialAbundance, DifferentialExpression
from cellflux_gp_differential._support import supported_distances

KW = {"groupby": "condition", "n_landmarks": 100}


def _snapshot(adata):
    return {slot: set(getattr(adata, slot).keys()) for slot in ("obs", "var", "obsm", "layers", "uns")}


def test_differential_abundance_writes_engine_results(prepared, arrays, tmp_path):
    names = arrays["names"]
    cf.tl.differential_abundance(prepared, conditions=names, **KW)
    x, m1, m2 = arrays["x"], arrays["m1"], arrays["m2"]
    engine = DifferentialAbundance(n_landmarks=100, random_state=0).fit(x[m1], x[m2]).predict(x, progress=False)
    np.testing.assert_allclose(prepared.obs["gp_da_log_fold_change"], engine["log_fold_change"])
    assert list(prepared.obs["gp_da_direction"].cat.categories) == ["down", "neutral", "up"]
    assert prepared.uns["gp_da"]["params"]["conditions"] == names
    prepared.write_h5ad(tmp_path / "a.h5ad")
    back = ad.read_h5ad(tmp_path / "a.h5ad")
    np.testing.assert_allclose(back.obs["gp_da_zscore"], prepared.obs["gp_da_zscore"])
    np.testing.assert_allclose(back.uns["gp_da"]["landmarks"], prepared.uns["gp_da"]["landmarks"])
    assert back.uns["gp_da"]["params"]["ratio_n_landmarks"] == 25  # the ratio's own: 100 / RATIO_LS_FACTOR


def test_differential_abundance_evidence_length_scale(prepared, arrays):
    """``ratio_ls="evidence"``: the same fit as the engine's, the chosen length scale recorded in ``uns``."""
    names = arrays["names"]
    cf.tl.differential_abundance(prepared, conditions=names, ratio_ls="evidence", **KW)
    x, m1, m2 = arrays["x"], arrays["m1"], arrays["m2"]
    model = DifferentialAbundance(n_landmarks=100, random_state=0, ratio_ls="evidence").fit(x[m1], x[m2])
    engine = model.predict(x, progress=False)
    np.testing.assert_allclose(prepared.obs["gp_da_log_fold_change"], engine["log_fold_change"])
    params = prepared.uns["gp_da"]["params"]
    assert params["ratio_ls_rule"] == "evidence"
    assert params["ratio_ls"] == pytest.approx(model.ratio_ls)
    assert np.any(np.isclose(model.ratio_ls, model.ratio_evidence.ls))


def test_differential_expression_fields_and_fdr(prepared, arrays):
    names = arrays["names"]
    genes = list(prepared.var_names[:40])
    cf.tl.differential_expression(
        prepared, conditions=names, layer="log_normalized", genes=genes, n_null_genes=80, **KW
    )
    var = prepared.var
    tested = var["gp_de_tested"].to_numpy()
    assert tested.sum() == 40
    assert (
        np.isfinite(var.loc[tested, "gp_de_mahalanobis"]).all()
        and np.isnan(var.loc[~tested, "gp_de_mahalanobis"]).all()
    )
    assert len(prepared.uns["gp_de"]["null_mahalanobis"]) == 80
    layer = prepared.layers["gp_de_fold_change"]
    imputed = [prepared.layers[f"gp_de_imputed_{c}"] for c in names]
    np.testing.assert_allclose(layer[:, tested], imputed[1][:, tested] - imputed[0][:, tested], atol=1e-5)
    assert (var.loc[tested, "gp_de_is_de"] == (var.loc[tested, "gp_de_tail_fdr"] < 0.05)).all()


@pytest.mark.parametrize("distance", ["supported", "calibrated", "kompot"])
def test_differential_expression_distance_is_the_engine_s(prepared, arrays, distance, tmp_path):
    """``var`` holds the engine's distance of the chosen kind (supported by default), also after h5ad."""
    names, x, y, m1, m2 = arrays["names"], arrays["x"], arrays["y"][:, :30], arrays["m1"], arrays["m2"]
    kw = {} if distance == "supported" else {"distance": distance}
    cf.tl.differential_expression(
        prepared,
        conditions=names,
        layer="log_normalized",
        genes=list(prepared.var_names[:30]),
        n_null_genes=40,
        **KW,
        **kw,
    )
    if distance == "supported":
        engine = DifferentialExpression(n_landmarks=100, random_state=0).fit(x[m1], y[m1], x[m2], y[m2])
        expected = supported_distances(engine, x[m1], x[m2])
    else:
        engine = DifferentialExpression(n_landmarks=100, random_state=0, distance=distance)
        engine.fit(x[m1], y[m1], x[m2], y[m2])
        expected = engine.predict(x, compute_mahalanobis=True, progress=False)["mahalanobis_distances"]
    np.testing.assert_allclose(prepared.var["gp_de_mahalanobis"].to_numpy()[:30], expected, rtol=1e-6)
    assert prepared.uns["gp_de"]["params"]["distance"] == distance
    prepared.write_h5ad(tmp_path / "de.h5ad")
    back = ad.read_h5ad(tmp_path / "de.h5ad")
    np.testing.assert_allclose(back.var["gp_de_mahalanobis"], prepared.var["gp_de_mahalanobis"])
    np.testing.assert_array_equal(back.var["gp_de_is_de"], prepared.var["gp_de_is_de"])
    assert back.uns["gp_de"]["params"]["distance"] == distance


def test_overwriting_with_fewer_outputs_leaves_no_stale_fields(prepared, arrays, tmp_path):
    names = arrays["names"]
    genes = list(prepared.var_names[:20])
    cf.tl.differential_expression(
        prepared, conditions=names, layer="log_normalized", genes=genes, n_null_genes=40, **KW
    )
    assert "gp_de_tail_fdr" in prepared.var and "gp_de_fold_change" in prepared.layers
    cf.tl.differential_expression(
        prepared,
        conditions=names,
        layer="log_normalized",
        genes=genes[0],  # one gene, as a string
        n_null_genes=0,
        store_layers=False,
        overwrite=True,
        **KW,
    )
    # the FDR columns and layers of the first call are gone: they do not describe the second
    for column in ("gp_de_pvalue", "gp_de_local_fdr", "gp_de_tail_fdr", "gp_de_is_de"):
        assert column not in prepared.var
    assert not any(k.startswith("gp_de_") for k in prepared.layers)
    assert prepared.var["gp_de_tested"].sum() == 1
    assert prepared.uns["gp_de"]["params"]["genes"] == [genes[0]]
    prepared.write_h5ad(tmp_path / "de.h5ad")
    assert list(ad.read_h5ad(tmp_path / "de.h5ad").uns["gp_de"]["params"]["genes"]) == [genes[0]]


def test_gp_smooth_fits_one_condition(prepared, arrays):
    names = arrays["names"]
    cf.tl.gp_smooth(
        prepared,
        layer="log_normalized",
        groupby="condition",
        condition=names[0],
        genes=list(prepared.var_names[:5]),
        n_landmarks=80,
    )
    smoothed = prepared.layers["gp_smooth"]
    assert np.isfinite(smoothed[:, :5]).all() and np.isnan(smoothed[:, 5:]).all()
    assert (prepared.layers["gp_smooth_std"][:, :5] > 0).all()


@pytest.mark.parametrize(
    ("call", "match", "error"),
    [
        (lambda a, n: cf.tl.differential_abundance(a, conditions=(n[0], "absent"), **KW), "absent", ValueError),
        (lambda a, n: cf.tl.differential_abundance(a, conditions=n, obsm_key="X_missing", **KW), "X_missing", KeyError),
        (lambda a, n: cf.tl.differential_abundance(a, conditions=n, groupby="nope", n_landmarks=100), "nope", KeyError),
        (
            lambda a, n: cf.tl.differential_abundance(a, conditions=n, groupby="condition", n_landmarks=100_000),
            "larger than",
            ValueError,
        ),
        (
            lambda a, n: cf.tl.differential_abundance(a, conditions=n, sample_key="one_sample", **KW),
            "replicates",
            ValueError,
        ),
        (
            lambda a, n: cf.tl.differential_expression(
                a, conditions=n, layer="log_normalized", genes=["not_a_gene"], **KW
            ),
            "not_a_gene",
            KeyError,
        ),
        (
            lambda a, n: cf.tl.differential_expression(a, conditions=n, layer="log_normalized", distance="l2", **KW),
            "distance must be one of",
            ValueError,
        ),
        (
            lambda a, n: cf.tl.differential_expression(a, conditions=n, layer="missing_layer", **KW),
            "missing_layer",
            KeyError,
        ),
        (
            lambda a, n: cf.tl.differential_expression(a, conditions=n, layer="bad_layer", **KW),
            "NaN or inf",
            ValueError,
        ),
        (lambda a, n: cf.tl.differential_abundance(a, conditions=n, obsm_key="X_nan", **KW), "NaN or inf", ValueError),
        (lambda a, n: cf.tl.differential_abundance(a, conditions=n, ratio_ls="ml", **KW), "ratio_ls", ValueError),
        (lambda a, n: cf.tl.differential_abundance(a, conditions=n, n_jobs=0, **KW), "n_jobs", ValueError),
        (lambda a, n: cf.tl.differential_abundance(a, conditions=n, ls=0.0, **KW), "ls must be", ValueError),
        (
            lambda a, n: cf.tl.differential_abundance(a, conditions=("a/1", "b"), **{**KW, "groupby": "slashed"}),
            "contains '/'",
            ValueError,
        ),
        (
            lambda a, n: cf.tl.differential_expression(a, conditions=n, layer="log_normalized", sigma=np.nan, **KW),
            "sigma must be",
            ValueError,
        ),
        (
            lambda a, n: cf.tl.differential_abundance(a, conditions=n, groupby="tiny", n_landmarks=5),
            "at least 10",
            ValueError,
        ),
    ],
)
def test_bad_inputs_leave_adata_untouched(prepared, arrays, call, match, error):
    names = arrays["names"]
    prepared.obs["one_sample"] = prepared.obs["condition"].astype(str)
    bad = np.array(prepared.layers["log_normalized"])
    bad[0, 0] = np.nan
    prepared.layers["bad_layer"] = bad
    nan_rep = np.array(prepared.obsm["X_pca"])
    nan_rep[2, 0] = np.nan
    prepared.obsm["X_nan"] = nan_rep
    tiny = np.array([names[0]] * prepared.n_obs, dtype=object)
    tiny[:5] = names[1]
    prepared.obs["tiny"] = tiny
    prepared.obs["slashed"] = np.where(prepared.obs["condition"].astype(str) == names[0], "a/1", "b")
    before = _snapshot(prepared)
    with pytest.raises(error, match=match):
        call(prepared, names)
    assert _snapshot(prepared) == before


def test_plots_render(prepared, arrays, tmp_path):
    import matplotlib.pyplot as plt

    names = arrays["names"]
    cf.tl.differential_abundance(prepared, conditions=names, **KW)
    cf.tl.differential_expression(prepared, conditions=names, layer="log_normalized", n_null_genes=60, **KW)
    ax = cf.pl.differential_abundance_volcano(prepared, groupby="clusters")
    assert sum(len(c.get_offsets()) for c in ax.collections) == prepared.n_obs
    assert {t.get_text() for t in ax.get_legend().get_texts()} == set(prepared.obs["clusters"].astype(str))
    ax = cf.pl.differential_expression_volcano(prepared)
    assert len(ax.collections[0].get_offsets()) == prepared.n_vars
    ax = cf.pl.fold_change_embedding(prepared)
    assert len(ax.collections[0].get_offsets()) == prepared.n_obs
    ax = cf.pl.direction_barplot(prepared, groupby="clusters")
    assert len(ax.patches) == 3 * prepared.obs["clusters"].nunique()
    fig = cf.pl.smoothed_expression(prepared, gene=str(prepared.var_names[0]))
    fig.savefig(tmp_path / "smoothed.png")
    assert (tmp_path / "smoothed.png").stat().st_size > 10_000
    with pytest.raises(KeyError, match="cf.tl.differential_abundance"):
        cf.pl.differential_abundance_volcano(prepared, key="never_run")
    plt.close("all")
