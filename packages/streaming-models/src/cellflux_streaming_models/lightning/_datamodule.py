"""The Lightning data module over a shard collection."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import lightning.pytorch as pl
import numpy as np
from torch.utils.data import DataLoader

from ..data import ShardCollection, ShardDataset

__all__ = ["StreamDataModule"]


class StreamDataModule(pl.LightningDataModule):
    """Shards in, batches out: training (shuffled if asked) and prediction (in order, with cell names).

    Parameters
    ----------
    paths
        Shard files or globs.
    batch_size
        Cells per batch.
    shuffle
        Shuffle shards and cells each epoch (training only).
    seed
        Seed of the shuffling.
    num_workers
        DataLoader worker processes.
    obs_columns
        Batch key to ``obs`` column (e.g. ``{"batch_index_n": "sample"}``).
    genes
        Gene subset applied while reading.
    layer
        Stream ``layers[layer]`` instead of ``X``.
    sparse
        Deliver ``x_ng`` as ``torch.sparse_csr`` tensors (see
        :class:`~cellflux_streaming_models.data.ShardDataset`), for models that take them
        (``LogisticRegression``).
    """

    def __init__(
        self,
        paths: str | Sequence[str],
        batch_size: int = 1000,
        shuffle: bool = False,
        seed: int = 0,
        num_workers: int = 0,
        obs_columns: Mapping[str, str] | None = None,
        genes: Sequence[str] | None = None,
        layer: str | None = None,
        sparse: bool = False,
    ) -> None:
        super().__init__()
        self.paths = [os.fspath(p) for p in ([paths] if isinstance(paths, (str, os.PathLike)) else paths)]
        self.collection = ShardCollection(self.paths, obs_columns=obs_columns, genes=genes, layer=layer)
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.num_workers = num_workers
        self.sparse = sparse
        self.batches_consumed = 0
        self._resume: dict[str, Any] | None = None

    @property
    def var_names_g(self) -> np.ndarray:
        """The genes of every batch."""
        return self.collection.var_names

    def train_dataloader(self) -> DataLoader:
        dataset = ShardDataset(
            self.collection, batch_size=self.batch_size, shuffle=self.shuffle, seed=self.seed, sparse=self.sparse
        )
        if self._resume is not None:
            dataset.load_state_dict(self._resume)
            self._resume = None
        return self._loader(dataset)

    def predict_dataloader(self) -> DataLoader:
        dataset = ShardDataset(
            self.collection, batch_size=self.batch_size, shuffle=False, obs_names=True, sparse=self.sparse
        )
        return self._loader(dataset)

    def _loader(self, dataset: ShardDataset) -> DataLoader:
        return DataLoader(
            dataset,
            batch_size=None,
            num_workers=self.num_workers,
            persistent_workers=False,
            multiprocessing_context=None,
        )

    def state_dict(self) -> dict[str, Any]:
        epoch = self.trainer.current_epoch if self.trainer is not None else 0
        return {"epoch": epoch, "seed": self.seed, "batches_consumed": self.batches_consumed}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._resume = dict(state_dict)
        self.batches_consumed = int(state_dict["batches_consumed"])
