"""Restarted GMRES for many right-hand sides at once (one Krylov space per column, advanced in lockstep).

The per-iteration bookkeeping (orthogonalisation, the small least-squares residual from one batched QR) is
vectorised over the columns and the sparse products are one multi-vector CSR product per iteration, so the
Python overhead of ``k`` separate solver calls disappears.
Orthogonalisation is classical Gram–Schmidt applied twice (as safe as modified Gram–Schmidt, but level-2
BLAS). Preconditioning is on the right, so the residual that is monitored is the true one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import sparse

__all__ = ["GMRESResult", "gmres_many"]


@dataclass(frozen=True)
class GMRESResult:
    """Solutions and convergence of :func:`gmres_many`.

    Attributes
    ----------
    x
        Solutions, shape ``(n, k)``.
    residuals
        Relative residuals ``||b - A x|| / ||b||`` per column (computed explicitly at the end).
    iterations
        Total number of inner iterations (matrix products).
    converged
        Whether every column reached the tolerance.
    """

    x: np.ndarray
    residuals: np.ndarray
    iterations: int
    converged: bool


def gmres_many(
    a: sparse.spmatrix,
    b: np.ndarray,
    *,
    tol: float = 1e-6,
    restart: int = 30,
    maxiter: int = 1000,
    x0: np.ndarray | None = None,
    preconditioner: Callable[[np.ndarray], np.ndarray] | None = None,
) -> GMRESResult:
    """Solve ``a x = b`` for every column of ``b`` with restarted GMRES.

    Parameters
    ----------
    a
        Square sparse matrix ``(n, n)``.
    b
        Right-hand sides ``(n, k)``.
    tol
        Relative residual to reach in every column.
    restart
        Krylov vectors per cycle (memory ``(restart + 1) n k`` floats).
    maxiter
        Largest total number of inner iterations.
    x0
        Initial guess ``(n, k)`` (zeros if ``None``).
    preconditioner
        Applies ``M^-1`` to a ``(k, n)`` block of row vectors (right preconditioning), or ``None``.

    Returns
    -------
    The :class:`GMRESResult`.
    """
    b = np.asarray(b, dtype=np.float64)
    n, k = b.shape
    x = np.zeros_like(b) if x0 is None else np.array(x0, dtype=np.float64)
    bnorm = np.linalg.norm(b, axis=0)
    bnorm = np.where(bnorm > 0, bnorm, 1.0)
    target = tol * bnorm
    m = max(1, min(restart, n))
    basis = np.empty((k, m + 1, n))
    h = np.zeros((k, m + 1, m))
    total = 0
    prec = preconditioner if preconditioner is not None else (lambda v: v)

    def matvecs(z: np.ndarray) -> np.ndarray:  # (k, n) -> (k, n)
        z = prec(z)
        return np.ascontiguousarray((a @ np.ascontiguousarray(z.T)).T)

    while True:
        r = b - a @ x
        beta = np.linalg.norm(r, axis=0)
        if np.all(beta <= target) or total >= maxiter:
            break
        basis[:, 0] = (r / np.where(beta > 0, beta, 1.0)).T
        h[:] = 0.0
        j = 0
        while j < m and total < maxiter:
            w = matvecs(basis[:, j])
            total += 1
            v = basis[:, : j + 1]
            coef = np.zeros((k, j + 1))
            for _ in range(2):  # classical Gram-Schmidt, twice, batched over the columns
                c = (v @ w[:, :, None])[:, :, 0]
                w -= (c[:, None, :] @ v)[:, 0]
                coef += c
            hn = np.linalg.norm(w, axis=1)
            h[:, : j + 1, j] = coef
            h[:, j + 1, j] = hn
            basis[:, j + 1] = w / np.where(hn > 1e-300, hn, 1.0)[:, None]
            j += 1
            # residual of the small least-squares problem min ||beta e1 - H y||: beta |Q[0, j]|
            q = np.linalg.qr(h[:, : j + 1, :j], mode="complete")[0]
            if np.all(beta * np.abs(q[:, 0, j]) <= 0.5 * target):
                break
        y = np.stack([np.linalg.lstsq(h[c, : j + 1, :j], np.eye(j + 1)[0] * beta[c], rcond=None)[0] for c in range(k)])
        update = (y[:, None, :] @ basis[:, :j])[:, 0]
        x += prec(update).T
    res = np.linalg.norm(b - a @ x, axis=0) / bnorm
    return GMRESResult(x=x, residuals=res, iterations=total, converged=bool(np.all(res <= tol * 1.0001)))
