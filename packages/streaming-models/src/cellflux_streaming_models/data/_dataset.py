"""The iterable dataset: contiguous reads per shard, one densification per batch, dict batches."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from scipy import sparse
from torch.utils.data import IterableDataset, get_worker_info

from .._keys import BatchKey
from .._sparse import csr_tensor
from ._collection import ShardCollection
from ._plan import EpochPlan, batches_per_worker_consumed

__all__ = ["ShardDataset", "distributed_context"]

logger = logging.getLogger(__name__)


def distributed_context() -> tuple[int, int]:
    """(rank, world size) of the default process group, or (0, 1) without one."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


class _Block:
    """Rows ``lo:hi`` of one shard held in memory, with that shard's obs values."""

    def __init__(
        self,
        shard: int,
        lo: int,
        x: sparse.csr_matrix | np.ndarray,
        obs: dict[str, np.ndarray],
        names: np.ndarray | None,
    ) -> None:
        self.shard, self.lo, self.x, self.obs, self.names = shard, lo, x, obs, names


class ShardDataset(IterableDataset):
    """Batches of cells from a :class:`ShardCollection`, each cell exactly once per epoch.

    The epoch's order is fixed by ``seed`` and the epoch number (:meth:`set_epoch`); cells are split
    across DDP ranks and DataLoader workers (see :class:`~cellflux_streaming_models.data.EpochPlan`).
    Each worker reads the rows it needs from a shard in one contiguous block and densifies each batch
    once, in numpy. Use it with ``DataLoader(dataset, batch_size=None)``.

    Parameters
    ----------
    collection
        The shards.
    batch_size
        Cells per batch.
    shuffle
        Shuffle shards and cells within shards, differently every epoch.
    seed
        Seed of the shuffling.
    dtype
        dtype of ``x_ng``.
    obs_names
        Also deliver ``obs_names_n`` (a numpy array of strings).
    sparse
        Deliver ``x_ng`` as a ``torch.sparse_csr`` tensor (the shard's own CSR rows, never densified)
        instead of a dense tensor. ``NormalizeTotal`` and ``Log1p`` keep it sparse and
        :class:`~cellflux_streaming_models.models.LogisticRegression` multiplies it sparsely; other
        transforms and models need dense input. With DataLoader workers, torch warns once (a
        ``UserWarning`` that its CSR layout is "beta") when it rebuilds the tensors in the main process.
    rank, world_size
        Override the DDP context (by default read from :mod:`torch.distributed` in the main process;
        DataLoader workers, whatever their start method, use the main process's).

    Notes
    -----
    Each batch is a dict with ``x_ng`` (cells x genes tensor), ``var_names_g`` (numpy array),
    ``cell_index_n`` (global cell index), ``shard_index_n`` and the collection's ``obs_columns``.
    """

    def __init__(
        self,
        collection: ShardCollection,
        *,
        batch_size: int = 1000,
        shuffle: bool = False,
        seed: int = 0,
        dtype: torch.dtype = torch.float32,
        obs_names: bool = False,
        sparse: bool = False,
        rank: int | None = None,
        world_size: int | None = None,
    ) -> None:
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}.")
        self.collection = collection
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = int(seed)
        self.dtype = dtype
        self.obs_names = obs_names
        self.sparse = bool(sparse)
        self.rank = rank
        self.world_size = world_size
        self.epoch = 0
        # the (rank, world size) of the main process, captured when the dataset is pickled for
        # DataLoader workers: a worker started with "spawn" or "forkserver" has no process group
        self._main_context: tuple[int, int] | None = None
        self._resume: tuple[int, int] | None = None
        self._np_dtype = torch.empty((), dtype=dtype).numpy().dtype

    # -- epochs and state ---------------------------------------------------------------------------
    def set_epoch(self, epoch: int) -> None:
        """Choose the epoch whose order is iterated next."""
        self.epoch = int(epoch)

    def plan(self, epoch: int | None = None) -> EpochPlan:
        """The :class:`EpochPlan` of an epoch (by default the current one)."""
        return EpochPlan(
            self.collection.n_obs_per_shard,
            self.batch_size,
            self.shuffle,
            self.seed,
            self.epoch if epoch is None else epoch,
        )

    def state_dict(self, batches_consumed: int = 0) -> dict[str, Any]:
        """What a stopped run needs to resume: epoch, seed and the batches the loader had returned."""
        return {"epoch": self.epoch, "seed": self.seed, "batches_consumed": int(batches_consumed)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Resume: the next iteration continues the stored epoch after its consumed batches."""
        if int(state["seed"]) != self.seed:
            raise ValueError(f"The state was saved with seed {state['seed']}, this dataset has seed {self.seed}.")
        self.epoch = int(state["epoch"])
        self._resume = (self.epoch, int(state["batches_consumed"]))

    def __getstate__(self) -> dict[str, Any]:
        """The dataset's attributes, with the main process's DDP rank and world size.

        DataLoader workers started with ``spawn`` or ``forkserver`` receive the dataset pickled in
        the main process and have no process group of their own: they use the captured context.
        """
        state = self.__dict__.copy()
        if get_worker_info() is None:
            state["_main_context"] = distributed_context()
        return state

    def _distributed_context(self) -> tuple[int, int]:
        """(rank, world size): the process group's, or in a worker without one the main process's."""
        if get_worker_info() is None:
            return distributed_context()
        if torch.distributed.is_available() and torch.distributed.is_initialized():  # a forked worker
            return distributed_context()
        captured = getattr(self, "_main_context", None)
        return (0, 1) if captured is None else captured

    def _context(self) -> tuple[int, int, int, int]:
        rank, world_size = self._distributed_context()
        rank = rank if self.rank is None else self.rank
        world_size = world_size if self.world_size is None else self.world_size
        info = get_worker_info()
        worker, num_workers = (0, 1) if info is None else (info.id, info.num_workers)
        return rank, world_size, worker, num_workers

    def _my_batches(self) -> tuple[EpochPlan, list[tuple[int, int]]]:
        rank, world_size, worker, num_workers = self._context()
        plan = self.plan()
        batches = plan.replica_batches(rank, world_size, worker, num_workers)
        if self._resume is not None and self._resume[0] == self.epoch:
            counts = [len(plan.replica_batches(rank, world_size, w, num_workers)) for w in range(num_workers)]
            skip = batches_per_worker_consumed(counts, self._resume[1])[worker]
            batches = batches[skip:]
        return plan, batches

    def n_batches(self) -> int:
        """Number of batches this rank yields in an epoch (over all its workers)."""
        rank, world_size, _, _ = self._context()
        return len(self.plan().rank_batches(rank, world_size))

    # -- iteration ---------------------------------------------------------------------------------
    def __iter__(self) -> Iterator[dict[str, Any]]:
        plan, batches = self._my_batches()
        self._resume = None
        if not batches:
            return
        order = plan.shard_order
        seq_offsets = plan.sequence_offsets
        first, last = batches[0][0], batches[-1][1]
        # for each visited shard that this replica touches: the local positions it needs
        j_first = int(np.searchsorted(seq_offsets, first, side="right") - 1)
        j_last = int(np.searchsorted(seq_offsets, last - 1, side="right") - 1)
        block: _Block | None = None
        cell_orders: dict[int, np.ndarray] = {}
        var_names = self.collection.var_names
        for start, stop in batches:
            parts = []
            j = int(np.searchsorted(seq_offsets, start, side="right") - 1)
            pos = start
            while pos < stop:
                shard = int(order[j])
                seg_stop = min(stop, int(seq_offsets[j + 1]))
                local = slice(pos - int(seq_offsets[j]), seg_stop - int(seq_offsets[j]))
                if shard not in cell_orders:
                    cell_orders = {shard: plan.cell_order(shard)}
                rows = cell_orders[shard][local]
                if block is None or block.shard != shard:
                    block = self._load(plan, shard, j, first, last, seq_offsets, j_first, j_last, cell_orders[shard])
                parts.append((block, rows))
                pos = seg_stop
                j += 1
            yield self._assemble(parts, var_names)

    def _load(self, plan, shard, j, first, last, seq_offsets, j_first, j_last, cell_order) -> _Block:
        """Read the rows of ``shard`` this replica needs, in one contiguous block."""
        lo_pos = max(first, int(seq_offsets[j])) - int(seq_offsets[j])
        hi_pos = min(last, int(seq_offsets[j + 1])) - int(seq_offsets[j])
        needed = cell_order[lo_pos:hi_pos]
        lo, hi = int(needed.min()), int(needed.max()) + 1
        x = self.collection.read_block(shard, lo, hi)
        values = x.data if sparse.issparse(x) else x
        if not np.isfinite(values).all():
            raise ValueError(
                f"Shard {str(self.collection.paths[shard])!r} has NaN or infinite values in "
                f"{self.collection.layer or 'X'} (rows {lo}:{hi}); clean the data before streaming."
            )
        obs = {key: self.collection.obs_values(shard, column) for key, column in self.collection.obs_columns.items()}
        names = self.collection.shards[shard].obs_names() if self.obs_names else None
        # one read per shard and epoch: close the file, so open handles (and HDF5's caches) do not grow
        # with the number of shards
        self.collection.shards[shard].close()
        logger.debug("loaded shard %d rows %d:%d", shard, lo, hi)
        return _Block(shard, lo, x, obs, names)

    def _assemble(self, parts: list[tuple[_Block, np.ndarray]], var_names: np.ndarray) -> dict[str, Any]:
        n = sum(len(rows) for _, rows in parts)
        x = None if self.sparse else np.zeros((n, self.collection.n_vars), dtype=self._np_dtype)
        pieces: list[sparse.csr_matrix] = []
        cell_index = np.empty(n, dtype=np.int64)
        shard_index = np.empty(n, dtype=np.int64)
        obs: dict[str, list[np.ndarray]] = {key: [] for key in self.collection.obs_columns}
        names: list[np.ndarray] = []
        at = 0
        for block, rows in parts:
            m = len(rows)
            local = rows - block.lo
            if x is None:
                pieces.append(_select_rows(sparse.csr_matrix(block.x), local))
            elif sparse.issparse(block.x):
                _densify_rows(block.x, local, x[at : at + m])
            else:
                x[at : at + m] = block.x[local]
            cell_index[at : at + m] = self.collection.offsets[block.shard] + rows
            shard_index[at : at + m] = block.shard
            for key in obs:
                obs[key].append(block.obs[key][rows])
            if self.obs_names:
                names.append(block.names[rows])
            at += m
        batch: dict[str, Any] = {
            BatchKey.X_NG.value: torch.from_numpy(x) if x is not None else _to_torch_csr(pieces, self._np_dtype),
            BatchKey.VAR_NAMES_G.value: var_names,
            BatchKey.CELL_INDEX_N.value: torch.from_numpy(cell_index),
            BatchKey.SHARD_INDEX_N.value: torch.from_numpy(shard_index),
        }
        for key, values in obs.items():
            value = np.concatenate(values)
            batch[key] = torch.from_numpy(value) if value.dtype.kind in "biuf" else value
        if self.obs_names:
            batch[BatchKey.OBS_NAMES_N.value] = np.concatenate(names)
        return batch


def _select_rows(matrix: sparse.csr_matrix, rows: np.ndarray) -> sparse.csr_matrix:
    """``matrix[rows]`` (a slice when the rows are contiguous), with scipy's compiled kernels."""
    if len(rows) and rows[-1] - rows[0] == len(rows) - 1 and (len(rows) == 1 or (np.diff(rows) == 1).all()):
        return matrix[int(rows[0]) : int(rows[-1]) + 1]
    return matrix[rows]


def _densify_rows(matrix: sparse.csr_matrix, rows: np.ndarray, out: np.ndarray) -> None:
    """Write ``matrix[rows]`` densely into ``out`` (zeros), no per-cell Python."""
    _select_rows(matrix, rows).toarray(out=out)


def _to_torch_csr(pieces: list[sparse.csr_matrix], dtype: np.dtype) -> torch.Tensor:
    """Stack CSR row blocks into one ``torch.sparse_csr`` tensor (int64 indices, values of ``dtype``)."""
    matrix = pieces[0] if len(pieces) == 1 else sparse.vstack(pieces, format="csr")
    return csr_tensor(
        np.asarray(matrix.indptr, dtype=np.int64),
        np.asarray(matrix.indices, dtype=np.int64),
        np.asarray(matrix.data, dtype=dtype),
        matrix.shape,
    )
