"""A third-party package (tests/dummy_plugin, installed in the test environment) extends cellflux."""

import subprocess
import sys
from importlib import metadata

import pytest

import cellflux as cf
from cellflux._accessors import Namespace
from cellflux._registry import ENTRY_POINT_GROUP, Registry, default_registry


def installed_entry_points(exclude=()):
    return [ep for ep in metadata.entry_points(group=ENTRY_POINT_GROUP) if ep.name not in exclude]


def test_dummy_functions_are_listed_and_resolved():
    assert "dummy_score" in dir(cf.tl)
    assert "dummy_log1p" in dir(cf.pp)
    assert "dummy_score" in dir(cf.pl)
    import cellflux_dummy._tools as tools

    assert cf.tl.dummy_score is tools.dummy_score
    assert "Score each cell by its total counts" in cf.tl.dummy_score.__doc__


def test_removing_the_plugin_removes_its_functions():
    without = Registry(installed_entry_points(exclude={"dummy"}))
    tl = Namespace("tl", lambda: without)
    assert "dummy_score" not in dir(tl)
    with pytest.raises(AttributeError, match="cf.tl has no 'dummy_score'"):
        tl.dummy_score  # noqa: B018


def test_plugins_table_lists_versions():
    table = cf.plugins()
    assert table.loc["dummy", "version"] == "1.2.3"
    assert table.loc["dummy", "distribution"] == "cellflux-dummy-plugin"
    assert table.loc["dummy", "tl"] == ["dummy_score"]
    for plugin in ("kernels", "estimators", "gp_differential", "velocity_vae", "streaming_models"):
        assert table.loc[plugin, "status"] == "ok"
        assert table.loc[plugin, "version"] == metadata.version(table.loc[plugin, "distribution"])


def test_installed_suite_has_no_conflicts():
    default_registry().check()


def test_plugin_module_access():
    import cellflux_dummy

    assert cf.dummy is cellflux_dummy
    assert "dummy" in dir(cf)


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "cellflux.cli", *args], capture_output=True, text=True, check=False)


def test_cli_subcommand_from_plugin():
    result = run_cli("dummy", "tester")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "hello, tester, from cellflux-dummy-plugin"
    listing = run_cli("--help")
    assert "say hello from the dummy plugin [cellflux-dummy-plugin]" in listing.stdout


def test_cli_plugins_lists_everything():
    result = run_cli("plugins")
    assert result.returncode == 0, result.stderr
    assert "dummy  cellflux-dummy-plugin 1.2.3" in result.stdout
    assert "tl: dummy_score" in result.stdout
    assert "commands: dummy" in result.stdout
