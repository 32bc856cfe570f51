"""A package's public API as data, and the changes between two versions that break its callers.

Users of single-cell tools most often complain that an upgrade broke their scripts: a parameter
renamed, a default changed, a method gone. The suite's tests compare every package's public API with
a snapshot committed beside them (``tests/api/<distribution>.json``) and fail when a change would break
a caller without a release that may break (a new major version, or a new minor version before 1.0).

What counts as the public API of a package: the names in its ``__all__`` (functions with their
signatures; classes with their constructor, their public methods and attributes, those defined by
the package itself, not by third-party base classes; public submodules listed in ``__all__``,
recursively) and, for a plugin, the ``cf.tl``/``cf.pl``/``cf.pp`` functions its manifest registers.

What breaks a caller (:func:`breaking_changes`):

- a public name, method or attribute removed, or a function turned into something else;
- a parameter removed or renamed (unless the old name stays accepted: a
  :func:`~cellflux.deprecation.renamed_parameter` alias, or ``**kwargs``), moved to another position,
  or made keyword-only;
- a new parameter without a default, or an old one losing its default;
- a default value changed (the call still runs, but computes something else);
- ``*args`` or ``**kwargs`` removed.

Adding names, methods, attributes and parameters with defaults breaks nothing.

The command line writes and checks snapshots::

    python -m cellflux.testing.api cellflux_kernels --write tests/api/cellflux-kernels.json
    python -m cellflux.testing.api cellflux_kernels --against tests/api/cellflux-kernels.json
"""

from __future__ import annotations

import argparse
import enum
import importlib
import inspect
import json
import sys
import types
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..deprecation import ALIASES_ATTRIBUTE

__all__ = [
    "allows_breaking",
    "api_problems",
    "breaking_changes",
    "describe_api",
    "describe_callable",
]

_LITERALS = (type(None), bool, int, float, complex, str, bytes)
_KINDS = {
    inspect.Parameter.POSITIONAL_ONLY: "positional_only",
    inspect.Parameter.POSITIONAL_OR_KEYWORD: "positional_or_keyword",
    inspect.Parameter.VAR_POSITIONAL: "var_positional",
    inspect.Parameter.KEYWORD_ONLY: "keyword_only",
    inspect.Parameter.VAR_KEYWORD: "var_keyword",
}
_POSITIONAL = ("positional_only", "positional_or_keyword")
_BY_KEYWORD = ("positional_or_keyword", "keyword_only")


def _default_text(value: Any) -> str:
    """A stable text for a default value: the repr of literals, the member of an enum, else the type."""
    if isinstance(value, enum.Enum):
        return f"{type(value).__name__}.{value.name}"
    if type(value).__name__ == "_HAS_DEFAULT_FACTORY_CLASS":  # a dataclass field's default_factory
        return "<factory>"
    if type(value).__module__ == "numpy" and hasattr(value, "item"):  # a numpy scalar: its Python value
        value = value.item()
    if isinstance(value, _LITERALS):
        return repr(value)
    if isinstance(value, (tuple, list, frozenset)) and all(isinstance(v, _LITERALS) for v in value):
        return repr(sorted(value, key=repr) if isinstance(value, frozenset) else value)
    if type(value).__name__.lower().endswith("dtype"):  # numpy's and torch's dtypes: by name
        return f"dtype({str(value)!r})"
    if callable(value) and hasattr(value, "__qualname__"):  # a class or function: by its name
        return f"{getattr(value, '__module__', None)}.{value.__qualname__}"
    return f"<{type(value).__name__}>"


def describe_callable(obj: Any) -> list[dict[str, str]] | None:
    """The parameters of a callable: name, kind and default (absent when required).

    Parameters
    ----------
    obj
        A function, method or class (its constructor).

    Returns
    -------
    One dict per parameter, in order, then one per deprecated alias (keyword-only, ``"alias_of"`` the
    parameter's name now; see :func:`cellflux.deprecation.renamed_parameter`); ``None`` where Python
    cannot tell the signature.
    """
    try:
        signature = inspect.signature(obj)
    except (TypeError, ValueError):
        return None
    out = []
    for p in signature.parameters.values():
        entry = {"name": p.name, "kind": _KINDS[p.kind]}
        if p.default is not inspect.Parameter.empty:
            entry["default"] = _default_text(p.default)
        out.append(entry)
    # deprecated spellings still accepted (cellflux.deprecation.renamed_parameter): keyword-only aliases
    by_name = {p["name"]: p for p in out}
    aliases = getattr(obj.__init__ if inspect.isclass(obj) else obj, ALIASES_ATTRIBUTE, {})
    for old, (new, _since) in sorted(aliases.items()):
        entry = {"name": old, "kind": "keyword_only", "alias_of": new}
        if "default" in by_name.get(new, {}):
            entry["default"] = by_name[new]["default"]
        out.append(entry)
    return out


