"""Solving ``(I - Q) X = B`` for the transient block ``Q`` of a transition matrix, sparse and checked."""

from __future__ import annotations

import logging
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy import sparse
from scipy.sparse import linalg as splinalg
from tqdm.auto import tqdm

from ._gmres import gmres_many
from ._threads import single_blas_thread
from ._twolevel import TwoLevel

__all__ = ["SOLVERS", "SolveError", "SolveReport", "n_workers", "solve_transient"]

logger = logging.getLogger(__name__)

Solver = Literal["auto", "direct", "gmres", "lgmres", "bicgstab"]
SOLVERS = ("auto", "direct", "gmres", "lgmres", "bicgstab")
#: ``solver="auto"`` falls back to a sparse LU up to this many transient states, else to GMRES with ILU.
AUTO_DIRECT_MAX = 5_000
#: ``solver="auto"`` starts with the two-level preconditioner from this many transient states.
AUTO_TWOLEVEL_MIN = 2_500
#: Largest coarse problem of the two-level preconditioner.
TWOLEVEL_MAX_AGGREGATES = 5_000
#: Krylov vectors per GMRES cycle.
AUTO_RESTART = 30
#: ``solver="auto"``: total GMRES iterations before falling back.
AUTO_MAXITER = 3_000


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
    if kind == "twolevel":
        tl = TwoLevel(sparse.csr_matrix(a), n_aggregates(a.shape[0]))
        return splinalg.LinearOperator(a.shape, lambda v: tl(np.asarray(v).reshape(1, -1))[0])
    if kind == "ilu":
        ilu = splinalg.spilu(a, drop_tol=1e-4, fill_factor=10)
        return splinalg.LinearOperator(a.shape, ilu.solve)
    if kind == "jacobi":
        inv = 1.0 / a.diagonal()
        return splinalg.LinearOperator(a.shape, lambda v: inv * v)
    raise ValueError(f"preconditioner={kind!r} is not supported; use None, 'twolevel', 'ilu' or 'jacobi'.")


