"""The ``cellflux`` command line of the core."""

import importlib.util

import anndata as ad
import pytest

from cellflux import _registry
from cellflux.cli import main


@pytest.fixture
def no_plugins(monkeypatch):
    monkeypatch.setattr(_registry, "_DEFAULT", [_registry.Registry([])])


def test_plugins_without_any(no_plugins, capsys):
    assert main(["plugins"]) == 0
    assert "pip install cellflux-kernels" in capsys.readouterr().out


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert "cellflux 0." in capsys.readouterr().out


def test_unknown_command_is_an_error(no_plugins, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["nonsense"])
    assert exit_info.value.code == 2
    assert "invalid choice: 'nonsense'" in capsys.readouterr().err


def test_demo_without_plugins_skips_their_steps_and_writes_the_report(no_plugins, tmp_path, capsys):
    out = tmp_path / "demo"
    args = ["demo", "--quick", "--out", str(out), "--n-cells", "300", "--n-genes", "60", "--steps"]
    assert main([*args, "velocity,kernels,differential"]) == 0
    adata = ad.read_h5ad(out / "cellflux.h5ad")
    assert adata.shape == (300, 60)
    assert set(adata.obs["condition"].cat.categories) == {"control", "treated"}
    report = (out / "report.html").read_text()
    # the steps the selected ones need are run too (before 0.3.2 they were skipped "for want of preprocess")
    assert "also running preprocess: the selected steps need them" in report
    err = capsys.readouterr().err
    assert "also running preprocess" in err and "SKIPPED" in err  # the velocity plugin is missing: said so
    if importlib.util.find_spec("scanpy") is not None:
        assert "needs the preprocess step" not in report
        assert "[1/5] preprocess   done" in err
    else:  # preprocess needs scanpy: skipped, with what to install, and the steps after it say why
        assert "scanpy is not installed" in report and "needs the preprocess step, which did not run" in report
    # a second run refuses to overwrite, with a clear message and exit code 2
    assert main([*args, "velocity"]) == 2
    assert "--overwrite" in capsys.readouterr().err


def test_demo_unknown_step_is_an_error(no_plugins, tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path), "--steps", "preprocess,magic"]) == 2
    err = capsys.readouterr().err
    assert "unknown step(s) ['magic']" in err and "preprocess, velocity" in err
    assert not (tmp_path / "report.html").exists()


def test_run_missing_file_is_an_error(no_plugins, tmp_path, capsys):
    assert main(["run", str(tmp_path / "nothing.h5ad"), "--out", str(tmp_path / "out")]) == 2
    assert "nothing.h5ad does not exist" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_run_on_a_file_without_plugins(no_plugins, tmp_path, capsys):
    import cellflux as cf

    data = tmp_path / "data.h5ad"
    cf.datasets.simulate(n_cells=200, n_genes=40, n_conditions=1, seed=0).write_h5ad(data)
    assert main(["run", str(data), "--steps", "velocity", "--velocity", "scvelo"]) == 0
    out = tmp_path / "data-cellflux"
    assert (out / "report.html").is_file() and (out / "cellflux.h5ad").is_file()


def test_a_step_whose_plugin_is_missing_says_what_to_install(no_plugins):
    from cellflux._pipeline import StepSkipped
    from cellflux._pipeline._util import require_function

    with pytest.raises(StepSkipped, match="pip install cellflux-velocity-vae"):
        require_function("tl", "velocity_vae", "cellflux-velocity-vae")


def test_wrong_column_options_are_refused_before_any_step(no_plugins, tmp_path, capsys):
    import cellflux as cf

    data = tmp_path / "data.h5ad"
    cf.datasets.simulate(n_cells=200, n_genes=40, n_conditions=2, seed=0).write_h5ad(data)
    out = tmp_path / "out"
    cases = [
        (["--conditions", "A", "B"], "--conditions ['A', 'B'] not in obs['condition']; present: ['control', 'tr"),
        (["--groupby", "nope"], "--groupby 'nope' is not a column of obs"),  # also when differential is not run
        (["--cluster-key", "nope"], "--cluster-key 'nope' is not a column of obs"),
    ]
    for options, message in cases:
        assert main(["run", str(data), "--out", str(out), "--steps", "preprocess", *options]) == 2
        err = capsys.readouterr().err
        assert message in err, err
        assert "[1/" not in err  # refused before the first step
        assert not out.exists()  # and nothing written


def test_a_file_that_is_not_h5ad_is_an_error(no_plugins, tmp_path, capsys):
    data = tmp_path / "counts.h5ad"
    data.write_text("gene,cell\n")
    assert main(["run", str(data), "--out", str(tmp_path / "out")]) == 2
    assert "counts.h5ad is not a readable h5ad file" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_demo_zero_cells_is_an_error_not_the_default(no_plugins, tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path / "out"), "--n-cells", "0"]) == 2
    assert "n_cells` must be an integer >= 1, got 0" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_overwrite_removes_the_previous_runs_figures_and_shards(no_plugins, tmp_path):
    out = tmp_path / "demo"
    args = ["demo", "--quick", "--out", str(out), "--n-cells", "200", "--n-genes", "40", "--steps", "preprocess"]
    assert main(args) == 0
    figures = out / "figures"
    figures.mkdir(exist_ok=True)  # drawn only with scanpy (the preprocess step)
    (figures / "02_velocity.png").write_bytes(b"stale")  # as left by an earlier run with the velocity step
    (figures / "my_notes.png").write_bytes(b"mine")  # not the pipeline's
    (out / "shards").mkdir()
    (out / "shards" / "shard_0.h5ad").write_bytes(b"stale")
    assert main([*args, "--overwrite"]) == 0
    assert not (figures / "02_velocity.png").exists()
    assert not (out / "shards").exists()
    assert (figures / "my_notes.png").read_bytes() == b"mine"
    if importlib.util.find_spec("scanpy") is not None:
        assert (figures / "01_overview.png").is_file()  # this run's figure
