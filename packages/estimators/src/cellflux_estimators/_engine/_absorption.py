"""Absorption (fate) probabilities and absorption times of a Markov chain with absorbing sets of states."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from scipy import sparse

from ._checks import ChainStructure, ReducibleChainError, chain_structure
from ._linsolve import AUTO_DIRECT_MAX, SolveError, SolveReport, solve_transient

__all__ = ["AbsorptionResult", "absorption_probabilities", "absorption_times", "check_absorbing"]

logger = logging.getLogger(__name__)

#: Negative or excess mass below this is rounding of the solver; above, the result is refused.
CLIP_TOL = 1e-3
#: ``solver="auto"`` accepts an iterative solution whose rows sum to 1 within ``ROWSUM_FACTOR * tol`` (at most
#: :data:`CLIP_TOL`); otherwise it re-solves (tighter GMRES above :data:`~._linsolve.AUTO_DIRECT_MAX` transient
#: states, then a sparse LU).
ROWSUM_FACTOR = 100.0
#: Smallest tolerance of the tighter re-solve of ``solver="auto"``.
MIN_RESOLVE_TOL = 1e-12


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


def _deviation(x: np.ndarray) -> tuple[float, float]:
    """Largest deviation of the rows of ``x`` (clipped to ``[0, 1]``) from summing to 1, and the clipped mass."""
    lo, hi = float(-x.min(initial=0.0)), float(x.max(initial=1.0) - 1.0)
    dev = float(np.abs(np.clip(x, 0.0, 1.0).sum(axis=1) - 1.0).max(initial=0.0))
    return (dev if np.isfinite(dev) else np.inf), max(lo, hi, 0.0)


def _solve_probabilities(q: sparse.csr_matrix, s: np.ndarray, solve_kwargs: dict) -> tuple[np.ndarray, SolveReport]:
    """Solve ``(I - q) x = s``; with ``solver="auto"``, re-solve until the rows of ``x`` sum to 1.

    Every row of the exact solution sums to 1 (the transient rows of the chain are stochastic and every cell
    can reach an absorbing set), so the row sums measure the error of an iterative solution. A relative residual
    of ``tol`` does not bound that error on an ill-conditioned (near-metastable) chain: the error can be of order
    1. ``"auto"`` therefore accepts an iterative solution only if its rows sum to 1 within
    ``min(ROWSUM_FACTOR * tol, CLIP_TOL)``; otherwise it re-solves with GMRES and a tolerance scaled by the
    observed deviation (above :data:`~._linsolve.AUTO_DIRECT_MAX` transient states) and, if that is not enough
    either, with a sparse LU. An explicitly chosen solver is used as asked.
    """
    x, report = solve_transient(q, s, **solve_kwargs)
    if solve_kwargs.get("solver", "auto") != "auto" or report.solver == "direct":
        return x, report
    tol = float(solve_kwargs.get("tol", 1e-6))
    accept = min(ROWSUM_FACTOR * tol, CLIP_TOL)
    dev, clipped = _deviation(x)
    if dev <= accept and clipped <= accept:
        return x, report
    logger.info(
        "The %s solve (relative residual %.3g) gave fate probabilities whose rows sum to 1 only within %.3g; "
        "the system is ill-conditioned, re-solving more accurately.",
        report.solver,
        report.max_residual,
        max(dev, clipped),
    )
    if q.shape[0] > AUTO_DIRECT_MAX:
        tighter = max(tol * 0.1 * accept / max(dev, clipped), MIN_RESOLVE_TOL)
        try:
            x2, report2 = solve_transient(q, s, **{**solve_kwargs, "tol": tighter})
        except SolveError:
            pass
        else:
            dev, clipped = _deviation(x2)
            if report2.solver == "direct" or (dev <= accept and clipped <= accept):
                return x2, report2
    return solve_transient(q, s, **{**solve_kwargs, "solver": "direct"})


def _inaccurate_message(x: np.ndarray, dev: float, clipped: float, report: SolveReport) -> str:
    bad = int(np.sum(np.abs(np.clip(x, 0.0, 1.0).sum(axis=1) - 1.0) > CLIP_TOL))
    what = (
        f"Fate probabilities of {bad} cell(s) do not sum to 1 (max deviation {dev:.3g})"
        if dev > CLIP_TOL
        else f"The solve returned fate probabilities outside [0, 1] by {clipped:.3g}"
    )
    if report.solver == "direct":
        return (
            f"{what} although the sparse direct solve has relative residual {report.max_residual:.3g}: some cells "
            "cannot reach any terminal state (or the chain is numerically singular)."
        )
    return (
        f"{what} after the {report.solver} solve with tol={report.tol:g} (relative residual "
        f"{report.max_residual:.3g}): the iterative solve is not accurate enough for this ill-conditioned chain. "
        "Use solver='direct' or solver='auto' (which checks the result and re-solves), or decrease tol."
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
    x, report = _solve_probabilities(q, s, solve_kwargs)
    dev, clipped = _deviation(x)
    if clipped > CLIP_TOL or dev > CLIP_TOL:
        raise ValueError(_inaccurate_message(x, dev, clipped, report))
    x = np.clip(x, 0.0, 1.0)
    sums = x.sum(axis=1, keepdims=True)
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
        b, _ = _solve_probabilities(q, s, solve_kwargs)
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
