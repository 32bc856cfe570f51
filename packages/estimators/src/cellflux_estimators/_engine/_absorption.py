"""Absorption (fate) probabilities and absorption times of a Markov chain with absorbing sets of states."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from scipy import sparse

from ._checks import ChainStructure, ReducibleChainError, chain_structure
from ._linsolve import SolveReport, solve_transient

__all__ = ["AbsorptionResult", "absorption_probabilities", "absorption_times", "check_absorbing"]

logger = logging.getLogger(__name__)

#: Negative or excess mass below this is rounding of the solver; above, the result is refused.
CLIP_TOL = 1e-3


@dataclass(frozen=True)
class AbsorptionResult:
    """Fate probabilities with how they were obtained.

    Attributes
    ----------
    probabilities
        Shape ``(n, k)``, in ``[0, 1]``, rows summing to 1.
    report
        The linear solve's :class:`~._linsolve.SolveReport`.
    clipped
        Largest amount by which raw values were outside ``[0, 1]`` and clipped (rounding of the solver).
    """

    probabilities: np.ndarray
    report: SolveReport
    clipped: float


def _split(n: int, sets: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    absorbing = np.zeros(n, dtype=bool)
    for s in sets:
        if len(s) == 0:
            raise ValueError("An absorbing set (terminal state) has no cells.")
        if np.any(absorbing[s]):
            raise ValueError("Absorbing sets (terminal states) overlap; each cell may belong to one only.")
        absorbing[s] = True
    trans = np.flatnonzero(~absorbing)
    if len(trans) == 0:
        raise ValueError("Every cell is in a terminal state; there are no transient cells to compute fates for.")
    return absorbing, trans


def check_absorbing(matrix: sparse.csr_matrix, absorbing: np.ndarray, structure: ChainStructure | None = None) -> None:
    """Raise :class:`ReducibleChainError` if some closed class of the chain contains no absorbing state.

    ``structure`` is the chain's :class:`~._checks.ChainStructure` when already known.
    """
    structure = chain_structure(matrix) if structure is None else structure
    if structure.irreducible:
        return
    missing = [c for c in structure.closed if not np.any(absorbing[structure.labels == c])]
    if missing:
        sizes = np.bincount(structure.labels)
        n_cells = int(sum(sizes[c] for c in missing))
        raise ReducibleChainError(
            f"{structure.describe()} {len(missing)} closed class(es) with {n_cells} cell(s) contain no terminal "
            "state, so random walks entering them are never absorbed and fate probabilities are undefined. "
            "Add a terminal state in each closed class (e.g. predict more terminal states), or fix the kernel "
            "(disconnected cells usually come from a neighbour graph with several components)."
        )


def absorption_probabilities(
    matrix: sparse.csr_matrix,
    sets: list[np.ndarray],
    *,
    check: bool = True,
    structure: ChainStructure | None = None,
    **solve_kwargs,
) -> AbsorptionResult:
    """Probability of each state to be absorbed in each of the disjoint sets ``sets``.

    Parameters
    ----------
    matrix
        Row-stochastic transition matrix ``(n, n)``.
    sets
        Index arrays of the absorbing sets (terminal states), disjoint.
    check
        Check that every closed class of the chain contains an absorbing state.
    structure
        The chain's communicating classes, if already known (saves recomputing them for ``check``).
    solve_kwargs
        For :func:`~._linsolve.solve_transient` (solver, preconditioner, tol, ...).

    Returns
    -------
    The :class:`AbsorptionResult`.
    """
    n = matrix.shape[0]
    absorbing, trans = _split(n, sets)
    if check:
        check_absorbing(matrix, absorbing, structure)
    rows = matrix[trans]
    q = rows[:, trans]
    s = np.column_stack([np.asarray(rows[:, idx].sum(axis=1)).ravel() for idx in sets])
    x, report = solve_transient(q, s, **solve_kwargs)
    lo, hi = float(-x.min(initial=0.0)), float(x.max(initial=1.0) - 1.0)
    clipped = max(lo, hi, 0.0)
    if clipped > CLIP_TOL:
        raise ValueError(
            f"The solve returned fate probabilities outside [0, 1] by {clipped:.3g} (residual "
            f"{report.max_residual:.3g}); decrease tol or use solver='direct'."
        )
    x = np.clip(x, 0.0, 1.0)
    sums = x.sum(axis=1, keepdims=True)
    if np.any(np.abs(sums - 1.0) > CLIP_TOL):
        raise ValueError(
            f"Fate probabilities of {int(np.sum(np.abs(sums - 1) > CLIP_TOL))} cell(s) do not sum to 1 "
            f"(max deviation {np.abs(sums - 1).max():.3g}): some cells cannot reach any terminal state."
        )
    x /= sums
    probs = np.zeros((n, len(sets)))
    probs[trans] = x
    for j, idx in enumerate(sets):
        probs[idx, j] = 1.0
    return AbsorptionResult(probabilities=probs, report=report, clipped=clipped)


def absorption_times(
    matrix: sparse.csr_matrix,
    sets: list[np.ndarray],
    *,
    calculate_variance: bool = False,
    check: bool = True,
    structure: ChainStructure | None = None,
    **solve_kwargs,
) -> tuple[list[np.ndarray], list[np.ndarray] | None]:
    """Mean (and variance of) the number of steps until absorption.

    With one set: the time to reach it. With several: for each set, the time to reach it conditional on
    being absorbed there (the Doob h-transform of the chain); ``inf`` where that set is unreachable.

    Parameters
    ----------
    matrix
        Row-stochastic transition matrix.
    sets
        Disjoint absorbing sets.
    calculate_variance
        Also compute the variance.
    check
        Check that every closed class contains an absorbing state.
    structure
        The chain's communicating classes, if already known.
    solve_kwargs
        For :func:`~._linsolve.solve_transient`.

    Returns
    -------
    Means per set and variances per set (``None`` unless asked), each of length ``n``.
    """
    n = matrix.shape[0]
    absorbing, trans = _split(n, sets)
    if check:
        check_absorbing(matrix, absorbing, structure)
    rows = matrix[trans]
    q = rows[:, trans]
    means, variances = [], [] if calculate_variance else None
    if len(sets) == 1:
        h = [np.ones(len(trans))]
    else:
        s = np.column_stack([np.asarray(rows[:, idx].sum(axis=1)).ravel() for idx in sets])
        b, _ = solve_transient(q, s, **solve_kwargs)
        h = [np.clip(b[:, j], 0.0, None) for j in range(len(sets))]
    for j, idx in enumerate(sets):
        hj = h[j]
        reach = hj > 1e-12
        # conditional chain on the states that reach set j: Q~ = D^-1 Q D, solve (I - Q~) m = 1
        sub = np.flatnonzero(reach)
        d = hj[sub]
        qs = sparse.diags(1.0 / d) @ q[sub][:, sub] @ sparse.diags(d)
        m, _ = solve_transient(qs, np.ones(len(sub)), **solve_kwargs)
        mean = np.full(n, np.inf)
        mean[idx] = 0.0
        mean_t = np.full(len(trans), np.inf)
        mean_t[sub] = m
        mean[trans] = mean_t
        means.append(mean)
        if calculate_variance:
            w, _ = solve_transient(qs, m, **solve_kwargs)
            v = np.clip(2.0 * w - m - m**2, 0.0, None)
            var = np.full(n, np.nan)
            var[idx] = 0.0
            var_t = np.full(len(trans), np.nan)
            var_t[sub] = v
            var[trans] = var_t
            variances.append(var)
    return means, variances
