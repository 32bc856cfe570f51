"""cellflux-gp-differential registers with the core like any third-party plugin."""

import importlib

import cellflux as cf
from cellflux._registry import Registry


def test_registered_as_plugin():
    registry = Registry()
    info = {p.name: p for p in registry.plugins}["gp_differential"]
    assert info.ok, info.error
    assert info.distribution == "cellflux-gp-differential"
    assert info.version == importlib.import_module("cellflux_gp_differential").__version__


def test_module_reachable_from_core():
    assert cf.gp_differential is importlib.import_module("cellflux_gp_differential")
