"""Transforms as modules: each takes batch keys as arguments and returns the keys it updates."""

from ._augment import BinomialResample, Duplicate, GaussianNoise, RandomGeneDropout, augmenting
from ._filter import Filter
from ._log1p import Log1p
from ._normalize_total import NormalizeTotal
from ._pipeline import apply_transforms, call_with_batch
from ._z_score import ZScore

__all__ = [
    "BinomialResample",
    "Duplicate",
    "GaussianNoise",
    "RandomGeneDropout",
    "Filter",
    "Log1p",
    "NormalizeTotal",
    "ZScore",
    "apply_transforms",
    "augmenting",
    "call_with_batch",
]
