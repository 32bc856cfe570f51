"""Centre and scale each gene with given means and standard deviations."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

__all__ = ["ZScore"]


class ZScore(nn.Module):
    """``(x - mean_g) / (std_g + eps)`` per gene, e.g. with the output of ``OnePassMeanVarStd``.

    Parameters
    ----------
    mean_g, std_g
        Per-gene mean and standard deviation.
    var_names_g
        The genes these statistics belong to; batches with other genes are refused.
    eps
        Added to the standard deviation.
    """

    def __init__(
        self,
        mean_g: torch.Tensor | Sequence[float],
        std_g: torch.Tensor | Sequence[float],
        var_names_g: Sequence[str],
        eps: float = 1e-6,
    ) -> None:
        super().__init__()
        mean = torch.as_tensor(np.asarray(mean_g), dtype=torch.float32)
        std = torch.as_tensor(np.asarray(std_g), dtype=torch.float32)
        if mean.shape != std.shape or mean.ndim != 1 or len(var_names_g) != mean.shape[0]:
            raise ValueError(
                f"mean_g {tuple(mean.shape)}, std_g {tuple(std.shape)} and var_names_g ({len(var_names_g)}) must "
                "have one entry per gene."
            )
        self.register_buffer("mean_g", mean)
        self.register_buffer("std_g", std)
        self.var_names_g = np.asarray(var_names_g, dtype=object)
        self.eps = float(eps)

    def forward(self, x_ng: torch.Tensor, var_names_g: np.ndarray) -> dict[str, torch.Tensor]:
        """Return ``{"x_ng": z-scored x_ng}``."""
        if len(var_names_g) != len(self.var_names_g) or not np.array_equal(var_names_g, self.var_names_g):
            raise ValueError("ZScore: the batch's var_names_g differ from the genes the statistics were computed on.")
        return {"x_ng": (x_ng - self.mean_g) / (self.std_g + self.eps)}
