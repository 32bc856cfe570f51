"""cellflux: single-cell dynamics the scanpy way.

``import cellflux as cf`` is light: it imports no AnnData, torch, jax, scanpy or matplotlib. Plugins
are discovered on first use of ``cf.tl``, ``cf.pl``, ``cf.pp`` or :func:`plugins`.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._accessors import Namespace
from ._version import __version__

if TYPE_CHECKING:
    import pandas as pd

    from ._registry import Registry

__all__ = ["__version__", "datasets", "pl", "plugins", "pp", "results", "tl"]

_SUBMODULES = ("datasets", "deprecation", "results", "plugin", "testing")


def _get_registry() -> Registry:
    from ._registry import default_registry

    return default_registry()


tl = Namespace("tl", _get_registry)
pl = Namespace("pl", _get_registry)
pp = Namespace("pp", _get_registry)


def plugins(*, refresh: bool = False) -> pd.DataFrame:
    """List the installed plugins with their versions and what they provide.

    Parameters
    ----------
    refresh
        Discover the installed plugins again (after installing or removing one in a running session).

    Returns
    -------
    One row per plugin: ``name``, ``distribution``, ``version``, ``status`` (``"ok"`` or ``"broken"``),
    the ``tl``/``pl``/``pp`` function names, ``commands`` and, for a broken plugin, its ``error``.
    """
    import pandas as pd

    from ._registry import default_registry

    rows = []
    for info in default_registry(refresh=refresh).plugins:
        manifest = info.manifest
        rows.append(
            {
                "name": info.name,
                "distribution": info.distribution,
                "version": info.version,
                "status": "ok" if info.ok else "broken",
                "tl": sorted(manifest.tl) if manifest else [],
                "pl": sorted(manifest.pl) if manifest else [],
                "pp": sorted(manifest.pp) if manifest else [],
                "commands": sorted(manifest.commands) if manifest else [],
                "error": info.error,
            }
        )
    columns = ["name", "distribution", "version", "status", "tl", "pl", "pp", "commands", "error"]
    return pd.DataFrame(rows, columns=columns).set_index("name")


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    if name.startswith("_"):
        raise AttributeError(name)
    return _get_registry().module(name)


def __dir__() -> list[str]:
    return sorted({*__all__, *_SUBMODULES, *(p.name for p in _get_registry().loaded)})
