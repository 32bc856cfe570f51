"""Fate probabilities, absorption times and lineage priming as estimator capabilities."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd

from .._engine._absorption import absorption_probabilities, absorption_times
from .._engine._priming import REFERENCE_EPS, priming_degree
from .._engine._states import parse_keys
from ._states import StatesMixin

__all__ = ["FateMixin"]

logger = logging.getLogger(__name__)


class FateMixin(StatesMixin):
    """Absorption probabilities and times towards the terminal states."""

    def _absorbing_sets(self, keys: Sequence[str] | None) -> tuple[list[str], list[np.ndarray]]:
        if self._terminal_states is None:
            raise RuntimeError("Compute or set terminal states first (predict_terminal_states/set_terminal_states).")
        states = self._terminal_states
        names = [str(c) for c in states.cat.categories]
        groups = parse_keys(list(keys) if keys is not None and not isinstance(keys, str) else keys, names)
        codes = states.cat.codes.to_numpy()
        sets, labels = [], []
        for group in groups:
            ids = [names.index(g) for g in group]
            idx = np.flatnonzero(np.isin(codes, ids))
            if idx.size == 0:
                raise ValueError(f"Terminal state(s) {group} have no cells.")
            sets.append(idx)
            labels.append(", ".join(group))
        return labels, sets

    def compute_fate_probabilities(
        self,
        keys: Sequence[str] | None = None,
        *,
        solver: Literal["auto", "direct", "gmres", "lgmres", "bicgstab"] = "auto",
        preconditioner: Literal["twolevel", "ilu", "jacobi"] | None = None,
        tol: float = 1e-6,
        maxiter: int | None = None,
        show_progress_bar: bool = False,
        n_jobs: int | None = None,
    ) -> FateMixin:
        """Compute fate probabilities: the probability of each cell to be absorbed in each terminal state.

        Parameters
        ----------
        keys
            Terminal states to use; merge states as ``"Alpha, Beta"``. Default: every terminal state alone.
        solver
            ``"direct"`` (sparse LU), ``"gmres"`` (all lineages in lockstep), ``"lgmres"``, ``"bicgstab"``, or
            ``"auto"`` (GMRES, with the two-level preconditioner from 2,500 transient cells; if it converges
            slowly, direct up to 5,000 transient cells, else GMRES with another preconditioner). ``"auto"`` also
            checks that the rows of its solution sum to 1 within ``min(100 * tol, 1e-3)``: on an ill-conditioned
            (near-metastable) chain a small residual does not mean accurate probabilities, and it then re-solves
            (direct up to 5,000 transient cells; above, GMRES with a tighter tolerance, then direct).
        preconditioner
            For iterative solvers: ``"twolevel"`` (aggregation coarse-grid correction, for large chains),
            ``"ilu"``, ``"jacobi"`` or ``None``.
        tol
            Relative residual of the iterative solvers.
        maxiter
            Iteration limit of the iterative solvers (GMRES: total iterations over all restarts).
        show_progress_bar
            Progress over lineages (iterative solvers).
        n_jobs
            Threads over lineages for ``"lgmres"`` and ``"bicgstab"``, which solve one lineage at a time
            (``-1``: all cores). ``"auto"``, ``"gmres"`` and ``"direct"`` solve all lineages together (one
            sparse product per iteration for all of them) and do not need it. Results do not depend on it.

        Returns
        -------
        Self; sets :attr:`fate_probabilities` (values in ``[0, 1]``, rows summing to 1).

        Raises
        ------
        ReducibleChainError
            A closed class of the chain contains no terminal state.
        SolveError
            An iterative solve did not converge (its residual is in the message).
        ValueError
            An explicitly chosen iterative solver returned probabilities that do not sum to 1 (the message names
            the solver and ``tol``), or even the direct solve did (some cells cannot reach a terminal state).
        """
        names, sets = self._absorbing_sets(keys)
        if len(names) == 1:
            logger.warning("Only one lineage (%s): every cell has fate probability 1.", names[0])
        res = absorption_probabilities(
            self.transition_matrix,
            sets,
            structure=self.structure,
            solver=solver,
            preconditioner=preconditioner,
            tol=tol,
            maxiter=maxiter,
            show_progress_bar=show_progress_bar,
            n_jobs=n_jobs,
        )
        self._fate_probabilities = pd.DataFrame(res.probabilities, index=self.obs_names, columns=names)
        for name in names:
            if name not in self._colors:
                parts = name.split(", ")
                self._colors[name] = self._colors.get(parts[0], "#808080")
        self._solve_report = {
            "solver": res.report.solver,
            "preconditioner": res.report.preconditioner or "none",
            "max_residual": res.report.max_residual,
            "clipped": res.clipped,
        }
        self.params["fate_probabilities"] = {"keys": names, "solver": solver, "tol": tol, **self._solve_report}
        self._priming_degree = None
        return self

    def compute_absorption_times(
        self,
        keys: Sequence[str] | None = None,
        *,
        calculate_variance: bool = False,
        solver: Literal["auto", "direct", "gmres", "lgmres", "bicgstab"] = "auto",
        preconditioner: Literal["twolevel", "ilu", "jacobi"] | None = None,
        tol: float = 1e-6,
        n_jobs: int | None = None,
    ) -> FateMixin:
        """Compute the mean (and variance of) the time to absorption.

        With one key: the number of steps until the walk reaches that state (other terminal states are
        transient). With several: for each, the time conditional on being absorbed there. ``inf`` where a
        state cannot be reached.

        Parameters
        ----------
        keys
            Terminal states (merge as ``"Alpha, Beta"``); default all.
        calculate_variance
            Also compute the variance.
        solver, preconditioner, tol, n_jobs
            See :meth:`compute_fate_probabilities`.

        Returns
        -------
        Self; sets :attr:`absorption_times` with columns ``"<key>_mean"`` (and ``"<key>_var"``).
        """
        names, sets = self._absorbing_sets(keys)
        means, variances = absorption_times(
            self.transition_matrix,
            sets,
            structure=self.structure,
            calculate_variance=calculate_variance,
            solver=solver,
            preconditioner=preconditioner,
            tol=tol,
            n_jobs=n_jobs,
        )
        data: dict[str, Any] = {}
        for j, name in enumerate(names):
            data[f"{name}_mean"] = means[j]
            if variances is not None:
                data[f"{name}_var"] = variances[j]
        self._absorption_times = pd.DataFrame(data, index=self.obs_names)
        self.params["absorption_times"] = {"keys": names, "calculate_variance": calculate_variance}
        return self

    def compute_lineage_priming(
        self,
        method: Literal["kl_divergence", "entropy"] = "kl_divergence",
        early_cells: Any = None,
    ) -> pd.Series:
        """Compute the degree of lineage priming of each cell.

        Parameters
        ----------
        method
            ``"kl_divergence"`` (divergence from the mean fate of early cells) or ``"entropy"``.
        early_cells
            Boolean mask, cell names, or ``{obs_column: [cluster, ...]}``; all cells if ``None``.

        Returns
        -------
        The priming degree in ``[0, 1]`` (finite); also sets :attr:`priming_degree`.

        Notes
        -----
        With ``"kl_divergence"``, the reference (mean fate probabilities of the early cells) is floored at
        ``1e-6`` (:data:`~cellflux_estimators._engine._priming.REFERENCE_EPS`) and renormalised, so a lineage the
        early cells have probability 0 for gives a large but finite divergence to the cells that can reach it
        instead of an infinite one (which is NaN after scaling); a warning names such lineages. A reference
        without zeros is unchanged.
        """
        if self._fate_probabilities is None:
            raise RuntimeError("Compute fate probabilities first (compute_fate_probabilities).")
        mask = None
        if isinstance(early_cells, dict):
            adata = self._require_adata("early_cells as clusters")
            (key, values), *rest = early_cells.items()
            if rest:
                raise ValueError("early_cells as a dict takes exactly one obs column.")
            if key not in adata.obs:
                raise KeyError(f"adata.obs[{key!r}] does not exist.")
            values = [values] if isinstance(values, str) else list(values)
            mask = adata.obs[key].astype(str).isin([str(v) for v in values]).to_numpy()
        elif early_cells is not None:
            arr = np.asarray(early_cells)
            mask = arr.astype(bool) if arr.dtype == bool else self.obs_names.isin(arr.astype(str))
        probs = self._fate_probabilities.to_numpy()
        if method == "kl_divergence" and mask is not None and mask.any():
            ref = probs[mask].mean(axis=0)
            unreached = [
                str(c) for c, r in zip(self._fate_probabilities.columns, ref, strict=True) if r < REFERENCE_EPS
            ]
            if unreached:
                logger.warning(
                    "The early cells have (almost) zero probability for lineage(s) %s; their reference probability "
                    "is floored at %g, so cells reaching them get a large, finite priming divergence.",
                    unreached,
                    REFERENCE_EPS,
                )
        values = priming_degree(probs, method=method, early=mask)
        self._priming_degree = pd.Series(values, index=self.obs_names, name="priming_degree")
        return self._priming_degree