def _own_members(cls: type, package: str) -> dict[str, Any]:
    """Public members of ``cls`` defined by classes of ``package`` (not by third-party bases)."""
    members: dict[str, Any] = {}
    for klass in reversed(cls.__mro__):
        if getattr(klass, "__module__", "").split(".")[0] != package:
            continue
        for name in vars(klass).get("__annotations__", {}):  # dataclass fields without a default
            if not name.startswith("_"):
                members.setdefault(name, None)
        for name, value in vars(klass).items():
            if not name.startswith("_"):
                members[name] = value
    return members


def _constructor(cls: type, package: str) -> list[dict[str, str]] | None:
    """The constructor's parameters where the package defines it (third-party ones vary by version)."""
    if issubclass(cls, enum.Enum):
        return None
    for klass in cls.__mro__:
        own = vars(klass).get("__init__") or vars(klass).get("__new__")
        if own is not None:
            modules = (getattr(klass, "__module__", None), getattr(own, "__module__", None))
            if any((m or "").split(".")[0] != package for m in modules):
                return None
            return describe_callable(cls)
    return None


def _describe_class(cls: type, package: str) -> dict[str, Any]:
    methods, attributes = {}, []
    for name, value in sorted(_own_members(cls, package).items()):
        function = value.__func__ if isinstance(value, (classmethod, staticmethod)) else value
        if inspect.isfunction(function):
            params = describe_callable(function)
            if params and not isinstance(value, staticmethod) and params[0]["name"] in ("self", "cls"):
                params = params[1:]  # the bound argument is no caller's concern
            methods[name] = params
        else:
            attributes.append(name)
    return {"kind": "class", "parameters": _constructor(cls, package), "methods": methods, "attributes": attributes}


def _describe(obj: Any, package: str, name: str, objects: dict[str, Any], seen: set[int]) -> None:
    """Add ``obj`` (public name ``name``) to ``objects``; a module adds the names of its ``__all__``."""
    if isinstance(obj, types.ModuleType):
        if id(obj) in seen:
            return
        seen.add(id(obj))
        for child in sorted(getattr(obj, "__all__", ())):
            if child != "__version__":
                _describe(getattr(obj, child), package, f"{name}.{child}" if name else child, objects, seen)
    elif inspect.isclass(obj):
        objects[name] = _describe_class(obj, package)
    elif callable(obj):
        objects[name] = {"kind": "function", "parameters": describe_callable(obj)}
    else:
        objects[name] = {"kind": "object"}


def describe_api(module: str, manifest: Any | None = None) -> dict[str, Any]:
    """The public API of an installed package, as JSON-ready data.

    Parameters
    ----------
    module
        Import name of the package (e.g. ``"cellflux_kernels"``).
    manifest
        Its :class:`~cellflux.plugin.PluginManifest`; by default the one of the installed plugin whose
        module is ``module``, if any. Its ``tl``/``pl``/``pp`` functions are described as
        ``"tl.<name>"`` etc.

    Returns
    -------
    ``{"module", "version", "objects"}``; ``objects`` maps dotted public names to their description.
    """
    package = importlib.import_module(module)
    objects: dict[str, Any] = {}
    _describe(package, module.split(".")[0], "", objects, set())
    if manifest is None:
        from .._registry import default_registry

        manifest = next(
            (p.manifest for p in default_registry().loaded if p.manifest and p.manifest.module == module), None
        )
    if manifest is not None:
        from ..plugin import NAMESPACES, load_target

        for namespace in NAMESPACES:
            for name, target in sorted(manifest.functions(namespace).items()):
                objects[f"{namespace}.{name}"] = {
                    "kind": "function",
                    "parameters": describe_callable(load_target(target)),
                }
    return {"module": module, "version": str(getattr(package, "__version__", "")), "objects": objects}


def _parameter_changes(where: str, old: list[dict] | None, new: list[dict] | None) -> list[str]:
    """What in ``new`` breaks a call that was valid against ``old``."""
    if old is None or new is None:
        return []
    out = []
    new_by_name = {p["name"]: p for p in new}
    new_kinds = {p["kind"] for p in new}
    old_positional = [p for p in old if p["kind"] in _POSITIONAL]
    new_positional = [p for p in new if p["kind"] in _POSITIONAL]
    new_positions = {q["name"]: j for j, q in enumerate(new_positional)}
    for i, p in enumerate(old_positional):
        if i >= len(new_positional):
            if "var_positional" not in new_kinds:
                out.append(f"{where}: parameter {p['name']!r} can no longer be passed by position (position {i})")
            continue
        q = new_positional[i]
        if p["kind"] != "positional_or_keyword" or q["name"] == p["name"]:
            continue
        if new_by_name.get(p["name"], {}).get("alias_of") == q["name"]:
            continue  # renamed in place, the old keyword kept as an alias
        if p["name"] in new_positions:
            out.append(f"{where}: parameter {p['name']!r} moved from position {i} to {new_positions[p['name']]}")
        else:
            out.append(f"{where}: position {i} was {p['name']!r}, is now {q['name']!r}")
    for p in old:
        q = new_by_name.get(p["name"])
        if p["kind"] in ("var_positional", "var_keyword"):
            if p["kind"] not in new_kinds:
                star = "*" if p["kind"] == "var_positional" else "**"
                out.append(f"{where}: {star}{p['name']} was removed")
            continue
        if q is None:
            if not (p["kind"] in _BY_KEYWORD and "var_keyword" in new_kinds) and p["kind"] != "positional_only":
                out.append(f"{where}: parameter {p['name']!r} was removed or renamed")
            continue
        if p["kind"] in _BY_KEYWORD and q["kind"] not in _BY_KEYWORD:
            out.append(f"{where}: parameter {p['name']!r} can no longer be passed by keyword")
        if "default" in p and "default" not in q:
            out.append(f"{where}: parameter {p['name']!r} lost its default ({p['default']})")
        elif "default" in p and p["default"] != q["default"]:
            out.append(f"{where}: the default of {p['name']!r} changed from {p['default']} to {q['default']}")
    old_names = {p["name"] for p in old}
    for q in new:
        required = "default" not in q and "alias_of" not in q and q["kind"] not in ("var_positional", "var_keyword")
        if required and q["name"] not in old_names:
            out.append(f"{where}: new required parameter {q['name']!r}")
    return out


