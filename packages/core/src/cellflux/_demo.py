"""``cellflux demo`` and ``cellflux run``: the suite's main job, on simulated data or on a user's h5ad.

Both run :func:`cellflux._pipeline.run_pipeline` (preprocessing, velocity, kernels, fates, GP
differential analysis, streaming) and write ``cellflux.h5ad``, ``figures/`` and ``report.html``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from ._pipeline import Context

__all__ = ["run_demo", "run_file"]


def _config(quick: bool, seed: int, steps: Sequence[str] | None, **options):
    from ._pipeline import STEPS, PipelineConfig

    return PipelineConfig(steps=tuple(steps) if steps else STEPS, quick=quick, seed=seed, **options)


def run_demo(
    out: str | Path,
    *,
    n_cells: int | None = None,
    n_genes: int | None = None,
    seed: int = 0,
    quick: bool = False,
    steps: Sequence[str] | None = None,
    velocity: str | None = None,
    overwrite: bool = False,
    stream: TextIO | None = None,
) -> Context:
    """Simulate two conditions of a three-lineage differentiation and run the pipeline on it.

    Parameters
    ----------
    out
        Output folder; created if needed.
    n_cells, n_genes
        Size of the simulation (defaults 3,000 x 500, or 1,000 x 200 with ``quick``).
    seed
        Seed of the simulation and of the pipeline.
    quick
        Smaller defaults, the steady-state velocity model and fewer samples: under a minute.
    steps
        Steps to run (default all).
    velocity
        ``"vae"`` (default), ``"scvelo"`` (steady-state; default with ``quick``) or ``"precomputed"``.
    overwrite
        Replace a previous run's results in ``out``.
    stream
        Where the progress display goes, e.g. ``sys.stderr`` (``None``: nowhere).

    Returns
    -------
    The pipeline's context (records, scores, figures).
    """
    from ._pipeline import run_pipeline
    from ._pipeline.runner import check_output
    from .datasets import simulate

    config = _config(quick, seed, steps, velocity=velocity or ("scvelo" if quick else "vae"))
    check_output(out, overwrite=overwrite)
    n_cells = (1_000 if quick else 3_000) if n_cells is None else n_cells
    n_genes = (200 if quick else 500) if n_genes is None else n_genes
    start = time.perf_counter()
    if stream is not None:
        print(f"simulating {n_cells:,} cells x {n_genes:,} genes, 3 lineages, 2 conditions (seed {seed})", file=stream)
    adata = simulate(n_cells=n_cells, n_genes=n_genes, n_conditions=2, seed=seed)
    ctx = run_pipeline(
        adata,
        out,
        config,
        title="cellflux demo",
        source=f"simulated branching differentiation (cf.datasets.simulate, seed {seed})",
        overwrite=overwrite,
        stream=stream,
    )
    if stream is not None:
        print(f"total {time.perf_counter() - start:.1f} s", file=stream)
    return ctx


def run_file(
    path: str | Path,
    out: str | Path,
    *,
    velocity: str = "vae",
    cluster_key: str | None = None,
    groupby: str | None = None,
    conditions: Sequence[str] | None = None,
    n_states: int | None = None,
    n_terminal: int | None = None,
    steps: Sequence[str] | None = None,
    quick: bool = False,
    seed: int = 0,
    overwrite: bool = False,
    stream: TextIO | None = None,
) -> Context:
    """Run the pipeline on the counts in an h5ad file.

    Parameters
    ----------
    path
        h5ad with raw counts in ``X`` (and ``layers["spliced"]``/``["unspliced"]`` for velocity).
    out
        Output folder.
    velocity
        ``"vae"``, ``"scvelo"`` (steady-state) or ``"precomputed"`` (``layers["velocity"]``).
    cluster_key
        ``obs`` column naming the macrostates (default ``"clusters"`` if present).
    groupby, conditions
        Conditions of the differential step (default ``obs["condition"]``, its first two values).
    n_states, n_terminal
        Numbers of macrostates and of terminal states (default: from the clusters; the stable ones).
    steps
        Steps to run (default all).
    quick
        Smaller settings.
    seed
        Random seed.
    overwrite
        Replace a previous run's results in ``out``.
    stream
        Where the progress display goes, e.g. ``sys.stderr`` (``None``: nowhere).

    Returns
    -------
    The pipeline's context.
    """
    import anndata as ad

    from ._pipeline import run_pipeline
    from ._pipeline.runner import check_output

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist (cellflux run needs an .h5ad file).")
    config = _config(
        quick,
        seed,
        steps,
        velocity=velocity,
        cluster_key=cluster_key,
        groupby=groupby,
        conditions=tuple(conditions) if conditions else None,
        n_states=n_states,
        n_terminal=n_terminal,
    )
    check_output(out, overwrite=overwrite)
    try:
        adata = ad.read_h5ad(path)
    except OSError as error:  # h5py: not an HDF5 file, truncated, no permission
        raise ValueError(f"{path} is not a readable h5ad file: {error}") from None
    return run_pipeline(
        adata, out, config, title=f"cellflux run: {path.name}", source=str(path), overwrite=overwrite, stream=stream
    )
