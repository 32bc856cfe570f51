"""Row chunks of a CSR graph, padded to a dense ``(rows, max_degree)`` block for vectorised work."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

__all__ = ["RowChunk", "row_chunks"]

#: Default memory budget of one ``(rows, max_degree, n_features)`` float64 block.
DEFAULT_BUDGET = 16 * 2**20


@dataclass(frozen=True)
class RowChunk:
    """Rows of a CSR graph with their neighbours padded to the chunk's largest degree.

    Attributes
    ----------
    rows
        Row indices, shape ``(c,)``.
    neighbors
        Neighbour indices, shape ``(c, k)``; padding repeats the row itself.
    valid
        Which entries of ``neighbors`` are real edges, shape ``(c, k)``.
    positions
        Position of each real edge in the CSR ``data``/``indices`` arrays (0 where padded).
    """

    rows: np.ndarray
    neighbors: np.ndarray
    valid: np.ndarray
    positions: np.ndarray


def row_chunks(
    indptr: np.ndarray,
    indices: np.ndarray,
    n_features: int,
    *,
    budget: int = DEFAULT_BUDGET,
    max_rows: int | None = None,
) -> Iterator[RowChunk]:
    """Yield chunks of rows, grouped by degree so that padding wastes little, within a memory budget."""
    degree = np.diff(indptr)
    order = np.argsort(degree, kind="stable")
    order = order[degree[order] > 0]
    per_edge = max(1, int(n_features)) * 8
    start = 0
    while start < len(order):
        kmax = int(degree[order[start]])
        # grow the chunk while the padded block fits into the budget
        stop = start
        while stop < len(order):
            k = int(degree[order[min(len(order) - 1, stop + 63)]])
            n_rows = min(len(order), stop + 64) - start
            if n_rows * max(k, 1) * per_edge > budget and stop > start:
                break
            if max_rows is not None and n_rows > max_rows and stop > start:
                break
            stop = min(len(order), stop + 64)
            kmax = k
        rows = order[start:stop]
        kmax = int(degree[rows].max())
        offsets = np.arange(kmax)
        valid = offsets[None, :] < degree[rows][:, None]
        positions = np.where(valid, indptr[rows][:, None] + offsets[None, :], 0)
        neighbors = np.where(valid, indices[positions], rows[:, None])
        yield RowChunk(rows=rows, neighbors=neighbors, valid=valid, positions=positions)
        start = stop
