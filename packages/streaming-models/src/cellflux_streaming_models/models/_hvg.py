"""Seurat v3 highly variable genes in two streamed epochs, scanpy-compatible."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from typing import Literal

import numpy as np
import pandas as pd
import torch

from .._dist import all_reduce_sum, world
from ._base import StreamingModel
from ._onepass import batch_indices

__all__ = ["HVGSeuratV3", "fit_loess", "rank_seurat_v3"]

logger = logging.getLogger(__name__)


def fit_loess(x: np.ndarray, y: np.ndarray, span: float, seed: int = 0) -> np.ndarray:
    """Fitted values of a degree-2 LOESS of ``y`` on ``x`` (scikit-misc, as scanpy), jittering ``x`` on failure."""
    from skmisc.loess import loess

    rng = np.random.default_rng(seed)
    jitter = 0.0
    while True:
        x_fit = x if jitter == 0 else x + rng.uniform(-jitter, jitter, size=x.shape[0])
        try:
            model = loess(x_fit, y, span=span, degree=2)
            model.fit()
            return np.asarray(model.outputs.fitted_values)
        except ValueError:
            jitter = 1e-18 if jitter == 0 else jitter * 10
            if jitter > 1e-6:
                raise


def rank_seurat_v3(
    norm_var_bg: np.ndarray, n_top_genes: int, flavor: str, n_batch_minimum: int = 1
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Rank genes from per-batch normalised variances as scanpy does.

    Returns
    -------
    ``highly_variable_nbatches``, ``highly_variable_rank`` (median over batches of ranks below
    ``n_top_genes``), ``variances_norm`` (mean over batches) and the boolean selection.
    """
    ranks = np.argsort(np.argsort(-norm_var_bg, axis=1, kind="stable"), axis=1, kind="stable").astype(np.float32)
    nbatches = (ranks < n_top_genes).sum(axis=0).astype(int)
    ranks[ranks >= n_top_genes] = np.nan
    median = np.ma.median(np.ma.masked_invalid(ranks), axis=0).filled(np.nan)
    variances_norm = norm_var_bg.mean(axis=0)
    rank_key = np.where(np.isnan(median), np.inf, median)
    order = np.lexsort((-nbatches, rank_key)) if flavor == "seurat_v3" else np.lexsort((rank_key, -nbatches))
    eligible = order[nbatches[order] >= n_batch_minimum]
    selected = np.zeros(norm_var_bg.shape[1], dtype=bool)
    selected[eligible[:n_top_genes]] = True
    return nbatches, median, variances_norm, selected


