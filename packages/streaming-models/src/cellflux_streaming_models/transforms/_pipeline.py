"""Calling modules with the batch keys their ``forward`` asks for."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable
from functools import cache
from typing import Any

from torch import nn

__all__ = ["apply_transforms", "call_with_batch"]


@cache
def _arguments(func: Callable[..., Any]) -> tuple[tuple[str, ...], tuple[str, ...], bool]:
    params = inspect.signature(func).parameters.values()
    required = tuple(p.name for p in params if p.default is inspect.Parameter.empty and p.kind is not p.VAR_KEYWORD)
    optional = tuple(p.name for p in params if p.default is not inspect.Parameter.empty)
    takes_all = any(p.kind is p.VAR_KEYWORD for p in params)
    return required, optional, takes_all


def call_with_batch(func: Callable[..., Any], batch: dict[str, Any]) -> Any:
    """Call ``func`` with the entries of ``batch`` named by its parameters.

    A required parameter missing from the batch is an error naming it and the batch's keys.
    """
    target = func.forward if isinstance(func, nn.Module) else func
    required, optional, takes_all = _arguments(getattr(target, "__func__", target))
    missing = [k for k in required if k not in batch and k != "self"]
    if missing:
        name = type(func).__name__ if isinstance(func, nn.Module) else getattr(func, "__qualname__", func)
        raise KeyError(f"{name} needs batch keys {missing}; the batch has {sorted(batch)}.")
    if takes_all:
        return func(**batch)
    kwargs = {k: batch[k] for k in (*required, *optional) if k in batch and k != "self"}
    return func(**kwargs)


def apply_transforms(transforms: Iterable[nn.Module], batch: dict[str, Any]) -> dict[str, Any]:
    """Apply the transforms in order; each one's output updates the batch (a new dict is returned)."""
    batch = dict(batch)
    for transform in transforms:
        batch.update(call_with_batch(transform, batch))
    return batch
