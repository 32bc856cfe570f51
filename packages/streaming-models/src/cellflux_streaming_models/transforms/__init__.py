"""Transforms as modules: each takes batch keys as arguments and returns the keys it updates."""

from ._filter import Filter
from ._log1p import Log1p
from ._normalize_total import NormalizeTotal
from ._pipeline import apply_transforms, call_with_batch
from ._z_score import ZScore

__all__ = ["Filter", "Log1p", "NormalizeTotal", "ZScore", "apply_transforms", "call_with_batch"]
