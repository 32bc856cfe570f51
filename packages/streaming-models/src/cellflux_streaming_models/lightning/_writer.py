"""Writing ``predict`` outputs batch by batch: one CSV per shard, nothing kept in memory."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from lightning.pytorch.callbacks import Callback

from .._keys import BatchKey

__all__ = ["ShardCSVWriter"]


class ShardCSVWriter(Callback):
    """Append each predicted batch's rows to ``<output_dir>/<shard stem>.csv``, then forget them.

    Only what is written is read from a batch's output: ``x_ng`` (cells x outputs), ``var_names_g``
    (the column names), ``shard_index_n`` and ``obs_names_n`` (the index). Files are written as
    ``<stem>.csv.partial`` and renamed when prediction ends, so a failed run leaves no truncated
    output under the final names. Use with ``trainer.predict(..., return_predictions=False)`` and an
    unshuffled loader (rows are written in the order they arrive). A plain callback on
    ``on_predict_batch_end`` (Lightning's ``BasePredictionWriter`` would track batch indices, which an
    iterable dataset does not have).

    Under DDP each process reads its own cells, and the cells of one shard may be split between
    processes: each process writes its part of a shard to ``<stem>.csv.rank<r>.partial``; when all have
    finished, rank 0 joins the parts of each shard in the shard's cell order (by ``obs_names``; in rank
    order if the shard's names are not unique) into ``<stem>.csv`` and deletes them. The files are the
    same as a one-process run's.

    Parameters
    ----------
    output_dir
        The folder of the output files.
    shard_paths
        The shards, in the order of ``shard_index_n`` (by default those of the trainer's data module).
    """

    def __init__(
        self, output_dir: str | os.PathLike[str], shard_paths: Sequence[str | os.PathLike[str]] | None = None
    ) -> None:
        super().__init__()
        self.output_dir = Path(output_dir)
        self.shard_paths = None if shard_paths is None else [Path(p) for p in shard_paths]
        self.targets: list[Path] = []
        self.started: set[int] = set()
        self.batches_written = 0
        self.rows_written = 0
        self.rank, self.world_size = 0, 1

    def on_predict_start(self, trainer: Any, pl_module: Any) -> None:
        """Name the output files after the shards."""
        paths = self.shard_paths
        if paths is None:
            collection = getattr(getattr(trainer, "datamodule", None), "collection", None)
            if collection is None:
                raise ValueError("ShardCSVWriter needs shard_paths, or a StreamDataModule to take them from.")
            paths = list(collection.paths)
        self.shard_paths = [Path(p) for p in paths]
        self.targets = [self.output_dir / f"{p.stem}.csv" for p in self.shard_paths]
        self.started, self.batches_written, self.rows_written = set(), 0, 0
        self.rank, self.world_size = int(trainer.global_rank), int(trainer.world_size)
        if self.world_size > 1:  # a failed earlier run may have left this rank's parts: they must not be joined
            for shard in range(len(self.targets)):
                for stale in (self._piece(shard, self.rank), self._partial(shard)):
                    stale.unlink(missing_ok=True)

    def _piece(self, shard: int, rank: int) -> Path:
        """The finished part of a shard that one rank wrote under DDP."""
        return self.targets[shard].with_name(f"{self.targets[shard].name}.rank{rank}")

    def _partial(self, shard: int) -> Path:
        if self.world_size == 1:
            return self.targets[shard].with_name(self.targets[shard].name + ".partial")
        return self._piece(shard, self.rank).with_name(self._piece(shard, self.rank).name + ".partial")

    def on_predict_batch_end(
        self, trainer: Any, pl_module: Any, prediction: Any, batch: Any, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        """Append the batch's rows to their shards' files."""
        values = prediction[BatchKey.X_NG.value]
        values = values.detach().cpu().numpy() if isinstance(values, torch.Tensor) else np.asarray(values)
        shard = torch.as_tensor(prediction[BatchKey.SHARD_INDEX_N.value]).cpu().numpy()
        names = np.asarray(prediction[BatchKey.OBS_NAMES_N.value])
        columns = [str(c) for c in prediction[BatchKey.VAR_NAMES_G.value]]
        self.output_dir.mkdir(parents=True, exist_ok=True)
        for s in np.unique(shard):  # a batch may straddle two shards
            rows = shard == s
            frame = pd.DataFrame(values[rows], index=pd.Index(names[rows], name="obs_names"), columns=columns)
            first = int(s) not in self.started
            frame.to_csv(self._partial(int(s)), mode="w" if first else "a", header=first)
            self.started.add(int(s))
        self.batches_written += 1
        self.rows_written += len(shard)

    def on_predict_end(self, trainer: Any, pl_module: Any) -> None:
        """Give the finished files their final names (under DDP: join the processes' parts first)."""
        if self.world_size == 1:
            for shard in sorted(self.started):
                self._partial(shard).replace(self.targets[shard])
            return
        for shard in sorted(self.started):
            self._partial(shard).replace(self._piece(shard, self.rank))
        trainer.strategy.barrier("ShardCSVWriter.parts_written")
        if trainer.is_global_zero:
            for shard in range(len(self.targets)):
                self._join(shard)
        trainer.strategy.barrier("ShardCSVWriter.joined")

    def _join(self, shard: int) -> None:
        """Join the ranks' parts of one shard into its final file, in the shard's cell order."""
        from ..data._h5 import ShardFile

        pieces = [self._piece(shard, r) for r in range(self.world_size) if self._piece(shard, r).exists()]
        if not pieces:
            return
        frames = [pd.read_csv(p, index_col=0, dtype={"obs_names": str}, float_precision="round_trip") for p in pieces]
        frame = pd.concat(frames)
        shard_file = ShardFile(self.shard_paths[shard])
        try:
            names = pd.Index(shard_file.obs_names().astype(str))
        finally:
            shard_file.close()
        if names.is_unique and frame.index.is_unique:
            frame = frame.loc[names[names.isin(frame.index)]].rename_axis(frames[0].index.name)
        partial = self.targets[shard].with_name(self.targets[shard].name + ".partial")
        frame.to_csv(partial)
        partial.replace(self.targets[shard])
        for piece in pieces:
            piece.unlink()
