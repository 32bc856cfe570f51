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
``simulate_shards``, and ``simulate(n)[:m]`` equals ``simulate(m)``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path
from typing import Any, Literal

import anndata as ad
import numpy as np
import pandas as pd
from scipy import sparse

from cellflux._keys import TruthKey

from ._kinetics import KineticSchedule, prepare_schedule, sample_negative_binomial, solve

__all__ = ["BLOCK_SIZE", "PROGRAMS", "iter_simulate", "simulate", "simulate_shards"]

logger = logging.getLogger(__name__)

#: Cells per random-number block (the unit of deterministic cell-level randomness).
BLOCK_SIZE = 1000
#: Categories of ``var[TruthKey.PROGRAM]``.
PROGRAMS = ("housekeeping", "cell_cycle", "trunk", "lineage_specific", "shared")
#: Fractions of genes per program (largest-remainder rounding).
_PROGRAM_FRACTIONS = (0.15, 0.08, 0.15, 0.55, 0.07)
_DYNAMIC = ("trunk", "lineage_specific", "shared")
_PROGENITOR = "progenitor"
_DA_TOL = 1e-8
_SIZE_LOG_SD = 0.3
_SAMPLE_SIZE_LOG_SD = 0.1
# cells x genes per kinetics/sampling batch (keeps the temporaries in cache)
_BATCH_ELEMENTS = 1 << 16
_CELL_FIELDS = ("time", "sample", "lineage", "cc_phase", "size")
# independent random streams, keyed through SeedSequence(seed, spawn_key=(stream, ...))
_STREAM_GENES, _STREAM_SAMPLES, _STREAM_DE, _STREAM_CELLS, _STREAM_COUNTS = range(5)

DeDirection = Literal["both", "up", "down"]


# --------------------------------------------------------------------------------------------------
# configuration
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Config:
    """Validated, resolved parameters of a simulation (see :func:`simulate`)."""

    n_cells: int
    n_genes: int
    n_lineages: int
    lineage_names: tuple[str, ...]
    lineage_weights: np.ndarray
    t_branch: float
    terminal_time: float
    initial_time: float
    cell_cycle: bool
    n_conditions: int
    condition_names: tuple[str, ...]
    n_samples_per_condition: int
    sample_variability: float
    da_lineage: int
    da_factor: float
    de_genes: int | tuple[int, ...] | None
    de_lineage: int
    de_fold_change: float
    de_direction: str
    de_time_start: float
    unspliced_ratio: float
    seed: int


def _is_int(value: Any) -> bool:
    """Whether ``value`` is an integer (bools excluded).

    Parameters
    ----------
    value
        Anything.

    Returns
    -------
    bool
        ``True`` for Python and NumPy integers.
    """
    return isinstance(value, int | np.integer) and not isinstance(value, bool | np.bool_)


def _check_int(name: str, value: Any, minimum: int) -> int:
    """Check that ``value`` is an integer ``>= minimum``.

    Parameters
    ----------
    name
        Parameter name for the error message.
    value
        The value.
    minimum
        Smallest allowed value.

    Returns
    -------
    int
        The value as a Python int.

    Raises
    ------
    ValueError
        Otherwise.
    """
    if not _is_int(value) or value < minimum:
        raise ValueError(f"`{name}` must be an integer >= {minimum}, got {value!r}.")
    return int(value)


def _check_float(name: str, value: Any, low: float, high: float, *, closed: str = "neither") -> float:
    """Check that ``value`` is a finite real number inside an interval.

    Parameters
    ----------
    name
        Parameter name for the error message.
    value
        The value.
    low, high
        Interval bounds (``inf`` allowed).
    closed
        ``"neither"``, ``"left"``, ``"right"`` or ``"both"``.

    Returns
    -------
    float
        The value.

    Raises
    ------
    ValueError
        Otherwise.
    """
    if isinstance(value, bool | np.bool_) or not isinstance(value, int | float | np.integer | np.floating):
        raise ValueError(f"`{name}` must be a number, got {value!r}.")
    value = float(value)
    left_ok = value >= low if closed in ("left", "both") else value > low
    right_ok = value <= high if closed in ("right", "both") else value < high
    if not (np.isfinite(value) and left_ok and right_ok):
        lb = "[" if closed in ("left", "both") else "("
        rb = "]" if closed in ("right", "both") else ")"
        raise ValueError(f"`{name}` must lie in {lb}{low}, {high}{rb}, got {value!r}.")
    return value


def _check_names(name: str, values: Any, count: int) -> tuple[str, ...]:
    """Check a sequence of unique non-empty strings.

    Parameters
    ----------
    name
        Parameter name for the error message.
    values
        The names.
    count
        Required number of names, or ``-1`` for at least one.

    Returns
    -------
    tuple of str
        The names.

    Raises
    ------
    ValueError
        If they are not unique non-empty strings of the right number.
    """
    if isinstance(values, str) or not isinstance(values, Sequence | np.ndarray):
        raise ValueError(f"`{name}` must be a sequence of strings, got {values!r}.")
    values = tuple(values)
    if not all(isinstance(v, str) and v for v in values) or len(set(values)) != len(values):
        raise ValueError(f"`{name}` must hold unique non-empty strings, got {values!r}.")
    if count >= 0 and len(values) != count:
        raise ValueError(f"`{name}` must hold {count} names, got {len(values)}.")
    return values


