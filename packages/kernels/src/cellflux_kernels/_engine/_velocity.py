"""Velocity transition probabilities over the edges of a kNN graph, vectorised.

For every edge ``(i, j)`` of the graph the displacement ``x_j - x_i`` is compared with the velocity
``v_i`` (Pearson correlation, cosine or dot product) and a softmax over each row turns the
similarities into probabilities, as in CellRank's deterministic model. Work is done in blocks of
rows padded to their largest degree, so there is no Python loop over cells.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy import sparse
from tqdm.auto import tqdm

from ._chunks import DEFAULT_BUDGET, RowChunk, row_chunks
from ._edges import edge_logits, row_center_norm, row_softmax

__all__ = [
    "BackwardMode",
    "EdgeResult",
    "all_masked_rows",
    "edges_to_csr",
    "SIMILARITIES",
    "estimate_softmax_scale",
    "similarity_callable",
    "similarity_logits",
    "softmax_from_logits",
    "stochastic_probabilities",
]

Similarity = Literal["correlation", "cosine", "dot_product"]
BackwardMode = Literal["transpose", "negate"] | None
SimilarityFn = Callable[[np.ndarray, np.ndarray, float], tuple[np.ndarray, np.ndarray]]

#: similarity name to (center_mean, scale_by_norm), CellRank's definitions.
SIMILARITIES: dict[str, tuple[bool, bool]] = {
    "correlation": (True, True),
    "cosine": (False, True),
    "dot_product": (False, False),
}


@dataclass
class EdgeResult:
    """Per-edge logits (similarities) and the masks needed to turn them into probabilities.

    Attributes
    ----------
    logits
        Similarity of every stored edge, aligned with the graph's ``indices``.
    masked
        Edges whose similarity is undefined (zero norm); they get probability 0.
    uniform
        Rows whose velocity is exactly zero, or whose every edge would be masked (e.g. every neighbour
        has the cell's expression); they get uniform probabilities and logits 0.
    """

    logits: np.ndarray
    masked: np.ndarray
    uniform: np.ndarray


def _progress(total: int, show: bool, unit: str = "cell") -> tqdm:
    return tqdm(total=total, unit=unit, disable=not show, leave=False)


class _Buffer:
    """A reusable flat float64 buffer, so that blocks do not pay for fresh memory every time."""

    def __init__(self) -> None:
        self._data = np.empty(0)

    def get(self, shape: tuple[int, ...]) -> np.ndarray:
        size = int(np.prod(shape))
        if self._data.size < size:
            self._data = np.empty(size)
        return self._data[:size].reshape(shape)


def _displacements(chunk: RowChunk, X: np.ndarray, buffer: _Buffer | None = None) -> np.ndarray:
    """``x_j - x_i`` for the chunk's edges, shape ``(c, k, G)`` (padded entries are 0)."""
    c, k = chunk.neighbors.shape
    if buffer is None:
        D = np.take(X, chunk.neighbors.ravel(), axis=0).reshape(c, k, X.shape[1])
    else:
        D = buffer.get((c, k, X.shape[1]))
        np.take(X, chunk.neighbors.ravel(), axis=0, out=D.reshape(c * k, X.shape[1]))
    D -= X[chunk.rows][:, None, :]
    return D


def similarity_logits(
    indptr: np.ndarray,
    indices: np.ndarray,
    X: np.ndarray,
    V: np.ndarray,
    *,
    similarity: Similarity = "correlation",
    backward_mode: BackwardMode = None,
    budget: int = DEFAULT_BUDGET,
    show_progress_bar: bool = False,
) -> EdgeResult:
    """Similarities between velocities and displacements for every edge of a CSR graph.

    Each edge's displacement ``d = x_j - x_i`` is reduced gene by gene, in float64, to ``v . d`` and
    ``|d|^2`` by a compiled loop over the edges (see :mod:`._edges`); no ``edges x genes`` array is
    formed and float32 inputs are not copied.

    Parameters
    ----------
    indptr, indices
        The CSR structure of the kNN graph (``n_cells`` rows).
    X
        Expression, shape ``(n_cells, n_genes)``.
    V
        Velocity, shape ``(n_cells, n_genes)``.
    similarity
        ``"correlation"``, ``"cosine"`` or ``"dot_product"``.
    backward_mode
        ``None`` (forward), ``"negate"`` (compare with ``-v_i``) or ``"transpose"`` (compare the
        neighbour's velocity ``v_j`` with ``x_i - x_j``).
    budget
        Unused (kept for compatibility); the compiled loop needs no blocks.
    show_progress_bar
        Show a tqdm bar over cells.

    Returns
    -------
    The per-edge logits and masks.
    """
    center, scale_by_norm = SIMILARITIES[similarity]
    transpose = backward_mode == "transpose"
    vbar, vnorm, zero = row_center_norm(V, center=center)
    # -v_i . d (negate) or v_j . (x_i - x_j) (transpose)
    logits, masked = edge_logits(
        indptr,
        indices,
        X,
        V,
        vbar,
        vnorm,
        use_neighbor=transpose,
        center=center,
        scale_by_norm=scale_by_norm,
        sign=-1.0 if backward_mode is not None else 1.0,
        show_progress_bar=show_progress_bar,
    )
    uniform = np.zeros(len(indptr) - 1, dtype=bool) if transpose else zero
    # a row whose every similarity is undefined (all displacements zero, or no velocity direction)
    # is treated like a zero-velocity cell: uniform over its neighbours
    uniform = uniform | all_masked_rows(indptr, masked)
    if uniform.any():
        rows_uniform = np.repeat(uniform, np.diff(indptr))
        logits[rows_uniform] = 0.0
        masked[rows_uniform] = False
    return EdgeResult(logits=logits, masked=masked, uniform=uniform)


def all_masked_rows(indptr: np.ndarray, masked: np.ndarray) -> np.ndarray:
    """Per CSR row: whether it has edges and every one of them is masked."""
    degree = np.diff(indptr)
    n_masked = np.add.reduceat(masked.astype(np.int64), indptr[:-1]) if len(masked) else np.zeros(len(degree))
    return (degree > 0) & (np.where(degree > 0, n_masked, -1) == degree)


def similarity_callable(
    indptr: np.ndarray,
    indices: np.ndarray,
    X: np.ndarray,
    V: np.ndarray,
    similarity: SimilarityFn,
    softmax_scale: float,
    *,
    backward_mode: BackwardMode = None,
    show_progress_bar: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities and logits from a user similarity ``f(v, D, softmax_scale) -> (probs, logits)``, row by row.

    ``v`` has shape ``(1, n_genes)`` (or ``(n_neighbors, n_genes)`` for ``backward_mode="transpose"``)
    and ``D`` ``(n_neighbors, n_genes)``, as in CellRank.
    """
    X = np.asarray(X, dtype=np.float64)
    V = np.asarray(V, dtype=np.float64)
    probs = np.zeros(len(indices))
    logits = np.zeros(len(indices))
    for i in tqdm(range(len(indptr) - 1), unit="cell", disable=not show_progress_bar, leave=False):
        start, end = indptr[i], indptr[i + 1]
        nbrs = indices[start:end]
        if not len(nbrs):
            continue
        W = X[nbrs] - X[i]
        if backward_mode == "transpose":
            p, c = similarity(V[nbrs].copy(), -W, softmax_scale)
        elif not np.any(V[i] != 0):
            p, c = np.full(len(nbrs), 1.0 / len(nbrs)), np.zeros(len(nbrs))
        else:
            v = -V[i] if backward_mode == "negate" else V[i].copy()
            p, c = similarity(v[None, :], W, softmax_scale)
        p, c = np.asarray(p, dtype=np.float64), np.asarray(c, dtype=np.float64)
        if p.shape != (len(nbrs),) or c.shape != (len(nbrs),):
            raise ValueError(
                f"The similarity function returned shapes {p.shape} and {c.shape} for cell {i}; "
                f"expected ({len(nbrs)},) each (probabilities, logits)."
            )
        probs[start:end], logits[start:end] = p, c
    return probs, logits


def softmax_from_logits(result: EdgeResult, indptr: np.ndarray, softmax_scale: float) -> np.ndarray:
    """Per-edge probabilities: masked softmax of ``softmax_scale * logits`` per row, uniform rows 1/degree."""
    return row_softmax(indptr, result.logits, result.masked, result.uniform, softmax_scale)


def estimate_softmax_scale(logits: np.ndarray) -> float:
    """CellRank's estimate: ``1 / median(|logits|)`` over the non-zero logits of a deterministic run."""
    nonzero = np.abs(logits[logits != 0])
    if not len(nonzero):
        raise ValueError("Cannot estimate softmax_scale: every logit is zero (are all velocities zero?).")
    return float(1.0 / np.median(nonzero))


def stochastic_probabilities(
    indptr: np.ndarray,
    indices: np.ndarray,
    X: np.ndarray,
    Vmean: np.ndarray,
    Vvar: np.ndarray,
    softmax_scale: float,
    *,
    similarity: Similarity = "correlation",
    budget: int = DEFAULT_BUDGET,
    show_progress_bar: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Expected transition probabilities under Gaussian velocity uncertainty, second order, in closed form.

    For every cell, the probabilities ``p(v)`` are expanded to second order around the mean velocity
    (CellRank's stochastic model): ``E[p] ~ p(m) + 1/2 sum_g d2p/dv_g^2 var_g``. The diagonal of the
    Hessian of the softmax of the similarities is written out analytically, so no automatic
    differentiation and no per-cell loop is needed.

    Returns
    -------
    Per-edge probabilities and (zero-order) logits, aligned with ``indices``.
    """
    center, scale_by_norm = SIMILARITIES[similarity]
    s = float(softmax_scale)
    X = np.asarray(X, dtype=np.float64)
    M = np.asarray(Vmean, dtype=np.float64)
    S2 = np.asarray(Vvar, dtype=np.float64)
    n, G = M.shape
    probs = np.zeros(len(indices))
    logits = np.zeros(len(indices))
    uniform = ~np.any(M != 0, axis=1)
    Mc = M - M.mean(axis=1, keepdims=True) if center else M
    kappa = 1.0 - 1.0 / G if center else 1.0
    buffer = _Buffer()
    with _progress(n, show_progress_bar) as bar:
        for chunk in row_chunks(indptr, indices, 2 * G, budget=budget):
            D = _displacements(chunk, X, buffer)
            if center:
                D -= D.mean(axis=2, keepdims=True)
            valid = chunk.valid
            m = Mc[chunk.rows]
            sig = S2[chunk.rows]
            if scale_by_norm:
                r = np.sqrt(np.einsum("cg,cg->c", m, m))
                dn = np.sqrt(np.einsum("ckg,ckg->ck", D, D))
                mask = (dn * r[:, None] == 0) | ~valid
                with np.errstate(invalid="ignore", divide="ignore"):
                    W = D / np.where(mask, 1.0, dn)[..., None]
                    u = m / np.where(r == 0, 1.0, r)[:, None]
                W[mask] = 0.0
                c = np.matmul(W, u[:, :, None])[..., 0]
            else:
                mask = ~valid
                W = D
                W[mask] = 0.0
                c = np.matmul(W, m[:, :, None])[..., 0]
            p0 = _padded_softmax(s * c, mask)
            # second-order term, see the module docstring of the stochastic model in the docs
            w_hat = np.einsum("ck,ckg->cg", p0, W)
            sW = W * sig[:, None, :]
            Sww = np.einsum("ckg,ckg->ck", sW, W)
            Sww_hat = np.matmul(sW, w_hat[:, :, None])[..., 0]
            Swhwh = np.einsum("cg,cg,cg->c", sig, w_hat, w_hat)
            spread = Sww - 2.0 * Sww_hat + Swhwh[:, None]
            if scale_by_norm:
                Swu = np.matmul(sW, u[:, :, None])[..., 0]
                Swhu = np.einsum("cg,cg,cg->c", sig, w_hat, u)
                Suu = np.einsum("cg,cg,cg->c", sig, u, u)
                Ss = sig.sum(axis=1)
                c_hat = np.einsum("ck,ck->c", p0, c)
                dc = c - c_hat[:, None]
                with np.errstate(invalid="ignore", divide="ignore"):
                    r2 = np.where(r == 0, np.nan, r * r)[:, None]
                    T = s * s / r2 * (spread - 2.0 * dc * (Swu - Swhu[:, None]) + dc * dc * Suu[:, None])
                    B = s / r2 * (-2.0 * Swu + 3.0 * c * Suu[:, None] - c * kappa * Ss[:, None])
            else:
                T = s * s * spread
                B = np.zeros_like(T)
            T_bar = np.einsum("ck,ck->c", p0, np.where(mask, 0.0, T))
            B_bar = np.einsum("ck,ck->c", p0, np.where(mask, 0.0, B))
            p2 = 0.5 * p0 * (T - T_bar[:, None] + B - B_bar[:, None])
            p = np.clip(p0 + p2, 0.0, 1.0)
            nan = np.isnan(p)
            p[nan | mask] = 0.0
            c = np.where(nan | mask, 0.0, c)
            total = p.sum(axis=1)
            with np.errstate(invalid="ignore", divide="ignore"):
                p = np.where(total[:, None] > 0, p / total[:, None], valid / valid.sum(axis=1, keepdims=True))
            c[total == 0] = 0.0
            probs[chunk.positions[valid]] = p[valid]
            logits[chunk.positions[valid]] = c[valid]
            bar.update(len(chunk.rows))
    degree = np.diff(indptr)
    rows_uniform = np.repeat(uniform, degree)
    probs[rows_uniform] = np.repeat(1.0 / np.maximum(degree[uniform], 1), degree[uniform])
    logits[rows_uniform] = 0.0
    return probs, logits


def _padded_softmax(z: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Softmax along the last axis of a padded block; masked entries get 0 (NaN rows if all masked)."""
    shifted = np.where(mask, -np.inf, z)
    top = shifted.max(axis=-1, keepdims=True)
    top = np.where(np.isfinite(top), top, 0.0)
    e = np.exp(shifted - top)
    with np.errstate(invalid="ignore", divide="ignore"):
        return e / e.sum(axis=-1, keepdims=True)


def edges_to_csr(values: np.ndarray, indptr: np.ndarray, indices: np.ndarray, n: int) -> sparse.csr_matrix:
    """A CSR matrix with the graph's structure and ``values``; explicit zeros removed."""
    out = sparse.csr_matrix((values, indices.copy(), indptr.copy()), shape=(n, n))
    out.eliminate_zeros()
    return out
