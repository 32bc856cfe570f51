"""The public-API description and the rules that tell a breaking change from an addition."""

import enum
import json
import sys
import types
from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np
import pytest

from cellflux.deprecation import renamed_parameter
from cellflux.plugin import PluginManifest
from cellflux.testing.api import (
    _describe_class,
    allows_breaking,
    api_problems,
    breaking_changes,
    describe_api,
    describe_callable,
    main,
)


class Mode(enum.Enum):
    FAST = "fast"


def _api(**functions):
    """An API description of the given functions, as :func:`describe_api` writes it."""
    objects = {name: {"kind": "function", "parameters": describe_callable(f)} for name, f in functions.items()}
    return {"module": "pkg", "version": "0.1.0", "objects": objects}


def base(adata, key, n=10, *, mode=Mode.FAST, copy=False): ...


HALF, SENTINEL, FLOAT32 = np.float64(0.5), object(), np.dtype("float32")


def test_parameters_kinds_and_defaults():
    def f(a, /, b, c=HALF, *args, d=(1, "x"), e=SENTINEL, **kwargs): ...

    params = describe_callable(f)
    assert [(p["name"], p["kind"]) for p in params] == [
        ("a", "positional_only"),
        ("b", "positional_or_keyword"),
        ("c", "positional_or_keyword"),
        ("args", "var_positional"),
        ("d", "keyword_only"),
        ("e", "keyword_only"),
        ("kwargs", "var_keyword"),
    ]
    assert "default" not in params[0] and "default" not in params[1]
    # numpy scalars by value (their repr differs between numpy versions), objects by type only
    assert [params[2]["default"], params[4]["default"], params[5]["default"]] == ["0.5", "(1, 'x')", "<object>"]
    assert describe_callable(base)[3]["default"] == "Mode.FAST"

    def g(dtype=FLOAT32, kind=np.float32, reduce=np.mean, mode=Mode.FAST): ...

    # dtypes by name, classes and functions by their qualified names
    expected = ["dtype('float32')", "numpy.float32", "numpy.mean", "Mode.FAST"]
    assert [p["default"] for p in describe_callable(g)] == expected


def test_additions_break_nothing():
    def added(adata, key, n=10, extra=None, *, mode=Mode.FAST, copy=False, more=1): ...

    def another(x): ...

    assert breaking_changes(_api(f=base), _api(f=added, g=another)) == []
    assert breaking_changes(_api(f=base), _api(f=base)) == []


@pytest.mark.parametrize(
    ("changed", "expected"),
    [
        (lambda adata, key, *, mode=Mode.FAST, copy=False: None, "parameter 'n' was removed or renamed"),
        (lambda adata, key, n_cells=10, *, mode=Mode.FAST, copy=False: None, "position 2 was 'n'"),
        (lambda adata, n, key, *, mode=Mode.FAST, copy=False: None, "parameter 'key' moved from position 1 to 2"),
        (lambda adata, key, *, n=10, mode=Mode.FAST, copy=False: None, "'n' can no longer be passed by position"),
        (lambda adata, key, n, *, mode=Mode.FAST, copy=False: None, "parameter 'n' lost its default (10)"),
        (lambda adata, key, n=20, *, mode=Mode.FAST, copy=False: None, "default of 'n' changed from 10 to 20"),
        (lambda adata, key, n=10, *, mode=None, copy=False: None, "default of 'mode' changed from Mode.FAST to None"),
        (lambda adata, key, n=10, *, extra, mode=Mode.FAST, copy=False: None, "new required parameter 'extra'"),
        (lambda adata, key, n=10, /, *, mode=Mode.FAST, copy=False: None, "'n' can no longer be passed by keyword"),
    ],
)
def test_each_breaking_change_is_named(changed, expected):
    found = breaking_changes(_api(f=base), _api(f=changed))
    assert any(expected in line for line in found), found
    assert all(line.startswith("f: ") for line in found)


def test_removed_name_and_kind_change_and_star_arguments():
    def star(x, *args, **kwargs): ...

    def fewer(x): ...

    class Now: ...

    old = _api(f=base, g=star, h=fewer)
    new = {"module": "pkg", "version": "0.1.0", "objects": {"g": _api(g=fewer)["objects"]["g"]}}
    new["objects"]["h"] = {"kind": "class", "parameters": None, "methods": {}, "attributes": []}
    found = breaking_changes(old, new)
    expected = ["f: removed", "g: **kwargs was removed", "g: *args was removed", "h: was a function, is now a class"]
    assert found == sorted(expected)
    del Now


def test_kwargs_absorb_a_removed_keyword_as_deprecation_shims_do():
    def shim(adata, key, n=10, *, mode=Mode.FAST, **kwargs): ...  # copy= still accepted, through **kwargs

    assert breaking_changes(_api(f=base), _api(f=shim)) == []


def test_a_renamed_parameter_with_its_alias_breaks_nothing_and_removing_the_alias_does():
    @renamed_parameter("n", "n_cells", since="0.2.0")
    def renamed(adata, key, n_cells=10, *, mode=Mode.FAST, copy=False): ...

    def alias_dropped(adata, key, n_cells=10, *, mode=Mode.FAST, copy=False): ...

    params = describe_callable(renamed)
    assert params[-1] == {"name": "n", "kind": "keyword_only", "alias_of": "n_cells", "default": "10"}
    assert breaking_changes(_api(f=base), _api(f=renamed)) == []
    assert breaking_changes(_api(f=renamed), _api(f=alias_dropped)) == ["f: parameter 'n' was removed or renamed"]

    class Old:
        def __init__(self, data, n=10): ...

    class New:
        @renamed_parameter("n", "size", since="0.2.0")
        def __init__(self, data, size=10): ...

    def describe(cls):
        return {"module": "pkg", "version": "0.1.0", "objects": {"C": _describe_class(cls, "test_api")}}

    for cls in (Old, New):
        cls.__module__ = cls.__init__.__module__ = "test_api"
    assert breaking_changes(describe(Old), describe(New)) == []


