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


def _as_list(paths: str | os.PathLike[str] | Sequence[str]) -> list[str]:
    return [os.fspath(p) for p in ([paths] if isinstance(paths, (str, os.PathLike)) else paths)]


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
    val_paths
        Validation shard files or globs (the same genes; ``obs_columns`` are read from them too, coded
        with the categories of the training and validation shards together). Lightning then runs the
        model's validation (e.g. scVI's metrics) every ``trainer.check_val_every_n_epoch`` epochs.
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
        val_paths: str | Sequence[str] | None = None,
    ) -> None:
        super().__init__()
        self.paths = _as_list(paths)
        self.collection = ShardCollection(self.paths, obs_columns=obs_columns, genes=genes, layer=layer)
        self.val_paths = None if val_paths is None else _as_list(val_paths)
        self.val_collection: ShardCollection | None = None
        if self.val_paths is not None:
            options = {"obs_columns": obs_columns, "genes": genes, "layer": layer}
            schema = self.collection.var_names_schema
            val = ShardCollection(self.val_paths, var_names=schema, **options)
            joint = {
                column: np.asarray(sorted(set(self.collection.categories.get(column, ())) | set(codes)), dtype=object)
                for column, codes in val.categories.items()
            }
            joint.update({c: v for c, v in self.collection.categories.items() if c not in joint})
            if any(not np.array_equal(self.collection.categories.get(c, ()), v) for c, v in joint.items()):
                self.collection = ShardCollection(self.paths, categories=joint, **options)
            if any(not np.array_equal(val.categories.get(c, ()), v) for c, v in joint.items()):
                val = ShardCollection(self.val_paths, var_names=schema, categories=joint, **options)
            self.val_collection = val
            # Lightning validates only when the data module overrides val_dataloader: only with val_paths
            self.val_dataloader = self._val_dataloader
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

    def _val_dataloader(self) -> DataLoader:
        assert self.val_collection is not None
        return self._loader(
            ShardDataset(self.val_collection, batch_size=self.batch_size, shuffle=False, sparse=self.sparse)
        )

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
