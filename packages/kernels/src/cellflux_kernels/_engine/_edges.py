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

__all__ = ["edge_logits", "nonfinite_columns", "row_center_norm", "row_softmax"]


@nb.njit(parallel=True, fastmath=True, cache=True, nogil=True)
def _edge_terms(
    indptr, indices, X, V, vbar, vnorm, use_neighbor, center, scale_by_norm, sign, r0, r1, logit_out, masked_out
):  # pragma: no cover
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
            dot *= sign
            masked_out[e] = False
            if scale_by_norm:
                den = np.sqrt(max(d2, 0.0)) * vnorm[w]
                if den == 0.0:
                    masked_out[e] = True
                else:
                    dot /= den
            logit_out[e] = dot


@nb.njit(cache=True, nogil=True)
def _row_softmax(indptr, logits, masked, uniform, scale, out):  # pragma: no cover - compiled
    # the row maximum is taken over every entry, masked ones included, as CellRank does
    for i in range(len(indptr) - 1):
        a, b = indptr[i], indptr[i + 1]
        if b == a:
            continue
        if uniform[i]:
            for e in range(a, b):
                out[e] = 1.0 / (b - a)
            continue
        top = -np.inf
        for e in range(a, b):
            top = max(top, scale * logits[e])
        total = 0.0
        for e in range(a, b):
            v = 0.0 if masked[e] else np.exp(scale * logits[e] - top)
            out[e] = v
            total += v
        for e in range(a, b):
            out[e] = out[e] / total if total > 0 else np.nan


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


def row_softmax(
    indptr: np.ndarray, logits: np.ndarray, masked: np.ndarray, uniform: np.ndarray, scale: float
) -> np.ndarray:
    """Per-row softmax of ``scale * logits`` over CSR rows: masked entries 0, ``uniform`` rows ``1/degree``.

    A row whose entries are all masked (and that is not ``uniform``) gets NaN, which the row-stochastic
    check reports.
    """
    out = np.empty(len(logits))
    _row_softmax(
        np.ascontiguousarray(indptr),
        np.ascontiguousarray(logits, dtype=np.float64),
        np.ascontiguousarray(masked, dtype=np.bool_),
        np.ascontiguousarray(uniform, dtype=np.bool_),
        float(scale),
        out,
    )
    return out


def edge_logits(
    indptr: np.ndarray,
    indices: np.ndarray,
    X: np.ndarray,
    V: np.ndarray,
    vbar: np.ndarray,
    vnorm: np.ndarray,
    *,
    use_neighbor: bool,
    center: bool,
    scale_by_norm: bool,
    sign: float = 1.0,
    show_progress_bar: bool = False,
    rows_per_step: int = 1 << 15,
) -> tuple[np.ndarray, np.ndarray]:
    """The similarity of every edge's displacement with a velocity, and which edges have none.

    ``sign * d . (v_w - vbar_w)``, divided by ``|d_c| |v_w - vbar_w|`` if ``scale_by_norm`` (``d_c``
    is ``d`` centred if ``center``); edges where that norm product is 0 are masked.

    Parameters
    ----------
    indptr, indices
        CSR structure of the graph.
    X, V
        Expression and velocity, ``(n_cells, n_genes)``, float32 or float64.
    vbar
        Per-cell value subtracted from the velocity (its mean for correlation, else 0).
    vnorm
        Per-cell norm of ``v - vbar``.
    use_neighbor
        Compare with the neighbour's velocity ``v_j`` instead of ``v_i``.
    center
        Centre the displacement (Pearson correlation).
    scale_by_norm
        Divide by the norms (correlation, cosine).
    sign
        ``-1`` for the backward modes.
    show_progress_bar
        A tqdm bar over cells (the rows are processed in steps of ``rows_per_step``).
    rows_per_step
        Rows per compiled call.

    Returns
    -------
    Float64 logits and a boolean mask, aligned with ``indices``.
    """
    X, V = _as_compute(X), _as_compute(V)
    indptr, indices = np.ascontiguousarray(indptr), np.ascontiguousarray(indices)
    vbar = np.ascontiguousarray(vbar, dtype=np.float64)
    vnorm = np.ascontiguousarray(vnorm, dtype=np.float64)
    n = len(indptr) - 1
    logits = np.empty(len(indices))
    masked = np.empty(len(indices), dtype=np.bool_)
    with tqdm(total=n, unit="cell", disable=not show_progress_bar, leave=False) as bar:
        for r0 in range(0, n, rows_per_step):
            r1 = min(n, r0 + rows_per_step)
            _edge_terms(
                indptr,
                indices,
                X,
                V,
                vbar,
                vnorm,
                bool(use_neighbor),
                bool(center),
                bool(scale_by_norm),
                float(sign),
                r0,
                r1,
                logits,
                masked,
            )
            bar.update(r1 - r0)
    return logits, masked
