"""Internals of the branching-differentiation simulator (:mod:`cellflux.datasets._simulate`).

One concern per module, in dependency order:

``_constants``
    Shared constants (block size, gene programs) and the keyed random streams.
``_config``
    Parameter validation and the resolved :class:`~._config.Config`.
``_genes``
    Gene programs, kinetic rates, switch times and the choice of the DE genes.
``_model``
    Condition and sample lineage weights, kinetic schedules, ``var`` and ``uns``.
``_cells``
    Per-block cell draws, counts and true velocities, sparse rows and ``obs``.
``_chunks``
    Chunk assembly over blocks on worker threads.

The exact kinetics live in :mod:`cellflux.datasets._kinetics`; the public functions in
:mod:`cellflux.datasets._simulate`.
"""

__all__: list[str] = []
