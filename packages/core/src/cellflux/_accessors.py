"""The ``cf.tl`` / ``cf.pl`` / ``cf.pp`` namespaces, resolved from the registry on first use."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._registry import Registry

__all__ = ["Namespace"]


class Namespace:
    """A lazily resolved namespace of plugin functions.

    Attribute access imports the providing plugin's module on first use and returns the real
    function, so ``help(cf.tl.name)`` shows its docstring. ``dir()`` lists every available name
    without importing anything heavy.

    Parameters
    ----------
    name
        ``"tl"``, ``"pl"`` or ``"pp"``.
    registry
        A callable returning the :class:`~cellflux._registry.Registry` to resolve from.
    """

    __slots__ = ("_name", "_registry")

    def __init__(self, name: str, registry: Callable[[], Registry]) -> None:
        object.__setattr__(self, "_name", name)
        object.__setattr__(self, "_registry", registry)

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("__") and attr.endswith("__"):
            raise AttributeError(attr)
        return self._registry().resolve(self._name, attr)

    def __setattr__(self, attr: str, value: Any) -> None:
        raise AttributeError(
            f"cf.{self._name} is read-only: add functions through a plugin manifest (see cellflux.plugin)."
        )

    def __dir__(self) -> list[str]:
        return self._registry().names(self._name)

    def __iter__(self):
        return iter(dir(self))

    def __contains__(self, attr: str) -> bool:
        return attr in dir(self)

    def __repr__(self) -> str:
        names = dir(self)
        shown = ", ".join(names) if names else "nothing installed"
        return f"<cellflux.{self._name}: {shown}>"
