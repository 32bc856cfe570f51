"""Random augmentations for contrastive learning: duplicate the batch, then perturb the views."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["BinomialResample", "Duplicate", "GaussianNoise", "RandomGeneDropout"]


def _rows(x_ng: torch.Tensor, p_apply: float) -> torch.Tensor:
    """Which rows an augmentation applies to (each with probability ``p_apply``)."""
    return (torch.rand(x_ng.shape[0], 1, device=x_ng.device) < p_apply).to(x_ng.dtype)


def _check(lo: float, hi: float, p_apply: float, name: str) -> None:
    if not 0 <= lo <= hi or not 0 <= p_apply <= 1:
        raise ValueError(f"{name}: need 0 <= min <= max and p_apply in [0, 1]; got {lo}, {hi}, {p_apply}.")


class Duplicate(nn.Module):
    """Stack the batch on itself (two views of every cell; ``enabled=False`` at prediction)."""

    def __init__(self, enabled: bool = True) -> None:
        super().__init__()
        self.enabled = enabled

    def forward(self, x_ng: torch.Tensor) -> dict[str, torch.Tensor]:
        """Return ``{"x_ng": [x; x]}``."""
        return {"x_ng": torch.cat([x_ng, x_ng]) if self.enabled and self.training else x_ng}


class BinomialResample(nn.Module):
    """Thin counts: ``x ~ Binomial(x, p)`` with ``p`` uniform in ``[p_binom_min, p_binom_max]`` per entry."""

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
        p = torch.empty_like(x_ng).uniform_(self.p_binom_min, self.p_binom_max)
        resampled = torch.binomial(x_ng, p)
        keep = _rows(x_ng, self.p_apply)
        return {"x_ng": keep * resampled + (1 - keep) * x_ng}


class GaussianNoise(nn.Module):
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


class RandomGeneDropout(nn.Module):
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
