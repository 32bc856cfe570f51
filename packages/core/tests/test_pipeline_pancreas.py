"""``cellflux run`` on the shared pancreas data finds the known biology (slow; skipped without the data)."""

import pytest

pytest.importorskip("scanpy")
for _module in ("cellflux_kernels", "cellflux_estimators", "cellflux_velocity_vae"):
    pytest.importorskip(_module)


@pytest.mark.slow
@pytest.mark.shared_data
def test_pancreas_terminal_and_initial_states(pancreas_adata, tmp_path):
    from cellflux._pipeline import PipelineConfig, run_pipeline

    # the steady-state velocity keeps this test at about a minute (the VAE takes several on 2 CPU cores)
    config = PipelineConfig(steps=("preprocess", "velocity", "kernels", "fates"), velocity="scvelo", seed=0)
    ctx = run_pipeline(pancreas_adata, tmp_path, config, title="pancreas", stream=None)
    assert all(r.status == "done" for r in ctx.records if r.name in config.steps), ctx.records
    states = ctx.objects["states_table"]
    terminal = set(states.loc[states["kind"] == "terminal", "cluster"])
    initial = set(states.loc[states["kind"] == "initial", "cluster"])
    assert {"Alpha", "Beta"} <= terminal
    assert terminal & {"Epsilon", "Delta"}
    assert initial <= {"Ductal", "Ngn3 low EP", "Ngn3 high EP"}
    report = (tmp_path / "report.html").read_text()
    assert "terminal state <b>Alpha" in report and "terminal state <b>Beta" in report