class HVGSeuratV3(StreamingModel):
    """Highly variable genes by Seurat v3's variance-stabilising method, streamed in two epochs.

    Epoch 0 accumulates per-batch means and variances; between the epochs a LOESS of
    ``log10(var)`` on ``log10(mean)`` per batch gives a regularised standard deviation and a clip
    value per gene; epoch 1 accumulates the clipped sums; at its end genes are ranked as
    ``scanpy.pp.highly_variable_genes(flavor="seurat_v3"|"seurat_v3_paper")`` does.

    Parameters
    ----------
    var_names_g
        The genes of the data (raw counts).
    n_top_genes
        Number of genes to select.
    n_batch
        Number of batches (``batch_index_n`` codes).
    flavor
        ``"seurat_v3"`` ranks by median rank first, ``"seurat_v3_paper"`` by the number of batches
        in which a gene is highly variable first.
    use_batch_key
        Expect ``batch_index_n`` in every batch.
    span
        LOESS span.
    output_path
        Write :attr:`hvg_df` to this CSV after training (rank 0).
    batch_n_cell_minimum
        Batches with fewer cells are left out of the ranking.
    n_batch_minimum
        Genes must be highly variable in at least this many batches to be selected.

    Attributes
    ----------
    hvg_df
        After epoch 1: ``means``, ``variances``, ``highly_variable_rank``, ``variances_norm``,
        ``highly_variable`` (and ``highly_variable_nbatches`` with batches), indexed by gene.
    """

    n_epochs = 2

    def __init__(
        self,
        var_names_g: Sequence[str],
        n_top_genes: int,
        n_batch: int = 1,
        flavor: Literal["seurat_v3", "seurat_v3_paper"] = "seurat_v3",
        use_batch_key: bool = False,
        span: float = 0.3,
        output_path: str | None = None,
        batch_n_cell_minimum: int = 2,
        n_batch_minimum: int = 1,
    ) -> None:
        super().__init__(var_names_g)
        if flavor not in ("seurat_v3", "seurat_v3_paper"):
            raise ValueError(f"flavor must be 'seurat_v3' or 'seurat_v3_paper', got {flavor!r}.")
        if not isinstance(n_top_genes, int) or not 1 <= n_top_genes <= self.n_vars:
            raise ValueError(f"n_top_genes must be an integer in [1, {self.n_vars}], got {n_top_genes!r}.")
        if use_batch_key and n_batch < 2:
            raise ValueError("use_batch_key=True needs n_batch >= 2 (and batch_index_n in the data's obs_columns).")
        if n_batch_minimum > n_batch:
            raise ValueError(f"n_batch_minimum ({n_batch_minimum}) cannot exceed n_batch ({n_batch}).")
        if output_path is not None and not str(output_path).endswith(".csv"):
            raise ValueError(f"output_path must end with .csv, got {output_path!r}.")
        self.n_top_genes = n_top_genes
        self.n_batch = n_batch
        self.flavor = flavor
        self.use_batch_key = use_batch_key
        self.span = span
        self.output_path = output_path
        self.batch_n_cell_minimum = batch_n_cell_minimum
        self.n_batch_minimum = n_batch_minimum
        b, g = n_batch, self.n_vars
        for name in (
            "x_sums_bg",
            "x_squared_sums_bg",
            "clip_val_bg",
            "reg_std_bg",
            "counts_sum_bg",
            "sq_counts_sum_bg",
        ):
            self.register_buffer(name, torch.zeros(b, g, dtype=torch.float64))
        self.register_buffer("x_size_b", torch.zeros(b, dtype=torch.float64))
        self.hvg_df: pd.DataFrame | None = None
        self._warned = False

    def reset_parameters(self) -> None:
        """Forget everything seen."""
        for buffer in self.buffers():
            buffer.zero_()
        self.hvg_df = None

    def forward(
        self, x_ng: torch.Tensor, var_names_g: np.ndarray, batch_index_n: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        """Accumulate moments (epoch 0) or clipped sums (epoch 1); returns an empty dict."""
        self.check_batch(x_ng, var_names_g)
        if self.use_batch_key and batch_index_n is None:
            raise ValueError("use_batch_key=True but the batch has no batch_index_n; add it to the data's obs_columns.")
        n = x_ng.shape[0]
        if n == 0:
            return {}
        index = batch_indices(batch_index_n if self.use_batch_key else None, n, self.n_batch, x_ng.device)
        x = x_ng.to(torch.float64)
        if self.current_epoch == 0:
            if not self._warned and bool((x != torch.round(x)).any() or (x < 0).any()):
                warnings.warn(
                    "HVGSeuratV3 expects raw counts, but non-integer or negative values were found.",
                    UserWarning,
                    stacklevel=2,
                )
                self._warned = True
            self._add(self.x_sums_bg, self.x_squared_sums_bg, x, index)
            self.x_size_b += torch.bincount(index, minlength=self.n_batch).to(torch.float64)
        elif self.current_epoch == 1:
            clip = self.clip_val_bg[0] if self.n_batch == 1 else self.clip_val_bg[index]
            self._add(self.counts_sum_bg, self.sq_counts_sum_bg, torch.minimum(x, clip), index)
        else:
            raise RuntimeError(f"HVGSeuratV3 runs two epochs; got epoch {self.current_epoch} (set max_epochs=2).")
        return {}

    def _add(self, sums: torch.Tensor, squares: torch.Tensor, x: torch.Tensor, index: torch.Tensor) -> None:
        if self.n_batch == 1:
            sums[0] += x.sum(dim=0)
            squares[0] += torch.einsum("ng,ng->g", x, x)
        else:
            sums.index_add_(0, index, x)
            squares.index_add_(0, index, x * x)

    def on_train_epoch_end(self, epoch: int) -> None:
        """Reduce across processes; after epoch 0 fit the LOESS, after epoch 1 rank the genes."""
        if epoch == 0:
            all_reduce_sum(self.x_sums_bg, self.x_squared_sums_bg, self.x_size_b)
            self._fit_clip_values()
        elif epoch == 1:
            all_reduce_sum(self.counts_sum_bg, self.sq_counts_sum_bg)
            self.hvg_df = self.compute_hvg_df()

    def _moments(self, b: int) -> tuple[float, np.ndarray, np.ndarray]:
        n = float(self.x_size_b[b])
        sums = self.x_sums_bg[b].cpu().numpy()
        mean = sums / n
        var = (self.x_squared_sums_bg[b].cpu().numpy() - sums * mean) / (n - 1)
        return n, mean, np.maximum(var, 0)

    def _fit_clip_values(self) -> None:
        self.clip_val_bg.fill_(float("inf"))
        for b in range(self.n_batch):
            if float(self.x_size_b[b]) < self.batch_n_cell_minimum:
                continue
            n, mean, var = self._moments(b)
            not_const = var > 0
            estimated = np.zeros(self.n_vars)
            if not_const.any():
                estimated[not_const] = fit_loess(np.log10(mean[not_const]), np.log10(var[not_const]), self.span)
            reg_std = np.sqrt(10**estimated)
            self.reg_std_bg[b] = torch.from_numpy(reg_std)
            self.clip_val_bg[b] = torch.from_numpy(reg_std * np.sqrt(n) + mean)

    def compute_hvg_df(self) -> pd.DataFrame:
        """The scanpy-compatible result table (from the reduced state)."""
        valid = [b for b in range(self.n_batch) if float(self.x_size_b[b]) >= self.batch_n_cell_minimum]
        if not valid:
            raise ValueError(f"No batch has at least batch_n_cell_minimum={self.batch_n_cell_minimum} cells.")
        norm = np.zeros((len(valid), self.n_vars))
        for i, b in enumerate(valid):
            n, mean, _ = self._moments(b)
            reg_std = self.reg_std_bg[b].cpu().numpy()
            sums = self.counts_sum_bg[b].cpu().numpy()
            squares = self.sq_counts_sum_bg[b].cpu().numpy()
            with np.errstate(divide="ignore", invalid="ignore"):
                norm[i] = (n * mean**2 + squares - 2 * sums * mean) / ((n - 1) * reg_std**2)
        norm[np.isnan(norm)] = 0.0
        nbatches, median, variances_norm, selected = rank_seurat_v3(
            norm, self.n_top_genes, self.flavor, self.n_batch_minimum
        )
        n_all = float(self.x_size_b.sum())
        sums_all = self.x_sums_bg.sum(0).cpu().numpy()
        means = sums_all / n_all
        variances = (self.x_squared_sums_bg.sum(0).cpu().numpy() - sums_all * means) / (n_all - 1)
        df = pd.DataFrame(
            {
                "means": means,
                "variances": variances,
                "highly_variable_rank": median,
                "variances_norm": variances_norm,
                "highly_variable": selected,
            },
            index=pd.Index(self.var_names_g, name="gene"),
        )
        if self.use_batch_key:
            df.insert(2, "highly_variable_nbatches", nbatches)
        return df

    def on_train_end(self) -> None:
        """Write :attr:`hvg_df` to ``output_path`` (rank 0)."""
        if self.output_path is not None and self.hvg_df is not None and world()[0] == 0:
            self.hvg_df.to_csv(self.output_path)
