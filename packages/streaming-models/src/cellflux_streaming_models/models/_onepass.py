"""Mean, variance and standard deviation per gene (and per batch) in one pass, in float64."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Literal

import numpy as np
import pandas as pd
import torch

from .._dist import all_reduce_sum, world
from ._base import StreamingModel

__all__ = ["OnePassMeanVarStd", "batch_indices"]

logger = logging.getLogger(__name__)


def batch_indices(batch_index_n: torch.Tensor | None, n: int, n_batch: int, device: torch.device) -> torch.Tensor:
    """Checked ``long`` batch codes (zeros when absent)."""
    if batch_index_n is None:
        if n_batch > 1:
            raise ValueError(f"n_batch={n_batch} but the batch has no batch_index_n; add it to the data's obs_columns.")
        return torch.zeros(n, dtype=torch.long, device=device)
    index = torch.as_tensor(batch_index_n, device=device).long()
    if index.shape != (n,):
        raise ValueError(f"batch_index_n has shape {tuple(index.shape)}, expected ({n},).")
    if n and (int(index.min()) < 0 or int(index.max()) >= n_batch):
        raise ValueError(f"batch_index_n has codes outside [0, {n_batch}); set n_batch to the number of batches.")
    return index


class OnePassMeanVarStd(StreamingModel):
    """Per-gene mean, variance and standard deviation in one pass, overall and per batch.

    Sums are accumulated in float64 (exact to rounding for count data), and reduced across DDP
    processes at the end of the epoch, so one and several processes give the same answer.

    Parameters
    ----------
    var_names_g
        The genes of the data.
    algorithm
        ``"naive"`` accumulates sums of x and x²; ``"shifted_data"`` accumulates them around a
        per-gene shift (the first batch's mean), which is stabler for large means.
    n_batch
        Number of batches (``batch_index_n`` codes); 1 without batches.
    output_path
        Write ``var_names_g, mean_g, var_g, std_g`` to this CSV after training (rank 0).

    Attributes
    ----------
    x_sums_bg, x_squared_sums_bg, x_size_b, x_shift_g
        The streaming state (buffers).
    """

    def __init__(
        self,
        var_names_g: Sequence[str],
        algorithm: Literal["naive", "shifted_data"] = "naive",
        n_batch: int = 1,
        output_path: str | None = None,
    ) -> None:
        super().__init__(var_names_g)
        if algorithm not in ("naive", "shifted_data"):
            raise ValueError(f"algorithm must be 'naive' or 'shifted_data', got {algorithm!r}.")
        if not isinstance(n_batch, int) or n_batch < 1:
            raise ValueError(f"n_batch must be a positive integer, got {n_batch!r}.")
        if output_path is not None and not str(output_path).endswith(".csv"):
            raise ValueError(f"output_path must end with .csv, got {output_path!r}.")
        self.algorithm = algorithm
        self.n_batch = n_batch
        self.output_path = output_path
        g = self.n_vars
        self.register_buffer("x_shift_g", torch.zeros(g, dtype=torch.float64))
        self.register_buffer("x_sums_bg", torch.zeros(n_batch, g, dtype=torch.float64))
        self.register_buffer("x_squared_sums_bg", torch.zeros(n_batch, g, dtype=torch.float64))
        self.register_buffer("x_size_b", torch.zeros(n_batch, dtype=torch.float64))

    def reset_parameters(self) -> None:
        """Forget everything seen."""
        for buffer in (self.x_shift_g, self.x_sums_bg, self.x_squared_sums_bg, self.x_size_b):
            buffer.zero_()

    def forward(
        self, x_ng: torch.Tensor, var_names_g: np.ndarray, batch_index_n: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        """Add a batch to the sums; returns an empty dict."""
        self.check_batch(x_ng, var_names_g)
        n = x_ng.shape[0]
        if n == 0:
            return {}
        x = x_ng.to(torch.float64)
        if self.algorithm == "shifted_data":
            if float(self.x_size_b.sum()) == 0:
                self.x_shift_g.copy_(x.mean(dim=0))
            x = x - self.x_shift_g
        if self.n_batch == 1:  # batch codes, if any, are ignored: one batch
            self.x_sums_bg[0] += x.sum(dim=0)
            self.x_squared_sums_bg[0] += torch.einsum("ng,ng->g", x, x)
            self.x_size_b[0] += n
        else:
            index = batch_indices(batch_index_n, n, self.n_batch, x.device)
            self.x_sums_bg.index_add_(0, index, x)
            self.x_squared_sums_bg.index_add_(0, index, x * x)
            self.x_size_b += torch.bincount(index, minlength=self.n_batch).to(torch.float64)
        return {}

    def on_train_epoch_end(self, epoch: int) -> None:
        """Reduce the sums across processes; every process ends with the totals."""
        if world()[1] == 1:
            return
        # Per batch: count, mean and M2 around each process's own shift, combined exactly.
        n_b = self.x_size_b.clone()
        safe = n_b.clamp(min=1)[:, None]
        mean_bg = self.x_sums_bg / safe + self.x_shift_g
        m2_bg = self.x_squared_sums_bg - self.x_sums_bg**2 / safe
        weighted = mean_bg * n_b[:, None]
        all_reduce_sum(n_b, weighted)
        total_mean_bg = weighted / n_b.clamp(min=1)[:, None]
        m2_bg = m2_bg + self.x_size_b[:, None] * (mean_bg - total_mean_bg) ** 2
        all_reduce_sum(m2_bg)
        shift = total_mean_bg.T @ n_b / n_b.sum().clamp(min=1) if self.algorithm == "shifted_data" else None
        shift_g = torch.zeros_like(self.x_shift_g) if shift is None else shift
        self.x_shift_g.copy_(shift_g)
        self.x_size_b.copy_(n_b)
        delta_bg = total_mean_bg - shift_g
        self.x_sums_bg.copy_(n_b[:, None] * delta_bg)
        self.x_squared_sums_bg.copy_(m2_bg + n_b[:, None] * delta_bg**2)

    def on_train_end(self) -> None:
        """Write the CSV summary (rank 0) if ``output_path`` is set."""
        if self.output_path is not None and world()[0] == 0:
            self.to_dataframe().to_csv(self.output_path, index=False)
            logger.info("wrote %s", self.output_path)

    # results -------------------------------------------------------------------------------------
    @property
    def mean_g(self) -> torch.Tensor:
        """Mean per gene (float64)."""
        return self.x_sums_bg.sum(0) / self.x_size_b.sum() + self.x_shift_g

    @property
    def var_g(self) -> torch.Tensor:
        """Population variance per gene (float64)."""
        n = self.x_size_b.sum()
        sums = self.x_sums_bg.sum(0)
        return ((self.x_squared_sums_bg.sum(0) - sums**2 / n) / n).clamp(min=0)

    @property
    def std_g(self) -> torch.Tensor:
        """Standard deviation per gene."""
        return torch.sqrt(self.var_g)

    @property
    def batch_mean_bg(self) -> torch.Tensor:
        """Mean per batch and gene."""
        return self.x_sums_bg / self.x_size_b[:, None] + self.x_shift_g

    @property
    def batch_var_bg(self) -> torch.Tensor:
        """Population variance per batch and gene."""
        n = self.x_size_b[:, None]
        return ((self.x_squared_sums_bg - self.x_sums_bg**2 / n) / n).clamp(min=0)

    def to_dataframe(self) -> pd.DataFrame:
        """``var_names_g, mean_g, var_g, std_g`` as a DataFrame."""
        return pd.DataFrame(
            {
                "var_names_g": self.var_names_g,
                "mean_g": self.mean_g.cpu().numpy(),
                "var_g": self.var_g.cpu().numpy(),
                "std_g": self.std_g.cpu().numpy(),
            }
        )
