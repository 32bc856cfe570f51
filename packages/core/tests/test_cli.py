"""The ``cellflux`` command line of the core."""

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


def test_demo_writes_h5ad_and_summary(no_plugins, tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--quick", "--out", str(out), "--n-cells", "300", "--n-genes", "60"]) == 0
    adata = ad.read_h5ad(out / "demo.h5ad")
    assert adata.shape == (300, 60)
    assert set(adata.obs["condition"].cat.categories) == {"control", "treated"}
    summary = (out / "summary.md").read_text()
    assert "Simulated 300 cells x 60 genes" in summary
    assert "| progenitor |" in summary
    # a second run refuses to overwrite, with a clear message and exit code 2
    assert main(["demo", "--out", str(out), "--n-cells", "300", "--n-genes", "60"]) == 2
    assert "--overwrite" in capsys.readouterr().err
