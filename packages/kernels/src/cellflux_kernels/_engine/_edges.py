"""Per-edge similarity terms of a kNN graph, compiled: one pass over each edge's genes, no gather.

For every edge ``(i, j)`` the displacement ``d = x_j - x_i`` is formed gene by gene in float64 (from
float32 or float64 storage) and reduced on the fly to ``d . (v_w - vbar_w)`` and ``|d - mean(d)|^2``
(or ``|d|^2``), where ``w`` is the cell whose velocity is compared (``i``, or ``j`` for CellRank's
backward ``"transpose"`` mode). Nothing of size ``edges x genes`` is materialised, rows run in
parallel and the compiled functions are cached on disk (the first call after installation compiles
them, a few seconds).
"""

from __future__ import annotations

import numba as nb
import numpy as np
from tqdm.auto import tqdm

__all__ = ["edge_terms", "nonfinite_columns", "row_center_norm"]


@nb.njit(parallel=True, fastmath=True, cache=True, nogil=True)
def _edge_terms(indptr, indices, X, V, vbar, use_neighbor, center, r0, r1, dot_out, d2_out):  # pragma: no cover
    # fastmath lets the gene loop vectorise (sums reassociated, ~1e-16 relative); inputs are finite
    G = X.shape[1]
    for i in nb.prange(r0, r1):
        xi = X[i]
        for e in range(indptr[i], indptr[i + 1]):
            j = indices[e]
            w = j if use_neighbor else i
            xj = X[j]
            vw = V[w]
            mw = vbar[w]
            s = 0.0
            dot = 0.0
            d2 = 0.0
            for g in range(G):
                d = np.float64(xj[g]) - np.float64(xi[g])
                s += d
                dot += d * (np.float64(vw[g]) - mw)
                d2 += d * d
            if center:
                c2 = d2 - s * s / G
                if c2 <= 1e-6 * d2:
                    # nearly a constant shift: the one-pass formula cancels, take two passes
                    mu = s / G
                    c2 = 0.0
                    for g in range(G):
                        d = np.float64(xj[g]) - np.float64(xi[g]) - mu
                        c2 += d * d
                d2 = c2
            dot_out[e] = dot
            d2_out[e] = d2


@nb.njit(cache=True, nogil=True)
def _row_center_norm(V, center, mean_out, norm_out, zero_out):  # pragma: no cover - compiled
    n, G = V.shape
    for i in range(n):
        s = 0.0
        nz = False
        for g in range(G):
            v = np.float64(V[i, g])
            s += v
            nz = nz or v != 0.0
        m = s / G if center else 0.0
        q = 0.0
        for g in range(G):
            v = np.float64(V[i, g]) - m
            q += v * v
        mean_out[i] = m
        norm_out[i] = np.sqrt(q)
        zero_out[i] = not nz


@nb.njit(cache=True, nogil=True)
def _nonfinite_columns(A, out):  # pragma: no cover - compiled
    n, G = A.shape
    out[:] = False
    for i in range(n):
        for g in range(G):
            if not np.isfinite(A[i, g]):
                out[g] = True


def _as_compute(A: np.ndarray) -> np.ndarray:
    """C-contiguous float32/float64 without a copy when it already is one."""
    if A.dtype not in (np.float32, np.float64):
        A = A.astype(np.float64)
    return np.ascontiguousarray(A)


def row_center_norm(V: np.ndarray, *, center: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per row: the mean (0 unless ``center``), the norm of the (centred) row and whether it is all zero."""
    V = _as_compute(V)
    n = V.shape[0]
    mean, norm, zero = np.empty(n), np.empty(n), np.empty(n, dtype=np.bool_)
    _row_center_norm(V, bool(center), mean, norm, zero)
    return mean, norm, zero


def nonfinite_columns(A: np.ndarray) -> np.ndarray:
    """Which columns of ``A`` hold a NaN or an infinite value (no ``n x G`` temporary)."""
    A = _as_compute(A)
    out = np.empty(A.shape[1], dtype=np.bool_)
    _nonfinite_columns(A, out)
    return out


def edge_terms(
    indptr: np.ndarray,
    indices: np.ndarray,
    X: np.ndarray,
    V: np.ndarray,
    vbar: np.ndarray,
    *,
    use_neighbor: bool,
    center: bool,
    show_progress_bar: bool = False,
    rows_per_step: int = 1 << 15,
) -> tuple[np.ndarray, np.ndarray]:
    """``d . (v_w - vbar_w)`` and the squared norm of ``d`` (centred if ``center``) for every edge.

    Parameters
    ----------
    indptr, indices
        CSR structure of the graph.
    X, V
        Expression and velocity, ``(n_cells, n_genes)``, float32 or float64.
    vbar
        Per-cell value subtracted from the velocity (its mean for correlation, else 0).
    use_neighbor
        Compare with the neighbour's velocity ``v_j`` instead of ``v_i``.
    center
        Centre the displacement (Pearson correlation).
    show_progress_bar
        A tqdm bar over cells (the rows are processed in steps of ``rows_per_step``).
    rows_per_step
        Rows per compiled call.

    Returns
    -------
    Two float64 arrays aligned with ``indices``.
    """
    X, V = _as_compute(X), _as_compute(V)
    indptr, indices = np.ascontiguousarray(indptr), np.ascontiguousarray(indices)
    vbar = np.ascontiguousarray(vbar, dtype=np.float64)
    n = len(indptr) - 1
    dot = np.empty(len(indices))
    d2 = np.empty(len(indices))
    with tqdm(total=n, unit="cell", disable=not show_progress_bar, leave=False) as bar:
        for r0 in range(0, n, rows_per_step):
            r1 = min(n, r0 + rows_per_step)
            _edge_terms(indptr, indices, X, V, vbar, bool(use_neighbor), bool(center), r0, r1, dot, d2)
            bar.update(r1 - r0)
    return dot, d2