def _module(name, **attrs):
    module = types.ModuleType(name)
    module.__dict__.update(attrs)
    return module


def test_describe_api_of_a_package(monkeypatch):
    @dataclass
    class Config:
        size: int
        names: list = field(default_factory=list)

    class Model(OrderedDict):  # the base's methods are not this package's API
        """A model."""

        threshold = 0.5

        def __init__(self, data, *, seed=0):
            super().__init__()

        def fit(self, x, y=None): ...

        @classmethod
        def load(cls, path): ...

        @staticmethod
        def helper(a, b=1): ...

        @property
        def result(self): ...

        def _private(self): ...

    def tool(adata, *, key_added="tool", copy=False): ...

    for obj in (Config, Model, tool):
        obj.__module__ = "fakepkg._core"
    for function in (Config.__init__, Model.__init__, Model.fit, Model.load.__func__, Model.helper):
        function.__module__ = "fakepkg._core"
    sub = _module("fakepkg.sub", __all__=["Config"], Config=Config)
    package = _module("fakepkg", __all__=["Model", "sub", "__version__"], Model=Model, sub=sub, __version__="1.2.0")
    monkeypatch.setitem(sys.modules, "fakepkg", package)
    monkeypatch.setitem(sys.modules, "fakepkg.sub", sub)
    monkeypatch.setitem(sys.modules, "fakepkg._core", _module("fakepkg._core", tool=tool))
    manifest = PluginManifest(name="fake", distribution="fakepkg", module="fakepkg", tl={"tool": "fakepkg._core:tool"})

    api = describe_api("fakepkg", manifest=manifest)
    assert api["module"] == "fakepkg" and api["version"] == "1.2.0"
    assert sorted(api["objects"]) == ["Model", "sub.Config", "tl.tool"]
    model = api["objects"]["Model"]
    assert [p["name"] for p in model["parameters"]] == ["data", "seed"]
    assert sorted(model["methods"]) == ["fit", "helper", "load"]  # nothing of OrderedDict's, nothing private
    assert [p["name"] for p in model["methods"]["fit"]] == ["x", "y"]  # self dropped
    assert [p["name"] for p in model["methods"]["load"]] == ["path"]  # cls dropped
    assert [p["name"] for p in model["methods"]["helper"]] == ["a", "b"]
    assert model["attributes"] == ["result", "threshold"]
    config = api["objects"]["sub.Config"]
    assert config["attributes"] == ["names", "size"]
    assert config["parameters"][1]["default"] == "<factory>"
    key_added = {"name": "key_added", "kind": "keyword_only", "default": "'tool'"}
    assert api["objects"]["tl.tool"]["parameters"][1] == key_added
    json.dumps(api)  # a snapshot is JSON

    # a method or attribute gone is a breaking change
    del Model.fit, Model.threshold
    found = breaking_changes(api, describe_api("fakepkg", manifest=manifest))
    assert found == ["Model.fit: removed", "Model.threshold: removed"]


@pytest.mark.parametrize(
    ("old", "new", "allowed"),
    [
        ("0.7.1", "0.7.2", False),
        ("0.7.1", "0.8.0", True),
        ("0.7.1", "1.0.0", True),
        ("1.2.0", "1.3.0", False),
        ("1.2.0", "2.0.0", True),
        ("0.8.0", "0.7.9", False),
        ("0.7.1", "0.8.0rc1", True),
    ],
)
def test_which_releases_may_break(old, new, allowed):
    assert allows_breaking(old, new) is allowed


def test_api_problems_follow_the_version():
    def changed(adata, key, n=20, *, mode=Mode.FAST, copy=False): ...

    snapshot = _api(f=base)
    patch = {**_api(f=changed), "version": "0.1.1"}
    [problem] = api_problems(snapshot, patch)
    assert "breaks callers of 0.1.0 without a new minor version" in problem and "default of 'n'" in problem
    minor = {**_api(f=changed), "version": "0.2.0"}
    [problem] = api_problems(snapshot, minor)  # allowed, but the snapshot must be re-recorded
    assert "snapshot is of 0.1.0" in problem and "default of 'n'" in problem
    assert api_problems(snapshot, _api(f=base)) == []
    assert api_problems(snapshot, {**_api(f=base), "version": "0.1.1"}) == [
        "pkg is 0.1.1 but its API snapshot is of 0.1.0 (no breaking change)"
    ]


def test_command_line_writes_and_checks(tmp_path, capsys):
    path = tmp_path / "api" / "cellflux.json"
    assert main(["cellflux", "--write", str(path)]) == 0
    snapshot = json.loads(path.read_text())
    assert "datasets.simulate" in snapshot["objects"] and "plugins" in snapshot["objects"]
    assert main(["cellflux", "--against", str(path)]) == 0
    assert "compatible" in capsys.readouterr().out
    snapshot["objects"]["gone"] = {"kind": "function", "parameters": []}
    path.write_text(json.dumps(snapshot))
    assert main(["cellflux", "--against", str(path)]) == 1
    assert "gone: removed" in capsys.readouterr().out
