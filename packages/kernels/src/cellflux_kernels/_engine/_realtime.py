"""Stitching optimal-transport couplings between time points into one transition matrix.

A time course with time points ``t_1 < ... < t_T`` gives couplings ``P[(t_a, t_b)]`` (source cells of
``t_a`` x target cells of ``t_b``). The transition matrix has, for the cells of a source time point,
the row-normalised coupling towards its target time point, optionally mixed with within-time-point
transitions (``conn_weight * T_within + (1 - conn_weight) * P``); the last time point, which has no
coupling, moves within itself. Everything is sparse; dense couplings are thresholded first.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from scipy import sparse

__all__ = ["entropic_coupling", "sparsify_couplings", "stitch"]

logger = logging.getLogger(__name__)


def _row_max(matrix: np.ndarray | sparse.csr_matrix) -> np.ndarray:
    if sparse.issparse(matrix):
        return np.asarray(matrix.max(axis=1).todense()).ravel()
    return np.asarray(matrix).max(axis=1)


def sparsify_couplings(
    couplings: Mapping[Any, np.ndarray | sparse.spmatrix], threshold: str | float | None
) -> dict[Any, sparse.csr_matrix]:
    """Remove small entries of dense couplings; sparse couplings are kept as they are.

    Parameters
    ----------
    couplings
        Couplings keyed by ``(source, target)``.
    threshold
        ``"auto"``: the largest value that leaves every row of every coupling one entry (the minimum
        over all rows of the row maxima); ``"auto_local"``: the same per coupling; a number in
        ``[0, 100]``: that percentile of the coupling's entries; ``None``: keep everything.

    Returns
    -------
    CSR couplings (float64).
    """
    if threshold is not None and not isinstance(threshold, str):
        if not 0 <= float(threshold) <= 100:
            raise ValueError(f"threshold must be 'auto', 'auto_local', None or in [0, 100], got {threshold!r}.")
    elif threshold not in (None, "auto", "auto_local"):
        raise ValueError(f"threshold must be 'auto', 'auto_local', None or in [0, 100], got {threshold!r}.")
    dense = {key: c for key, c in couplings.items() if not sparse.issparse(c)}
    glob = None
    if threshold == "auto" and dense:
        glob = min(float(_row_max(c).min()) for c in dense.values())
        logger.info("Using threshold=%.3g for the couplings.", glob)
    out: dict[Any, sparse.csr_matrix] = {}
    for key, c in couplings.items():
        if sparse.issparse(c):
            out[key] = sparse.csr_matrix(c, dtype=np.float64)
            continue
        c = np.asarray(c, dtype=np.float64)
        if threshold is None:
            cut = -np.inf
        elif threshold == "auto":
            cut = glob
        elif threshold == "auto_local":
            cut = float(_row_max(c).min())
        else:
            cut = float(np.percentile(c, float(threshold)))
        out[key] = sparse.csr_matrix(np.where(c >= cut, c, 0.0))
    return out


def stitch(
    time_codes: np.ndarray,
    couplings: Mapping[tuple[int, int], sparse.csr_matrix],
    within: Mapping[int, sparse.csr_matrix],
    *,
    mixed: Sequence[int] = (),
    conn_weight: float | None = None,
) -> tuple[sparse.csr_matrix, dict[tuple[int, int], int]]:
    """Assemble the ``n x n`` transition matrix in the cells' own order.

    Parameters
    ----------
    time_codes
        Integer time point of every cell (``0 .. T-1``).
    couplings
        ``(a, b) -> P`` with ``P`` of shape ``(n_a, n_b)``, cells of each time point in their order in
        ``time_codes``.
    within
        Time point ``a`` -> row-stochastic ``(n_a, n_a)`` transitions within it (for the time points
        without an outgoing coupling, and for those in ``mixed``).
    mixed
        Source time points whose rows are ``conn_weight * within + (1 - conn_weight) * coupling``.
    conn_weight
        Weight of the within-time-point transitions in ``mixed`` rows.

    Returns
    -------
    The row-stochastic CSR matrix and, per coupling, the number of its rows that were empty and
    were given uniform transitions to the target time point.
    """
    n = len(time_codes)
    members = {a: np.flatnonzero(time_codes == a) for a in np.unique(time_codes)}
    rows, cols, vals = [], [], []
    empty: dict[tuple[int, int], int] = {}
    by_source: dict[int, list[tuple[int, sparse.csr_matrix]]] = {}
    for (a, b), P in couplings.items():
        by_source.setdefault(a, []).append((b, P))
    for a, idx in members.items():
        parts: list[tuple[np.ndarray, sparse.csr_matrix, float]] = []
        outgoing = by_source.get(a, [])
        w_in = 0.0
        if not outgoing:
            w_in = 1.0
        elif a in mixed:
            w_in = float(conn_weight)
        if w_in > 0:
            if a not in within:
                raise ValueError(f"No within-time-point transitions for time point {a}.")
            parts.append((idx, within[a], w_in))
        for b, P in outgoing:
            P = sparse.csr_matrix(P, dtype=np.float64)
            sums = np.asarray(P.sum(axis=1)).ravel()
            zero = sums == 0
            # several targets from one source share the outgoing mass equally
            weight = (1.0 - w_in) / len(outgoing)
            parts.append((members[b], sparse.diags(np.where(zero, 0.0, 1.0 / np.where(zero, 1.0, sums))) @ P, weight))
            if zero.any():  # empty rows (unbalanced transport, zero marginals): uniform over the target
                empty[(a, b)] = int(zero.sum())
                zr, m = np.flatnonzero(zero), P.shape[1]
                uniform = sparse.csr_matrix(
                    (np.full(len(zr) * m, 1.0 / m), (np.repeat(zr, m), np.tile(np.arange(m), len(zr)))), shape=P.shape
                )
                parts.append((members[b], uniform, weight))
        for targets, block, weight in parts:
            coo = sparse.coo_matrix(block)
            rows.append(idx[coo.row])
            cols.append(targets[coo.col])
            vals.append(weight * coo.data)
    matrix = sparse.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n, n))
    matrix.sum_duplicates()
    matrix.eliminate_zeros()
    return matrix, empty


def entropic_coupling(
    x: np.ndarray,
    y: np.ndarray,
    *,
    epsilon: float | None = None,
    a: np.ndarray | None = None,
    b: np.ndarray | None = None,
    tau_a: float = 1.0,
    tau_b: float = 1.0,
    max_iterations: int = 2000,
) -> np.ndarray:
    """An entropic optimal-transport coupling between point clouds ``x`` and ``y`` with ott-jax's Sinkhorn.

    Parameters
    ----------
    x, y
        Source and target points (e.g. PCA coordinates), squared Euclidean cost.
    epsilon
        Entropic regularisation; ``None`` uses ott-jax's default (5% of the mean cost).
    a, b
        Source and target marginals (uniform by default; e.g. growth-rate weighted sources).
    tau_a, tau_b
        Unbalancedness (1: balanced).
    max_iterations
        Sinkhorn iterations at most.

    Returns
    -------
    The dense coupling, shape ``(len(x), len(y))``.
    """
    try:
        with warnings.catch_warnings():  # ott-jax imports jaxopt, which warns that it is unmaintained
            warnings.simplefilter("ignore", DeprecationWarning)
            from ott.geometry import pointcloud
            from ott.problems.linear import linear_problem
            from ott.solvers.linear import sinkhorn
    except ImportError as err:
        raise ImportError(
            "Computing optimal-transport couplings needs the optional package 'ott-jax' "
            "(pip install ott-jax, or cellflux-kernels[ot]); alternatively pass the couplings as matrices, "
            "e.g. from moscot."
        ) from err
    geom = pointcloud.PointCloud(np.asarray(x, dtype=np.float32), np.asarray(y, dtype=np.float32), epsilon=epsilon)
    problem = linear_problem.LinearProblem(geom, a=a, b=b, tau_a=tau_a, tau_b=tau_b)
    out = sinkhorn.Sinkhorn(max_iterations=max_iterations)(problem)
    if not bool(out.converged):
        logger.warning("Sinkhorn did not converge in %d iterations; the coupling is approximate.", max_iterations)
    return np.asarray(out.matrix, dtype=np.float64)
