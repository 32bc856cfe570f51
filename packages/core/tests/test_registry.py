"""Plugin discovery: loading manifests, broken plugins, conflicts, missing plugins."""

import sys
import types
from importlib.metadata import EntryPoint

import pytest

from cellflux import _catalogue
from cellflux._accessors import Namespace
from cellflux._registry import (
    ENTRY_POINT_GROUP,
    MissingPluginError,
    PluginConflictError,
    PluginLoadWarning,
    Registry,
)
from cellflux.plugin import Command, PluginManifest


def fake_function(adata, *, key_added="x", copy=False):
    """A fake tool with a docstring."""
    return None


@pytest.fixture
def fake_modules(monkeypatch):
    """Install throw-away modules into sys.modules and return a function adding more."""

    def add(name, **attrs):
        module = types.ModuleType(name)
        module.__dict__.update(attrs)
        monkeypatch.setitem(sys.modules, name, module)
        return module

    return add


def ep(name, value):
    return EntryPoint(name=name, value=value, group=ENTRY_POINT_GROUP)


def manifest(name, **kwargs):
    return PluginManifest(name=name, distribution=f"dist-{name}", module=f"mod_{name}", **kwargs)


def test_discovers_manifests_without_importing_functions(fake_modules):
    fake_modules("plug_a_manifest", manifest=manifest("a", tl={"score": "plug_a_tools:score"}, version="2.0"))
    registry = Registry([ep("a", "plug_a_manifest:manifest")])
    assert [p.name for p in registry.plugins] == ["a"]
    assert registry.plugins[0].version == "2.0"
    assert registry.names("tl") == ["score"]
    assert "plug_a_tools" not in sys.modules  # listing imports nothing
    fake_modules("plug_a_tools", score=fake_function)
    assert registry.resolve("tl", "score") is fake_function


def test_removing_a_plugin_removes_its_functions(fake_modules):
    fake_modules("plug_b", manifest=manifest("b", tl={"one": "plug_b:f"}, pl={"one": "plug_b:f"}), f=fake_function)
    fake_modules("plug_c", manifest=manifest("c", pp={"two": "plug_c:f"}), f=fake_function)
    both = Registry([ep("b", "plug_b:manifest"), ep("c", "plug_c:manifest")])
    only_c = Registry([ep("c", "plug_c:manifest")])
    assert dir(Namespace("tl", lambda: both)) == ["one"]
    assert dir(Namespace("tl", lambda: only_c)) == []
    assert dir(Namespace("pp", lambda: only_c)) == ["two"]
    with pytest.raises(MissingPluginError, match="cf.tl has no 'one'"):
        only_c.resolve("tl", "one")


def test_broken_plugin_is_reported_and_isolated(fake_modules):
    fake_modules("plug_ok", manifest=manifest("ok", tl={"fine": "plug_ok:f"}), f=fake_function)
    with pytest.warns(PluginLoadWarning, match="'broken'.*ModuleNotFoundError"):
        registry = Registry([ep("broken", "no_such_module_xyz:manifest"), ep("ok", "plug_ok:manifest")])
    status = {p.name: p for p in registry.plugins}
    assert not status["broken"].ok
    assert "no_such_module_xyz" in status["broken"].error
    assert registry.resolve("tl", "fine") is fake_function
    with pytest.raises(MissingPluginError, match="failed to load: broken"):
        registry.resolve("tl", "missing_name")


def test_entry_point_that_is_not_a_manifest_is_broken(fake_modules):
    fake_modules("plug_wrong", manifest={"name": "wrong"})
    with pytest.warns(PluginLoadWarning, match="not a cellflux.plugin.PluginManifest"):
        registry = Registry([ep("wrong", "plug_wrong:manifest")])
    assert registry.loaded == ()


def test_name_conflict_is_an_error_naming_both(fake_modules):
    fake_modules("plug_x", manifest=manifest("x", tl={"same": "plug_x:f", "own_x": "plug_x:f"}), f=fake_function)
    fake_modules("plug_y", manifest=manifest("y", tl={"same": "plug_y:f"}), f=fake_function)
    registry = Registry([ep("x", "plug_x:manifest"), ep("y", "plug_y:manifest")])
    with pytest.raises(PluginConflictError, match=r"'same' is claimed by 'x' \(dist-x.*\) and 'y' \(dist-y"):
        registry.resolve("tl", "same")
    with pytest.raises(PluginConflictError, match="'same'"):
        registry.check()
    assert registry.resolve("tl", "own_x") is fake_function  # other names still work


