"""Renaming a parameter without breaking the scripts that use the old name.

``@renamed_parameter("n_states", "n_macrostates", since="0.5.0")`` keeps ``f(n_states=3)`` working,
with a :class:`FutureWarning` naming the new spelling, for as long as the decorator stays (remove it in
a release that may break: a new minor version before 1.0). :mod:`cellflux.testing.api` reads the
aliases, so a rename with its alias is not a breaking change, and removing the alias later is one.
"""

from __future__ import annotations

import functools
import inspect
import warnings
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["ALIASES_ATTRIBUTE", "renamed_parameter"]

F = TypeVar("F", bound=Callable[..., Any])

#: Attribute of a decorated callable: ``{old name: (new name, version since which it is deprecated)}``.
ALIASES_ATTRIBUTE = "__cellflux_renamed__"


def renamed_parameter(old: str, new: str, *, since: str) -> Callable[[F], F]:
    """Accept the keyword ``old`` as a deprecated spelling of the parameter ``new``.

    Parameters
    ----------
    old
        The former name; passing it warns (:class:`FutureWarning`) and passes the value as ``new``.
    new
        The parameter's name now; must be a parameter of the decorated function that can be passed
        by keyword.
    since
        The version that renamed it (in the warning).

    Returns
    -------
    A decorator. Passing both names raises :class:`TypeError`. Decorators stack (one per rename).

    Examples
    --------
    >>> @renamed_parameter("n_states", "n_macrostates", since="0.5.0")
    ... def macrostates(adata, *, n_macrostates=3): ...
    """

    def decorate(function: F) -> F:
        params = inspect.signature(function).parameters
        target = params.get(new)
        if target is None or target.kind not in (target.POSITIONAL_OR_KEYWORD, target.KEYWORD_ONLY):
            raise ValueError(f"{function.__qualname__} has no parameter {new!r} that can be passed by keyword")
        if old in params:
            raise ValueError(f"{function.__qualname__} still has a parameter {old!r}; it cannot also be an alias")
        name = function.__qualname__

        @functools.wraps(function)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if old in kwargs:
                if new in kwargs:
                    raise TypeError(f"{name}() got both {old!r} and {new!r}; pass only {new!r}")
                warnings.warn(
                    f"{name}({old}=...) is deprecated since {since}; use {new}=... instead",
                    FutureWarning,
                    stacklevel=2,
                )
                kwargs[new] = kwargs.pop(old)
            return function(*args, **kwargs)

        aliases = dict(getattr(function, ALIASES_ATTRIBUTE, {}))
        aliases[old] = (new, since)
        setattr(wrapper, ALIASES_ATTRIBUTE, aliases)
        return wrapper  # type: ignore[return-value]

    return decorate
