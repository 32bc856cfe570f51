"""Scale each cell to a common total count."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["NormalizeTotal"]


class NormalizeTotal(nn.Module):
    """Scale every cell so its counts sum to ``target_count`` (scanpy's ``normalize_total``).

    Parameters
    ----------
    target_count
        The total after scaling.
    eps
        Added to each cell's total to avoid dividing by zero for empty cells.
    """

    def __init__(self, target_count: float = 10_000.0, eps: float = 1e-6) -> None:
        super().__init__()
        self.target_count = float(target_count)
        self.eps = float(eps)

    def forward(self, x_ng: torch.Tensor, total_mrna_umis_n: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Return ``{"x_ng": x_ng * target_count / total}`` (totals from ``total_mrna_umis_n`` if given)."""
        total_n = x_ng.sum(dim=1) if total_mrna_umis_n is None else total_mrna_umis_n.to(x_ng.dtype)
        scale_n = self.target_count / (total_n + self.eps)
        return {"x_ng": x_ng * scale_n[:, None]}

    def extra_repr(self) -> str:
        return f"target_count={self.target_count}"
