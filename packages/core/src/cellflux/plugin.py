"""What a plugin declares: the manifest object its entry point names.

A plugin package adds an entry point to the ``cellflux.plugins`` group that points at a
:class:`PluginManifest` in a light module (one that imports nothing heavy)::

    [project.entry-points."cellflux.plugins"]
    my_plugin = "my_plugin._manifest:manifest"

and in ``my_plugin/_manifest.py``::

    from cellflux.plugin import Command, PluginManifest

    manifest = PluginManifest(
        name="my_plugin",
        distribution="my-plugin",
        module="my_plugin",
        tl={"my_score": "my_plugin._tools:my_score"},
        pl={"my_score": "my_plugin._plots:my_score"},
        commands={"my": Command("my_plugin._cli:main", help="Do my thing.")},
    )

Functions are given as lazy ``"module:attr"`` strings; nothing is imported until a user reaches
for the function.

Loading ``my_plugin._manifest`` runs ``my_plugin/__init__.py`` first, so a plugin package's
``__init__`` must stay light too: export its public names lazily with :func:`lazy_exports`.
"""

from __future__ import annotations

import importlib
import importlib.util
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Command", "NAMESPACES", "PluginManifest", "lazy_exports", "load_target", "parse_target"]

#: The namespaces a plugin can add functions to.
NAMESPACES = ("tl", "pl", "pp")

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_TARGET = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")
_COMMAND = re.compile(r"^[a-z][a-z0-9-]*$")


def parse_target(target: str) -> tuple[str, str]:
    """Split a ``"module:attr"`` string into its module and attribute path.

    Parameters
    ----------
    target
        A lazy reference such as ``"cellflux_kernels._tools:transition_matrix"``.

    Returns
    -------
    The module name and the (possibly dotted) attribute path.
    """
    if not isinstance(target, str) or not _TARGET.match(target):
        raise ValueError(f"{target!r} is not a 'module:attr' reference (e.g. 'my_plugin._tools:my_score').")
    module, attr = target.split(":")
    return module, attr


def _import_attribute(module: str, attr: str) -> Any:
    value: Any = importlib.import_module(module)
    for part in attr.split("."):
        value = getattr(value, part)
    return value


def load_target(target: str) -> Any:
    """Import the object a ``"module:attr"`` string refers to (``attr`` may be dotted).

    Parameters
    ----------
    target
        A reference such as ``"cellflux_kernels._tools:transition_matrix"``.

    Returns
    -------
    The object; import errors and missing attributes propagate.
    """
    return _import_attribute(*parse_target(target))


@dataclass(frozen=True)
class Command:
    """A subcommand a plugin adds to the ``cellflux`` command line.

    Parameters
    ----------
    target
        ``"module:attr"`` of a callable ``main(argv: list[str]) -> int | None`` that receives the
        arguments after the subcommand's name.
    help
        One line shown by ``cellflux --help``.
    """

    target: str
    help: str = ""

    def __post_init__(self) -> None:
        parse_target(self.target)


@dataclass(frozen=True)
class PluginManifest:
    """Everything a plugin declares, without importing any of it.

    Parameters
    ----------
    name
        Short plugin name; also the attribute under which ``cf.<name>`` gives the plugin module.
    distribution
        The name to ``pip install`` (e.g. ``"cellflux-kernels"``).
    module
        The import name of the plugin's package (e.g. ``"cellflux_kernels"``).
    tl, pl, pp
        Function name to ``"module:attr"`` for each namespace.
    commands
        Subcommand name to :class:`Command` for the ``cellflux`` command line.
    datasets
        Dataset name to ``"module:attr"`` of a loader, listed by ``cf.plugins()``.
    examples
        ``"tl.name"``/``"pp.name"`` to ``"module:attr"`` of a function ``example(adata) -> dict``
        that prepares a simulated AnnData for that function and returns the keyword arguments of a
        representative call. The suite's convention tests use it to round-trip every result
        through h5ad.
    version
        Version string; by default the installed distribution's version is used.
    """

    name: str
    distribution: str
    module: str
    tl: Mapping[str, str] = field(default_factory=dict)
    pl: Mapping[str, str] = field(default_factory=dict)
    pp: Mapping[str, str] = field(default_factory=dict)
    commands: Mapping[str, Command] = field(default_factory=dict)
    datasets: Mapping[str, str] = field(default_factory=dict)
    examples: Mapping[str, str] = field(default_factory=dict)
    version: str | None = None

    def __post_init__(self) -> None:
        if not _IDENTIFIER.match(self.name):
            raise ValueError(f"Plugin name {self.name!r} must be a Python identifier.")
        for namespace in (*NAMESPACES, "datasets"):
            for fname, target in getattr(self, namespace).items():
                if not _IDENTIFIER.match(fname):
                    raise ValueError(f"Plugin {self.name!r}: {namespace}.{fname!r} is not a valid name.")
                parse_target(target)
        for cname, command in self.commands.items():
            if not _COMMAND.match(cname):
                raise ValueError(f"Plugin {self.name!r}: command {cname!r} must be lower-case letters, digits, '-'.")
            if not isinstance(command, Command):
                raise TypeError(f"Plugin {self.name!r}: command {cname!r} must be a cellflux.plugin.Command.")
        for qualified, target in self.examples.items():
            namespace, _, fname = qualified.partition(".")
            if namespace not in NAMESPACES or fname not in getattr(self, namespace):
                raise ValueError(f"Plugin {self.name!r}: example {qualified!r} names no declared function.")
            parse_target(target)

    def functions(self, namespace: str) -> Mapping[str, str]:
        """The functions this plugin declares in ``namespace`` (``"tl"``, ``"pl"`` or ``"pp"``)."""
        if namespace not in NAMESPACES:
            raise ValueError(f"Unknown namespace {namespace!r}; expected one of {NAMESPACES}.")
        return getattr(self, namespace)


def lazy_exports(
    package: str, exports: Mapping[str, str]
) -> tuple[list[str], Callable[[str], Any], Callable[[], list[str]]]:
    """Make a package's public names import on first use (PEP 562), keeping ``import package`` light.

    Parameters
    ----------
    package
        The package's ``__name__``.
    exports
        Public name to ``"module:attr"``; a module starting with ``.`` is relative to ``package``.

    Returns
    -------
    ``__all__``, ``__getattr__`` and ``__dir__`` for the package's ``__init__``::

        __all__, __getattr__, __dir__ = lazy_exports(__name__, {"VelocityKernel": "._velocity:VelocityKernel"})
    """
    resolved: dict[str, tuple[str, str]] = {}
    for name, target in exports.items():
        module, _, attr = target.partition(":")
        if not module or not attr:
            raise ValueError(f"{target!r} is not a 'module:attr' reference.")
        resolved[name] = (importlib.util.resolve_name(module, package) if module.startswith(".") else module, attr)

    def __getattr__(name: str) -> Any:
        if name not in resolved:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return _import_attribute(*resolved[name])

    def __dir__() -> list[str]:
        return sorted(resolved)

    return sorted(resolved), __getattr__, __dir__
