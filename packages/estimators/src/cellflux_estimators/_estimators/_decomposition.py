"""Schur and eigen decompositions as estimator capabilities."""

from __future__ import annotations

import logging
from typing import Literal

import numpy as np

from .._engine._eigen import Eigendecomposition, eigendecomposition, eigengap
from .._engine._schur import SchurResult, default_tol, partial_schur
from ._base import BaseEstimator

__all__ = ["DecompositionMixin"]

logger = logging.getLogger(__name__)


class DecompositionMixin(BaseEstimator):
    """Real Schur and eigen decompositions of the transition matrix."""

    def _reset(self) -> None:
        super()._reset()
        self._schur: SchurResult | None = None
        self._eig: Eigendecomposition | None = None
        self._eta: np.ndarray | None = None

    @property
    def schur_vectors(self) -> np.ndarray | None:
        """Real Schur vectors ``X`` (cells x components), ``eta``-orthonormal, first column constant."""
        return None if self._schur is None else self._schur.vectors

    @property
    def schur_matrix(self) -> np.ndarray | None:
        """The real Schur form ``R`` of the dominant invariant subspace (``P X = X R``)."""
        return None if self._schur is None else self._schur.matrix

    @property
    def eigendecomposition(self) -> dict | None:
        """``{"D", "eigengap", "V_l", "V_r", "stationary_dist", "params"}`` of the last decomposition."""
        e = self._eig
        if e is None:
            return None
        out = {"D": e.eigenvalues, "eigengap": e.eigengap, "params": {"which": e.which, "alpha": e.alpha}}
        if e.left is not None:
            out.update(V_l=e.left, V_r=e.right, stationary_dist=e.stationary)
        return out

    def compute_schur(
        self,
        n_components: int = 20,
        *,
        initial_distribution: np.ndarray | None = None,
        method: Literal["krylov", "dense", "auto"] = "auto",
        which: Literal["LR", "LM"] = "LR",
        alpha: float = 1.0,
        tol: float | None = None,
    ) -> DecompositionMixin:
        """Compute a partial real Schur decomposition (sparse Krylov, no PETSc/SLEPc).

        Parameters
        ----------
        n_components
            Number of Schur vectors; raised by one (logged) if it would split a complex-conjugate pair.
        initial_distribution
            GPCCA's input distribution ``eta`` (uniform if ``None``).
        method
            ``"krylov"`` (Krylov–Schur, sparse, any size), ``"dense"`` (LAPACK, up to 2,000 cells) or ``"auto"``.
        which
            ``"LR"`` (largest real part) or ``"LM"`` (largest magnitude).
        alpha
            Weight of the deviation from 1 in the eigengap.
        tol
            Relative residual of the partial Schur form at which the Krylov method stops (default ``1e-12``;
            ``1e-10`` above 20,000 cells, where the leading eigenvalues bunch near 1).

        Returns
        -------
        Self; sets :attr:`schur_vectors`, :attr:`schur_matrix` and the eigenvalues in :attr:`eigendecomposition`.
        """
        if n_components < 2:
            logger.warning("n_components must be >= 2, got %d; using 2.", n_components)
            n_components = 2
        res = partial_schur(
            self.transition_matrix,
            n_components,
            which=which,
            method=method,
            eta=initial_distribution,
            tol=tol,
            seed=self.seed,
        )
        if res.vectors.shape[1] != n_components:
            logger.info("Computed %d Schur vectors to keep complex-conjugate pairs whole.", res.vectors.shape[1])
        self._schur = res
        self._eta = initial_distribution
        self._eig = Eigendecomposition(
            res.eigenvalues, None, None, None, eigengap(res.eigenvalues, alpha), which, alpha
        )
        self.params["schur"] = {
            "n_components": int(res.vectors.shape[1]),
            "method": res.method,
            "which": which,
            "tol": default_tol(self.n_cells) if tol is None else float(tol),
            "residual": res.residual,
        }
        return self

    def compute_eigendecomposition(
        self,
        k: int = 20,
        *,
        which: Literal["LR", "LM"] = "LR",
        alpha: float = 1.0,
        only_evals: bool = False,
        n_right: int | None = None,
    ) -> DecompositionMixin:
        """Compute the top ``k`` eigenvalues and left/right eigenvectors (ARPACK).

        Parameters
        ----------
        k
            Number of eigenvalues.
        which
            ``"LR"`` or ``"LM"``.
        alpha
            Weight of the deviation from 1 in the eigengap.
        only_evals
            Compute only the eigenvalues.
        n_right
            Compute only the first ``n_right`` right eigenvectors (``None``: all ``k``; ``0``: none). They take a
            second Krylov run whose cost grows with their number; ``V_r`` then has ``n_right`` columns.

        Returns
        -------
        Self; sets :attr:`eigendecomposition`.
        """
        self._eig = eigendecomposition(
            self.transition_matrix,
            k,
            which=which,
            alpha=alpha,
            only_evals=only_evals,
            n_right=n_right,
            seed=self.seed,
        )
        self.params["eigendecomposition"] = {"k": k, "which": which, "alpha": alpha}
        return self
