"""Which cells each DDP rank and DataLoader worker reads in an epoch: deterministic, exactly once, resumable."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["EpochPlan", "batches_per_worker_consumed"]


@dataclass(frozen=True)
class EpochPlan:
    """The order of one epoch: shard order, cell order inside each shard, and the batch boundaries.

    The epoch's cell sequence is shard-major: the shards in ``shard_order``, and inside each shard
    its cells permuted (when shuffling). Batches are consecutive ranges of positions in this
    sequence. Rank ``r`` of ``W`` gets a contiguous run of ``n_full // W`` full batches; the
    leftover cells (fewer than ``W`` batches' worth) are split into ``W`` near-equal batches, one per
    rank, so every rank runs the same number of steps whenever there are at least ``W`` leftover
    cells, and every cell is read exactly once.

    Parameters
    ----------
    n_obs_per_shard
        Cells per shard.
    batch_size
        Cells per batch.
    shuffle
        Permute shards and cells within shards.
    seed, epoch
        Together they fix the permutation.
    """

    n_obs_per_shard: np.ndarray
    batch_size: int
    shuffle: bool
    seed: int
    epoch: int

    @property
    def shard_order(self) -> np.ndarray:
        """The order in which shards are visited."""
        n = len(self.n_obs_per_shard)
        if not self.shuffle:
            return np.arange(n)
        return np.random.default_rng([self.seed, self.epoch, 0]).permutation(n)

    @property
    def sequence_offsets(self) -> np.ndarray:
        """Position in the epoch's sequence where each visited shard starts (length ``n_shards + 1``)."""
        sizes = self.n_obs_per_shard[self.shard_order]
        return np.concatenate([[0], np.cumsum(sizes)])

    def cell_order(self, shard: int) -> np.ndarray:
        """Rows of ``shard`` in the order they are visited."""
        n = int(self.n_obs_per_shard[shard])
        if not self.shuffle:
            return np.arange(n)
        return np.random.default_rng([self.seed, self.epoch, 1, shard]).permutation(n)

    def rank_batches(self, rank: int, world_size: int) -> list[tuple[int, int]]:
        """Position ranges ``[start, stop)`` of the batches of one rank."""
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is outside a world of size {world_size}.")
        total = int(self.n_obs_per_shard.sum())
        b = self.batch_size
        n_full = total // b
        per_rank = n_full // world_size
        start = rank * per_rank * b
        batches = [(start + i * b, start + (i + 1) * b) for i in range(per_rank)]
        left_start = world_size * per_rank * b
        leftover = total - left_start
        if leftover > 0:
            bounds = left_start + (np.arange(world_size + 1) * leftover) // world_size
            lo, hi = int(bounds[rank]), int(bounds[rank + 1])
            if hi > lo:
                # leftovers of at most W batches: split in near-equal parts of at most batch_size
                n_parts = -(-(hi - lo) // b)
                edges = lo + (np.arange(n_parts + 1) * (hi - lo)) // n_parts
                batches.extend((int(edges[i]), int(edges[i + 1])) for i in range(n_parts))
        return batches

    def replica_batches(self, rank: int, world_size: int, worker: int, num_workers: int) -> list[tuple[int, int]]:
        """The batches one DataLoader worker of one rank yields: a contiguous share of the rank's batches."""
        batches = self.rank_batches(rank, world_size)
        edges = (np.arange(num_workers + 1) * len(batches)) // num_workers
        return batches[edges[worker] : edges[worker + 1]]


def batches_per_worker_consumed(counts: list[int], consumed: int) -> list[int]:
    """How many batches each worker had yielded when the loader had returned ``consumed`` batches.

    A :class:`torch.utils.data.DataLoader` returns the batches of its workers in round-robin order,
    skipping workers that are exhausted.
    """
    done = [0] * len(counts)
    remaining = consumed
    while remaining > 0:
        progressed = False
        for w, count in enumerate(counts):
            if remaining == 0:
                break
            if done[w] < count:
                done[w] += 1
                remaining -= 1
                progressed = True
        if not progressed:
            raise ValueError(f"{consumed} batches consumed, but the epoch has only {sum(counts)}.")
    return done