def n_aggregates(t: int) -> int:
    """Coarse size of the two-level preconditioner for ``t`` transient states.

    About 20 states per aggregate below 10,000 transient states (the coarse LU is negligible there and a finer
    coarse grid saves iterations), about 40 above.
    """
    return int(np.clip(t // 20 if t < 10_000 else t // 40, 50, TWOLEVEL_MAX_AGGREGATES))


def _rows_preconditioner(a: sparse.csr_matrix, kind: str | None):
    if kind is None:
        return None
    if kind == "twolevel":
        return TwoLevel(a, n_aggregates(a.shape[0]))
    m = _preconditioner(sparse.csc_matrix(a), kind)
    return lambda z: np.stack([m.matvec(row) for row in z])


def n_workers(n_jobs: int | None, n_tasks: int) -> int:
    """Threads for ``n_tasks`` independent solves: ``None`` is 1, ``-1`` all cores, ``-k`` all but ``k - 1``."""
    if n_jobs is None:
        return 1
    if isinstance(n_jobs, bool) or not isinstance(n_jobs, (int, np.integer)) or n_jobs == 0:
        raise ValueError(f"n_jobs must be a non-zero integer or None, got {n_jobs!r}.")
    cores = os.cpu_count() or 1
    wanted = int(n_jobs) if n_jobs > 0 else max(1, cores + 1 + int(n_jobs))
    return max(1, min(wanted, n_tasks))


def _report(a, x, b, solver, preconditioner, tol) -> SolveReport:
    norms = np.linalg.norm(b, axis=0)
    residuals = np.linalg.norm(a @ x - b, axis=0) / np.where(norms > 0, norms, 1.0)
    return SolveReport(solver=solver, preconditioner=preconditioner, residuals=residuals, tol=tol)


def solve_transient(
    q: sparse.spmatrix,
    b: np.ndarray,
    *,
    solver: Solver = "auto",
    preconditioner: str | None = None,
    tol: float = 1e-6,
    maxiter: int | None = None,
    show_progress_bar: bool = False,
    n_jobs: int | None = None,
) -> tuple[np.ndarray, SolveReport]:
    """Solve ``(I - q) x = b`` for each column of ``b``.

    Parameters
    ----------
    q
        Transient-to-transient block of the transition matrix, shape ``(t, t)``.
    b
        Right-hand sides, shape ``(t,)`` or ``(t, k)``.
    solver
        ``"direct"`` (sparse LU), ``"gmres"`` (restarted GMRES on all columns in lockstep), ``"lgmres"``,
        ``"bicgstab"`` (scipy, column by column) or ``"auto"``: GMRES, unpreconditioned below
        :data:`AUTO_TWOLEVEL_MIN` transient states and with the two-level preconditioner
        (:class:`~._twolevel.TwoLevel`) above; if it has not converged after :data:`AUTO_MAXITER` iterations,
        a sparse LU up to :data:`AUTO_DIRECT_MAX` states, else GMRES with another preconditioner.
    preconditioner
        For the iterative solvers: ``None``, ``"twolevel"`` (aggregation coarse-grid correction), ``"ilu"``
        or ``"jacobi"``.
    tol
        Relative residual to reach (iterative solvers).
    maxiter
        Iteration limit of the iterative solvers (GMRES: total inner iterations).
    show_progress_bar
        Show a progress bar over right-hand sides (column-by-column solvers).
    n_jobs
        Threads over right-hand sides for the column-by-column solvers (``"lgmres"``, ``"bicgstab"``):
        ``None`` one, ``-1`` all cores. The other solvers treat all columns at once (one sparse product
        per iteration for all of them) and ignore it. The results do not depend on it.

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
    n_workers(n_jobs, 1)  # validate whatever the solver
    b = np.asarray(b, dtype=np.float64)
    vector = b.ndim == 1
    bm = b[:, None] if vector else b
    t = q.shape[0]
    a = sparse.csr_matrix(sparse.eye(t, format="csr") - sparse.csr_matrix(q))
    limit = max(tol, 1e-8) * 10
    with single_blas_thread():
        if solver == "auto":
            kind = preconditioner or ("twolevel" if t >= AUTO_TWOLEVEL_MIN else None)
            res = gmres_many(
                a,
                bm,
                tol=tol,
                restart=AUTO_RESTART,
                maxiter=maxiter or AUTO_MAXITER,
                preconditioner=_rows_preconditioner(a, kind),
            )
            report = SolveReport("gmres", kind, res.residuals, tol)
            if res.converged and np.all(np.isfinite(res.x)):
                return (res.x[:, 0] if vector else res.x), report
            logger.info(
                "GMRES reached a relative residual of %.3g after %d iterations; switching solver.",
                report.max_residual,
                res.iterations,
            )
            solver = "direct" if t <= AUTO_DIRECT_MAX else "gmres"
            if solver == "gmres" and kind != "ilu":
                preconditioner = "ilu" if kind == "twolevel" else "twolevel"
            maxiter = None
        if solver == "direct":
            out = np.asarray(splinalg.splu(sparse.csc_matrix(a)).solve(bm)).reshape(bm.shape)
        elif solver == "gmres":
            m = _rows_preconditioner(a, preconditioner)
            out = gmres_many(a, bm, tol=tol, restart=AUTO_RESTART, maxiter=maxiter or 20 * t, preconditioner=m).x
        else:
            method = {"lgmres": splinalg.lgmres, "bicgstab": splinalg.bicgstab}[solver]
            m = _preconditioner(sparse.csc_matrix(a), preconditioner)
            kwargs = {} if maxiter is None else {"maxiter": maxiter}

            def column(j: int) -> np.ndarray:
                return method(a, bm[:, j], rtol=tol, atol=0.0, M=m, **kwargs)[0]

            cols = range(bm.shape[1])
            with ThreadPoolExecutor(max_workers=n_workers(n_jobs, len(cols))) as pool:
                done = tqdm(pool.map(column, cols), total=len(cols), disable=not show_progress_bar, desc="solving")
                out = np.column_stack(list(done))
    report = _report(a, out, bm, solver, preconditioner, tol)
    if np.any(report.residuals > limit) or not np.all(np.isfinite(out)):
        raise SolveError(
            f"The {solver} solve did not converge: relative residual {report.max_residual:.3g} > {limit:.1g}. "
            "Try solver='direct' (small to medium data), preconditioner='ilu', a larger maxiter, or check the "
            "chain for cells that cannot reach any terminal state."
        )
    return (out[:, 0] if vector else out), report
