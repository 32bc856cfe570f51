"""Mahalanobis distances of many genes' fold-change vectors, one shared factorisation, genes batched.

For gene ``g`` with fold changes ``d_g`` at ``m`` points, the covariance is
``C + diag(v_g) + F_g F_g^T``: ``C`` the (gene-independent) posterior covariance of the two GPs, ``v_g``
the smoothed observation variance and ``F_g`` the ``(m, S)`` sample-variance factor (predictions of the
``S`` per-sample GPs, centred and divided by ``sqrt(S_c - 1)``, both conditions side by side). Only
``C = L L^T`` is factorised. With ``z = L^{-1} d_g``:

* ``v_g`` enters through kompot's diagonal "factor trick": ``L^{-1} diag(v_g) L^{-T}`` is replaced by its
  diagonal ``h = (L^{-1})^2 v_g``, giving ``D^2 = sum_i z_i^2 / (1 + h_i)`` (exact when ``v_g = 0``);
* ``F_g`` enters exactly by the Woodbury identity on that base: with ``P = L^{-1} F_g`` and
  ``w = 1 / (1 + h)``, ``D^2 -= c^T (I_S + P^T W P)^{-1} c`` with ``c = P^T W z``;
* with both ``v_g`` and ``F_g`` the distance is exact (as kompot's per-gene Cholesky): the batched
  system ``(C + diag(v_g) + F_g F_g^T) x_g = d_g`` is solved by conjugate gradients with all genes as
  right-hand sides of one ``C @ X`` product per iteration, preconditioned by the approximation above
  (a handful of iterations), and ``D^2 = d_g^T x_g``.

So no ``m x m`` matrix per gene is ever formed: memory is ``O(m^2 + m * S * batch)`` and genes are the
right-hand sides of batched triangular products. Batches are padded to a fixed size so the jitted
kernels compile once.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from tqdm.auto import tqdm

from . import _blas
from ._jax import jax, jnp
from ._regression import _lower_inverse, _lower_times, _symmetric_from_upper, upper_cholesky_in_place
from ._threads import thread_map

__all__ = ["gene_batch_for_budget", "mahalanobis", "mahalanobis_memory"]

_F64 = 8


@jax.jit
def _with_factors(Linv, W2, diff, dvar, factors):
    # diff, dvar: (m, B); factors: (B, m, S)
    z = Linv @ diff
    w = 1.0 / (1.0 + W2 @ dvar)
    base = jnp.sum(z * z * w, axis=0)
    P = jnp.einsum("ij,bjs->bis", Linv, factors)
    Pw = P * w.T[:, :, None]
    c = jnp.einsum("bis,ib->bs", Pw, z)
    G = jnp.eye(factors.shape[2], dtype=factors.dtype)[None] + jnp.einsum("bis,bit->bst", Pw, P)
    return base - jnp.einsum("bs,bs->b", c, jnp.linalg.solve(G, c[..., None])[..., 0])


def _woodbury_apply(Linv, w, P, Pw, R):
    """Apply ``L^{-T} (diag(1/w) + P P^T)^{-1} L^{-1}`` to the columns of ``R`` (one gene per column)."""
    z = Linv @ R
    c = jnp.einsum("bis,ib->bs", Pw, z)
    G = jnp.eye(P.shape[2], dtype=P.dtype)[None] + jnp.einsum("bis,bit->bst", Pw, P)
    y = z * w - jnp.einsum("bis,bs->ib", Pw, jnp.linalg.solve(G, c[..., None])[..., 0])
    return Linv.T @ y


@jax.jit
def _exact(C, Linv, W2, diff, dvar, factors, tol):
    """Exact ``d^T (C + diag(v) + F F^T)^{-1} d`` per gene by preconditioned conjugate gradients."""
    w = 1.0 / (1.0 + W2 @ dvar)
    P = jnp.einsum("ij,bjs->bis", Linv, factors)
    Pw = P * w.T[:, :, None]

    def matvec(X):
        FtX = jnp.einsum("bis,ib->bs", factors, X)
        return C @ X + dvar * X + jnp.einsum("bis,bs->ib", factors, FtX)

    def precond(R):
        return _woodbury_apply(Linv, w, P, Pw, R)

    x = precond(diff)
    r = diff - matvec(x)
    z = precond(r)
    p = z
    rz = jnp.sum(r * z, axis=0)
    scale = jnp.maximum(jnp.sum(diff * diff, axis=0), 1e-300)

    def cond(state):
        i, _, r, _, _, _ = state
        return (i < 200) & jnp.any(jnp.sum(r * r, axis=0) > tol * scale)

    def body(state):
        i, x, r, z, p, rz = state
        Ap = matvec(p)
        alpha = rz / jnp.where(jnp.sum(p * Ap, axis=0) == 0, 1.0, jnp.sum(p * Ap, axis=0))
        x = x + alpha * p
        r = r - alpha * Ap
        z = precond(r)
        rz_new = jnp.sum(r * z, axis=0)
        p = z + (rz_new / jnp.where(rz == 0, 1.0, rz)) * p
        return i + 1, x, r, z, p, rz_new

    _, x, *_ = jax.lax.while_loop(cond, body, (0, x, r, z, p, rz))
    return jnp.sum(diff * x, axis=0)


def _upper_transpose_solve(U: np.ndarray, d: np.ndarray) -> np.ndarray:
    """``U^{-T} d`` for a column-major upper-triangular ``U`` by BLAS ``trsm`` (without the GIL), on a copy of ``d``."""
    d = np.asarray(d, dtype=np.float64)
    if d.flags.c_contiguous and not d.flags.f_contiguous:
        # row-major d: z^T = d^T U^{-1}, a right-sided solve on the column-major d^T
        return _blas.trsm(U, np.array(d.T, order="F"), lower=False, right=True).T
    return _blas.trsm(U, np.array(d, order="F"), lower=False, trans=True)


def mahalanobis_memory(n_points: int, n_genes: int, n_factors: int, gene_batch: int) -> int:
    """Dry-run estimate (bytes) of the peak working memory of :func:`mahalanobis`.

    Counts the shared ``m x m`` matrices (covariance, its factor and inverse, squared inverse, the
    landmark cross-kernel) and, per gene batch, the fold changes, variances, the sample-variance factors
    and their triangular solves (with JAX's temporaries), plus the per-sample predictions the factors are
    sliced from.
    """
    m, b, s = n_points, gene_batch, max(n_factors, 0)
    shared = 6 * m * m
    per_batch = 6 * m * b + (5 * m * s * b if s else 0)
    predictions = s * m * n_genes if s else 0
    return _F64 * (shared + per_batch + predictions + 2 * m * n_genes)


def gene_batch_for_budget(n_points: int, n_genes: int, n_factors: int, budget_bytes: float, *, minimum: int = 8) -> int:
    """The largest gene batch whose :func:`mahalanobis_memory` fits in ``budget_bytes`` (at least ``minimum``)."""
    lo, hi = minimum, max(minimum, n_genes)
    if mahalanobis_memory(n_points, n_genes, n_factors, hi) <= budget_bytes:
        return hi
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if mahalanobis_memory(n_points, n_genes, n_factors, mid) <= budget_bytes:
            lo = mid
        else:
            hi = mid - 1
    return lo


def mahalanobis(
    diff: np.ndarray,
    cov: np.ndarray,
    *,
    diag_variance: np.ndarray | None = None,
    factors: Callable[[np.ndarray], np.ndarray] | None = None,
    eps: float = 1e-8,
    gene_batch: int = 256,
    progress: bool = False,
    upper: bool = False,
    overwrite_cov: bool = False,
    n_jobs: int = 1,
) -> np.ndarray:
    """Mahalanobis distance of every column of ``diff`` under ``cov`` (+ per-gene terms).

    Parameters
    ----------
    diff
        ``(m, n_genes)`` fold changes at the ``m`` points.
    cov
        ``(m, m)`` gene-independent covariance.
    diag_variance
        ``(m, n_genes)`` per-gene diagonal variance, or ``None``.
    factors
        ``genes -> (len(genes), m, S)`` sample-variance factors of those genes, or ``None``.
    eps
        Added to the diagonal of ``cov``.
    gene_batch
        Genes per batch (padded to this size).
    progress
        Show a progress bar over the gene batches.
    upper
        Only the upper triangle of ``cov`` is filled (it is what the factorisation reads).
    overwrite_cov
        ``cov`` may be overwritten (factorised in place when column-major).
    n_jobs
        Threads over the gene batches (without ``factors``); each batch is at most ``gene_batch /
        n_jobs`` genes, so the memory of the batches in flight stays that of one ``gene_batch``.

    Returns
    -------
    ``(n_genes,)`` distances.
    """
    m, n_genes = diff.shape
    size = int(max(1, min(gene_batch, n_genes)))
    out = np.empty(n_genes)
    starts = range(0, n_genes, size)
    if factors is None:
        # no per-gene factors: BLAS triangular products of the whole batch, no padding, no JAX
        # C = U^T U, z = U^{-T} d; factorised in place when the caller lets us
        C = cov if overwrite_cov and cov.flags.f_contiguous else np.array(cov, order="F")
        U = upper_cholesky_in_place(C, eps, "The covariance's Cholesky factorisation")
        Linv = _lower_inverse(np.ascontiguousarray(U.T)) if diag_variance is not None else None
        W2 = Linv * Linv if Linv is not None else None
        if n_jobs > 1:
            size = max(1, min(size // n_jobs, -(-n_genes // n_jobs)))
        bar = tqdm(total=n_genes, disable=not progress or n_genes <= size, desc="Mahalanobis")

        def batch(start: int) -> None:
            stop = min(start + size, n_genes)
            z = _upper_transpose_solve(U, diff[:, start:stop])
            if W2 is None:
                d2 = np.einsum("ij,ij->j", z, z)
            else:
                d2 = np.einsum("ij,ij->j", z, z / (1.0 + _lower_times(W2, diag_variance[:, start:stop])))
            out[start:stop] = np.sqrt(np.maximum(d2, 0.0))
            bar.update(stop - start)

        thread_map(batch, range(0, n_genes, size), n_jobs)
        bar.close()
        return out
    C = (_symmetric_from_upper(cov) if upper else cov) + eps * np.eye(m)
    L = np.linalg.cholesky(C)
    from scipy.linalg import solve_triangular

    Linv = solve_triangular(L, np.eye(m), lower=True)
    W2 = Linv * Linv
    for start in tqdm(starts, disable=not progress or len(starts) < 2, desc="Mahalanobis"):
        stop = min(start + size, n_genes)
        genes = np.arange(start, stop)
        d = np.zeros((m, size))
        d[:, : stop - start] = diff[:, start:stop]
        v = np.zeros((m, size))
        if diag_variance is not None:
            v[:, : stop - start] = diag_variance[:, start:stop]
        f = factors(genes)
        fp = np.zeros((size, m, f.shape[2]))
        fp[: stop - start] = f
        exact = diag_variance is not None
        d2 = _exact(C, Linv, W2, d, v, fp, 1e-20) if exact else _with_factors(Linv, W2, d, v, fp)
        out[start:stop] = np.sqrt(np.maximum(np.asarray(d2)[: stop - start], 0.0))
    return out