def breaking_changes(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """Every change from API ``old`` to API ``new`` (both from :func:`describe_api`) that breaks a caller.

    Parameters
    ----------
    old, new
        API descriptions.

    Returns
    -------
    One sentence per breaking change, sorted; empty when ``new`` only adds.
    """
    out = []
    old_objects, new_objects = old["objects"], new["objects"]
    for name, before in old_objects.items():
        after = new_objects.get(name)
        if after is None:
            out.append(f"{name}: removed")
            continue
        if before["kind"] != after["kind"]:
            out.append(f"{name}: was a {before['kind']}, is now a {after['kind']}")
            continue
        if before["kind"] in ("function", "class"):
            out += _parameter_changes(name, before.get("parameters"), after.get("parameters"))
        if before["kind"] == "class":
            for method, params in before["methods"].items():
                if method not in after["methods"]:
                    out.append(f"{name}.{method}: removed")
                else:
                    out += _parameter_changes(f"{name}.{method}", params, after["methods"][method])
            for attribute in before["attributes"]:
                if attribute not in after["attributes"] and attribute not in after["methods"]:
                    out.append(f"{name}.{attribute}: removed")
    return sorted(out)


def _release(version: str) -> tuple[int, ...]:
    parts = []
    for piece in version.split(".")[:3]:
        digits = "".join(c for c in piece if c.isdigit()) or "0"
        parts.append(int(digits))
    return tuple(parts + [0] * (3 - len(parts)))


def allows_breaking(old_version: str, new_version: str) -> bool:
    """Whether going from ``old_version`` to ``new_version`` may break callers.

    A new major version may; before 1.0, a new minor version may too (``0.7.1 -> 0.8.0``). Patch
    releases never may.

    Parameters
    ----------
    old_version, new_version
        Version strings (``"0.7.1"``).

    Returns
    -------
    ``True`` when the release may break.
    """
    old, new = _release(old_version), _release(new_version)
    if new[0] != old[0]:
        return new[0] > old[0]
    return new[0] == 0 and new[1] > old[1]


def api_problems(snapshot: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    """Why the current API does not pass against a committed snapshot (empty when it does).

    Breaking changes fail unless the version allows them (:func:`allows_breaking`); a version other
    than the snapshot's fails too, so that each release reviews and records its API.

    Parameters
    ----------
    snapshot
        The committed description (:func:`describe_api` of the last release).
    current
        The description of the installed package.

    Returns
    -------
    Sentences for a test failure; empty when the current API is compatible and recorded.
    """
    breaking = breaking_changes(snapshot, current)
    old, new = snapshot["version"], current["version"]
    problems = []
    if breaking and not allows_breaking(old, new):
        release = "a new major version" if _release(old)[0] >= 1 else "a new minor version (0.x)"
        problems.append(
            f"{current['module']} {new} breaks callers of {old} without {release}:\n  " + "\n  ".join(breaking)
        )
    elif old != new:
        listed = ("; it breaks:\n  " + "\n  ".join(breaking)) if breaking else " (no breaking change)"
        problems.append(f"{current['module']} is {new} but its API snapshot is of {old}{listed}")
    return problems


def main(argv: list[str] | None = None) -> int:
    """``python -m cellflux.testing.api MODULE [--write FILE | --against FILE]``."""
    parser = argparse.ArgumentParser(prog="python -m cellflux.testing.api", description=__doc__.splitlines()[0])
    parser.add_argument("module", help="import name of the package, e.g. cellflux_kernels")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--write", type=Path, help="write the snapshot to this file")
    group.add_argument("--against", type=Path, help="check the installed package against this snapshot")
    args = parser.parse_args(argv)
    current = describe_api(args.module)
    text = json.dumps(current, indent=1, sort_keys=True) + "\n"
    if args.write:
        args.write.parent.mkdir(parents=True, exist_ok=True)
        args.write.write_text(text)
        print(f"wrote {args.write} ({len(current['objects'])} public names of {args.module} {current['version']})")
        return 0
    if args.against:
        problems = api_problems(json.loads(args.against.read_text()), current)
        print("\n".join(problems) if problems else f"{args.module} {current['version']}: compatible")
        return 1 if problems else 0
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
