"""Random augmentations for contrastive learning: duplicate the batch, then perturb the views.

They act in training mode, and in validation through :func:`augmenting` (which
:class:`~cellflux_streaming_models.lightning.StreamingModule` uses), so a contrastive model's
validation loss is its two-view loss; in eval mode otherwise (prediction) they are the identity.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import torch
from torch import nn

__all__ = ["BinomialResample", "Duplicate", "GaussianNoise", "RandomGeneDropout", "augmenting"]


def _rows(x_ng: torch.Tensor, p_apply: float) -> torch.Tensor:
    """Which rows an augmentation applies to (each with probability ``p_apply``)."""
    return (torch.rand(x_ng.shape[0], 1, device=x_ng.device) < p_apply).to(x_ng.dtype)


def _check(lo: float, hi: float, p_apply: float, name: str) -> None:
    if not 0 <= lo <= hi or not 0 <= p_apply <= 1:
        raise ValueError(f"{name}: need 0 <= min <= max and p_apply in [0, 1]; got {lo}, {hi}, {p_apply}.")


class _ViewTransform(nn.Module):
    """A transform that makes or perturbs the views of contrastive learning (see :func:`augmenting`)."""


@contextmanager
def augmenting(modules: Iterable[nn.Module]) -> Iterator[None]:
    """Let ``Duplicate`` and the augmentations among ``modules`` act although in eval mode.

    Lightning validates in eval mode, where these transforms are the identity (for prediction). A
    contrastive model's validation loss needs the two views of training: inside this context the
    view transforms among ``modules`` (and their submodules) are in training mode; their modes are
    restored on exit. Other modules are untouched.

    Parameters
    ----------
    modules
        Transforms, e.g. a :class:`~cellflux_streaming_models.lightning.StreamingModule`'s.

    Yields
    ------
    None
    """
    views = [m for module in modules for m in module.modules() if isinstance(m, _ViewTransform)]
    modes = [m.training for m in views]
    try:
        for m in views:
            m.training = True
        yield
    finally:
        for m, mode in zip(views, modes, strict=True):
            m.training = mode


class Duplicate(_ViewTransform):
    """Stack the batch on itself: two views of every cell.

    It acts in training mode and in validation (see :func:`augmenting`); in eval mode otherwise
    (prediction), or with ``enabled=False``, it is the identity.
    """

    def __init__(self, enabled: bool = True) -> None:
        super().__init__()
        self.enabled = enabled

    def forward(self, x_ng: torch.Tensor) -> dict[str, torch.Tensor]:
        """Return ``{"x_ng": [x; x]}``."""
        return {"x_ng": torch.cat([x_ng, x_ng]) if self.enabled and self.training else x_ng}


class BinomialResample(_ViewTransform):
    """Thin counts: ``x ~ Binomial(x, p)`` with ``p`` uniform in ``[p_binom_min, p_binom_max]`` per entry.

    The input must be counts: finite, non-negative integer values (put it before ``NormalizeTotal``,
    ``Log1p`` or ``ZScore``); anything else is a ``ValueError``, as with cellarium-ml's
    ``torch.distributions.Binomial``.
    """

    def __init__(self, p_binom_min: float, p_binom_max: float, p_apply: float = 1.0) -> None:
        super().__init__()
        _check(p_binom_min, p_binom_max, p_apply, "BinomialResample")
        if p_binom_max > 1:
            raise ValueError("p_binom_max must be at most 1.")
        self.p_binom_min, self.p_binom_max, self.p_apply = p_binom_min, p_binom_max, p_apply

    def forward(self, x_ng: torch.Tensor) -> dict[str, torch.Tensor]:
        """Return the resampled counts (rows unchanged with probability ``1 - p_apply``)."""
        if not self.training:
            return {"x_ng": x_ng}
        _check_counts(x_ng)
        keep = torch.rand(x_ng.shape[0], device=x_ng.device) < self.p_apply
        if not bool(keep.any()):
            return {"x_ng": x_ng}
        rows = x_ng[keep]
        p = torch.empty_like(rows).uniform_(self.p_binom_min, self.p_binom_max)
        out = x_ng.clone()
        out[keep] = torch.binomial(rows, p)
        return {"x_ng": out}


def _check_counts(x_ng: torch.Tensor) -> None:
    """Refuse what ``torch.binomial`` cannot resample (it never returns on NaN)."""
    problems = []
    if not bool(torch.isfinite(x_ng).all()):
        problems.append("NaN or infinite values")
    finite = x_ng.nan_to_num(0.0, 0.0, 0.0)
    if bool((finite < 0).any()):
        problems.append(f"negative values (min {float(finite.min()):g})")
    if bool((finite != finite.round()).any()):
        problems.append("non-integer values")
    if problems:
        raise ValueError(
            f"BinomialResample needs counts (finite, non-negative integers), got {' and '.join(problems)}: "
            "put it before NormalizeTotal, Log1p and ZScore."
        )


class GaussianNoise(_ViewTransform):
    """Add normal noise with a standard deviation uniform in ``[sigma_min, sigma_max]`` per entry."""

    def __init__(self, sigma_min: float, sigma_max: float, p_apply: float = 1.0) -> None:
        super().__init__()
        _check(sigma_min, sigma_max, p_apply, "GaussianNoise")
        self.sigma_min, self.sigma_max, self.p_apply = sigma_min, sigma_max, p_apply

    def forward(self, x_ng: torch.Tensor) -> dict[str, torch.Tensor]:
        """Return the noisy values (rows unchanged with probability ``1 - p_apply``)."""
        if not self.training:
            return {"x_ng": x_ng}
        sigma = torch.empty_like(x_ng).uniform_(self.sigma_min, self.sigma_max)
        keep = _rows(x_ng, self.p_apply)
        return {"x_ng": x_ng + keep * sigma * torch.randn_like(x_ng)}


class RandomGeneDropout(_ViewTransform):
    """Zero each entry with a probability uniform in ``[p_dropout_min, p_dropout_max]`` per cell."""

    def __init__(self, p_dropout_min: float, p_dropout_max: float, p_apply: float = 1.0) -> None:
        super().__init__()
        _check(p_dropout_min, p_dropout_max, p_apply, "RandomGeneDropout")
        if p_dropout_max >= 1:
            raise ValueError("p_dropout_max must be below 1.")
        self.p_dropout_min, self.p_dropout_max, self.p_apply = p_dropout_min, p_dropout_max, p_apply

    def forward(self, x_ng: torch.Tensor) -> dict[str, torch.Tensor]:
        """Return the values with entries dropped (rows unchanged with probability ``1 - p_apply``)."""
        if not self.training:
            return {"x_ng": x_ng}
        p = torch.empty(x_ng.shape[0], 1, device=x_ng.device).uniform_(self.p_dropout_min, self.p_dropout_max)
        mask = (torch.rand_like(x_ng) >= p).to(x_ng.dtype)
        keep = _rows(x_ng, self.p_apply)
        return {"x_ng": keep * x_ng * mask + (1 - keep) * x_ng}
