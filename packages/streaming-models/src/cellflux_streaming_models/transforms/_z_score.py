"""Centre and scale each gene with given means and standard deviations."""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from .._sparse import is_csr

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

    @classmethod
    def from_csv(cls, path: str | os.PathLike, eps: float = 1e-6) -> ZScore:
        """The transform of the statistics that ``OnePassMeanVarStd(output_path=...)`` wrote.

        The CSV's columns ``var_names_g``, ``mean_g`` and ``std_g`` are read (``var_g`` is ignored); a
        ``cellflux stream`` configuration names it by path.

        Raises
        ------
        ValueError
            If a column is missing.
        """
        import pandas as pd

        table = pd.read_csv(path, keep_default_na=False)
        missing = {"var_names_g", "mean_g", "std_g"} - set(table.columns)
        if missing:
            raise ValueError(
                f"{os.fspath(path)!r} lacks the columns {sorted(missing)}; expected the CSV that "
                "OnePassMeanVarStd(output_path=...) writes."
            )
        names = table["var_names_g"].astype(str).to_numpy()
        return cls(table["mean_g"].to_numpy(np.float64), table["std_g"].to_numpy(np.float64), names, eps=eps)

    def forward(self, x_ng: torch.Tensor, var_names_g: np.ndarray) -> dict[str, torch.Tensor]:
        """Return ``{"x_ng": z-scored x_ng}`` (dense; a ``torch.sparse_csr`` input is densified).

        To keep a sparse batch sparse, give this transform to the model instead (e.g.
        ``LogisticRegression(..., zscore=ZScore(...))`` folds it into the weights).
        """
        self.check_genes(var_names_g)
        if is_csr(x_ng):
            x_ng = x_ng.to_dense()
        return {"x_ng": (x_ng - self.mean_g) / (self.std_g + self.eps)}

    def check_genes(self, var_names_g: np.ndarray) -> None:
        """Refuse genes other than the statistics' (the error of :meth:`forward`)."""
        if len(var_names_g) != len(self.var_names_g) or not np.array_equal(var_names_g, self.var_names_g):
            raise ValueError("ZScore: the batch's var_names_g differ from the genes the statistics were computed on.")

    def inverse_std_g(self) -> torch.Tensor:
        """``1 / (std_g + eps)``: the factor applied to each gene."""
        return 1.0 / (self.std_g + self.eps)
