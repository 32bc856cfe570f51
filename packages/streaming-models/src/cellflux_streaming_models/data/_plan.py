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
    sequence. With ``n`` cells, batch size ``b`` and ``W`` ranks, every cell is read exactly once
    per epoch, every batch has at most ``b`` cells, and every rank runs the same number of steps
    (DDP's collectives need it):

    - rank ``r`` gets a contiguous run of ``(n // b) // W`` full batches, and the leftover cells
      (``L``, fewer than ``W`` batches' worth) are split into ``W`` near-equal batches, one per rank,
      when ``L == 0`` or ``L >= W``;
    - when ``0 < L < W`` (not every rank would get a leftover cell), the epoch is cut into ``W``
      contiguous near-equal parts, one per rank; each rank's part is its full batches but one, then
      the rest (``b`` or ``b + 1`` cells: its last full batch together with its share of the
      leftover) split into two near-equal batches. This needs ``b >= 2``; with ``b == 1`` the
      ranks cannot run the same number of steps and :meth:`rank_batches` raises a ``ValueError``,
      as it does when there are fewer cells than ranks.

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
        """Position ranges ``[start, stop)`` of the batches of one rank.

        Parameters
        ----------
        rank, world_size
            The rank and the number of ranks.

        Returns
        -------
        The batches, in order; every rank gets the same number.

        Raises
        ------
        ValueError
            If ``rank`` is outside the world, if there are fewer cells than ranks, or if
            ``batch_size`` is 1 and the number of cells is not a multiple of ``world_size``.
        """
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is outside a world of size {world_size}.")
        total = int(self.n_obs_per_shard.sum())
        b = self.batch_size
        if 0 < total < world_size:
            raise ValueError(
                f"The epoch has {total} cells, fewer than the {world_size} processes: every process needs "
                "at least one cell per epoch to run the same number of steps."
            )
        n_full = total // b
        per_rank = n_full // world_size
        left_start = world_size * per_rank * b
        leftover = total - left_start
        if 0 < leftover < world_size:
            # not every rank would get a leftover cell: each rank takes a contiguous, near-equal part of
            # the epoch (per_rank * b cells, plus one for `leftover` of them), its full batches but one,
            # then the rest (b or b + 1 cells) in two near-equal batches
            if b < 2:
                raise ValueError(
                    f"batch_size=1 with {total} cells on {world_size} processes: the processes cannot run the "
                    f"same number of steps; use a larger batch size or a number of cells divisible by {world_size}."
                )
            lo = (rank * total) // world_size
            hi = ((rank + 1) * total) // world_size
            batches = [(lo + i * b, lo + (i + 1) * b) for i in range(per_rank - 1)]
            tail = lo + (per_rank - 1) * b
            middle = tail + (hi - tail) // 2
            return [*batches, (tail, middle), (middle, hi)]
        start = rank * per_rank * b
        batches = [(start + i * b, start + (i + 1) * b) for i in range(per_rank)]
        if leftover > 0:
            # leftover >= world_size: one batch of at most b cells for every rank
            bounds = left_start + (np.arange(world_size + 1) * leftover) // world_size
            batches.append((int(bounds[rank]), int(bounds[rank + 1])))
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
