"""cellflux-velocity-vae registers with the core like any third-party plugin."""

import importlib

import cellflux as cf
from cellflux._registry import Registry


def test_registered_as_plugin():
    registry = Registry()
    info = {p.name: p for p in registry.plugins}["velocity_vae"]
    assert info.ok, info.error
    assert info.distribution == "cellflux-velocity-vae"
    assert info.version == importlib.import_module("cellflux_velocity_vae").__version__


def test_module_reachable_from_core():
    assert cf.velocity_vae is importlib.import_module("cellflux_velocity_vae")
