"""Incremental PCA: a partial SVD updated batch by batch and merged hierarchically across processes."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from .._dist import all_gather_objects, world
from ._base import StreamingModel
from ._isvd import PartialSVD, merge_partial, update_with_rows

__all__ = ["IncrementalPCA"]


class IncrementalPCA(StreamingModel):
    """Principal components of streamed cells, in one pass.

    Each batch is merged into a partial SVD (:func:`~cellflux_streaming_models.models.update_with_rows`:
    subspace iteration warm-started at the current components plus ``n_oversamples`` random
    directions, then a Rayleigh-Ritz step on the stacked matrix, with Ross et al.'s mean correction).
    At the end of the epoch the processes' partial SVDs are merged pairwise, level by level, and
    every process ends with the same result.

    Parameters
    ----------
    var_names_g
        The genes of the data.
    n_components
        Number of principal components.
    svd_lowrank_niter
        Subspace iterations for the first batch (one more is added); later batches use one,
        warm-started at the current components.
    perform_mean_correction
        Centre the data (``False``: the data are taken as centred).
    n_oversamples
        Extra components carried internally (and random directions added to each update) so the
        leading ``n_components`` stay accurate.
    seed
        Seed of the random directions.
    """

    def __init__(
        self,
        var_names_g: Sequence[str],
        n_components: int,
        svd_lowrank_niter: int = 2,
        perform_mean_correction: bool = True,
        n_oversamples: int = 10,
        seed: int = 0,
    ) -> None:
        super().__init__(var_names_g)
        if not isinstance(n_components, int) or not 1 <= n_components <= self.n_vars:
            raise ValueError(f"n_components must be an integer in [1, {self.n_vars}], got {n_components!r}.")
        if n_oversamples < 0 or svd_lowrank_niter < 0:
            raise ValueError("n_oversamples and svd_lowrank_niter must be non-negative.")
        self.n_components = n_components
        self.svd_lowrank_niter = svd_lowrank_niter
        self.perform_mean_correction = perform_mean_correction
        self.n_oversamples = n_oversamples
        self.seed = seed
        self.rank_kept = min(self.n_vars, n_components + n_oversamples)
        q, g = self.rank_kept, self.n_vars
        self.register_buffer("V_kg", torch.zeros(q, g, dtype=torch.float64))
        self.register_buffer("S_k", torch.zeros(q, dtype=torch.float64))
        self.register_buffer("x_mean_g", torch.zeros(g, dtype=torch.float64))
        self.register_buffer("x_size", torch.zeros((), dtype=torch.float64))
        self._generator: torch.Generator | None = None

    def reset_parameters(self) -> None:
        """Forget everything seen."""
        for buffer in (self.V_kg, self.S_k, self.x_mean_g, self.x_size):
            buffer.zero_()
        self._generator = None

    def _state(self) -> PartialSVD:
        n = float(self.x_size)
        kept = int((self.S_k > 0).sum()) if n else 0
        return PartialSVD(self.S_k[:kept], self.V_kg[:kept], self.x_mean_g, n)

    def _store(self, state: PartialSVD) -> None:
        kept = state.S_q.shape[0]
        self.S_k.zero_()
        self.V_kg.zero_()
        self.S_k[:kept] = state.S_q
        self.V_kg[:kept] = state.V_qg
        self.x_mean_g.copy_(state.mean_g)
        self.x_size.fill_(state.n)

    def forward(self, x_ng: torch.Tensor, var_names_g: np.ndarray) -> dict[str, torch.Tensor]:
        """Merge a batch into the partial SVD; returns an empty dict."""
        self.check_batch(x_ng, var_names_g)
        if x_ng.shape[0] == 0:
            return {}
        if self._generator is None:
            rank = world()[0]
            self._generator = torch.Generator().manual_seed(self.seed * 1_000_003 + rank)
        state = self._state()
        new = update_with_rows(
            state if state.n else None,
            x_ng.detach().cpu(),
            self.rank_kept,
            n_oversamples=self.n_oversamples,
            n_iter=1 if state.n else self.svd_lowrank_niter + 1,
            generator=self._generator,
            mean_correction=self.perform_mean_correction,
        )
        self._store(new)
        return {}

    def on_train_epoch_end(self, epoch: int) -> None:
        """Merge the processes' partial SVDs pairwise, level by level (every process gets the result)."""
        if world()[1] == 1:
            return
        states = all_gather_objects(self._state())
        while len(states) > 1:
            merged = [
                merge_partial(states[i], states[i + 1], self.rank_kept, mean_correction=self.perform_mean_correction)
                for i in range(0, len(states) - 1, 2)
            ]
            if len(states) % 2:
                merged.append(states[-1])
            states = merged
        self._store(states[0])

    # results -------------------------------------------------------------------------------------
    @property
    def components_kg(self) -> torch.Tensor:
        """Principal axes (``n_components`` x genes), by decreasing explained variance."""
        return self.V_kg[: self.n_components]

    @property
    def explained_variance_k(self) -> torch.Tensor:
        """Variance along each component (``x_size`` degrees of freedom)."""
        return self.S_k[: self.n_components] ** 2 / self.x_size

    @property
    def mean_g(self) -> torch.Tensor:
        """The mean of the data."""
        return self.x_mean_g

    def predict(self, x_ng: torch.Tensor, var_names_g: np.ndarray) -> dict[str, torch.Tensor | np.ndarray]:
        """Embed cells: ``{"x_ng": (x - mean) @ components.T, "var_names_g": ["PC1", ...]}``."""
        self.check_batch(x_ng, var_names_g)
        z_nk = (x_ng.to(torch.float64) - self.x_mean_g) @ self.components_kg.T
        names = np.array([f"PC{i + 1}" for i in range(self.n_components)], dtype=object)
        return {"x_ng": z_nk.to(x_ng.dtype), "var_names_g": names}
