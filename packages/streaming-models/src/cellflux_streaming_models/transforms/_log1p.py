"""Natural logarithm of one plus the values."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["Log1p"]


class Log1p(nn.Module):
    """``log(1 + x)`` elementwise."""

    def forward(self, x_ng: torch.Tensor) -> dict[str, torch.Tensor]:
        """Return ``{"x_ng": log1p(x_ng)}``."""
        return {"x_ng": torch.log1p(x_ng)}
