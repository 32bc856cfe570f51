"""Natural logarithm of one plus the values."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .._sparse import is_csr, with_values

__all__ = ["Log1p"]


class Log1p(nn.Module):
    """``log(1 + x)`` elementwise."""

    def forward(self, x_ng: torch.Tensor) -> dict[str, torch.Tensor]:
        """Return ``{"x_ng": log1p(x_ng)}`` (a ``torch.sparse_csr`` input stays sparse: ``log1p(0) = 0``)."""
        if is_csr(x_ng):
            values = x_ng.values()
            if values.device.type == "cpu":  # numpy: no thread pool for one pass over the stored values
                return {"x_ng": with_values(x_ng, torch.from_numpy(np.log1p(values.numpy())))}
            return {"x_ng": with_values(x_ng, torch.log1p(values))}
        return {"x_ng": torch.log1p(x_ng)}
