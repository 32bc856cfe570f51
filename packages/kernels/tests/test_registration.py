"""cellflux-kernels registers with the core like any third-party plugin."""

import importlib

import cellflux as cf
from cellflux._registry import Registry


def test_registered_as_plugin():
    registry = Registry()
    info = {p.name: p for p in registry.plugins}["kernels"]
    assert info.ok, info.error
    assert info.distribution == "cellflux-kernels"
    assert info.version == importlib.import_module("cellflux_kernels").__version__


def test_module_reachable_from_core():
    assert cf.kernels is importlib.import_module("cellflux_kernels")
