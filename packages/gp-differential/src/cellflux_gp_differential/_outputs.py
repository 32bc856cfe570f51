"""Where per-cell x per-gene prediction outputs live: in memory, or in memory-mapped ``.npy`` files.

:meth:`~cellflux_gp_differential.DifferentialExpression.predict` fills its outputs chunk by chunk of cells,
so its working memory is one chunk's; the outputs themselves are ``n_cells x n_genes`` each (100,000 cells
x 2,000 genes: 0.8 GB per float32 array with ``precision="mixed"``, 1.6 GB per float64 one; six arrays).
With ``store_arrays_on_disk`` they are memory-mapped files instead, which the operating system pages in
and out as they are used.
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path

import numpy as np

__all__ = ["OutputArrays", "chunk_rows", "pair_chunk_rows", "store_on_disk"]

logger = logging.getLogger(__name__)

#: Working memory of one chunk of cells in ``predict`` (its temporaries, all outputs' rows included).
CHUNK_BYTES = 256 * 1024**2
#: Float64 arrays of ``n_genes`` values per cell alive at once while a chunk is computed.
ARRAYS_PER_CELL = 12
#: Working memory of one chunk of cells when both conditions share landmarks (the products go straight
#: into the outputs; the temporaries are the chunk's whitened cross-kernel, ``PAIR_BYTES_PER_LANDMARK``
#: bytes per cell and landmark).
PAIR_CHUNK_BYTES = 64 * 1024**2
PAIR_BYTES_PER_LANDMARK = 24


def chunk_rows(n_genes: int, batch_size: int) -> int:
    """Cells per chunk: :data:`CHUNK_BYTES` of temporaries, a multiple of ``batch_size``, at least one batch."""
    rows = CHUNK_BYTES // (8 * ARRAYS_PER_CELL * max(int(n_genes), 1))
    return max(int(batch_size), int(rows) // int(batch_size) * int(batch_size))


def pair_chunk_rows(n: int, n_landmarks: int, batch_size: int, rows: int | None = None) -> int:
    """Cells per chunk of the shared-landmark prediction (chunks are padded to this size).

    ``rows`` if given; else the cells split into equal chunks of at most ``batch_size`` or about
    :data:`PAIR_CHUNK_BYTES` of temporaries, whichever allows more (rounded up to a multiple of 256, so
    the last chunk wastes little padding and repeated calls see the same shapes).
    """
    if rows is not None:
        return max(1, min(int(rows), n))
    budget = max(int(batch_size), PAIR_CHUNK_BYTES // (PAIR_BYTES_PER_LANDMARK * max(int(n_landmarks), 1)))
    n_chunks = -(-n // budget)
    per_chunk = -(-n // n_chunks)
    return -(-per_chunk // 256) * 256


def store_on_disk(store: bool | None, nbytes: int, max_memory_ratio: float) -> bool:
    """Whether outputs of ``nbytes`` go to disk: ``store`` if given, else when they exceed the memory share."""
    if store is not None:
        return bool(store)
    try:
        import psutil

        available = psutil.virtual_memory().available
    except ImportError:  # pragma: no cover
        return False
    on_disk = nbytes > max_memory_ratio * available
    if on_disk:
        logger.info(
            "The outputs take %.1f GB, more than %.0f%% of the available memory: storing them on disk "
            "(store_arrays_on_disk=False keeps them in memory).",
            nbytes / 1024**3,
            100 * max_memory_ratio,
        )
    return on_disk


class OutputArrays:
    """Allocates named output arrays in memory, or as ``<name>.npy`` memory maps.

    Parameters
    ----------
    on_disk
        Memory-mapped files instead of memory.
    directory
        Folder of the files (created; files of the same names are replaced). ``None``: a temporary file
        per array, unlinked as soon as it is mapped (POSIX keeps the data until the array is released, and
        nothing is left behind).
    """

    def __init__(self, on_disk: bool, directory: str | os.PathLike[str] | None = None) -> None:
        self.on_disk = on_disk
        self.directory = None if directory is None else Path(directory)

    def allocate(self, name: str, shape: tuple[int, ...], dtype: np.dtype | type = np.float64) -> np.ndarray:
        """An uninitialised array (zero-filled file on disk) of ``shape``."""
        if not self.on_disk:
            return np.empty(shape, dtype=dtype)
        if self.directory is not None:
            self.directory.mkdir(parents=True, exist_ok=True)
            return np.lib.format.open_memmap(self.directory / f"{name}.npy", mode="w+", dtype=dtype, shape=shape)
        fd, path = tempfile.mkstemp(prefix=f"cellflux_{name}_", suffix=".npy")
        os.close(fd)
        array = np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=shape)
        try:
            os.unlink(path)
        except OSError:  # pragma: no cover  (a mapped file cannot be removed on Windows)
            logger.debug("Could not remove %s while it is mapped; it stays in the temporary folder.", path)
        return array
