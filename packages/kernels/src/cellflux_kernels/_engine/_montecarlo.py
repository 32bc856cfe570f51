"""Monte-Carlo transition probabilities: the average over sampled velocities, as one matrix product per block.

For a cell with mean velocity ``m`` and spread ``s`` a sample is ``m + s * z``. Its similarity with a
displacement ``d`` needs only ``m . d + z . (s * d)`` and the sample's norm, so a block of cells and
all their edges is handled by one ``(n_samples, n_genes) @ (n_genes, n_edges)`` product. The standard
normal draws ``z`` are shared by the cells of one block (common random numbers) and drawn afresh for
every block; each cell's estimate is an unbiased average over ``n_samples`` independent samples.
"""

from __future__ import annotations

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
    edges_per_block: int = 4096,
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
    kmax = max(int(degree.max(initial=1)), 1)
    budget = max(edges_per_block // kmax, 1) * kmax * G * 8
    with _progress(n, show_progress_bar) as bar:
        for chunk in row_chunks(indptr, indices, G, budget=budget, max_rows=max(edges_per_block // kmax, 1)):
            c, k = chunk.neighbors.shape
            D = _displacements(chunk, X)
            if center:
                D -= D.mean(axis=2, keepdims=True)
            valid = chunk.valid
            m, sd = M[chunk.rows], S[chunk.rows]
            Z = rng.standard_normal((n_samples, G))
            base = np.matmul(D, m[:, :, None])[..., 0]  # (c, k)
            A = (D * sd[:, None, :]).reshape(c * k, G)
            noise = (Z.astype(np.float32) @ A.T.astype(np.float32)).astype(np.float64)
            dots = noise.reshape(n_samples, c, k) + base[None]
            mask = ~valid
            if scale_by_norm:
                dn = np.sqrt(np.einsum("ckg,ckg->ck", D, D))
                # norms of the (centred) samples, exactly, from three small products
                sq = np.einsum("cg,cg->c", m, m)[None] + 2.0 * Z @ (m * sd).T + (Z * Z) @ (sd * sd).T
                if center:
                    mean = (m.sum(axis=1)[None] + Z @ sd.T) / G
                    sq = sq - G * mean * mean
                snorm = np.sqrt(np.maximum(sq, 0.0))  # (S, c)
                denom = snorm[:, :, None] * dn[None]
                mask = mask[None] | (denom == 0)
                dots = dots / np.where(mask, 1.0, denom)
            else:
                mask = np.broadcast_to(mask[None], dots.shape)
            z = np.where(mask, -np.inf, softmax_scale * dots)
            top = z.max(axis=2, keepdims=True)
            e = np.exp(z - np.where(np.isfinite(top), top, 0.0))
            total = e.sum(axis=2, keepdims=True)
            with np.errstate(invalid="ignore", divide="ignore"):
                p = np.where(total > 0, e / total, 0.0)
            p_mean = p.mean(axis=0)
            l_mean = np.where(mask, 0.0, dots).mean(axis=0)
            row_total = p_mean.sum(axis=1)
            none = row_total == 0
            if np.any(none):
                p_mean[none] = valid[none] / valid[none].sum(axis=1, keepdims=True)
                l_mean[none] = 0.0
            probs[chunk.positions[valid]] = p_mean[valid]
            logits[chunk.positions[valid]] = l_mean[valid]
            bar.update(c)
    return probs, logits
