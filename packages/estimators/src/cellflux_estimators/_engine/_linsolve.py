"""Solving ``(I - Q) X = B`` for the transient block ``Q`` of a transition matrix, sparse and checked."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy import sparse
from scipy.sparse import linalg as splinalg
from tqdm.auto import tqdm

__all__ = ["SOLVERS", "SolveError", "SolveReport", "solve_transient"]

logger = logging.getLogger(__name__)

Solver = Literal["auto", "direct", "gmres", "lgmres", "bicgstab"]
SOLVERS = ("auto", "direct", "gmres", "lgmres", "bicgstab")
#: ``solver="auto"`` factorises directly up to this many transient states, else uses GMRES with ILU.
AUTO_DIRECT_MAX = 5_000


class SolveError(RuntimeError):
    """A linear solve did not reach the requested tolerance."""


@dataclass(frozen=True)
class SolveReport:
    """How a solve went: the solver used and the relative residual of each right-hand side."""

    solver: str
    preconditioner: str | None
    residuals: np.ndarray
    tol: float

    @property
    def max_residual(self) -> float:
        """The largest relative residual."""
        return float(self.residuals.max()) if self.residuals.size else 0.0


def _preconditioner(a: sparse.csc_matrix, kind: str | None) -> splinalg.LinearOperator | None:
    if kind is None:
        return None
    if kind == "ilu":
        ilu = splinalg.spilu(a, drop_tol=1e-5, fill_factor=10)
        return splinalg.LinearOperator(a.shape, ilu.solve)
    if kind == "jacobi":
        inv = 1.0 / a.diagonal()
        return splinalg.LinearOperator(a.shape, lambda v: inv * v)
    raise ValueError(f"preconditioner={kind!r} is not supported; use None, 'ilu' or 'jacobi'.")


def solve_transient(
    q: sparse.spmatrix,
    b: np.ndarray,
    *,
    solver: Solver = "auto",
    preconditioner: str | None = None,
    tol: float = 1e-6,
    maxiter: int | None = None,
    show_progress_bar: bool = False,
) -> tuple[np.ndarray, SolveReport]:
    """Solve ``(I - q) x = b`` for each column of ``b``.

    Parameters
    ----------
    q
        Transient-to-transient block of the transition matrix, shape ``(t, t)``.
    b
        Right-hand sides, shape ``(t,)`` or ``(t, k)``.
    solver
        ``"direct"`` (sparse LU), ``"gmres"``, ``"lgmres"``, ``"bicgstab"`` or ``"auto"`` (a short unpreconditioned
        GMRES, then a sparse LU up to :data:`AUTO_DIRECT_MAX` states or ILU-preconditioned GMRES above).
    preconditioner
        For the iterative solvers: ``None``, ``"ilu"`` or ``"jacobi"``.
    tol
        Relative residual to reach (iterative solvers).
    maxiter
        Iteration limit of the iterative solvers.
    show_progress_bar
        Show a progress bar over right-hand sides.

    Returns
    -------
    The solution (same shape as ``b``) and a :class:`SolveReport`.

    Raises
    ------
    SolveError
        If a right-hand side's relative residual stays above ``max(tol, 1e-8) * 10``.
    """
    if solver not in SOLVERS:
        raise ValueError(f"solver={solver!r} is not supported; use one of {SOLVERS}.")
    b = np.asarray(b, dtype=np.float64)
    vector = b.ndim == 1
    bm = b[:, None] if vector else b
    t = q.shape[0]
    a = sparse.csc_matrix(sparse.eye(t, format="csc") - sparse.csc_matrix(q))
    if solver == "auto":
        # unpreconditioned GMRES converges in a few dozen iterations on well-mixing chains; otherwise fall back to
        # a sparse LU (small) or ILU-preconditioned GMRES (large)
        try:
            return solve_transient(q, b, solver="gmres", tol=tol, maxiter=maxiter or 10, show_progress_bar=False)
        except SolveError:
            logger.info("Unpreconditioned GMRES did not converge quickly; switching solver.")
        solver = "direct" if t <= AUTO_DIRECT_MAX else "gmres"
        if solver == "gmres" and preconditioner is None:
            preconditioner = "ilu"
        maxiter = None
    out = np.zeros_like(bm)
    if solver == "direct":
        lu = splinalg.splu(a)
        out = lu.solve(bm)
        out = np.asarray(out).reshape(bm.shape)
    else:
        method = {"gmres": splinalg.gmres, "lgmres": splinalg.lgmres, "bicgstab": splinalg.bicgstab}[solver]
        m = _preconditioner(a, preconditioner)
        cols = range(bm.shape[1])
        for j in tqdm(cols, disable=not show_progress_bar, desc="solving", unit="rhs"):
            kwargs = {} if maxiter is None else {"maxiter": maxiter}
            x, _info = method(a, bm[:, j], rtol=tol, atol=0.0, M=m, **kwargs)
            out[:, j] = x
    norms = np.linalg.norm(bm, axis=0)
    residuals = np.linalg.norm(a @ out - bm, axis=0) / np.where(norms > 0, norms, 1.0)
    report = SolveReport(solver=solver, preconditioner=preconditioner, residuals=residuals, tol=tol)
    limit = max(tol, 1e-8) * 10
    if np.any(residuals > limit) or not np.all(np.isfinite(out)):
        raise SolveError(
            f"The {solver} solve did not converge: relative residual {report.max_residual:.3g} > {limit:.1g}. "
            "Try solver='direct' (small to medium data), preconditioner='ilu', a larger maxiter, or check the "
            "chain for cells that cannot reach any terminal state."
        )
    return (out[:, 0] if vector else out), report
