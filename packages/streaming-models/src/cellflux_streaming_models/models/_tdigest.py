"""Per-gene t-digests of the nonzero values, merged across processes at the end of the epoch."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from .._dist import all_gather_objects, world
from ._base import StreamingModel
from ._digest import GeneDigests

__all__ = ["TDigest"]


class TDigest(StreamingModel):
    """Approximate quantiles of each gene's nonzero values (t-digests), in one pass.

    All genes' digests live in flat numpy arrays and are updated together: a batch's nonzero values
    are sorted once (a radix sort of gene and value keys), repeated values are counted, and the
    buffer is merged into the centroids with the ``k1`` scale of Dunning's merging digest (see
    :class:`~cellflux_streaming_models.models.GeneDigests`). Centroids of one repeated value stay
    point masses, so quantiles of counts are exact while their distinct values fit in the digest; for
    continuous values quantiles are within a fraction of a percent in rank. At the end of the epoch
    the processes' digests are gathered and merged in rank order (plain DDP works); every process
    ends with the same digests.

    Parameters
    ----------
    var_names_g
        The genes of the data.
    compression
        The digests' ``delta``: at most about ``delta`` centroids per gene; a centroid holds at most
        ``pi / delta`` of a gene's values (around the median, less towards the tails).

    Attributes
    ----------
    digests
        The :class:`~cellflux_streaming_models.models.GeneDigests`.
    """

    def __init__(self, var_names_g: Sequence[str], compression: float = 300.0) -> None:
        super().__init__(var_names_g)
        if not compression >= 20:
            raise ValueError(f"compression must be at least 20, got {compression!r}.")
        self.compression = float(compression)
        self.digests = GeneDigests(self.n_vars, self.compression)

    def reset_parameters(self) -> None:
        """Forget everything seen."""
        self.digests = GeneDigests(self.n_vars, self.compression)

    def forward(self, x_ng: torch.Tensor, var_names_g: np.ndarray) -> dict[str, torch.Tensor]:
        """Add the batch's nonzero values to the digests; returns an empty dict."""
        self.check_batch(x_ng, var_names_g)
        if x_ng.shape[0] == 0:
            return {}
        x = x_ng.detach().cpu().numpy()
        if not np.isfinite(x).all():
            raise ValueError("x_ng has NaN or infinite values.")
        self.digests.add_dense(x)
        return {}

    def on_train_epoch_end(self, epoch: int) -> None:
        """Gather every process's digests and merge them in rank order."""
        self.digests.flush()
        if world()[1] == 1:
            return
        merged = GeneDigests(self.n_vars, self.compression)
        for state in all_gather_objects(self.digests.state()):
            merged.merge(GeneDigests.from_state(self.n_vars, self.compression, state))
        self.digests = merged

    # results -------------------------------------------------------------------------------------
    def quantile(self, q: float | Sequence[float] | np.ndarray) -> torch.Tensor:
        """Quantiles of each gene's nonzero values: ``(genes,)`` for a scalar ``q``, else ``(genes, len(q))``.

        Genes without nonzero values get NaN.
        """
        return torch.from_numpy(self.digests.quantile(np.asarray(q, dtype=np.float64)))

    @property
    def median_g(self) -> torch.Tensor:
        """Median of each gene's nonzero values (NaN for genes never nonzero)."""
        return self.quantile(0.5)

    @property
    def n_nonzero_g(self) -> torch.Tensor:
        """Number of nonzero values seen per gene."""
        return torch.from_numpy(self.digests.count_g)

    def get_extra_state(self) -> Any:
        state = super().get_extra_state()
        state["digests"] = {key: torch.from_numpy(value.copy()) for key, value in self.digests.state().items()}
        return state

    def set_extra_state(self, state: Any) -> None:
        super().set_extra_state(state)
        if "digests" in state:
            arrays = {key: value.numpy() for key, value in state["digests"].items()}
            self.digests = GeneDigests.from_state(self.n_vars, self.compression, arrays)