def _resolve_lineage(name: str, value: Any, lineage_names: tuple[str, ...], default: int) -> int:
    """Resolve a lineage given by name or index.

    Parameters
    ----------
    name
        Parameter name for the error message.
    value
        ``None`` (use ``default``), a lineage name, or a 0-based index.
    lineage_names
        The lineage names.
    default
        Index used for ``None``.

    Returns
    -------
    int
        The lineage index.

    Raises
    ------
    ValueError
        For an unknown name or an index out of range.
    """
    if value is None:
        return default
    if isinstance(value, str):
        if value not in lineage_names:
            raise ValueError(f"`{name}` must be one of {list(lineage_names)}, got {value!r}.")
        return lineage_names.index(value)
    if _is_int(value) and -len(lineage_names) <= value < len(lineage_names):
        return int(value) % len(lineage_names)
    raise ValueError(f"`{name}` must be a lineage name or index, got {value!r}.")


def _check_de_genes(value: Any, n_genes: int) -> int | tuple[int, ...] | None:
    """Check ``de_genes``: ``None``, a count, or explicit gene indices.

    Parameters
    ----------
    value
        The parameter.
    n_genes
        Number of genes.

    Returns
    -------
    int, tuple of int or None
        The count or the indices.

    Raises
    ------
    ValueError
        For a negative count or invalid/duplicate indices (the count is checked against the available
        dynamic genes when the genes are built).
    """
    if value is None:
        return None
    if _is_int(value):
        return _check_int("de_genes", value, 0)
    if isinstance(value, Sequence | np.ndarray) and not isinstance(value, str):
        indices = tuple(value)
        if not all(_is_int(i) and 0 <= i < n_genes for i in indices) or len(set(indices)) != len(indices):
            raise ValueError(f"`de_genes` indices must be unique integers in [0, {n_genes}).")
        return tuple(int(i) for i in indices)
    raise ValueError(f"`de_genes` must be None, an integer or a sequence of gene indices, got {value!r}.")


def _make_config(
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
) -> _Config:
    """Validate the parameters of :func:`simulate` and resolve the defaults.

    Parameters
    ----------
    n_cells, n_genes, n_lineages, lineage_names, lineage_weights, t_branch, terminal_time, initial_time
        See :func:`simulate`.
    cell_cycle, n_conditions, condition_names, n_samples_per_condition, sample_variability
        See :func:`simulate`.
    da_lineage, da_factor, de_genes, de_lineage, de_fold_change, de_direction, de_time_start
        See :func:`simulate`.
    unspliced_ratio, seed
        See :func:`simulate`.

    Returns
    -------
    _Config
        The resolved configuration.

    Raises
    ------
    ValueError
        Naming the offending parameter.
    """
    n_cells = _check_int("n_cells", n_cells, 1)
    n_genes = _check_int("n_genes", n_genes, 1)
    n_lineages = _check_int("n_lineages", n_lineages, 2)
    if lineage_names is None:
        lineage_names = tuple(f"lineage_{i + 1}" for i in range(n_lineages))
    lineage_names = _check_names("lineage_names", lineage_names, n_lineages)
    if _PROGENITOR in lineage_names:
        raise ValueError(f"`lineage_names` must not contain {_PROGENITOR!r} (the trunk's state name).")
    if lineage_weights is None:
        weights = np.full(n_lineages, 1.0 / n_lineages)
    else:
        weights = np.asarray(lineage_weights, dtype=np.float64)
        if weights.shape != (n_lineages,) or not np.isfinite(weights).all() or (weights <= 0).any():
            raise ValueError(f"`lineage_weights` must hold {n_lineages} positive finite numbers.")
        weights = weights / weights.sum()
    t_branch = _check_float("t_branch", t_branch, 0.0, 1.0)
    terminal_time = _check_float("terminal_time", terminal_time, t_branch, 1.0)
    initial_time = _check_float("initial_time", initial_time, 0.0, t_branch, closed="right")
    if not isinstance(cell_cycle, bool | np.bool_):
        raise ValueError(f"`cell_cycle` must be a bool, got {cell_cycle!r}.")
    if not _is_int(n_conditions) or n_conditions not in (1, 2):
        raise ValueError(f"`n_conditions` must be 1 or 2, got {n_conditions!r}.")
    condition_names = _check_names("condition_names", condition_names, -1)
    if len(condition_names) < n_conditions:
        raise ValueError(f"`condition_names` must hold at least {n_conditions} names, got {condition_names!r}.")
    n_samples_per_condition = _check_int("n_samples_per_condition", n_samples_per_condition, 1)
    sample_variability = _check_float("sample_variability", sample_variability, 0.0, np.inf, closed="left")
    da_index = _resolve_lineage("da_lineage", da_lineage, lineage_names, n_lineages - 1)
    da_factor = _check_float("da_factor", da_factor, 0.0, np.inf)
    de_index = _resolve_lineage("de_lineage", de_lineage, lineage_names, 0)
    de_fold_change = _check_float("de_fold_change", de_fold_change, 1.0, np.inf)
    if de_direction not in ("both", "up", "down"):
        raise ValueError(f"`de_direction` must be 'both', 'up' or 'down', got {de_direction!r}.")
    if de_time_start is None:
        de_time_start = t_branch
    de_time_start = _check_float("de_time_start", de_time_start, t_branch, 1.0, closed="left")
    unspliced_ratio = _check_float("unspliced_ratio", unspliced_ratio, 0.0, np.inf)
    seed = _check_int("seed", seed, 0)
    return _Config(
        n_cells=n_cells,
        n_genes=n_genes,
        n_lineages=n_lineages,
        lineage_names=lineage_names,
        lineage_weights=weights,
        t_branch=t_branch,
        terminal_time=terminal_time,
        initial_time=initial_time,
        cell_cycle=bool(cell_cycle),
        n_conditions=int(n_conditions),
        condition_names=condition_names[:n_conditions],
        n_samples_per_condition=n_samples_per_condition,
        sample_variability=sample_variability,
        da_lineage=da_index,
        da_factor=da_factor,
        de_genes=_check_de_genes(de_genes, n_genes),
        de_lineage=de_index,
        de_fold_change=de_fold_change,
        de_direction=str(de_direction),
        de_time_start=de_time_start,
        unspliced_ratio=unspliced_ratio,
        seed=seed,
    )


