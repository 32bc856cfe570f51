"""Plugin discovery over the ``cellflux.plugins`` entry-point group."""

from __future__ import annotations

import difflib
import importlib
import logging
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from importlib import metadata
from typing import Any

from ._catalogue import package_providing
from .plugin import NAMESPACES, Command, PluginManifest, load_target

__all__ = [
    "ENTRY_POINT_GROUP",
    "MissingPluginError",
    "PluginConflictError",
    "PluginInfo",
    "PluginLoadWarning",
    "Registry",
    "default_registry",
]

logger = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "cellflux.plugins"


class PluginConflictError(RuntimeError):
    """Two plugins claim the same name."""


class MissingPluginError(AttributeError):
    """A name that no installed plugin provides."""


class PluginLoadWarning(UserWarning):
    """A plugin could not be loaded; it is listed as broken and skipped."""


@dataclass(frozen=True)
class PluginInfo:
    """One discovered plugin: its manifest, or the error that kept it from loading."""

    name: str
    entry_point: str
    distribution: str | None
    version: str | None
    manifest: PluginManifest | None
    error: str | None = None

    @property
    def ok(self) -> bool:
        """Whether the manifest loaded."""
        return self.manifest is not None


@dataclass(frozen=True)
class _Claim:
    plugin: PluginInfo
    target: str


def _distribution_name(entry_point: metadata.EntryPoint) -> str | None:
    dist = getattr(entry_point, "dist", None)
    return None if dist is None else dist.metadata["Name"]


def _distribution_version(entry_point: metadata.EntryPoint) -> str | None:
    dist = getattr(entry_point, "dist", None)
    return None if dist is None else dist.version


