"""The results helper: checked, atomic writes with provenance that survive h5ad."""

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from scipy import sparse

from cellflux.results import Results, check_writable, clean_params, resolve_target


@pytest.fixture
def adata(rng):
    x = sparse.random(30, 8, density=0.4, format="csr", random_state=0, dtype=np.float32)
    a = ad.AnnData(x)
    a.obs_names = [f"c{i}" for i in range(30)]
    a.var_names = [f"g{i}" for i in range(8)]
    a.obs["existing"] = 1.0
    return a


def make_results(key="res", **params):
    return Results(key, function="tl.test", plugin="cellflux", params=params or {"alpha": 1.0})


def test_writes_every_slot_with_provenance(adata, rng, tmp_path):
    results = make_results(seed=None, shape=(2, 3), method="fast")
    results.add("obs", "res_score", rng.normal(size=30))
    results.add("obs", "res_label", pd.Categorical(rng.choice(["a", "b"], size=30)))
    results.add("obsm", "res_emb", rng.normal(size=(30, 2)))
    results.add("obsp", "res_graph", sparse.random(30, 30, density=0.1, format="csr", random_state=1))
    results.add("var", "res_gene", np.arange(8))
    results.add("varm", "res_loadings", rng.normal(size=(8, 3)))
    results.add("layers", "res_layer", rng.normal(size=(30, 8)))
    results.add("uns", "res", {"summary": {"n": 3, "names": ["x", "y"]}})
    results.write(adata)

    record = adata.uns["res"]
    assert record["params"] == {"seed": None, "shape": [2, 3], "method": "fast"}
    assert record["provenance"]["function"] == "tl.test"
    assert record["provenance"]["plugin"] == "cellflux"
    assert record["provenance"]["version"] == __import__("cellflux").__version__
    assert record["provenance"]["written"]["obs"] == ["res_score", "res_label"]
    assert record["summary"]["n"] == 3

    adata.write_h5ad(tmp_path / "r.h5ad")
    back = ad.read_h5ad(tmp_path / "r.h5ad")
    np.testing.assert_array_equal(back.obs["res_score"], adata.obs["res_score"])
    assert (back.obs["res_label"] == adata.obs["res_label"]).all()
    np.testing.assert_array_equal(back.obsm["res_emb"], adata.obsm["res_emb"])
    assert (back.obsp["res_graph"] != adata.obsp["res_graph"]).nnz == 0
    np.testing.assert_array_equal(back.varm["res_loadings"], adata.varm["res_loadings"])
    np.testing.assert_array_equal(back.layers["res_layer"], adata.layers["res_layer"])
    assert back.uns["res"]["params"]["seed"] is None
    assert list(back.uns["res"]["params"]["shape"]) == [2, 3]
    assert list(back.uns["res"]["provenance"]["written"]["obs"]) == ["res_score", "res_label"]


def test_existing_key_is_refused_and_nothing_written(adata):
    results = make_results()
    results.add("obsm", "new_emb", np.zeros((30, 2)))
    results.add("obs", "existing", np.zeros(30))
    with pytest.raises(KeyError, match=r"obs\['existing'\] already exists; nothing was written.*overwrite=True"):
        results.write(adata)
    assert "new_emb" not in adata.obsm
    assert "res" not in adata.uns
    assert (adata.obs["existing"] == 1.0).all()
    results.write(adata, overwrite=True)
    assert (adata.obs["existing"] == 0.0).all()


def test_provenance_key_collision_is_refused(adata):
    adata.uns["res"] = {"old": 1}
    results = make_results()
    results.add("obs", "fresh", np.zeros(30))
    with pytest.raises(KeyError, match=r"uns\['res'\]"):
        results.write(adata)
    assert "fresh" not in adata.obs


@pytest.mark.parametrize(
    ("slot", "value", "message"),
    [
        ("obs", np.zeros(29), r"length 29, expected 30"),
        ("obs", np.zeros((30, 2)), "one-dimensional"),
        ("obsm", np.zeros((31, 2)), r"shape \(31, 2\), expected \(30, 'any'\)"),
        ("layers", np.zeros((30, 7)), r"expected \(30, 8\)"),
        ("obsp", np.zeros((30, 29)), r"expected \(30, 30\)"),
        ("var", np.zeros(30), "expected 8"),
        ("obs", np.array([1, "a", None], dtype=object).repeat(10), "non-string values"),
        ("uns", {"a": [1, None]}, "list containing None"),
        ("uns", {"a": (1, 2)}, "tuple"),
        ("uns", {1: "a"}, "non-string key"),
        ("obsm", sparse.coo_matrix(np.zeros((30, 2))), "convert it to CSR"),
        ("obs", np.array(["2020-01-01"] * 30, dtype="datetime64[D]"), "cannot store"),
        ("uns", {"a/b": 1}, "nested group"),
    ],
)
def test_bad_values_are_refused_before_anything_is_written(adata, slot, value, message):
    results = make_results()
    results.add("obs", "first", np.ones(30))
    results.add(slot, "second", value)
    with pytest.raises((ValueError, TypeError), match=message):
        results.write(adata)
    assert "first" not in adata.obs
    assert "res" not in adata.uns