def _generator(seed: int, *key: int) -> np.random.Generator:
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


# --------------------------------------------------------------------------------------------------
# genes
# --------------------------------------------------------------------------------------------------


def _program_counts(n_genes: int) -> np.ndarray:
    """Number of genes per program, by largest-remainder rounding of the program fractions.

    Parameters
    ----------
    n_genes
        Number of genes.

    Returns
    -------
    numpy.ndarray
        Counts aligned with :data:`PROGRAMS`, summing to ``n_genes``.
    """
    exact = np.asarray(_PROGRAM_FRACTIONS) * n_genes
    counts = np.floor(exact).astype(np.int64)
    order = np.argsort(-(exact - counts), kind="stable")
    counts[order[: n_genes - counts.sum()]] += 1
    return counts


@dataclass(frozen=True)
class _Genes:
    """Per-gene truth: programs, rates, switch times, count scale and noise."""

    program: np.ndarray  # (G,) codes into PROGRAMS
    beta: np.ndarray
    gamma: np.ndarray
    alpha_basal: np.ndarray
    alpha_on: np.ndarray  # (G, L) rate when switched on in each lineage
    switch_on: np.ndarray  # (G, L)
    switch_off: np.ndarray  # (G, L)
    scale: np.ndarray
    theta: np.ndarray
    cell_cycle: np.ndarray  # (G,) bool
    cc_amplitude: np.ndarray  # (G,), 0 for non cell-cycle genes
    cc_phase: np.ndarray  # (G,), 0 for non cell-cycle genes


