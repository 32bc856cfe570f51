"""A branching-differentiation simulator with exact ground truth, at any size.

**The model.** A progenitor trunk runs from ``t = 0`` to ``t_branch``; there ``n_lineages`` branches
start and run to ``t = 1``. Every cell has a true time ``t ~ U(0, 1)``, a condition and a sample, and
the lineage it is (or will be) committed to, drawn from its sample's lineage weights. Cells before
``t_branch`` sit on the shared trunk whatever their lineage. A *path* is a lineage in a condition; the
transcription schedule of every gene is the same on all paths before ``t_branch``.

Each gene follows the transcription-splicing-degradation kinetics of :mod:`._kinetics` with a
piecewise-constant transcription rate, solved exactly. Gene programs (deterministic from ``seed``):

``housekeeping``
    constant transcription, velocity 0.
``cell_cycle``
    housekeeping genes whose expected counts are multiplied by ``exp(a_g * sin(theta_i - phi_g))`` with a
    per-cell phase ``theta_i ~ U(0, 2 pi)`` (only with ``cell_cycle=True``; otherwise they are plain
    housekeeping genes). Their differentiation velocity is 0.
``trunk``
    switched on early (``t_on`` in ``[0, min(0.1, t_branch / 2)]``) and off around or after the branch
    point (some stay on), identically in every lineage.
``lineage_specific``
    switched on at ``t_on >= t_branch`` in one lineage only (some switch off again); basal elsewhere.
``shared``
    switched on after the branch point in two lineages.

Expected counts are ``mu_s = scale_g * size_i * s`` and ``mu_u = scale_g * size_i * unspliced_ratio * u``
(times the cell-cycle factor for cell-cycle genes); counts are negative binomial with per-gene inverse
dispersion ``theta_g`` (``Var = mu + mu**2 / theta``).

**Conditions, differential abundance and differential expression.** With ``n_conditions=2`` the lineage
weights of the second condition are those of the first with the ``da_lineage`` weight multiplied by
``da_factor``, renormalised; every sample jitters its condition's weights with a Dirichlet draw. The DE
genes' transcription rate is multiplied by their fold change on the ``de_lineage`` path of the second
condition from ``de_time_start`` on (an extra breakpoint), so the velocity truth stays exact. With
``n_conditions=1`` nothing is planted: the DA/DE fields are present but zero/``False``.

**Determinism and chunking.** Gene parameters come from ``seed`` alone. Cell-level randomness is drawn
per fixed block of :data:`BLOCK_SIZE` cells from generators keyed by ``(seed, block)``: the cell
attributes are always drawn for the full block and the counts from separate gamma and Poisson streams,
so cell ``i`` does not depend on how the cells are chunked, nor on ``n_cells``. ``simulate(n)`` equals
the concatenation of ``iter_simulate(n, chunk_size=c)`` for any ``c`` and of the shards of
``simulate_shards``, and ``simulate(n)[:m]`` equals ``simulate(m)``. ``truth_layers=False`` only drops
the dense true-velocity layers: every random draw and count stays the same.

The implementation lives in the private subpackage :mod:`._simulator`, one concern per module.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

import anndata as ad

from ._simulator._chunks import iter_chunks, resolve_n_jobs, simulate_chunk
from ._simulator._config import DeDirection, check_int, make_config
from ._simulator._constants import BLOCK_SIZE, PROGRAMS
from ._simulator._model import build_model

__all__ = ["BLOCK_SIZE", "PROGRAMS", "iter_simulate", "simulate", "simulate_shards"]

logger = logging.getLogger(__name__)


def simulate(
    n_cells: int = 3000,
    n_genes: int = 500,
    *,
    n_lineages: int = 3,
    lineage_names: Sequence[str] | None = None,
    lineage_weights: Sequence[float] | None = None,
    t_branch: float = 0.3,
    terminal_time: float = 0.9,
    initial_time: float = 0.1,
    cell_cycle: bool = True,
    n_conditions: int = 2,
    condition_names: Sequence[str] = ("control", "treated"),
    n_samples_per_condition: int = 3,
    sample_variability: float = 0.05,
    da_lineage: str | int | None = None,
    da_factor: float = 0.3,
    de_genes: int | Sequence[int] | None = None,
    de_lineage: str | int | None = None,
    de_fold_change: float = 3.0,
    de_direction: DeDirection = "both",
    de_time_start: float | None = None,
    unspliced_ratio: float = 0.5,
    seed: int = 0,
    truth_layers: bool = True,
    n_jobs: int | None = 1,
) -> ad.AnnData:
    """Simulate a branching differentiation with spliced/unspliced counts and full ground truth.

    A progenitor trunk (``t < t_branch``) splits into ``n_lineages`` lineages; genes follow exact
    transcription-splicing-degradation kinetics with piecewise-constant transcription (see the module
    documentation for the gene programs), counts are negative binomial. Optional second condition
    with planted differential abundance (DA) and differential expression (DE).

    Parameters
    ----------
    n_cells
        Number of cells.
    n_genes
        Number of genes (about 15% housekeeping, 8% cell cycle, 15% trunk, 55% lineage specific,
        7% shared by two lineages, shuffled).
    n_lineages
        Number of lineages (``>= 2``).
    lineage_names
        Names of the lineages; default ``lineage_1`` ... ``lineage_n``.
    lineage_weights
        Lineage weights of the first condition (normalised); default uniform.
    t_branch
        Branch time in ``(0, 1)``.
    terminal_time
        Cells on a branch with ``t >= terminal_time`` are terminal; in ``(t_branch, 1)``.
    initial_time
        Cells with ``t <= initial_time`` are initial; in ``(0, t_branch]``.
    cell_cycle
        Whether the cell-cycle genes are modulated by a per-cell phase.
    n_conditions
        ``1`` or ``2``. With ``1`` nothing is planted and the DA/DE fields are zero/``False``.
    condition_names
        Names of the conditions (the first ``n_conditions`` are used).
    n_samples_per_condition
        Samples (replicates) per condition; cells are spread uniformly over samples.
    sample_variability
        Per-sample jitter of the lineage weights: sample weights are
        ``Dirichlet(w_condition / sample_variability**2)`` (about ``sample_variability * sqrt(w (1 - w))``
        standard deviation); ``0`` for none.
    da_lineage
        Lineage (name or 0-based index) whose weight the second condition multiplies by ``da_factor``;
        default the last one.
    da_factor
        Positive multiplier of the ``da_lineage`` weight in the second condition (``< 1`` depletes,
        ``> 1`` enriches), applied before renormalising.
    de_genes
        Number of DE genes (default 10% of the genes, at most the number of dynamic genes), chosen
        among the dynamic genes, preferring those switched on in ``de_lineage``; or explicit indices.
    de_lineage
        Lineage (name or index) of the DE region; default the first one.
    de_fold_change
        Fold change (``> 1``) of the transcription rate of DE genes in the second condition.
    de_direction
        ``"up"``, ``"down"`` (rate divided by the fold change) or ``"both"`` (random sign per gene).
    de_time_start
        Start of the DE region on ``de_lineage``, in ``[t_branch, 1)``; default ``t_branch``.
    unspliced_ratio
        Capture ratio of unspliced relative to spliced molecules in the expected counts.
    seed
        Seed of every random draw.
    truth_layers
        Store the dense true-velocity layers ``VELOCITY`` and ``VELOCITY_U``. ``False`` leaves them out
        (e.g. for lean shards at scale, where these two dense float32 matrices take most of the memory
        and disk) and changes nothing else: the counts and all other fields are identical, only
        ``uns[SIMULATION]["params"]["truth_layers"]`` records the choice.
    n_jobs
        Worker threads for the cell blocks (``None`` or ``-1``: all CPUs). The result does not depend
        on it.

    Returns
    -------
    anndata.AnnData
        ``n_cells x n_genes`` with (all keys from :class:`cellflux._keys.TruthKey`):

        ``X``
            Spliced counts, CSR float32.
        ``layers``
            ``SPLICED`` and ``UNSPLICED``: CSR int32 counts. ``VELOCITY``: dense float32
            ``scale_g * (beta_g u - gamma_g s)``, the time derivative (per unit of the true time, which
            runs from 0 to 1) of the noise-free expected spliced count of a cell of size factor 1, i.e.
            on the scale of size-normalised counts; cell-cycle modulation is not part of it.
            ``VELOCITY_U``: the same for unspliced, ``scale_g * unspliced_ratio * (alpha_g(t) - beta_g u)``.
            The two velocity layers are absent with ``truth_layers=False``.
        ``obs``
            ``TIME`` (true time in ``[0, 1)``), ``LINEAGE`` (fate the cell is or will be committed to,
            categorical), ``STATE`` (``"progenitor"`` before ``t_branch``, else the lineage),
            ``CLUSTERS`` (``<state>_early``/``<state>_late``, split at the middle of the trunk and of the
            branches), ``TERMINAL`` (on a branch with ``t >= terminal_time``), ``INITIAL``
            (``t <= initial_time``), ``CONDITION``, ``SAMPLE`` (``<condition>_<j>``), ``CELL_CYCLE_PHASE``
            (phase in radians, NaN with ``cell_cycle=False``), ``SIZE_FACTOR``, ``DA_LOG_FOLD_CHANGE``
            (natural-log ratio of the cell density of the second condition over the first at the cell's
            position: ``log(w2_l / w1_l)`` of the condition weights on branch ``l``, 0 on the trunk),
            ``DA`` (``|lfc| > 1e-8``), ``DE_REGION`` (cells of both conditions on ``de_lineage`` with
            ``t >= de_time_start``; all ``False`` without DE genes).
        ``obsm``
            ``FATE_PROBABILITIES``: ``(n_cells, n_lineages)`` float64, columns in the order of
            ``uns[SIMULATION]["lineage_names"]``; the condition's lineage weights on the trunk, one-hot
            on a branch.
        ``var``
            ``PROGRAM`` (categorical: housekeeping, cell_cycle, trunk, lineage_specific, shared),
            ``ALPHA_BASAL`` (rate when off; the constant rate of housekeeping genes), ``ALPHA_ON``
            (largest on-rate over lineages in the first condition), ``BETA``, ``GAMMA``, ``SCALE``
            (expected counts per unit of abundance), ``DISPERSION`` (negative-binomial inverse dispersion
            ``theta``: ``Var = mu + mu**2 / theta``), ``CELL_CYCLE_GENE``, ``DE``,
            ``DE_LOG_FOLD_CHANGE`` (natural-log fold change of the transcription rate in the DE region
            of the second condition, which is also the steady-state expression fold change; expected
            counts approach it with relaxation time ``~1 / gamma`` after ``de_time_start``).
        ``varm``
            ``SWITCH_ON``/``SWITCH_OFF``: ``(n_genes, n_lineages)`` switch times, ``inf`` where a gene
            never switches on/off in that lineage.
        ``uns[SIMULATION]``
            ``params`` (all resolved parameters), ``lineage_names``, ``condition_names``,
            ``sample_names``, ``sample_conditions``, ``lineage_weights`` (conditions x lineages),
            ``sample_lineage_weights`` (samples x lineages), ``sample_log_size_shift``,
            ``da_log_fold_change`` (per lineage), ``de_gene_indices``, ``tree`` (``nodes``,
            ``node_start_time``, ``node_end_time``, ``edges`` as parent/child rows),
            ``cell_cycle_amplitude`` and ``cell_cycle_phase`` (per gene, 0 for other genes),
            ``program_categories``.

    Raises
    ------
    ValueError
        Naming the parameter, for invalid inputs.
    """
    config = make_config(
        n_cells,
        n_genes,
        n_lineages=n_lineages,
        lineage_names=lineage_names,
        lineage_weights=lineage_weights,
        t_branch=t_branch,
        terminal_time=terminal_time,
        initial_time=initial_time,
        cell_cycle=cell_cycle,
        n_conditions=n_conditions,
        condition_names=condition_names,
        n_samples_per_condition=n_samples_per_condition,
        sample_variability=sample_variability,
        da_lineage=da_lineage,
        da_factor=da_factor,
        de_genes=de_genes,
        de_lineage=de_lineage,
        de_fold_change=de_fold_change,
        de_direction=de_direction,
        de_time_start=de_time_start,
        unspliced_ratio=unspliced_ratio,
        seed=seed,
        truth_layers=truth_layers,
    )
    workers = resolve_n_jobs(n_jobs)
    model = build_model(config)
    logger.debug("simulating %d cells x %d genes", config.n_cells, config.n_genes)
    return simulate_chunk(model, 0, config.n_cells, workers)


def iter_simulate(
    n_cells: int = 3000,
    n_genes: int = 500,
    *,
    chunk_size: int = 10_000,
    truth_layers: bool = True,
    n_jobs: int | None = 1,
    **kwargs: Any,
) -> Iterator[ad.AnnData]:
    """Simulate in chunks of cells, never holding more than one chunk.

    The parameters are validated when this function is called, not at the first chunk.

    Parameters
    ----------
    n_cells
        Total number of cells.
    n_genes
        Number of genes.
    chunk_size
        Cells per chunk (the last one may be smaller).
    truth_layers
        Store the dense true-velocity layers, see :func:`simulate`.
    n_jobs
        Worker threads per chunk, see :func:`simulate`.
    **kwargs
        Any other parameter of :func:`simulate` (``seed``, ``n_lineages``, ...).

    Returns
    -------
    Iterator[anndata.AnnData]
        Chunks with globally unique ``obs_names`` (``cell_0000000``...) whose concatenation equals
        ``simulate(n_cells, n_genes, truth_layers=truth_layers, **kwargs)`` exactly; each chunk carries
        the full ``var``, ``varm`` and ``uns``.

    Raises
    ------
    ValueError
        Naming the parameter, for invalid inputs.
    """
    config = make_config(n_cells, n_genes, truth_layers=truth_layers, **kwargs)
    chunk_size = check_int("chunk_size", chunk_size, 1)
    workers = resolve_n_jobs(n_jobs)
    return iter_chunks(build_model(config), chunk_size, workers)


def simulate_shards(
    directory: str | os.PathLike[str],
    n_cells: int = 1_000_000,
    n_genes: int = 500,
    *,
    shard_size: int = 100_000,
    compression: Literal["gzip", "lzf"] | None = None,
    show_progress: bool = True,
    truth_layers: bool = True,
    n_jobs: int | None = 1,
    **kwargs: Any,
) -> list[Path]:
    """Simulate a large dataset straight to h5ad shards, one shard in memory at a time.

    Parameters
    ----------
    directory
        Output directory (created if missing); existing shards of the same names are overwritten.
    n_cells
        Total number of cells.
    n_genes
        Number of genes.
    shard_size
        Cells per shard (the last one may be smaller); peak memory is proportional to it.
    compression
        h5ad compression of the shards.
    show_progress
        Show a tqdm progress bar over the shards.
    truth_layers
        Store the dense true-velocity layers, see :func:`simulate`; ``False`` writes lean shards (at
        500 genes the two dense float32 layers are most of a shard's size) with the same counts.
    n_jobs
        Worker threads, see :func:`simulate`.
    **kwargs
        Any other parameter of :func:`simulate`.

    Returns
    -------
    list of pathlib.Path
        ``directory / "shard_00000.h5ad"``, ... in cell order; reading and concatenating them gives
        ``simulate(n_cells, n_genes, truth_layers=truth_layers, **kwargs)``.

    Raises
    ------
    ValueError
        Naming the parameter, for invalid inputs.
    """
    from tqdm.auto import tqdm

    shard_size = check_int("shard_size", shard_size, 1)
    chunks = iter_simulate(n_cells, n_genes, chunk_size=shard_size, truth_layers=truth_layers, n_jobs=n_jobs, **kwargs)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    n_shards = -(-n_cells // shard_size)
    width = max(5, len(str(n_shards - 1)))
    paths = []
    with tqdm(total=n_shards, disable=not show_progress, desc="simulate shards", unit="shard") as bar:
        for index, chunk in enumerate(chunks):
            path = directory / f"shard_{index:0{width}d}.h5ad"
            chunk.write_h5ad(path, compression=compression)
            paths.append(path)
            logger.debug("wrote %s (%d cells)", path, chunk.n_obs)
            del chunk
            bar.update(1)
    return paths
