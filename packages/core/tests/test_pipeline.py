"""The pipeline behind ``cellflux demo``/``cellflux run`` on a small simulation (quick settings)."""

import base64
import json
import re
import subprocess
import sys

import anndata as ad
import numpy as np
import pandas as pd
import pytest

import cellflux as cf
from cellflux._keys import TruthKey

pytest.importorskip("scanpy")
pytest.importorskip("matplotlib")
for _module in ("cellflux_kernels", "cellflux_estimators", "cellflux_velocity_vae"):
    pytest.importorskip(_module)

from cellflux._pipeline import STEPS, PipelineConfig, run_pipeline  # noqa: E402

QUICK_STEPS = ("preprocess", "velocity", "kernels", "fates", "streaming")


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    pytest.importorskip("cellflux_streaming_models")
    out = tmp_path_factory.mktemp("pipeline")
    adata = cf.datasets.simulate(n_cells=600, n_genes=120, n_conditions=2, seed=0)
    config = PipelineConfig(steps=QUICK_STEPS, velocity="scvelo", quick=True, seed=0)
    ctx = run_pipeline(adata, out, config, title="test run", source="simulation", stream=None)
    return ctx, out


def test_quick_pipeline_writes_h5ad_figures_and_report(quick_run):
    ctx, out = quick_run
    status = {r.name: r.status for r in ctx.records}
    assert status == {**dict.fromkeys(QUICK_STEPS, "done"), "differential": "skipped"}
    assert (out / "cellflux.h5ad").is_file()
    pngs = sorted((out / "figures").glob("*.png"))
    names = {p.stem.split("_", 1)[1] for p in pngs}
    assert {"overview", "velocity", "spectrum", "macrostates", "fate_probabilities", "gene_trends"} <= names
    assert not any("failed" in line for line in ctx.log), ctx.log
    report = (out / "report.html").read_text()
    # every figure embedded as a PNG (self-contained: no file references)
    images = re.findall(r"src='data:image/png;base64,([^']+)'", report)
    assert len(images) == len(pngs)
    assert all(base64.b64decode(data)[:8] == b"\x89PNG\r\n\x1a\n" for data in images)
    assert "not selected (--steps)" in report  # the differential step, said so


def test_report_scores_against_ground_truth(quick_run):
    ctx, out = quick_run
    scores = {metric: value for _, metric, value, _ in ctx.scores}
    recovered, total = map(int, scores["terminal states recovered"].split("/"))
    assert total == 3 and recovered >= 2
    assert float(scores["fate accuracy (branch cells, most likely lineage)"]) > 0.5  # chance is 1/3
    assert float(scores["initial-state cells in the progenitor trunk"]) > 0.9
    assert float(scores["incremental PCA explained variance, max relative error vs in-memory PCA"]) < 1e-4
    report = (out / "report.html").read_text()
    table = report[report.index("<table id='scores'>") :]
    for metric in ("terminal states recovered", "fate accuracy", "median cosine with the true velocity"):
        assert metric in table
    assert "initial state <b>" in report and "terminal state <b>" in report


def test_results_survive_the_h5ad_round_trip(quick_run):
    from cellflux_estimators import from_adata

    ctx, out = quick_run
    back = ad.read_h5ad(out / "cellflux.h5ad")
    g = ctx.objects["gpcca"]
    np.testing.assert_allclose(back.obsp["T_fwd"].toarray(), ctx.adata.obsp["T_fwd"].toarray())
    np.testing.assert_array_equal(back.var["velocity_genes"], ctx.adata.var["velocity_genes"])
    g2 = from_adata(back)
    assert list(g2.terminal_states.cat.categories) == list(g.terminal_states.cat.categories)
    np.testing.assert_allclose(g2.fate_probabilities.to_numpy(), g.fate_probabilities.to_numpy())
    assert back.var["streaming_highly_variable"].dtype == bool


def test_missing_unspliced_skips_velocity_and_what_needs_it(tmp_path):
    adata = cf.datasets.simulate(n_cells=300, n_genes=60, n_conditions=2, seed=1)
    del adata.layers["unspliced"]
    before = adata.copy()
    config = PipelineConfig(steps=("preprocess", "velocity", "kernels", "fates"), velocity="scvelo", quick=True)
    ctx = run_pipeline(adata, tmp_path, config, stream=None)
    records = {r.name: r for r in ctx.records}
    assert records["preprocess"].status == "done"
    assert records["velocity"].status == "skipped" and "unspliced" in records["velocity"].message
    assert records["kernels"].status == "skipped" and "velocity" in records["kernels"].message
    assert records["fates"].status == "skipped"
    assert "RNA velocity needs unspliced counts" in (tmp_path / "report.html").read_text()
    assert before.n_obs == adata.n_obs


def test_one_condition_skips_the_differential_step(tmp_path):
    pytest.importorskip("cellflux_gp_differential")
    adata = cf.datasets.simulate(n_cells=300, n_genes=60, n_conditions=1, seed=2)
    ctx = run_pipeline(adata, tmp_path, PipelineConfig(steps=("preprocess", "differential"), quick=True), stream=None)
    record = next(r for r in ctx.records if r.name == "differential")
    assert record.status == "skipped"
    assert "only one condition ('control')" in record.message
    assert "only one condition" in (tmp_path / "report.html").read_text()


def test_default_conditions_follow_the_categories_not_the_cell_order(tmp_path):
    from cellflux._pipeline._context import Context
    from cellflux._pipeline.differential import _conditions

    adata = cf.datasets.simulate(n_cells=200, n_genes=40, n_conditions=2, seed=1)
    assert adata.obs["condition"].iloc[0] == "treated"  # the first cell is of the second category
    ctx = Context(adata=adata, out=tmp_path, config=PipelineConfig(), title="t", source="simulation")
    assert _conditions(ctx) == ("condition", ("control", "treated"))
    adata.obs["condition"] = adata.obs["condition"].cat.reorder_categories(["treated", "control"])
    assert _conditions(ctx) == ("condition", ("treated", "control"))
    adata.obs["condition"] = adata.obs["condition"].astype(str)  # plain strings: order of appearance
    assert _conditions(ctx) == ("condition", ("treated", "control"))