def _switch_times(
    rng: np.random.Generator, program: np.ndarray, n_lineages: int, t_branch: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Draw switch-on/off times and the per-lineage on-rate multipliers of every gene.

    Parameters
    ----------
    rng
        The gene generator.
    program
        ``(G,)`` program codes.
    n_lineages
        Number of lineages.
    t_branch
        Branch time.

    Returns
    -------
    switch_on, switch_off, multiplier
        ``(G, L)`` arrays; ``inf`` where a gene never switches on/off in a lineage; the multiplier
        scales the on-rate (below 1 for the second lineage of shared genes).
    """
    n_genes = program.shape[0]
    post = 1.0 - t_branch
    trunk_on = rng.uniform(0.0, min(0.1, 0.5 * t_branch), n_genes)
    trunk_off = rng.uniform(0.8 * t_branch, t_branch + 0.5 * post, n_genes)
    trunk_off[rng.random(n_genes) < 0.2] = np.inf
    lineage_on = rng.uniform(t_branch, t_branch + 0.4 * post, (n_genes, n_lineages))
    transient = rng.random(n_genes) < 0.3
    off_after = rng.uniform(0.2 * post, 0.45 * post, n_genes)
    second_multiplier = rng.uniform(0.5, 1.0, n_genes)

    switch_on = np.full((n_genes, n_lineages), np.inf)
    switch_off = np.full((n_genes, n_lineages), np.inf)
    multiplier = np.ones((n_genes, n_lineages))
    trunk = program == PROGRAMS.index("trunk")
    switch_on[trunk] = trunk_on[trunk, None]
    switch_off[trunk] = trunk_off[trunk, None]

    (specific,) = np.nonzero(program == PROGRAMS.index("lineage_specific"))
    lineage = np.arange(specific.size) % n_lineages
    switch_on[specific, lineage] = lineage_on[specific, lineage]
    off = lineage_on[specific, lineage] + off_after[specific]
    switch_off[specific, lineage] = np.where(transient[specific] & (off < 1.0), off, np.inf)

    (shared,) = np.nonzero(program == PROGRAMS.index("shared"))
    pairs = np.array(list(combinations(range(n_lineages), 2)))
    pairs = pairs[rng.permutation(len(pairs))][np.arange(shared.size) % len(pairs)]
    for column in (0, 1):
        switch_on[shared, pairs[:, column]] = lineage_on[shared, pairs[:, column]]
    multiplier[shared, pairs[:, 1]] = second_multiplier[shared]
    return switch_on, switch_off, multiplier


def _build_genes(config: _Config) -> _Genes:
    """Draw every per-gene parameter from the seed.

    Parameters
    ----------
    config
        The configuration.

    Returns
    -------
    _Genes
        Programs, kinetic rates (``beta`` around 10, ``gamma`` around 5, lognormal), switch times,
        count scales (on-level expected counts lognormal around 3, housekeeping around 1.5) and
        negative-binomial inverse dispersions (lognormal around 5).
    """
    rng = _generator(config.seed, _STREAM_GENES)
    n_genes = config.n_genes
    program = rng.permutation(np.repeat(np.arange(len(PROGRAMS)), _program_counts(n_genes)))
    beta = np.exp(rng.normal(np.log(10.0), 0.35, n_genes))
    gamma = np.exp(rng.normal(np.log(5.0), 0.35, n_genes))
    alpha_level = np.exp(rng.normal(np.log(20.0), 0.5, n_genes))
    basal_fraction = np.exp(rng.uniform(np.log(0.005), np.log(0.05), n_genes))
    on_count = np.exp(rng.normal(np.log(3.0), 0.9, n_genes))
    housekeeping_count = np.exp(rng.normal(np.log(1.5), 1.0, n_genes))
    theta = np.exp(rng.normal(np.log(5.0), 0.5, n_genes))
    cc_amplitude = rng.uniform(0.7, 1.5, n_genes)
    cc_phase = rng.uniform(0.0, 2.0 * np.pi, n_genes)
    switch_on, switch_off, multiplier = _switch_times(rng, program, config.n_lineages, config.t_branch)

    constant = np.isin(program, [PROGRAMS.index("housekeeping"), PROGRAMS.index("cell_cycle")])
    alpha_basal = np.where(constant, alpha_level, alpha_level * basal_fraction)
    alpha_on = np.where(np.isfinite(switch_on), alpha_level[:, None] * multiplier, alpha_basal[:, None])
    level = np.clip(np.where(constant, housekeeping_count, on_count), 0.05, 50.0)
    scale = level * gamma / alpha_level
    cell_cycle = (program == PROGRAMS.index("cell_cycle")) & config.cell_cycle
    if not config.cell_cycle:
        program = np.where(program == PROGRAMS.index("cell_cycle"), PROGRAMS.index("housekeeping"), program)
    return _Genes(
        program=program,
        beta=beta,
        gamma=gamma,
        alpha_basal=alpha_basal,
        alpha_on=alpha_on,
        switch_on=switch_on,
        switch_off=switch_off,
        scale=scale,
        theta=theta,
        cell_cycle=cell_cycle,
        cc_amplitude=np.where(cell_cycle, cc_amplitude, 0.0),
        cc_phase=np.where(cell_cycle, cc_phase, 0.0),
    )


def _choose_de_genes(config: _Config, genes: _Genes) -> tuple[np.ndarray, np.ndarray]:
    """Pick the DE genes and their log fold changes of the transcription rate.

    Dynamic genes that stay on in ``de_lineage`` once switched on (so that the planted fold change shows
    in the region) are preferred, then the other dynamic genes, each group in random order.

    Parameters
    ----------
    config
        The configuration.
    genes
        The genes.

    Returns
    -------
    indices, log_fold_change
        Sorted DE gene indices and the natural-log fold change of each (both empty with one condition).

    Raises
    ------
    ValueError
        If more DE genes are requested than there are dynamic genes.
    """
    rng = _generator(config.seed, _STREAM_DE)
    dynamic = np.isin(genes.program, [PROGRAMS.index(p) for p in _DYNAMIC])
    n_dynamic = int(dynamic.sum())
    if isinstance(config.de_genes, tuple):
        indices = np.asarray(config.de_genes, dtype=np.int64)
    else:
        n_de = round(0.1 * config.n_genes) if config.de_genes is None else config.de_genes
        if config.de_genes is None:
            n_de = min(n_de, n_dynamic)
        if n_de > n_dynamic:
            raise ValueError(f"`de_genes`={n_de} exceeds the {n_dynamic} available dynamic genes.")
        lineage = config.de_lineage
        active = dynamic & (genes.switch_on[:, lineage] < 1.0) & np.isinf(genes.switch_off[:, lineage])
        priority = rng.random(config.n_genes) + np.where(active, 0.0, 1.0) + np.where(dynamic, 0.0, 2.0)
        indices = np.argsort(priority, kind="stable")[:n_de]
    signs = {"up": np.ones(indices.size), "down": -np.ones(indices.size)}.get(config.de_direction)
    if signs is None:
        signs = rng.choice(np.array([-1.0, 1.0]), indices.size)
    order = np.argsort(indices)
    lfc = signs * np.log(config.de_fold_change)
    if config.n_conditions == 1:
        return np.zeros(0, dtype=np.int64), np.zeros(0)
    return indices[order], lfc[order]


# --------------------------------------------------------------------------------------------------
# the model: genes, conditions, samples and kinetic schedules
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Model:
    """Everything about a simulation that does not depend on the cells."""

    config: _Config
    genes: _Genes
    de_genes: np.ndarray
    de_log_fold_change: np.ndarray  # (n_de,)
    condition_weights: np.ndarray  # (C, L)
    sample_names: tuple[str, ...]
    sample_condition: np.ndarray  # (S,)
    sample_weights: np.ndarray  # (S, L)
    sample_log_size: np.ndarray  # (S,)
    da_log_fold_change: np.ndarray  # (L,)
    schedule: KineticSchedule  # paths p = condition * L + lineage
    var: pd.DataFrame
    uns: dict


def _condition_weights(config: _Config) -> np.ndarray:
    """Lineage weights of every condition.

    Parameters
    ----------
    config
        The configuration.

    Returns
    -------
    numpy.ndarray
        ``(n_conditions, n_lineages)``; the second condition multiplies the ``da_lineage`` weight by
        ``da_factor`` and renormalises.
    """
    weights = [config.lineage_weights]
    if config.n_conditions == 2:
        treated = config.lineage_weights.copy()
        treated[config.da_lineage] *= config.da_factor
        weights.append(treated / treated.sum())
    return np.vstack(weights)


def _samples(
    config: _Config, condition_weights: np.ndarray
) -> tuple[tuple[str, ...], np.ndarray, np.ndarray, np.ndarray]:
    """Samples: names, conditions, Dirichlet-jittered lineage weights and size-factor shifts.

    Parameters
    ----------
    config
        The configuration.
    condition_weights
        ``(C, L)`` lineage weights.

    Returns
    -------
    names, condition, weights, log_size
        Sample names (``<condition>_<j>``), ``(S,)`` condition codes, ``(S, L)`` lineage weights drawn
        from ``Dirichlet(w_c / sample_variability**2)`` (``w_c`` itself when the variability is 0) and
        ``(S,)`` log size-factor shifts ``~ N(0, 0.1**2)``.
    """
    rng = _generator(config.seed, _STREAM_SAMPLES)
    n_per = config.n_samples_per_condition
    names = tuple(f"{c}_{j + 1}" for c in config.condition_names for j in range(n_per))
    condition = np.repeat(np.arange(config.n_conditions), n_per)
    log_size = rng.normal(0.0, _SAMPLE_SIZE_LOG_SD, len(names))
    weights = condition_weights[condition].copy()
    if config.sample_variability > 0:
        concentration = weights / config.sample_variability**2
        weights = np.vstack([rng.dirichlet(c) for c in concentration])
        weights = np.clip(weights, 0.0, None)
        weights /= weights.sum(axis=1, keepdims=True)
    return names, condition, weights, log_size


def _schedule(config: _Config, genes: _Genes, de_genes: np.ndarray, de_lfc: np.ndarray) -> KineticSchedule:
    """Build the transcription schedules of every path and gene.

    Parameters
    ----------
    config
        The configuration.
    genes
        The genes.
    de_genes, de_lfc
        DE gene indices and log fold changes.

    Returns
    -------
    KineticSchedule
        Paths ``p = condition * n_lineages + lineage``; three breakpoints per gene (switch on, switch
        off and the DE start, ``inf`` when absent).
    """
    n_lineages, n_genes = config.n_lineages, config.n_genes
    fold = np.ones(n_genes)
    fold[de_genes] = np.exp(de_lfc)
    breakpoints, alphas = [], []
    for condition in range(config.n_conditions):
        for lineage in range(n_lineages):
            de_here = condition == 1 and lineage == config.de_lineage
            de_time = np.where(de_here & (fold != 1.0), config.de_time_start, np.inf)
            on, off = genes.switch_on[:, lineage], genes.switch_off[:, lineage]
            points = np.sort(np.column_stack([on, off, de_time]), axis=1)
            starts = np.column_stack([np.full(n_genes, -np.inf), points])
            active = (starts >= on[:, None]) & (starts < off[:, None])
            alpha = np.where(active, genes.alpha_on[:, lineage, None], genes.alpha_basal[:, None])
            alpha *= np.where(starts >= de_time[:, None], fold[:, None], 1.0)
            breakpoints.append(points)
            alphas.append(alpha)
    return prepare_schedule(np.stack(breakpoints), np.stack(alphas), genes.beta, genes.gamma)


def _var(config: _Config, genes: _Genes, de_genes: np.ndarray, de_lfc: np.ndarray) -> pd.DataFrame:
    """The gene annotation.

    Parameters
    ----------
    config
        The configuration.
    genes
        The genes.
    de_genes, de_lfc
        DE gene indices and log fold changes.

    Returns
    -------
    pandas.DataFrame
        Indexed by ``gene_0000``-style names.
    """
    width = max(4, len(str(config.n_genes - 1)))
    names = np.char.add("gene_", np.char.zfill(np.arange(config.n_genes).astype(str), width))
    is_de = np.zeros(config.n_genes, dtype=bool)
    is_de[de_genes] = True
    lfc = np.zeros(config.n_genes)
    lfc[de_genes] = de_lfc
    return pd.DataFrame(
        {
            TruthKey.PROGRAM: pd.Categorical.from_codes(genes.program, categories=list(PROGRAMS)),
            TruthKey.ALPHA_BASAL: genes.alpha_basal,
            TruthKey.ALPHA_ON: genes.alpha_on.max(axis=1),
            TruthKey.BETA: genes.beta,
            TruthKey.GAMMA: genes.gamma,
            TruthKey.SCALE: genes.scale,
            TruthKey.DISPERSION: genes.theta,
            TruthKey.CELL_CYCLE_GENE: genes.cell_cycle,
            TruthKey.DE: is_de,
            TruthKey.DE_LOG_FOLD_CHANGE: lfc,
        },
        index=pd.Index(names.astype(object), name=None),
    )


def _strings(values: Sequence[str]) -> np.ndarray:
    """An object array of strings (what h5ad reads back).

    Parameters
    ----------
    values
        Strings.

    Returns
    -------
    numpy.ndarray
        1-d object array.
    """
    array = np.empty(len(values), dtype=object)
    array[:] = list(values)
    return array


def _uns(config: _Config, model_parts: dict) -> dict:
    """The ``uns[TruthKey.SIMULATION]`` record: parameters, tree, names and weights (h5ad-writable).

    Parameters
    ----------
    config
        The configuration.
    model_parts
        ``condition_weights``, ``sample_names``, ``sample_condition``, ``sample_weights``,
        ``sample_log_size``, ``da_log_fold_change``, ``de_genes``, ``genes``.

    Returns
    -------
    dict
        Nested dict of scalars, strings and arrays only.
    """
    lineages = list(config.lineage_names)
    genes: _Genes = model_parts["genes"]
    params = {
        "n_cells": config.n_cells,
        "n_genes": config.n_genes,
        "n_lineages": config.n_lineages,
        "t_branch": config.t_branch,
        "terminal_time": config.terminal_time,
        "initial_time": config.initial_time,
        "cell_cycle": config.cell_cycle,
        "n_conditions": config.n_conditions,
        "n_samples_per_condition": config.n_samples_per_condition,
        "sample_variability": config.sample_variability,
        "da_lineage": lineages[config.da_lineage],
        "da_factor": config.da_factor,
        "de_genes": int(model_parts["de_genes"].size),
        "de_lineage": lineages[config.de_lineage],
        "de_fold_change": config.de_fold_change,
        "de_direction": config.de_direction,
        "de_time_start": config.de_time_start,
        "unspliced_ratio": config.unspliced_ratio,
        "seed": config.seed,
        "block_size": BLOCK_SIZE,
    }
    nodes = [_PROGENITOR, *lineages]
    edges = np.empty((len(lineages), 2), dtype=object)
    edges[:, 0] = _PROGENITOR
    edges[:, 1] = lineages
    return {
        "params": params,
        "lineage_names": _strings(lineages),
        "condition_names": _strings(config.condition_names),
        "sample_names": _strings(model_parts["sample_names"]),
        "sample_conditions": _strings([config.condition_names[c] for c in model_parts["sample_condition"]]),
        "lineage_weights": model_parts["condition_weights"],
        "sample_lineage_weights": model_parts["sample_weights"],
        "sample_log_size_shift": model_parts["sample_log_size"],
        "da_log_fold_change": model_parts["da_log_fold_change"],
        "de_gene_indices": model_parts["de_genes"].astype(np.int64),
        "tree": {
            "nodes": _strings(nodes),
            "node_start_time": np.array([0.0] + [config.t_branch] * len(lineages)),
            "node_end_time": np.array([config.t_branch] + [1.0] * len(lineages)),
            "edges": edges,
        },
        "cell_cycle_amplitude": genes.cc_amplitude,
        "cell_cycle_phase": genes.cc_phase,
        "program_categories": _strings(PROGRAMS),
    }


def _build_model(config: _Config) -> _Model:
    """Build the cell-independent part of a simulation.

    Parameters
    ----------
    config
        The configuration.

    Returns
    -------
    _Model
        Genes, DE truth, conditions, samples, schedules, ``var`` and ``uns``.
    """
    genes = _build_genes(config)
    de_genes, de_lfc = _choose_de_genes(config, genes)
    condition_weights = _condition_weights(config)
    sample_names, sample_condition, sample_weights, sample_log_size = _samples(config, condition_weights)
    da_lfc = np.zeros(config.n_lineages)
    if config.n_conditions == 2:
        da_lfc = np.log(condition_weights[1] / condition_weights[0])
    parts = {
        "genes": genes,
        "de_genes": de_genes,
        "condition_weights": condition_weights,
        "sample_names": sample_names,
        "sample_condition": sample_condition,
        "sample_weights": sample_weights,
        "sample_log_size": sample_log_size,
        "da_log_fold_change": da_lfc,
    }
    return _Model(
        config=config,
        genes=genes,
        de_genes=de_genes,
        de_log_fold_change=de_lfc,
        condition_weights=condition_weights,
        sample_names=sample_names,
        sample_condition=sample_condition,
        sample_weights=sample_weights,
        sample_log_size=sample_log_size,
        da_log_fold_change=da_lfc,
        schedule=_schedule(config, genes, de_genes, de_lfc),
        var=_var(config, genes, de_genes, de_lfc),
        uns=_uns(config, parts),
    )


# --------------------------------------------------------------------------------------------------
# cells
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Cells:
    """Per-cell draws of a block (or of a chunk once concatenated)."""

    time: np.ndarray
    sample: np.ndarray
    lineage: np.ndarray
    cc_phase: np.ndarray
    size: np.ndarray


def _draw_cells(model: _Model, block: int) -> _Cells:
    """Draw the attributes of all :data:`BLOCK_SIZE` cells of a block.

    Parameters
    ----------
    model
        The model.
    block
        Block index.

    Returns
    -------
    _Cells
        Time ``~ U(0, 1)``, sample (uniform), lineage (from the sample's weights), cell-cycle phase
        ``~ U(0, 2 pi)`` and size factor ``exp(N(shift_sample, 0.3**2))``.
    """
    rng = _generator(model.config.seed, _STREAM_CELLS, block)
    n = BLOCK_SIZE
    time = rng.random(n)
    sample = rng.integers(0, len(model.sample_names), n)
    fate_u = rng.random(n)
    cc_phase = rng.uniform(0.0, 2.0 * np.pi, n)
    log_size = rng.normal(0.0, _SIZE_LOG_SD, n)
    cumulative = np.cumsum(model.sample_weights, axis=1)[:, :-1]
    lineage = (fate_u[:, None] >= cumulative[sample]).sum(axis=1)
    size = np.exp(log_size + model.sample_log_size[sample])
    return _Cells(time=time, sample=sample, lineage=lineage, cc_phase=cc_phase, size=size)


@dataclass(frozen=True)
class _SparseRows:
    """Consecutive rows of a CSR matrix: values, column indices and the number of values per row."""

    data: np.ndarray  # int32
    indices: np.ndarray  # int32
    row_nnz: np.ndarray  # int64


def _sparse_rows(counts: np.ndarray) -> _SparseRows:
    """Sparsify dense integer counts row by row.

    Parameters
    ----------
    counts
        ``(m, n_genes)`` integer counts.

    Returns
    -------
    _SparseRows
        The non-zero values in row-major order.
    """
    rows, cols = np.nonzero(counts)
    return _SparseRows(
        data=counts[rows, cols].astype(np.int32, copy=False),
        indices=cols.astype(np.int32),
        row_nnz=np.bincount(rows, minlength=counts.shape[0]),
    )


def _concat_rows(parts: list[_SparseRows]) -> _SparseRows:
    """Concatenate consecutive row groups.

    Parameters
    ----------
    parts
        Row groups in order.

    Returns
    -------
    _SparseRows
        All rows.
    """
    return _SparseRows(
        data=np.concatenate([p.data for p in parts]),
        indices=np.concatenate([p.indices for p in parts]),
        row_nnz=np.concatenate([p.row_nnz for p in parts]),
    )


@dataclass(frozen=True)
class _BlockResult:
    """Simulated rows of one block (the velocities are written to the caller's arrays)."""

    cells: _Cells
    spliced: _SparseRows
    unspliced: _SparseRows


def _simulate_block(
    model: _Model, block: int, lo: int, hi: int, velocity: np.ndarray, velocity_u: np.ndarray
) -> _BlockResult:
    """Simulate rows ``lo:hi`` of a block.

    The rows are processed in cache-sized batches; the count streams are consumed row by row from the
    first row of the block, so rows ``< lo`` are simulated and dropped and the result for a row does
    not depend on ``lo`` or ``hi``.

    Parameters
    ----------
    model
        The model.
    block
        Block index.
    lo, hi
        Row range inside the block.
    velocity, velocity_u
        ``(hi - lo, n_genes)`` float32 outputs for the true spliced and unspliced velocities.

    Returns
    -------
    _BlockResult
        Cells and counts of rows ``lo:hi``.
    """
    config, genes = model.config, model.genes
    drawn = _draw_cells(model, block)
    cells = _Cells(**{k: getattr(drawn, k)[lo:hi] for k in _CELL_FIELDS})
    path = model.sample_condition[drawn.sample[:hi]] * config.n_lineages + drawn.lineage[:hi]
    scale_u = genes.scale * config.unspliced_ratio
    (cc,) = np.nonzero(genes.cell_cycle)
    streams = [_generator(config.seed, _STREAM_COUNTS, block, j) for j in range(4)]
    step = max(1, _BATCH_ELEMENTS // config.n_genes)
    spliced, unspliced = [], []
    for r0 in range(0, hi, step):
        r1 = min(r0 + step, hi)
        state = solve(model.schedule, path[r0:r1], drawn.time[r0:r1])
        mu_s, mu_u = state.s, state.u
        mu_s *= genes.scale
        mu_s *= drawn.size[r0:r1, None]
        mu_u *= scale_u
        mu_u *= drawn.size[r0:r1, None]
        if cc.size:
            factor = np.exp(genes.cc_amplitude[cc] * np.sin(drawn.cc_phase[r0:r1, None] - genes.cc_phase[cc]))
            mu_s[:, cc] *= factor
            mu_u[:, cc] *= factor
        counts_s = sample_negative_binomial(mu_s, genes.theta, streams[0], streams[1])
        counts_u = sample_negative_binomial(mu_u, genes.theta, streams[2], streams[3])
        if r1 <= lo:
            continue
        keep, out = slice(max(lo - r0, 0), r1 - r0), slice(max(r0, lo) - lo, r1 - lo)
        spliced.append(_sparse_rows(counts_s[keep]))
        unspliced.append(_sparse_rows(counts_u[keep]))
        np.multiply(state.velocity_s[keep], genes.scale, out=velocity[out], casting="same_kind")
        np.multiply(state.velocity_u[keep], scale_u, out=velocity_u[out], casting="same_kind")
    return _BlockResult(cells, _concat_rows(spliced), _concat_rows(unspliced))


def _csr(rows: _SparseRows, n_genes: int, dtype: type = np.int32, *, copy: bool = True) -> sparse.csr_matrix:
    """Build a CSR matrix from row-major sparse rows.

    Parameters
    ----------
    rows
        The rows.
    n_genes
        Number of columns.
    dtype
        Value dtype.
    copy
        Copy the values and indices even when their dtypes already match (``False`` shares them with
        ``rows``).

    Returns
    -------
    scipy.sparse.csr_matrix
        With sorted indices; int32 indices unless the number of values needs int64.
    """
    indptr = np.zeros(rows.row_nnz.size + 1, dtype=np.int64)
    np.cumsum(rows.row_nnz, out=indptr[1:])
    index_dtype = np.int32 if indptr[-1] < np.iinfo(np.int32).max else np.int64
    matrix = sparse.csr_matrix(
        (
            rows.data.astype(dtype, copy=copy),
            rows.indices.astype(index_dtype, copy=copy),
            indptr.astype(index_dtype, copy=False),
        ),
        shape=(rows.row_nnz.size, n_genes),
    )
    matrix.has_sorted_indices = True
    return matrix


def _resolve_n_jobs(n_jobs: int | None) -> int:
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
    if n_jobs is None or (_is_int(n_jobs) and n_jobs == -1):
        return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return _check_int("n_jobs", n_jobs, 1)


def _blocks_of(start: int, stop: int) -> list[tuple[int, int, int]]:
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


def _obs(model: _Model, cells: _Cells, start: int) -> tuple[pd.DataFrame, np.ndarray]:
    """The cell annotation and fate probabilities of a chunk.

    Parameters
    ----------
    model
        The model.
    cells
        The chunk's cells.
    start
        Global index of the chunk's first cell.

    Returns
    -------
    obs, fate_probabilities
        The obs DataFrame and the ``(n, n_lineages)`` float64 fate probabilities.
    """
    config = model.config
    n, n_lineages = cells.time.size, config.n_lineages
    lineages = list(config.lineage_names)
    branch = cells.time >= config.t_branch
    condition = model.sample_condition[cells.sample]

    state = np.where(branch, cells.lineage + 1, 0)
    late = np.where(branch, cells.time >= 0.5 * (1.0 + config.t_branch), cells.time >= 0.5 * config.t_branch)
    clusters = state * 2 + late
    cluster_names = [f"{s}_{stage}" for s in [_PROGENITOR, *lineages] for stage in ("early", "late")]

    fate = model.condition_weights[condition].copy()
    fate[branch] = np.eye(n_lineages)[cells.lineage[branch]]
    da_lfc = np.where(branch, model.da_log_fold_change[cells.lineage], 0.0)
    de_region = (cells.lineage == config.de_lineage) & (cells.time >= config.de_time_start) & (model.de_genes.size > 0)

    width = max(7, len(str(config.n_cells - 1)))
    names = np.char.add("cell_", np.char.zfill(np.arange(start, start + n).astype(str), width)).astype(object)
    obs = pd.DataFrame(
        {
            TruthKey.TIME: cells.time,
            TruthKey.LINEAGE: pd.Categorical.from_codes(cells.lineage, categories=lineages),
            TruthKey.STATE: pd.Categorical.from_codes(state, categories=[_PROGENITOR, *lineages]),
            TruthKey.CLUSTERS: pd.Categorical.from_codes(clusters, categories=cluster_names),
            TruthKey.TERMINAL: branch & (cells.time >= config.terminal_time),
            TruthKey.INITIAL: cells.time <= config.initial_time,
            TruthKey.CONDITION: pd.Categorical.from_codes(condition, categories=list(config.condition_names)),
            TruthKey.SAMPLE: pd.Categorical.from_codes(cells.sample, categories=list(model.sample_names)),
            TruthKey.CELL_CYCLE_PHASE: cells.cc_phase if config.cell_cycle else np.full(n, np.nan),
            TruthKey.SIZE_FACTOR: cells.size,
            TruthKey.DA_LOG_FOLD_CHANGE: da_lfc,
            TruthKey.DA: np.abs(da_lfc) > _DA_TOL,
            TruthKey.DE_REGION: de_region,
        },
        index=pd.Index(names),
    )
    return obs, fate


def _chunk(model: _Model, start: int, stop: int, n_jobs: int) -> ad.AnnData:
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
        The chunk.
    """
    n_genes = model.config.n_genes
    velocity = np.empty((stop - start, n_genes), dtype=np.float32)
    velocity_u = np.empty((stop - start, n_genes), dtype=np.float32)

    def run(task: tuple[int, int, int]) -> _BlockResult:
        block, lo, hi = task
        rows = slice(block * BLOCK_SIZE + lo - start, block * BLOCK_SIZE + hi - start)
        return _simulate_block(model, block, lo, hi, velocity[rows], velocity_u[rows])

    tasks = _blocks_of(start, stop)
    if n_jobs > 1 and len(tasks) > 1:
        with ThreadPoolExecutor(max_workers=n_jobs) as pool:
            results = list(pool.map(run, tasks))
    else:
        results = [run(task) for task in tasks]
    cells = _Cells(**{k: np.concatenate([getattr(r.cells, k) for r in results]) for k in _CELL_FIELDS})
    spliced_rows = _concat_rows([r.spliced for r in results])
    unspliced_rows = _concat_rows([r.unspliced for r in results])
    del results
    x = _csr(spliced_rows, n_genes, np.float32)
    spliced = _csr(spliced_rows, n_genes, copy=False)
    unspliced = _csr(unspliced_rows, n_genes, copy=False)
    del spliced_rows, unspliced_rows
    obs, fate = _obs(model, cells, start)
    return ad.AnnData(
        X=x,
        obs=obs,
        var=model.var.copy(),
        layers={
            TruthKey.SPLICED: spliced,
            TruthKey.UNSPLICED: unspliced,
            TruthKey.VELOCITY: velocity,
            TruthKey.VELOCITY_U: velocity_u,
        },
        obsm={TruthKey.FATE_PROBABILITIES: fate},
        varm={
            TruthKey.SWITCH_ON: model.genes.switch_on.copy(),
            TruthKey.SWITCH_OFF: model.genes.switch_off.copy(),
        },
        uns={TruthKey.SIMULATION: _copy_uns(model.uns)},
    )


def _copy_uns(value: Any) -> Any:
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
        return {k: _copy_uns(v) for k, v in value.items()}
    if isinstance(value, np.ndarray):
        return value.copy()
    return value


# --------------------------------------------------------------------------------------------------
# public API
# --------------------------------------------------------------------------------------------------


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
    config = _make_config(
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
    )
    workers = _resolve_n_jobs(n_jobs)
    model = _build_model(config)
    logger.debug("simulating %d cells x %d genes", config.n_cells, config.n_genes)
    return _chunk(model, 0, config.n_cells, workers)


def _iter_chunks(model: _Model, chunk_size: int, n_jobs: int) -> Iterator[ad.AnnData]:
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
        yield _chunk(model, start, min(start + chunk_size, model.config.n_cells), n_jobs)


def iter_simulate(
    n_cells: int = 3000,
    n_genes: int = 500,
    *,
    chunk_size: int = 10_000,
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
    n_jobs
        Worker threads per chunk, see :func:`simulate`.
    **kwargs
        Any other parameter of :func:`simulate` (``seed``, ``n_lineages``, ...).

    Returns
    -------
    Iterator[anndata.AnnData]
        Chunks with globally unique ``obs_names`` (``cell_0000000``...) whose concatenation equals
        ``simulate(n_cells, n_genes, **kwargs)`` exactly; each chunk carries the full ``var``,
        ``varm`` and ``uns``.

    Raises
    ------
    ValueError
        Naming the parameter, for invalid inputs.
    """
    config = _make_config(n_cells, n_genes, **kwargs)
    chunk_size = _check_int("chunk_size", chunk_size, 1)
    workers = _resolve_n_jobs(n_jobs)
    return _iter_chunks(_build_model(config), chunk_size, workers)


def simulate_shards(
    directory: str | os.PathLike[str],
    n_cells: int = 1_000_000,
    n_genes: int = 500,
    *,
    shard_size: int = 100_000,
    compression: Literal["gzip", "lzf"] | None = None,
    show_progress: bool = True,
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
    n_jobs
        Worker threads, see :func:`simulate`.
    **kwargs
        Any other parameter of :func:`simulate`.

    Returns
    -------
    list of pathlib.Path
        ``directory / "shard_00000.h5ad"``, ... in cell order; reading and concatenating them gives
        ``simulate(n_cells, n_genes, **kwargs)``.

    Raises
    ------
    ValueError
        Naming the parameter, for invalid inputs.
    """
    from tqdm.auto import tqdm

    shard_size = _check_int("shard_size", shard_size, 1)
    chunks = iter_simulate(n_cells, n_genes, chunk_size=shard_size, n_jobs=n_jobs, **kwargs)
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
