"""Plain (weights-only loadable) representation of a model's saved attributes.

scvi-tools pickles numpy arrays, pandas frames and other objects into ``model.pt`` and loads it
with ``torch.load(weights_only=False)``, which can execute code from the file. Here everything that
is saved is turned into dicts, lists, strings, numbers and tensors, so :func:`torch.load` can read it
with ``weights_only=True``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import torch

__all__ = ["from_plain", "to_plain"]

_ARRAY, _FRAME = "__ndarray__", "__dataframe__"


def to_plain(value: Any) -> Any:
    """Recursively turn ``value`` into types the weights-only unpickler accepts."""
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    if isinstance(value, dict):
        return {str(k): to_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_plain(v) for v in value]
    if isinstance(value, pd.DataFrame):
        return {
            _FRAME: {
                "columns": [str(c) for c in value.columns],
                "index": to_plain(np.asarray(value.index)),
                "data": {str(c): to_plain(np.asarray(value[c])) for c in value.columns},
            }
        }
    if isinstance(value, (pd.Index, pd.Series)):
        return to_plain(np.asarray(value))
    if isinstance(value, np.ndarray):
        kind = value.dtype.kind
        if kind in "OUS":
            return {_ARRAY: [str(v) for v in value.ravel().tolist()], "dtype": "str", "shape": list(value.shape)}
        return {
            _ARRAY: torch.from_numpy(np.ascontiguousarray(value)),
            "dtype": str(value.dtype),
            "shape": list(value.shape),
        }
    if isinstance(value, np.generic):
        return value.item()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"Cannot save a {type(value).__name__} in a weights-only model file.")


def from_plain(value: Any) -> Any:
    """Inverse of :func:`to_plain`."""
    if isinstance(value, dict):
        if _ARRAY in value:
            data = value[_ARRAY]
            if value["dtype"] == "str":
                return np.asarray(data, dtype=object).reshape(value["shape"])
            return data.numpy().reshape(value["shape"])
        if _FRAME in value:
            frame = value[_FRAME]
            data = {c: from_plain(frame["data"][c]) for c in frame["columns"]}
            return pd.DataFrame(data, index=from_plain(frame["index"]), columns=frame["columns"])
        return {k: from_plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [from_plain(v) for v in value]
    return value
