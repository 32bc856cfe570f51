"""Parameter validation and the resolved configuration of a simulation (see :func:`simulate`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from ._constants import PROGENITOR

__all__ = ["Config", "DeDirection", "check_int", "is_int", "make_config"]

DeDirection = Literal["both", "up", "down"]


@dataclass(frozen=True)
class Config:
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
    truth_layers: bool


def is_int(value: Any) -> bool:
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


def check_int(name: str, value: Any, minimum: int) -> int:
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
    if not is_int(value) or value < minimum:
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
    if is_int(value) and -len(lineage_names) <= value < len(lineage_names):
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
    if is_int(value):
        return check_int("de_genes", value, 0)
    if isinstance(value, Sequence | np.ndarray) and not isinstance(value, str):
        indices = tuple(value)
        if not all(is_int(i) and 0 <= i < n_genes for i in indices) or len(set(indices)) != len(indices):
            raise ValueError(f"`de_genes` indices must be unique integers in [0, {n_genes}).")
        return tuple(int(i) for i in indices)
    raise ValueError(f"`de_genes` must be None, an integer or a sequence of gene indices, got {value!r}.")


def make_config(
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
) -> Config:
    """Validate the parameters of :func:`simulate` and resolve the defaults.

    Parameters
    ----------
    n_cells, n_genes, n_lineages, lineage_names, lineage_weights, t_branch, terminal_time, initial_time
        See :func:`simulate`.
    cell_cycle, n_conditions, condition_names, n_samples_per_condition, sample_variability
        See :func:`simulate`.
    da_lineage, da_factor, de_genes, de_lineage, de_fold_change, de_direction, de_time_start
        See :func:`simulate`.
    unspliced_ratio, seed, truth_layers
        See :func:`simulate`.

    Returns
    -------
    Config
        The resolved configuration.

    Raises
    ------
    ValueError
        Naming the offending parameter.
    """
    n_cells = check_int("n_cells", n_cells, 1)
    n_genes = check_int("n_genes", n_genes, 1)
    n_lineages = check_int("n_lineages", n_lineages, 2)
    if lineage_names is None:
        lineage_names = tuple(f"lineage_{i + 1}" for i in range(n_lineages))
    lineage_names = _check_names("lineage_names", lineage_names, n_lineages)
    if PROGENITOR in lineage_names:
        raise ValueError(f"`lineage_names` must not contain {PROGENITOR!r} (the trunk's state name).")
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
    if not is_int(n_conditions) or n_conditions not in (1, 2):
        raise ValueError(f"`n_conditions` must be 1 or 2, got {n_conditions!r}.")
    condition_names = _check_names("condition_names", condition_names, -1)
    if len(condition_names) < n_conditions:
        raise ValueError(f"`condition_names` must hold at least {n_conditions} names, got {condition_names!r}.")
    n_samples_per_condition = check_int("n_samples_per_condition", n_samples_per_condition, 1)
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
    seed = check_int("seed", seed, 0)
    if not isinstance(truth_layers, bool | np.bool_):
        raise ValueError(f"`truth_layers` must be a bool, got {truth_layers!r}.")
    return Config(
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
        truth_layers=bool(truth_layers),
    )
