"""Small helpers of the pipeline steps: plugin checks and dense views."""

from __future__ import annotations

from typing import Any

import numpy as np

from ._context import StepSkipped

__all__ = ["dense", "require_function", "require_module"]


def require_function(namespace: str, name: str, distribution: str) -> None:
    """Raise :class:`StepSkipped` unless ``cf.<namespace>.<name>`` is registered by an installed plugin."""
    from .._registry import default_registry

    if name not in default_registry().names(namespace):
        raise StepSkipped(
            f"{distribution} is not installed (cf.{namespace}.{name} is missing): pip install {distribution}"
        )


def require_module(module: str, distribution: str) -> Any:
    """Import ``module`` or raise :class:`StepSkipped` naming the package to install."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise StepSkipped(f"{distribution} is not installed ({error}): pip install {distribution}") from None


def dense(matrix: Any) -> np.ndarray:
    """A dense float64 copy of an array or sparse matrix."""
    return np.asarray(matrix.toarray() if hasattr(matrix, "toarray") else matrix, dtype=np.float64)