def test_reversed_conditions_are_scored_against_the_reversed_truth(tmp_path):
    pytest.importorskip("cellflux_gp_differential")
    adata = cf.datasets.simulate(n_cells=400, n_genes=60, n_conditions=2, seed=1)
    config = PipelineConfig(steps=("preprocess", "differential"), conditions=("treated", "control"), quick=True)
    ctx = run_pipeline(adata, tmp_path, config, stream=None)
    scores = {metric: float(value) for step, metric, value, _ in ctx.scores if step == "differential"}
    # the planted depletion in "treated" is an enrichment of "control" over "treated": still found
    assert scores["DA AUROC (planted lineage vs other cells, by the log fold change)"] > 0.8
    assert scores["DA log fold change vs planted (Spearman)"] > 0.2
    assert np.corrcoef(adata.obs["gp_da_log_fold_change"], adata.obs[TruthKey.DA_LOG_FOLD_CHANGE])[0, 1] < 0
    # the report names the planted lineage as the strongest enrichment of control over treated
    assert _named_cluster(ctx.found[0], "enrichment") in _planted_clusters(adata, ctx)


def _named_cluster(found: str, label: str) -> str:
    match = re.search(rf"strongest {label}: cluster (\S+), median log fold change ([-+][0-9.]+)", found)
    assert match is not None, found
    return match.group(1)


def _planted_clusters(adata, ctx) -> set[str]:
    """Clusters whose cells are (nearly) all of the planted, differentially abundant lineage."""
    planted = adata.obs[TruthKey.DA_LOG_FOLD_CHANGE].to_numpy() < -0.5
    share = pd.Series(planted).groupby(adata.obs[ctx.objects["cluster_key"]].astype(str).to_numpy()).mean()
    return set(share.index[share > 0.9])


def test_report_names_the_strongest_clusters_even_when_no_cell_is_called(tmp_path):
    pytest.importorskip("cellflux_gp_differential")
    adata = cf.datasets.simulate(n_cells=400, n_genes=60, n_conditions=2, seed=1)
    ctx = run_pipeline(adata, tmp_path, PipelineConfig(steps=("preprocess", "differential"), quick=True), stream=None)
    found = ctx.found[0]
    # 400 cells: the planted depletion is ranked well but no cell reaches the posterior tail threshold
    assert "0 depleted" in found
    assert _named_cluster(found, "depletion") in _planted_clusters(adata, ctx)
    z = adata.obs["gp_da_zscore"].groupby(adata.obs[ctx.objects["cluster_key"]].astype(str).to_numpy()).median()
    assert _named_cluster(found, "depletion") == z.idxmin()
    assert _named_cluster(found, "enrichment") == z.idxmax()
    assert "strongest depletion" in (tmp_path / "report.html").read_text()


def test_selected_steps_bring_the_steps_they_need():
    from cellflux._pipeline._context import with_prerequisites

    config = PipelineConfig(steps=("fates",))
    assert config.steps == ("preprocess", "velocity", "kernels", "fates")
    assert config.added_steps == ("preprocess", "velocity", "kernels")
    assert PipelineConfig(steps=("streaming",)).steps == ("preprocess", "streaming")
    assert PipelineConfig(steps=("preprocess", "differential")).added_steps == ()
    assert with_prerequisites(STEPS) == STEPS


def test_missing_cluster_labels_stay_missing(tmp_path):
    adata = cf.datasets.simulate(n_cells=200, n_genes=40, n_conditions=1, seed=0)
    labels = adata.obs["clusters"].astype(object).to_numpy()
    labels[::7] = np.nan
    adata.obs["clusters"] = labels
    run_pipeline(adata, tmp_path, PipelineConfig(steps=("preprocess",), quick=True), stream=None)
    back = ad.read_h5ad(tmp_path / "cellflux.h5ad").obs["clusters"]
    assert "nan" not in back.cat.categories  # not a cluster named "nan"
    assert back.isna().sum() == len(labels[::7])
    assert (back.astype(object)[~back.isna()] == pd.Series(labels).dropna().to_numpy()).all()


def test_bad_options_are_refused():
    with pytest.raises(ValueError, match="Unknown step"):
        PipelineConfig(steps=("preprocess", "magic"))
    with pytest.raises(ValueError, match="velocity='dynamical'"):
        PipelineConfig(velocity="dynamical")


def test_unknown_groupby_is_an_error_naming_the_column(tmp_path):
    pytest.importorskip("cellflux_gp_differential")
    adata = cf.datasets.simulate(n_cells=200, n_genes=40, n_conditions=2, seed=3)
    config = PipelineConfig(steps=("preprocess", "differential"), groupby="treatment", quick=True)
    with pytest.raises(ValueError, match="--groupby 'treatment'"):
        run_pipeline(adata, tmp_path, config, stream=None)


def test_pipeline_modules_import_nothing_heavy():
    script = (
        "import json, sys, cellflux, cellflux.cli, cellflux._demo, cellflux._pipeline;"
        "print(json.dumps(sorted(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", script], check=True, capture_output=True, text=True)
    loaded = {m.split(".")[0] for m in json.loads(out.stdout)}
    heavy = {"scanpy", "torch", "jax", "matplotlib", "cellflux_kernels", "cellflux_estimators", "cellflux_velocity_vae"}
    assert not loaded & heavy, sorted(loaded & heavy)
