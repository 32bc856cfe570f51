"""Incremental PCA: a partial SVD updated batch by batch and merged hierarchically across processes."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch

from .._dist import all_gather_objects, all_reduce_sum, world
from ._base import StreamingModel
from ._covariance import CovarianceState, add_rows, gram, state_from_sums, top_eigenpairs
from ._isvd import PartialSVD, merge_partial, update_with_rows

__all__ = ["IncrementalPCA"]


class IncrementalPCA(StreamingModel):
    """Principal components of streamed cells, in one pass.

    Two algorithms, chosen by ``algorithm``:

    ``"covariance"`` (exact)
        Each batch adds its Gram matrix (a symmetric BLAS product) to float64 sums around a shift;
        at the end of the epoch the processes' sums are merged exactly (all-reduce) and the top
        eigenpairs of the covariance give the components. Exact to rounding: explained variances
        and components equal those of an in-memory PCA. Memory: one genes x genes float64 matrix
        (32 MB at 2,000 genes), per batch as fast as one truncated SVD update.
    ``"svd"`` (incremental truncated SVD)
        Each batch is merged into a partial SVD of rank ``n_components + n_oversamples``
        (:func:`~cellflux_streaming_models.models.update_with_rows`: subspace iteration warm-started at
        the current components plus ``n_oversamples`` random directions, a Rayleigh-Ritz step, Ross et
        al.'s mean correction); at the end of the epoch the processes' partial SVDs are merged
        pairwise, level by level. Memory ``O(genes x n_components)``. Every truncation drops the
        variance that lies outside the current subspace, and early subspaces (estimated from few
        cells) are noisy, so components near the noise floor have their explained variance
        underestimated, by roughly ``genes * log(cells / batch) / cells`` relative (3e-3 for the 10th
        component at 20,000 cells x 2,000 genes); oversampling does not remove this, more cells do.
    ``"auto"``
        ``"covariance"`` up to :attr:`max_genes_covariance` genes, ``"svd"`` beyond.

    Every process ends with the same result.

    Parameters
    ----------
    var_names_g
        The genes of the data.
    n_components
        Number of principal components.
    svd_lowrank_niter
        ``"svd"``: subspace iterations for the first batch (one more is added); later batches use
        one, warm-started at the current components.
    perform_mean_correction
        Centre the data (``False``: the data are taken as centred, components of the raw second moment).
    n_oversamples
        ``"svd"``: extra components carried internally (and random directions added to each update).
    seed
        ``"svd"``: seed of the random directions.
    algorithm
        ``"auto"``, ``"covariance"`` or ``"svd"``.
    """

    #: ``algorithm="auto"`` uses the exact covariance up to this many genes (128 MB of float64).
    max_genes_covariance: int = 4096

    def __init__(
        self,
        var_names_g: Sequence[str],
        n_components: int,
        svd_lowrank_niter: int = 2,
        perform_mean_correction: bool = True,
        n_oversamples: int = 10,
        seed: int = 0,
        algorithm: Literal["auto", "covariance", "svd"] = "auto",
    ) -> None:
        super().__init__(var_names_g)
        if not isinstance(n_components, int) or not 1 <= n_components <= self.n_vars:
            raise ValueError(f"n_components must be an integer in [1, {self.n_vars}], got {n_components!r}.")
        if n_oversamples < 0 or svd_lowrank_niter < 0:
            raise ValueError("n_oversamples and svd_lowrank_niter must be non-negative.")
        if algorithm not in ("auto", "covariance", "svd"):
            raise ValueError(f"algorithm must be 'auto', 'covariance' or 'svd', got {algorithm!r}.")
        if algorithm == "auto":
            algorithm = "covariance" if self.n_vars <= self.max_genes_covariance else "svd"
        self.algorithm = algorithm
        self.n_components = n_components
        self.svd_lowrank_niter = svd_lowrank_niter
        self.perform_mean_correction = perform_mean_correction
        self.n_oversamples = n_oversamples
        self.seed = seed
        g = self.n_vars
        self.rank_kept = n_components if algorithm == "covariance" else min(g, n_components + n_oversamples)
        q = self.rank_kept
        self.register_buffer("V_kg", torch.zeros(q, g, dtype=torch.float64))
        self.register_buffer("S_k", torch.zeros(q, dtype=torch.float64))
        self.register_buffer("x_mean_g", torch.zeros(g, dtype=torch.float64))
        self.register_buffer("x_size", torch.zeros((), dtype=torch.float64))
        if algorithm == "covariance":
            self.register_buffer("x_shift_g", torch.zeros(g, dtype=torch.float64))
            self.register_buffer("x_sums_g", torch.zeros(g, dtype=torch.float64))
            self.register_buffer("x_gram_gg", torch.zeros(g, g, dtype=torch.float64))
        self._generator: torch.Generator | None = None

    def reset_parameters(self) -> None:
        """Forget everything seen."""
        for buffer in self.buffers():
            buffer.zero_()
        self._generator = None

    # svd ------------------------------------------------------------------------------------------
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

    def _svd_forward(self, x_ng: torch.Tensor) -> None:
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

    def _svd_epoch_end(self) -> None:
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

    # covariance -----------------------------------------------------------------------------------
    def _covariance_forward(self, x_ng: torch.Tensor) -> None:
        first = float(self.x_size) == 0
        x = x_ng.detach()
        if self.perform_mean_correction:
            add_rows(self.x_shift_g, self.x_sums_g, self.x_gram_gg, x, set_shift=first)
        else:  # the raw second moment: no shift
            self.x_gram_gg += gram(x).to(self.x_gram_gg.device)
        self.x_size += x.shape[0]

    def _covariance_epoch_end(self) -> None:
        n = float(self.x_size)
        if self.perform_mean_correction:
            local = state_from_sums(n, self.x_shift_g, self.x_sums_g, self.x_gram_gg)
        else:  # the raw second moment, around zero
            local = CovarianceState(n, torch.zeros_like(self.x_shift_g), self.x_gram_gg.clone())
        if world()[1] > 1:
            # exact merge: total count and mean, then the summed second moments plus the between term
            n_total = self.x_size.clone()
            weighted_g = local.mean_g * n
            all_reduce_sum(n_total, weighted_g)
            mean_g = weighted_g / n_total.clamp(min=1)
            d_g = local.mean_g - mean_g if n else torch.zeros_like(mean_g)
            m2_gg = local.m2_gg + n * torch.outer(d_g, d_g)
            all_reduce_sum(m2_gg)
            local = CovarianceState(float(n_total), mean_g, m2_gg)
        # keep the merged state as shifted sums around the mean (a further epoch adds to it)
        self.x_size.fill_(local.n)
        self.x_shift_g.copy_(local.mean_g)
        self.x_sums_g.zero_()
        self.x_gram_gg.copy_(local.m2_gg)
        if local.n == 0:
            return
        values_k, V_kg = top_eigenpairs(local.m2_gg / local.n, self.n_components)
        self.S_k.copy_(torch.sqrt(values_k * local.n))
        self.V_kg.copy_(V_kg)
        self.x_mean_g.copy_(local.mean_g)

    # hooks ----------------------------------------------------------------------------------------
    def forward(self, x_ng: torch.Tensor, var_names_g: np.ndarray) -> dict[str, torch.Tensor]:
        """Add a batch to the streaming state; returns an empty dict."""
        self.check_batch(x_ng, var_names_g)
        if x_ng.shape[0] == 0:
            return {}
        if not torch.isfinite(x_ng).all():
            raise ValueError("x_ng has NaN or infinite values.")
        if self.algorithm == "covariance":
            self._covariance_forward(x_ng)
        else:
            self._svd_forward(x_ng)
        return {}

    def on_train_epoch_end(self, epoch: int) -> None:
        """Reduce across processes and compute the components (every process gets the result)."""
        if self.algorithm == "covariance":
            self._covariance_epoch_end()
        else:
            self._svd_epoch_end()

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
