"""Chunk assembly: the blocks of a cell range, simulated on worker threads and joined into an AnnData."""

from __future__ import annotations

import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import anndata as ad
import numpy as np

from cellflux._keys import TruthKey

from ._cells import CELL_FIELDS, BlockResult, Cells, build_obs, concat_rows, csr, simulate_block
from ._config import check_int, is_int
from ._constants import BLOCK_SIZE
from ._model import Model

__all__ = ["blocks_of", "copy_uns", "iter_chunks", "resolve_n_jobs", "simulate_chunk"]


def resolve_n_jobs(n_jobs: int | None) -> int:
    """Number of worker threads.

    Parameters
    ----------
    n_jobs
        ``None`` or ``-1`` for all available CPUs, else a positive integer.

    Returns
    -------
    int
        Thread count.

    Raises
    ------
    ValueError
        For other values.
    """
    if n_jobs is None or (is_int(n_jobs) and n_jobs == -1):
        return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return check_int("n_jobs", n_jobs, 1)


def blocks_of(start: int, stop: int) -> list[tuple[int, int, int]]:
    """The blocks overlapping cells ``start:stop`` and the row range used in each.

    Parameters
    ----------
    start, stop
        Global cell range.

    Returns
    -------
    list of (block, lo, hi)
        Block index and row range inside the block.
    """
    first, last = start // BLOCK_SIZE, (stop - 1) // BLOCK_SIZE
    return [(b, max(start - b * BLOCK_SIZE, 0), min(stop - b * BLOCK_SIZE, BLOCK_SIZE)) for b in range(first, last + 1)]


def simulate_chunk(model: Model, start: int, stop: int, n_jobs: int) -> ad.AnnData:
    """Simulate cells ``start:stop`` as an AnnData.

    Parameters
    ----------
    model
        The model.
    start, stop
        Global cell range.
    n_jobs
        Worker threads (the result does not depend on it).

    Returns
    -------
    anndata.AnnData
        The chunk; without the dense true-velocity layers when ``model.config.truth_layers`` is
        ``False``.
    """
    n_genes = model.config.n_genes
    velocity = velocity_u = None
    if model.config.truth_layers:
        velocity = np.empty((stop - start, n_genes), dtype=np.float32)
        velocity_u = np.empty((stop - start, n_genes), dtype=np.float32)

    def run(task: tuple[int, int, int]) -> BlockResult:
        block, lo, hi = task
        if velocity is None or velocity_u is None:
            return simulate_block(model, block, lo, hi, None, None)
        rows = slice(block * BLOCK_SIZE + lo - start, block * BLOCK_SIZE + hi - start)
        return simulate_block(model, block, lo, hi, velocity[rows], velocity_u[rows])

    tasks = blocks_of(start, stop)
    if n_jobs > 1 and len(tasks) > 1:
        with ThreadPoolExecutor(max_workers=n_jobs) as pool:
            results = list(pool.map(run, tasks))
    else:
        results = [run(task) for task in tasks]
    cells = Cells(**{k: np.concatenate([getattr(r.cells, k) for r in results]) for k in CELL_FIELDS})
    spliced_rows = concat_rows([r.spliced for r in results])
    unspliced_rows = concat_rows([r.unspliced for r in results])
    del results
    x = csr(spliced_rows, n_genes, np.float32)
    spliced = csr(spliced_rows, n_genes, copy=False)
    unspliced = csr(unspliced_rows, n_genes, copy=False)
    del spliced_rows, unspliced_rows
    obs, fate = build_obs(model, cells, start)
    layers = {TruthKey.SPLICED: spliced, TruthKey.UNSPLICED: unspliced}
    if velocity is not None and velocity_u is not None:
        layers[TruthKey.VELOCITY] = velocity
        layers[TruthKey.VELOCITY_U] = velocity_u
    return ad.AnnData(
        X=x,
        obs=obs,
        var=model.var.copy(),
        layers=layers,
        obsm={TruthKey.FATE_PROBABILITIES: fate},
        varm={
            TruthKey.SWITCH_ON: model.genes.switch_on.copy(),
            TruthKey.SWITCH_OFF: model.genes.switch_off.copy(),
        },
        uns={TruthKey.SIMULATION: copy_uns(model.uns)},
    )


def copy_uns(value: Any) -> Any:
    """Deep-copy a nested dict of arrays and scalars.

    Parameters
    ----------
    value
        Dict, array or scalar.

    Returns
    -------
    Any
        An independent copy.
    """
    if isinstance(value, dict):
        return {k: copy_uns(v) for k, v in value.items()}
    if isinstance(value, np.ndarray):
        return value.copy()
    return value


def iter_chunks(model: Model, chunk_size: int, n_jobs: int) -> Iterator[ad.AnnData]:
    """Yield the chunks of a simulation.

    Parameters
    ----------
    model
        The model.
    chunk_size
        Cells per chunk.
    n_jobs
        Worker threads.

    Yields
    ------
    anndata.AnnData
        Consecutive chunks.
    """
    for start in range(0, model.config.n_cells, chunk_size):
        yield simulate_chunk(model, start, min(start + chunk_size, model.config.n_cells), n_jobs)
