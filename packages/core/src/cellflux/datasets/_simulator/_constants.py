"""Constants shared by the simulator's modules and its keyed random streams.

Cell-level randomness is drawn per fixed block of :data:`BLOCK_SIZE` cells; every random draw comes
from one of a few independent streams keyed through ``SeedSequence(seed, spawn_key=(stream, ...))``,
so that a draw does not depend on how the cells are chunked.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "BLOCK_SIZE",
    "PROGENITOR",
    "PROGRAMS",
    "STREAM_CELLS",
    "STREAM_COUNTS",
    "STREAM_DE",
    "STREAM_GENES",
    "STREAM_SAMPLES",
    "generator",
]

#: Cells per random-number block (the unit of deterministic cell-level randomness).
BLOCK_SIZE = 1000
#: Categories of ``var[TruthKey.PROGRAM]``.
PROGRAMS = ("housekeeping", "cell_cycle", "trunk", "lineage_specific", "shared")
PROGENITOR = "progenitor"

# independent random streams, keyed through SeedSequence(seed, spawn_key=(stream, ...))
STREAM_GENES, STREAM_SAMPLES, STREAM_DE, STREAM_CELLS, STREAM_COUNTS = range(5)


def generator(seed: int, *key: int) -> np.random.Generator:
    """A generator for one independent random stream.

    Parameters
    ----------
    seed
        The simulation seed.
    *key
        The stream key (stream id, then e.g. the block index).

    Returns
    -------
    numpy.random.Generator
        ``Generator(PCG64(SeedSequence(seed, spawn_key=key)))``.
    """
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed, spawn_key=key)))