def test_overwriting_removes_what_the_previous_result_wrote_and_this_one_does_not(adata, tmp_path):
    first = make_results()
    first.add("obs", "res_score", np.ones(30)).add("var", "res_fdr", np.zeros(8))
    first.add("layers", "res_layer", np.zeros((30, 8))).add("obs", "existing", np.full(30, 2.0))
    first.write(adata, overwrite=True)
    adata.write_h5ad(tmp_path / "first.h5ad")
    adata = ad.read_h5ad(tmp_path / "first.h5ad")  # the old provenance as h5ad gives it back
    adata.obs["other_tool"] = 5.0
    second = make_results().add("obs", "res_score", np.full(30, 3.0))
    second.write(adata, overwrite=True)
    assert "res_fdr" not in adata.var and "res_layer" not in adata.layers and "existing" not in adata.obs
    assert (adata.obs["res_score"] == 3.0).all() and (adata.obs["other_tool"] == 5.0).all()
    assert {k: list(v) for k, v in adata.uns["res"]["provenance"]["written"].items()} == {
        "obs": ["res_score"],
        "uns": ["res"],
    }


def test_a_failed_overwrite_restores_the_previous_result(adata):
    make_results().add("obs", "res_score", np.ones(30)).add("var", "res_fdr", np.zeros(8)).write(adata)
    second = make_results().add("obs", "res_score", np.zeros(30)).add("obsm", "res_emb", np.zeros((30, 2)))
    original_setitem = type(adata.obsm).__setitem__

    def failing(self, key, value):
        raise RuntimeError("disk full")

    type(adata.obsm).__setitem__ = failing
    try:
        with pytest.raises(RuntimeError, match="disk full"):
            second.write(adata, overwrite=True)
    finally:
        type(adata.obsm).__setitem__ = original_setitem
    assert (adata.obs["res_score"] == 1.0).all() and "res_fdr" in adata.var
    assert list(adata.uns["res"]["provenance"]["written"]["var"]) == ["res_fdr"]


def test_keys_with_a_slash_are_refused():
    with pytest.raises(ValueError, match="nested group.*without '/'"):
        make_results().add("layers", "imputed_ctrl/day0", np.zeros((30, 8)))


def test_varm_data_frames_are_checked_against_var_names(adata):
    good = pd.DataFrame(np.zeros((8, 2)), index=adata.var_names)
    make_results().add("varm", "res_loadings", good).write(adata)
    assert adata.varm["res_loadings"].shape == (8, 2)
    bad = pd.DataFrame(np.zeros((8, 2)), index=[f"x{i}" for i in range(8)])
    with pytest.raises(ValueError, match="does not match var_names"):
        make_results("other").add("varm", "other_loadings", bad).write(adata)


def test_dense_obsp_refused_for_large_data():
    big = ad.AnnData(sparse.csr_matrix((6000, 2), dtype=np.float32))
    results = make_results().add("obsp", "dense", np.zeros((6000, 6000), dtype=np.float32))
    with pytest.raises(ValueError, match="scipy CSR"):
        results.write(big)


def test_series_index_must_match(adata):
    results = make_results().add("obs", "s", pd.Series(np.ones(30), index=[f"x{i}" for i in range(30)]))
    with pytest.raises(ValueError, match="index does not match"):
        results.write(adata)


def test_add_rejects_bad_requests():
    results = make_results()
    with pytest.raises(ValueError, match="Unknown slot"):
        results.add("obx", "k", 1)
    results.add("obs", "k", np.zeros(3))
    with pytest.raises(ValueError, match="added twice"):
        results.add("obs", "k", np.zeros(3))
    with pytest.raises(TypeError, match="must be a dict"):
        results.add("uns", "res", [1, 2])
    with pytest.raises(ValueError, match="may not set"):
        results.add("uns", "res", {"params": 1})


def test_clean_params():
    def my_similarity(x):
        return x

    cleaned = clean_params({"a": (1, 2), "f": my_similarity, "n": None, "nested": {"b": [None, 1]}})
    assert cleaned["a"] == [1, 2]
    assert cleaned["f"].endswith("my_similarity")
    assert cleaned["n"] is None
    assert cleaned["nested"]["b"] == {"0": None, "1": 1}
    with pytest.raises(TypeError, match=r"params\['obj'\] is a object"):
        clean_params({"obj": object()})


def test_check_writable_accepts_h5ad_types():
    check_writable(
        {"a": 1, "b": "s", "c": np.arange(3), "d": ["x", "y"], "e": None, "f": pd.DataFrame({"x": [1]})}, "v"
    )


def test_copy_returns_copy_and_leaves_input(adata):
    target = resolve_target(adata, copy=True)
    assert target.adata is not adata
    make_results().add("obs", "only_in_copy", np.ones(30)).write(target.adata)
    assert target.returned() is target.adata
    assert "only_in_copy" not in adata.obs
    in_place = resolve_target(adata)
    assert in_place.adata is adata
    assert in_place.returned() is None


def test_views_and_wrong_types_are_refused(adata):
    with pytest.raises(ValueError, match="is a view"):
        resolve_target(adata[:5])
    assert resolve_target(adata[:5], copy=True).adata.n_obs == 5
    with pytest.raises(ValueError, match="not a MuData"):
        resolve_target(adata, mod="rna")
    with pytest.raises(TypeError, match="Expected an AnnData or MuData"):
        resolve_target(np.zeros(3))


@pytest.mark.filterwarnings("ignore:From 0.4 .update:FutureWarning")  # mudata's own deprecation notice
def test_mudata_modality(adata):
    mudata = pytest.importorskip("mudata")
    atac = adata[:, :3].copy()
    atac.var_names = ["peak0", "peak1", "peak2"]
    mdata = mudata.MuData({"rna": adata, "atac": atac})
    with pytest.raises(ValueError, match="pass mod="):
        resolve_target(mdata)
    with pytest.raises(KeyError, match="no modality 'prot'"):
        resolve_target(mdata, mod="prot")
    target = resolve_target(mdata, mod="rna", copy=True)
    assert target.returned() is not mdata
    make_results().add("obs", "m", np.ones(30)).write(target.adata)
    assert "m" in target.container.mod["rna"].obs
    assert "m" not in mdata.mod["rna"].obs
