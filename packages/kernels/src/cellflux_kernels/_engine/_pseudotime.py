"""Biasing a kNN graph by pseudotime (hard: Palantir-like, soft: VIA-like), over all edges at once."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy import sparse

from ._csr import row_ids

__all__ = ["bias_callable", "bias_hard", "bias_soft", "keep_strongest"]


def keep_strongest(conn: sparse.csr_matrix, n_keep: np.ndarray) -> np.ndarray:
    """Mask of the ``n_keep[i]`` strongest edges of every row ``i`` (by connectivity)."""
    rows = row_ids(conn.indptr)
    order = np.lexsort((-conn.data, rows))  # by row, then decreasing weight
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order)) - conn.indptr[rows[order]]
    return rank < n_keep[rows]


def bias_hard(conn: sparse.csr_matrix, pseudotime: np.ndarray, *, frac_to_keep: float = 0.3) -> sparse.csr_matrix:
    """Remove edges into the pseudotemporal past, keeping each row's ``frac_to_keep`` strongest edges.

    Each row keeps ``min(30, floor(degree * frac_to_keep))`` of its strongest neighbours whatever their
    pseudotime (so that the graph stays connected) and every neighbour not earlier than itself.
    """
    if not 0 <= frac_to_keep <= 1:
        raise ValueError(f"frac_to_keep must be in [0, 1], got {frac_to_keep}.")
    degree = np.diff(conn.indptr)
    n_keep = np.clip(np.floor(degree * frac_to_keep).astype(np.int64), 0, 30)
    return _bias_with_keep(conn, pseudotime, n_keep)


def _bias_with_keep(conn: sparse.csr_matrix, pseudotime: np.ndarray, n_keep: np.ndarray) -> sparse.csr_matrix:
    rows = row_ids(conn.indptr)
    keep = keep_strongest(conn, n_keep) | (pseudotime[rows] <= pseudotime[conn.indices])
    out = sparse.csr_matrix((np.where(keep, conn.data, 0.0), conn.indices.copy(), conn.indptr.copy()), shape=conn.shape)
    out.eliminate_zeros()
    return out


def bias_soft(
    conn: sparse.csr_matrix, pseudotime: np.ndarray, *, b: float = 10.0, nu: float = 0.5
) -> sparse.csr_matrix:
    """Down-weight edges into the past by the generalised logistic ``2 / (1 + exp(b * dt))**(1 / nu)``."""
    if nu <= 0:
        raise ValueError(f"nu must be positive, got {nu}.")
    rows = row_ids(conn.indptr)
    dt = pseudotime[rows] - pseudotime[conn.indices]
    past = dt > 0
    weights = np.ones_like(conn.data)
    # log(1 + exp(x)) computed stably, so that large b * dt gives weight 0 without overflow
    weights[past] = 2.0 * np.exp(-np.logaddexp(0.0, b * dt[past]) / nu)
    out = sparse.csr_matrix((conn.data * weights, conn.indices.copy(), conn.indptr.copy()), shape=conn.shape)
    out.eliminate_zeros()
    return out


def bias_callable(
    conn: sparse.csr_matrix,
    pseudotime: np.ndarray,
    scheme: Callable[..., np.ndarray],
    **kwargs: object,
) -> sparse.csr_matrix:
    """Apply a user scheme ``f(cell_pseudotime, neighbor_pseudotime, neighbor_conn, **kwargs)`` row by row."""
    data = np.zeros_like(conn.data)
    for i in range(conn.shape[0]):
        start, end = conn.indptr[i], conn.indptr[i + 1]
        if start == end:
            continue
        biased = np.asarray(scheme(pseudotime[i], pseudotime[conn.indices[start:end]], conn.data[start:end], **kwargs))
        if biased.shape != (end - start,):
            raise ValueError(
                f"The threshold scheme returned shape {biased.shape} for cell {i}; expected ({end - start},)."
            )
        data[start:end] = biased
    if np.any(~np.isfinite(data)) or np.any(data < 0):
        raise ValueError("The threshold scheme returned negative, NaN or infinite connectivities.")
    out = sparse.csr_matrix((data, conn.indices.copy(), conn.indptr.copy()), shape=conn.shape)
    out.eliminate_zeros()
    return out