def test_two_plugins_with_one_name_conflict(fake_modules):
    fake_modules("plug_p1", manifest=PluginManifest(name="p", distribution="one", module="m1"))
    fake_modules("plug_p2", manifest=PluginManifest(name="p", distribution="two", module="m2"))
    registry = Registry([ep("p1", "plug_p1:manifest"), ep("p2", "plug_p2:manifest")])
    with pytest.raises(PluginConflictError, match="plugin name 'p' is claimed by"):
        registry.module("p")


def test_missing_suite_plugin_names_the_package(monkeypatch):
    registry = Registry([])
    with pytest.raises(MissingPluginError, match="pip install cellflux-kernels"):
        registry.module("kernels")
    suite = (_catalogue.SuitePackage("kernels", "cellflux-kernels", "cellflux_kernels", tl=frozenset({"kern"})),)
    monkeypatch.setattr(_catalogue, "SUITE", suite)
    with pytest.raises(MissingPluginError, match=r"cf.tl.kern is provided by cellflux-kernels.*pip install"):
        registry.resolve("tl", "kern")


def test_unknown_name_suggests_close_matches(fake_modules):
    fake_modules("plug_s", manifest=manifest("s", tl={"transition_matrix": "plug_s:f"}), f=fake_function)
    registry = Registry([ep("s", "plug_s:manifest")])
    with pytest.raises(MissingPluginError, match="Did you mean 'transition_matrix'"):
        registry.resolve("tl", "transition_matrx")


def test_function_import_error_names_the_plugin(fake_modules):
    fake_modules("plug_i", manifest=manifest("i", tl={"gone": "plug_i_tools_missing:f"}))
    registry = Registry([ep("i", "plug_i:manifest")])
    with pytest.raises(ImportError, match=r"cf.tl.gone from plugin 'i' \(dist-i\)"):
        registry.resolve("tl", "gone")


def test_commands_and_modules(fake_modules):
    mod = fake_modules("mod_k")
    fake_modules("plug_k", manifest=manifest("k", commands={"kk": Command("plug_k:main", help="h")}))
    registry = Registry([ep("k", "plug_k:manifest")])
    assert registry.module("k") is mod
    plugin, command = registry.command("kk")
    assert plugin.name == "k"
    assert command.help == "h"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": "not valid"}, "must be a Python identifier"),
        ({"tl": {"f": "no_colon"}}, "not a 'module:attr' reference"),
        ({"tl": {"bad name": "m:f"}}, "not a valid name"),
        ({"commands": {"Bad": Command("m:f")}}, "lower-case"),
        ({"examples": {"tl.nothing": "m:f"}}, "names no declared function"),
    ],
)
def test_manifest_validation(kwargs, message):
    base = {"name": "ok", "distribution": "d", "module": "m"}
    with pytest.raises(ValueError, match=message):
        PluginManifest(**{**base, **kwargs})


def test_namespace_is_read_only_and_resolves(fake_modules):
    fake_modules("plug_n", manifest=manifest("n", tl={"f": "plug_n:f"}), f=fake_function)
    registry = Registry([ep("n", "plug_n:manifest")])
    tl = Namespace("tl", lambda: registry)
    assert tl.f is fake_function
    assert tl.f.__doc__ == "A fake tool with a docstring."
    assert "f" in tl
    assert list(tl) == ["f"]
    assert repr(tl) == "<cellflux.tl: f>"
    with pytest.raises(AttributeError, match="read-only"):
        tl.g = fake_function
    with pytest.raises(AttributeError):
        tl.__wrapped__  # noqa: B018 - dunder lookups never go to the registry


def test_load_target_imports_dotted_attributes_and_refuses_bad_references():
    import collections
    import os.path

    from cellflux.plugin import load_target

    assert load_target("os.path:join") is os.path.join
    assert load_target("collections:OrderedDict.fromkeys") == collections.OrderedDict.fromkeys
    with pytest.raises(ValueError, match="is not a 'module:attr' reference"):
        load_target("os.path.join")
    with pytest.raises(AttributeError):
        load_target("os.path:no_such_name")
