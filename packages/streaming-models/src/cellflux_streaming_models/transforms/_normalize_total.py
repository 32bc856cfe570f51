"""Scale each cell to a common total count."""

from __future__ import annotations

import torch
from torch import nn

from .._sparse import is_csr, row_ids, row_sums, with_values

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
        """Return ``{"x_ng": x_ng * target_count / total}`` (totals from ``total_mrna_umis_n`` if given).

        A ``torch.sparse_csr`` ``x_ng`` stays sparse (its stored values are scaled, in one new array).
        """
        if is_csr(x_ng):
            values, rows = x_ng.values(), row_ids(x_ng)
            total_n = row_sums(x_ng) if total_mrna_umis_n is None else total_mrna_umis_n.double()
            scale_n = (self.target_count / (total_n + self.eps)).to(values.dtype)
            if values.device.type == "cpu":
                return {"x_ng": with_values(x_ng, torch.from_numpy(values.numpy() * scale_n.numpy()[rows.numpy()]))}
            return {"x_ng": with_values(x_ng, values * scale_n[rows])}
        total_n = x_ng.sum(dim=1) if total_mrna_umis_n is None else total_mrna_umis_n.to(x_ng.dtype)
        scale_n = self.target_count / (total_n + self.eps)
        return {"x_ng": x_ng * scale_n[:, None]}

    def extra_repr(self) -> str:
        return f"target_count={self.target_count}"