class Registry:
    """The plugins found through entry points, loaded once.

    Parameters
    ----------
    entry_points
        The entry points to load; by default those installed in the group ``cellflux.plugins``.
        Tests pass their own to simulate installing and removing plugins.
    """

    def __init__(self, entry_points: Iterable[metadata.EntryPoint] | None = None) -> None:
        if entry_points is None:
            entry_points = metadata.entry_points(group=ENTRY_POINT_GROUP)
        self._plugins = tuple(self._load(ep) for ep in sorted(entry_points, key=lambda ep: ep.name))
        self._resolved: dict[tuple[str, str], Callable[..., Any]] = {}

    @staticmethod
    def _load(entry_point: metadata.EntryPoint) -> PluginInfo:
        # Parsing a distribution's metadata is the slow part of discovery: read it only when the
        # manifest does not say (its version) or when reporting a broken plugin (its name).
        try:
            manifest = entry_point.load()
            if not isinstance(manifest, PluginManifest):
                raise TypeError(
                    f"entry point {entry_point.value!r} gives a {type(manifest).__name__}, "
                    "not a cellflux.plugin.PluginManifest"
                )
        except Exception as error:  # a broken plugin must not break the others
            message = f"{type(error).__name__}: {error}"
            distribution = _distribution_name(entry_point)
            warnings.warn(
                f"cellflux plugin {entry_point.name!r} ({distribution or entry_point.value}) failed to load and is "
                f"skipped: {message}",
                PluginLoadWarning,
                stacklevel=4,
            )
            version = _distribution_version(entry_point)
            return PluginInfo(entry_point.name, entry_point.value, distribution, version, None, message)
        version = manifest.version or _distribution_version(entry_point)
        return PluginInfo(manifest.name, entry_point.value, manifest.distribution, version, manifest)

    # -- listing -------------------------------------------------------------------------------

    @property
    def plugins(self) -> tuple[PluginInfo, ...]:
        """Every discovered plugin, loaded or broken, sorted by entry-point name."""
        return self._plugins

    @property
    def loaded(self) -> tuple[PluginInfo, ...]:
        """The plugins whose manifests loaded."""
        return tuple(p for p in self._plugins if p.ok)

    def _claims(self, namespace: str) -> dict[str, list[_Claim]]:
        claims: dict[str, list[_Claim]] = {}
        for plugin in self.loaded:
            assert plugin.manifest is not None
            if namespace == "module":
                items = {plugin.manifest.name: plugin.manifest.module}
            elif namespace == "commands":
                items = {name: command.target for name, command in plugin.manifest.commands.items()}
            else:
                items = getattr(plugin.manifest, namespace)
            for name, target in items.items():
                claims.setdefault(name, []).append(_Claim(plugin, target))
        return claims

    def names(self, namespace: str) -> list[str]:
        """Sorted names available in ``namespace`` (``"tl"``, ``"pl"``, ``"pp"``, ``"datasets"``, ``"commands"``)."""
        return sorted(self._claims(namespace))

    def conflicts(self) -> list[str]:
        """One message per name claimed by more than one plugin."""
        messages = []
        for namespace in (*NAMESPACES, "datasets", "commands", "module"):
            for name, claims in sorted(self._claims(namespace).items()):
                if len(claims) > 1:
                    messages.append(_conflict_message(namespace, name, claims))
        return messages

    def check(self) -> None:
        """Raise :class:`PluginConflictError` if two plugins claim one name."""
        messages = self.conflicts()
        if messages:
            raise PluginConflictError("\n".join(messages))

    # -- resolving -----------------------------------------------------------------------------

    def _claim(self, namespace: str, name: str) -> _Claim:
        claims = self._claims(namespace).get(name)
        if not claims:
            raise MissingPluginError(self._missing_message(namespace, name))
        if len(claims) > 1:
            raise PluginConflictError(_conflict_message(namespace, name, claims))
        return claims[0]

    def resolve(self, namespace: str, name: str) -> Callable[..., Any]:
        """Import and return the function ``cf.<namespace>.<name>``."""
        cached = self._resolved.get((namespace, name))
        if cached is not None:
            return cached
        claim = self._claim(namespace, name)
        try:
            obj = load_target(claim.target)
        except Exception as error:
            raise ImportError(
                f"cf.{namespace}.{name} from plugin {claim.plugin.name!r} ({claim.plugin.distribution}) could not be "
                f"imported from {claim.target!r}: {type(error).__name__}: {error}"
            ) from error
        self._resolved[namespace, name] = obj
        return obj

    def module(self, name: str) -> Any:
        """Import and return the package of the plugin called ``name``."""
        claim = self._claim("module", name)
        return importlib.import_module(claim.target)

    def command(self, name: str) -> tuple[PluginInfo, Command]:
        """The plugin and :class:`~cellflux.plugin.Command` behind ``cellflux <name>``."""
        claim = self._claim("commands", name)
        assert claim.plugin.manifest is not None
        return claim.plugin, claim.plugin.manifest.commands[name]

    def _missing_message(self, namespace: str, name: str) -> str:
        where = "cf" if namespace == "module" else f"cf.{namespace}"
        package = package_providing(namespace, name)
        broken = [p for p in self._plugins if not p.ok]
        if package is not None:
            message = (
                f"{where}.{name} is provided by {package.distribution}, which is not installed: "
                f"pip install {package.distribution}"
            )
        else:
            available = self.names(namespace) if namespace != "module" else [p.name for p in self.loaded]
            message = f"{where} has no {name!r}."
            close = difflib.get_close_matches(name, available, n=3)
            if close:
                message += f" Did you mean {', '.join(repr(c) for c in close)}?"
            elif available:
                message += f" Available: {', '.join(available)}."
            else:
                message += " No installed plugin provides any (see cellflux.plugins())."
        if broken:
            names = ", ".join(f"{p.name} ({p.error})" for p in broken)
            message += f" Note: these plugins failed to load: {names}."
        return message


def _conflict_message(namespace: str, name: str, claims: list[_Claim]) -> str:
    owners = " and ".join(f"{c.plugin.name!r} ({c.plugin.distribution}, {c.target})" for c in claims)
    label = {"module": "the plugin name", "commands": "the command"}.get(namespace, f"cf.{namespace}")
    return f"{label} {name!r} is claimed by {owners}; uninstall one of them."


_DEFAULT: list[Registry] = []


def default_registry(*, refresh: bool = False) -> Registry:
    """The registry of installed plugins, discovered on first use (``refresh=True`` discovers again)."""
    if refresh or not _DEFAULT:
        _DEFAULT[:] = [Registry()]
    return _DEFAULT[0]
