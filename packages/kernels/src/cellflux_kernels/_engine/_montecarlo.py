"""Monte-Carlo transition probabilities: the average over sampled velocities, as one matrix product per block.

For a cell with mean velocity ``m`` and spread ``s`` a sample is ``m + s * z``. Its similarity with a
displacement ``d`` needs only ``m . d + z . (s * d)`` and the sample's norm, so a block of cells and
all their edges is handled by one ``(n_samples, n_genes) @ (n_genes, n_edges)`` product. The standard
normal draws ``z`` are shared by the cells of one block (common random numbers) and drawn afresh for
every block; each cell's estimate is an unbiased average over ``n_samples`` independent samples.
"""

from __future__ import annotations

import numba as nb
import numpy as np

from ._chunks import row_chunks
from ._velocity import SIMILARITIES, Similarity, _displacements, _progress

__all__ = ["monte_carlo_probabilities", "sample_velocities"]


def sample_velocities(mean: np.ndarray, spread: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One velocity per cell drawn from ``N(mean, spread**2)``, independently for every cell and gene."""
    return mean + spread * rng.standard_normal(mean.shape)


def monte_carlo_probabilities(
    indptr: np.ndarray,
    indices: np.ndarray,
    X: np.ndarray,
    Vmean: np.ndarray,
    Vspread: np.ndarray,
    softmax_scale: float,
    *,
    n_samples: int = 1000,
    similarity: Similarity = "correlation",
    rng: np.random.Generator,
    edges_per_block: int = 16384,
    show_progress_bar: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Average probabilities and logits over ``n_samples`` velocities ``Vmean + Vspread * z`` per cell.

    Returns
    -------
    Per-edge probabilities and logits, aligned with ``indices``.
    """
    if n_samples < 1:
        raise ValueError(f"n_samples must be at least 1, got {n_samples}.")
    center, scale_by_norm = SIMILARITIES[similarity]
    X = np.asarray(X, dtype=np.float64)
    M = np.asarray(Vmean, dtype=np.float64)
    S = np.asarray(Vspread, dtype=np.float64)
    n, G = M.shape
    probs = np.zeros(len(indices))
    logits = np.zeros(len(indices))
    degree = np.diff(indptr)
    budget = max(int(edges_per_block), int(degree.max(initial=1))) * G * 8
    with _progress(n, show_progress_bar) as bar:
        for chunk in row_chunks(indptr, indices, G, budget=budget):
            c, k = chunk.neighbors.shape
            D = _displacements(chunk, X)
            if center:
                D -= D.mean(axis=2, keepdims=True)
            valid = chunk.valid
            m, sd = M[chunk.rows], S[chunk.rows]
            Z = rng.standard_normal((n_samples, G), dtype=np.float32)
            base = np.matmul(D, m[:, :, None])[..., 0]  # (c, k): m . d
            # z . (sd * d) for every sample and edge: one float32 product (c * k, G) @ (G, n_samples)
            A = (D * sd[:, None, :]).astype(np.float32).reshape(c * k, G)
            noise = Z @ A.T  # (n_samples, c * k)
            if scale_by_norm:
                dn = np.sqrt(np.einsum("ckg,ckg->ck", D, D))
                # norms of the (centred) samples, exactly, from three small products
                Z64 = Z.astype(np.float64)
                sq = np.einsum("cg,cg->c", m, m)[None] + 2.0 * Z64 @ (m * sd).T + (Z64 * Z64) @ (sd * sd).T
                if center:
                    mean = (m.sum(axis=1)[None] + Z64 @ sd.T) / G
                    sq = sq - G * mean * mean
                snorm = np.ascontiguousarray(np.sqrt(np.maximum(sq, 0.0)).T)  # (c, S)
            else:
                dn = np.ones((c, k))
                snorm = np.ones((c, n_samples))
            p_mean = np.zeros((c, k))
            l_mean = np.zeros((c, k))
            _average_softmax(noise, base, dn, snorm, valid, float(softmax_scale), p_mean, l_mean)
            probs[chunk.positions[valid]] = p_mean[valid]
            logits[chunk.positions[valid]] = l_mean[valid]
            bar.update(c)
    return probs, logits


@nb.njit(parallel=True, fastmath=True, cache=True, nogil=True)
def _average_softmax(noise, base, dn, snorm, valid, scale, p_out, l_out):  # pragma: no cover - compiled
    """Per cell: the mean over samples of the masked softmax of ``scale * (noise + base) / (|v| |d|)``.

    A sample whose every edge is masked (zero norms) contributes nothing; a cell with no contribution
    at all (e.g. every neighbour has the cell's expression, so every displacement is zero) gets
    uniform probabilities over its edges and logits 0, as a zero-velocity cell does.
    """
    c, k = base.shape
    n_samples = noise.shape[0]
    for r in nb.prange(c):
        z = np.empty(k)
        e = np.empty(k)
        inv = np.empty(k)
        for j in range(k):
            inv[j] = 1.0 / dn[r, j] if valid[r, j] and dn[r, j] != 0.0 else 0.0
        # counted, not detected through an infinite maximum: fastmath assumes there are no infinities
        n_edges = 0
        for j in range(k):
            if inv[j] != 0.0:
                n_edges += 1
        contributed = 0
        for s in range(n_samples):
            sn = snorm[r, s]
            if sn == 0.0 or n_edges == 0:
                continue
            top = -1e300
            for j in range(k):
                if inv[j] != 0.0:
                    z[j] = (np.float64(noise[s, r * k + j]) + base[r, j]) * inv[j] / sn
                    top = max(top, scale * z[j])
            total = 0.0
            for j in range(k):
                if inv[j] != 0.0:
                    e[j] = np.exp(np.float32(scale * z[j] - top))
                    total += e[j]
            for j in range(k):
                if inv[j] != 0.0:
                    p_out[r, j] += e[j] / total
                    l_out[r, j] += z[j]
            contributed += 1
        if contributed == 0:
            n_valid = 0
            for j in range(k):
                n_valid += valid[r, j]
            for j in range(k):
                p_out[r, j] = valid[r, j] / n_valid
                l_out[r, j] = 0.0
        else:
            for j in range(k):
                p_out[r, j] /= n_samples
                l_out[r, j] /= n_samples
