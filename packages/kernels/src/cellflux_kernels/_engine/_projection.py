"""Projection of a transition matrix onto an embedding (scVelo's velocity_embedding, vectorised)."""

from __future__ import annotations

import numpy as np
from scipy import sparse

from ._csr import row_ids, segment_sum

__all__ = ["project", "quiver_autoscale"]


def project(transition: sparse.csr_matrix, connectivities: sparse.csr_matrix, embedding: np.ndarray) -> np.ndarray:
    """Expected unit displacement under ``transition`` minus the mean unit displacement to the neighbours.

    For every cell ``i`` and neighbour ``j`` (the non-zeros of ``connectivities``), the displacement
    ``e_j - e_i`` is normalised to unit length; the projection is ``sum_j T_ij d_ij - mean_j d_ij``.
    Cells with a NaN displacement get NaN. The result is not yet scaled for display.
    """
    conn = sparse.csr_matrix(connectivities)
    conn.sort_indices()
    emb = np.asarray(embedding, dtype=np.float64)
    rows = row_ids(conn.indptr)
    d = emb[conn.indices] - emb[rows]
    nan_rows = np.zeros(conn.shape[0], dtype=bool)
    nan_rows[rows[np.isnan(d).any(axis=1)]] = True
    with np.errstate(invalid="ignore", divide="ignore"):
        d = np.nan_to_num(d / np.linalg.norm(d, axis=1)[:, None])
    # the transition probabilities on the edges of the connectivity graph
    t_on_edges = np.asarray(sparse.csr_matrix(transition)[rows, conn.indices]).ravel()
    degree = np.diff(conn.indptr)
    out = np.empty_like(emb)
    for dim in range(emb.shape[1]):
        out[:, dim] = segment_sum(t_on_edges * d[:, dim], conn.indptr) - segment_sum(
            d[:, dim], conn.indptr
        ) / np.maximum(degree, 1)
    out[nan_rows] = np.nan
    return out


def quiver_autoscale(embedding: np.ndarray, vectors: np.ndarray) -> float:
    """Matplotlib's automatic arrow scale for these vectors, as scVelo uses it (needs matplotlib)."""
    from matplotlib.figure import Figure

    scale_factor = np.abs(embedding).max()
    fig = Figure()
    ax = fig.subplots()
    quiver = ax.quiver(
        embedding[:, 0] / scale_factor,
        embedding[:, 1] / scale_factor,
        vectors[:, 0],
        vectors[:, 1],
        angles="xy",
        scale_units="xy",
        scale=None,
    )
    quiver._init()
    return quiver.scale / scale_factor
