"""scVI's in-training validation metrics: sums and reservoir samples over the validation batches, scores at the end.

Over an epoch's validation batches the accumulator keeps the negative ELBO and reconstruction sums,
latent sums per cell type and per batch, and two bounded uniform samples (:class:`BottomKReservoir`) of
latent means with their cell-type codes: every cell goes to the classifier's training or test sample by
a fair coin keyed by the cell. At the end the sums are added over DDP processes and the samples merged,
then: ``val_elbo``, ``val_reconstruction_loss``, ``val_batch_silhouette`` (more than one batch),
``val_cell_type_top1_accuracy`` (a multinomial logistic regression trained on one sample, tested on the
other), and with an ontology ``val_ontology_spearman`` and ``val_cell_type_mean_error_distance`` (mean
ontology distance from the true type of the misclassified test cells).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch

from .._dist import all_reduce_sum
from ._reservoir import BottomKReservoir, cell_keys
from ._scvi_metrics import centroid_batch_silhouette, linear_classifier_accuracy, ontology_spearman
from ._tokenizers import cell_uniforms

__all__ = ["ScviValidation", "ontology_matrix"]

logger = logging.getLogger(__name__)

_SPLIT_STREAM, _TRAIN_STREAM, _TEST_STREAM = 101, 102, 103


def ontology_matrix(matrix: Any, categories: Sequence[str]) -> np.ndarray:
    """The ontology distances between ``categories``, in their order.

    Parameters
    ----------
    matrix
        A square ``pandas.DataFrame`` indexed (rows and columns) by cell-type ids, or the path of a
        CSV/TSV file holding one (first column: the index).
    categories
        The cell types, in code order.

    Returns
    -------
    A float64 array (categories x categories).
    """
    if isinstance(matrix, str | os.PathLike):
        path = os.fspath(matrix)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"ontology_distance_matrix file {path!r} does not exist.")
        matrix = pd.read_csv(path, index_col=0, sep="\t" if path.endswith((".tsv", ".tsv.gz")) else ",")
    if not isinstance(matrix, pd.DataFrame):
        raise TypeError(
            f"ontology_distance_matrix must be a pandas.DataFrame or a CSV path, got {type(matrix).__name__}."
        )
    index, columns = matrix.index.astype(str), matrix.columns.astype(str)
    if len(index) != len(columns) or set(index) != set(columns):
        raise ValueError("ontology_distance_matrix must be square with the same ids as index and columns.")
    if index.has_duplicates:
        raise ValueError("ontology_distance_matrix has duplicated ids.")
    wanted = [str(c) for c in categories]
    missing = [c for c in wanted if c not in set(index)]
    if missing:
        raise ValueError(
            f"The cell type categories {missing[:10]} are absent from ontology_distance_matrix "
            f"({len(missing)} of {len(wanted)} missing)."
        )
    frame = pd.DataFrame(matrix.to_numpy(), index=index, columns=columns)
    values = frame.loc[wanted, wanted].to_numpy(dtype=np.float64)
    if np.isnan(values).any() or (values < 0).any():
        raise ValueError("ontology_distance_matrix must hold non-negative distances (inf for unconnected types).")
    return values


class ScviValidation:
    """Accumulate one validation epoch of scVI and compute its metrics.

    Parameters
    ----------
    n_latent
        Latent dimensions.
    n_batch
        Number of batches.
    categories
        Cell types (``None``: no cell-type metrics).
    ontology
        Ontology distances between the categories (``None``: no ontology metrics).
    reservoir_size
        Most cells kept in each of the classifier's samples (training and test).
    seed
        Seed of the cell keys (sampling and the training/test split).
    """

    def __init__(
        self,
        n_latent: int,
        n_batch: int,
        categories: Sequence[str] | None,
        ontology: np.ndarray | None,
        reservoir_size: int,
        seed: int = 0,
    ) -> None:
        self.n_latent, self.n_batch = n_latent, n_batch
        self.n_classes = None if categories is None else len(categories)
        self.ontology = ontology
        self.seed = seed
        self.train = BottomKReservoir(reservoir_size, n_latent, seed=seed)
        self.test = BottomKReservoir(reservoir_size, n_latent, seed=seed + 1)
        self.reset()

    def reset(self) -> None:
        """Start an epoch."""
        self.sums = torch.zeros(3, dtype=torch.float64)  # negative ELBO, reconstruction loss, cells
        k = self.n_classes or 0
        self.type_sums = torch.zeros(k, self.n_latent, dtype=torch.float64)
        self.type_counts = torch.zeros(k, dtype=torch.float64)
        self.batch_sums = torch.zeros(self.n_batch, self.n_latent, dtype=torch.float64)
        self.batch_square_sums = torch.zeros(self.n_batch, dtype=torch.float64)
        self.batch_counts = torch.zeros(self.n_batch, dtype=torch.float64)
        self.train.reset()
        self.test.reset()

    def add(
        self,
        nelbo_n: torch.Tensor,
        reconstruction_n: torch.Tensor,
        z_nk: torch.Tensor,
        batch_index_n: torch.Tensor | None = None,
        cell_type_n: torch.Tensor | None = None,
        cell_index_n: torch.Tensor | None = None,
    ) -> None:
        """Add a validation batch: per-cell losses, latent means, batch and cell-type codes, cell indices."""
        z = z_nk.detach().to("cpu", torch.float64)
        n = z.shape[0]
        self.sums += torch.tensor(
            [float(nelbo_n.detach().double().sum()), float(reconstruction_n.detach().double().sum()), n],
            dtype=torch.float64,
        )
        if batch_index_n is not None and self.n_batch:
            b = torch.as_tensor(batch_index_n).reshape(-1).to("cpu", torch.long)
            self.batch_sums.index_add_(0, b, z)
            self.batch_square_sums.index_add_(0, b, (z * z).sum(1))
            self.batch_counts.index_add_(0, b, torch.ones(n, dtype=torch.float64))
        if self.n_classes is None or cell_type_n is None:
            return
        y = torch.as_tensor(cell_type_n).reshape(-1).to("cpu", torch.long)
        if y.shape[0] != n:
            raise ValueError(f"validation_cell_type_index_n has {y.shape[0]} entries for {n} cells.")
        if n and (int(y.min()) < 0 or int(y.max()) >= self.n_classes):
            raise ValueError(
                f"validation_cell_type_index_n has codes outside [0, {self.n_classes}) "
                "(the number of cell_type_categories)."
            )
        self.type_sums.index_add_(0, y, z)
        self.type_counts.index_add_(0, y, torch.ones(n, dtype=torch.float64))
        if cell_index_n is not None:
            cells = torch.as_tensor(cell_index_n).reshape(-1).cpu()
            to_test = cell_uniforms(cells, 1, seed=self.seed, stream=_SPLIT_STREAM)[:, 0] < 0.5
            keys = {
                "train": cell_keys(cells, seed=self.seed, stream=_TRAIN_STREAM),
                "test": cell_keys(cells, seed=self.seed, stream=_TEST_STREAM),
            }
        else:
            to_test = torch.rand(n, generator=self.test.generator) < 0.5
            keys = {"train": None, "test": None}
        for name, rows in (("train", ~to_test), ("test", to_test)):
            key = keys[name]
            getattr(self, name).add(z[rows], y[rows], None if key is None else key[rows])

    def compute(self) -> dict[str, float]:
        """Reduce over processes (every process must call this) and compute the epoch's metrics."""
        all_reduce_sum(
            self.sums, self.type_sums, self.type_counts, self.batch_sums, self.batch_square_sums, self.batch_counts
        )
        self.train.merge()
        self.test.merge()
        out: dict[str, float] = {}
        n = float(self.sums[2])
        if n == 0:
            return out
        out["val_elbo"] = -float(self.sums[0]) / n
        out["val_reconstruction_loss"] = float(self.sums[1]) / n
        if self.n_batch > 1:
            score = centroid_batch_silhouette(
                self.batch_sums.numpy(), self.batch_square_sums.numpy(), self.batch_counts.numpy()
            )
            if np.isfinite(score):
                out["val_batch_silhouette"] = score
        if self.n_classes is None:
            return out
        if self.ontology is not None:
            counts = self.type_counts.numpy()
            centroids = self.type_sums.numpy() / np.maximum(counts, 1)[:, None]
            rho = ontology_spearman(centroids, counts, self.ontology)
            if np.isfinite(rho):
                out["val_ontology_spearman"] = rho
        if len(self.train) >= 2 and len(self.test) >= 1:
            accuracy, predicted = linear_classifier_accuracy(
                self.train.values, self.train.labels, self.test.values, self.test.labels, self.n_classes
            )
            out["val_cell_type_top1_accuracy"] = accuracy
            wrong = predicted != self.test.labels
            if self.ontology is not None and bool(wrong.any()):
                d = self.ontology[predicted[wrong].numpy(), self.test.labels[wrong].numpy()]
                if np.isfinite(d).any():
                    out["val_cell_type_mean_error_distance"] = float(d[np.isfinite(d)].mean())
        elif self.train.seen + self.test.seen > 0:
            logger.warning("Too few validation cells with a cell type for the classifier (%d).", len(self.train))
        return out
