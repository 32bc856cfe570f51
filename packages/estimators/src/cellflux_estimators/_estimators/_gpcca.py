"""The GPCCA estimator: macrostates, coarse-grained chain, terminal and initial states."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd

from .._colors import colors_for
from .._engine._eigen import eigengap, stationary_distribution
from .._engine._gpcca import GPCCAResult, min_chi, optimize_gpcca
from .._engine._schur import splits_pair
from .._engine._states import name_from_clusters, top_cells
from ._decomposition import DecompositionMixin
from ._drivers import DriversMixin
from ._plots import PlotMixin

__all__ = ["GPCCA"]

logger = logging.getLogger(__name__)


class GPCCA(PlotMixin, DriversMixin, DecompositionMixin):
    """Generalised Perron Cluster Cluster Analysis (GPCCA) on any transition matrix.

    Computes a partial real Schur decomposition (sparse, without PETSc/SLEPc), fuzzy macrostates optimised
    for crispness (Reuter et al. 2018, 2019), the coarse-grained chain, terminal and initial states, fate
    probabilities, absorption times and lineage drivers.

    Parameters
    ----------
    obj
        A kernel or kernel expression (anything with ``.transition_matrix``), an AnnData holding the matrix in
        ``obsp``, or a row-stochastic sparse matrix.
    adata
        The cells' AnnData (taken from the kernel when it has one).
    backward
        Direction (from the kernel when ``None``).
    obsp_key
        The ``obsp`` key of the matrix for an AnnData input.
    seed
        Seed of every random choice.
    """

    def _reset(self) -> None:
        super()._reset()
        self._macrostates: pd.Series | None = None
        self._memberships: pd.DataFrame | None = None
        self._gpcca: GPCCAResult | None = None
        self._coarse_T: pd.DataFrame | None = None
        self._coarse_init: pd.Series | None = None
        self._coarse_stat: pd.Series | None = None
        self._stationary: np.ndarray | None = None

    # ------------------------------------------------------------------ properties
    @property
    def macrostates(self) -> pd.Series | None:
        """Categorical macrostate of the ``n_cells`` most typical cells of each macrostate (NaN elsewhere)."""
        return self._macrostates

    @property
    def macrostates_memberships(self) -> pd.DataFrame | None:
        """Fuzzy memberships of every cell in every macrostate (rows sum to 1)."""
        return self._memberships

    @property
    def terminal_states_memberships(self) -> pd.DataFrame | None:
        """Memberships of the macrostates chosen as terminal states."""
        return self._terminal_memberships

    @property
    def coarse_T(self) -> pd.DataFrame | None:
        """Coarse-grained transition matrix between macrostates."""
        return self._coarse_T

    @property
    def coarse_initial_distribution(self) -> pd.Series | None:
        """Coarse-grained input distribution ``chi^T eta``."""
        return self._coarse_init

    @property
    def coarse_stationary_distribution(self) -> pd.Series | None:
        """Coarse-grained stationary distribution ``chi^T pi`` (``None`` for reducible chains).

        Computed as the stationary distribution of :attr:`coarse_T`, which equals ``chi^T pi`` because the
        memberships span an invariant subspace (up to the Schur decomposition's residual).
        """
        return self._coarse_stat

    @property
    def crispness(self) -> pd.Series | None:
        """Crispness of the clustering for each number of states tried."""
        if self._gpcca is None:
            return None
        return pd.Series(self._gpcca.crispness, index=self._gpcca.tried, name="crispness")

    # ------------------------------------------------------------------ helpers
    def _stationary_distribution(self) -> np.ndarray | None:
        if self._stationary is None and self.structure.irreducible:
            self._stationary = stationary_distribution(self.transition_matrix, seed=self.seed)
        return self._stationary

    def _resolve_n_states(self, n_states: int | Sequence[int] | None, select: str) -> int | tuple[int, int]:
        if n_states is None:
            if self._eig is None:
                raise RuntimeError(
                    "Pass n_states, or compute the eigendecomposition/Schur vectors first for the eigengap."
                )
            n = self._eig.eigengap + 1
            logger.info("Using n_states=%d from the eigengap.", n)
            return n
        if isinstance(n_states, (int, np.integer)):
            if n_states <= 0:
                raise ValueError(f"n_states must be positive, got {n_states}.")
            return int(n_states)
        if not isinstance(n_states, Sequence) or len(n_states) != 2:
            raise TypeError(f"n_states must be an int or a [min, max] pair, got {n_states!r}.")
        lo, hi = sorted(int(v) for v in n_states)
        if lo <= 1:
            lo = 2
        if lo == 2:
            logger.warning("In most cases 2 states are always optimal; searching from 3 (ask n_states=2 for 2).")
            lo = 3
        hi = max(lo + 1, hi)
        self._ensure_schur(hi)
        if select == "crispness":
            return lo, hi
        if select != "min_chi":
            raise ValueError(f"select={select!r} is not supported; use 'min_chi' or 'crispness'.")
        values = min_chi(self.schur_vectors, lo, hi)
        best = int(np.arange(lo, hi + 1)[np.argmax(values)])
        logger.info("minChi in [%d, %d]: %s; using n_states=%d.", lo, hi, np.round(values, 4).tolist(), best)
        return best

    def _ensure_schur(self, n: int) -> None:
        if self._schur is None:
            n_obs = self.transition_matrix.shape[0]
            if n >= n_obs:
                raise ValueError(
                    f"{n} macrostates need {n} Schur vectors, but a chain of {n_obs} states has at most {n_obs - 1} "
                    f"(the Schur decomposition is partial); use n_states < {n_obs}."
                )
            # one vector more than needed to see whether n splits a complex pair, at least 10 to reuse them
            self.compute_schur(min(max(n + 1, 10), n_obs - 1))
        elif self._schur.vectors.shape[1] < n:
            raise ValueError(
                f"{n} macrostates need {n} Schur vectors, but only {self._schur.vectors.shape[1]} were computed. "
                f"Call compute_schur(n_components={n + 1}) first."
            )

    def _check_assignment(self, k: int, n_cells: int | None, cluster_key: str | None) -> None:
        """Refuse ``n_cells`` and ``cluster_key`` that cannot work for ``k`` macrostates, before any optimisation."""
        if n_cells is not None:
            if isinstance(n_cells, bool) or not isinstance(n_cells, (int, np.integer)) or n_cells <= 0:
                raise ValueError(f"n_cells must be a positive integer or None, got {n_cells!r}.")
            n_obs = self.transition_matrix.shape[0]
            if n_cells * k > n_obs:
                raise ValueError(
                    f"n_cells={n_cells} is too many: {k} macrostates with {n_cells} cells each need {n_cells * k} "
                    f"cells, but there are {n_obs}. Use n_cells <= {n_obs // k}, fewer states, or n_cells=None."
                )
        if cluster_key is not None:
            adata = self._require_adata("Naming states from clusters")
            if cluster_key not in adata.obs:
                raise KeyError(f"adata.obs[{cluster_key!r}] does not exist; pass an existing cluster column.")

    def _state_names(self, labels: np.ndarray, k: int, cluster_key: str | None) -> list[str]:
        if cluster_key is None:
            return [str(i) for i in range(k)]
        adata = self._require_adata("Naming states from clusters")
        if cluster_key not in adata.obs:
            raise KeyError(f"adata.obs[{cluster_key!r}] does not exist; pass an existing cluster column.")
        col = adata.obs[cluster_key]
        cats = [str(c) for c in col.cat.categories] if isinstance(col.dtype, pd.CategoricalDtype) else None
        return name_from_clusters(labels, col.astype(str).to_numpy(), k, cats)

    # ------------------------------------------------------------------ macrostates
    def compute_macrostates(
        self,
        n_states: int | Sequence[int] | None = None,
        *,
        n_cells: int | None = 30,
        cluster_key: str | None = None,
        select: Literal["min_chi", "crispness"] = "min_chi",
    ) -> GPCCA:
        """Compute macrostates with GPCCA.

        Parameters
        ----------
        n_states
            Number of macrostates; a ``[min, max]`` range picks it by ``select``; ``None`` uses the eigengap.
        n_cells
            Cells per macrostate in :attr:`macrostates` (the most typical ones); ``None`` assigns every cell to
            its most likely macrostate.
        cluster_key
            Name the macrostates after these clusters (``Alpha``, ``Ductal_1``, ...).
        select
            How a range is resolved: ``"min_chi"`` (as CellRank) or ``"crispness"`` (as pyGPCCA's ``optimize``).

        Returns
        -------
        Self; sets :attr:`macrostates`, :attr:`macrostates_memberships`, :attr:`coarse_T`,
        :attr:`coarse_initial_distribution` and :attr:`coarse_stationary_distribution`; clears terminal and
        initial states.

        Raises
        ------
        ValueError
            If ``n_cells * n_states`` exceeds the number of cells, or ``n_states`` is not below it; both are
            checked before the Schur decomposition and the optimisation. A call that fails leaves the earlier
            macrostates (and crispness) as they were.
        KeyError
            If ``cluster_key`` is not a column of ``adata.obs`` (checked first, too).
        """
        if isinstance(n_states, (int, np.integer)) and not isinstance(n_states, bool):
            self._check_assignment(int(n_states), n_cells, cluster_key)
        elif isinstance(n_states, Sequence) and len(n_states) == 2:
            self._check_assignment(max(min(int(v) for v in n_states), 3), n_cells, cluster_key)
        n = self._resolve_n_states(n_states, select)
        if n == 1:
            self._check_assignment(1, n_cells, cluster_key)
            pi = self._stationary_distribution()
            if pi is None:
                raise ValueError(f"One macrostate needs an irreducible chain. {self.structure.describe()}")
            memberships = pi[:, None] / pi.max()
            self._set_macrostates(memberships, None, n_cells, cluster_key)
            self._gpcca = None
            self.params["macrostates"] = {"n_states": 1, "n_cells": n_cells, "cluster_key": cluster_key}
            return self
        hi = n if isinstance(n, int) else n[1]
        self._ensure_schur(hi)
        if isinstance(n, int) and splits_pair(self._schur.eigenvalues, n):
            logger.warning("n_states=%d would split a complex-conjugate pair; using n_states=%d.", n, n + 1)
            n += 1
            self._ensure_schur(n)
        self._check_assignment(n if isinstance(n, int) else n[0], n_cells, cluster_key)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            res = optimize_gpcca(
                self.transition_matrix,
                self._schur.vectors,
                self._schur.eigenvalues,
                n,
                eta=self._eta,
                coarse_stationary_from_coarse=self.structure.irreducible,
                n_closed=len(self.structure.closed),
            )
        for w in caught:
            logger.warning("%s", w.message)
        self._set_macrostates(res.memberships, res, n_cells, cluster_key)
        self._gpcca = res  # only once the macrostates are set: a failed call leaves the earlier results
        self.params["macrostates"] = {"n_states": res.n_states, "n_cells": n_cells, "cluster_key": cluster_key}
        return self

    def _set_macrostates(
        self, memberships: np.ndarray, res: GPCCAResult | None, n_cells: int | None, cluster_key: str | None
    ) -> None:
        k = memberships.shape[1]
        labels = np.argmax(memberships, axis=1) if n_cells is None else top_cells(memberships, n_cells)
        names = self._state_names(labels, k, cluster_key)
        index = self.obs_names
        self._macrostates = pd.Series(pd.Categorical.from_codes(labels, categories=names), index=index)
        self._memberships = pd.DataFrame(memberships, index=index, columns=names)
        self._colors = colors_for(names, self._cluster_colors(cluster_key))
        self._terminal_states = self._initial_states = None
        self._terminal_probs = self._initial_probs = self._terminal_memberships = None
        self._fate_probabilities = self._absorption_times = self._priming_degree = self._lineage_drivers = None
        if res is not None:
            self._coarse_T = pd.DataFrame(res.coarse_T, index=names, columns=names)
            self._coarse_init = pd.Series(res.coarse_init, index=names)
            self._coarse_stat = None if res.coarse_stat is None else pd.Series(res.coarse_stat, index=names)
        else:
            self._coarse_T = self._coarse_init = self._coarse_stat = None

    # ------------------------------------------------------------------ terminal / initial states
    def predict_terminal_states(
        self,
        method: Literal["stability", "top_n", "eigengap", "eigengap_coarse"] = "stability",
        *,
        n_cells: int = 30,
        alpha: float = 1.0,
        stability_threshold: float = 0.96,
        n_states: int | None = None,
        allow_overlap: bool = False,
    ) -> GPCCA:
        """Choose terminal states among the macrostates.

        Parameters
        ----------
        method
            ``"stability"``: macrostates whose coarse self-transition is ``>= stability_threshold``;
            ``"top_n"``: the ``n_states`` most stable; ``"eigengap"``: as many as the eigengap of the
            spectrum suggests; ``"eigengap_coarse"``: from the eigengap of the coarse diagonal.
        n_cells
            Cells per terminal state.
        alpha
            Weight in the eigengap.
        stability_threshold
            Threshold of ``"stability"``.
        n_states
            Number of states for ``"top_n"``.
        allow_overlap
            Allow cells to be in a terminal and an initial state.

        Returns
        -------
        Self; sets :attr:`terminal_states`.
        """
        if self._macrostates is None:
            raise RuntimeError("Compute macrostates first (compute_macrostates).")
        if self._coarse_T is None:
            logger.warning("Only one macrostate: it is the terminal state.")
            return self.set_terminal_states(None, n_cells=n_cells, allow_overlap=allow_overlap)
        diag = pd.Series(np.diag(self._coarse_T.to_numpy()), index=self._coarse_T.columns)
        if method == "stability":
            names = list(diag.index[diag.to_numpy() >= stability_threshold])
            if not names:
                raise ValueError(
                    f"No macrostate has a coarse self-transition >= {stability_threshold} (max {diag.max():.3f}); "
                    "lower stability_threshold or use method='top_n'."
                )
        else:
            if method == "eigengap":
                if self._eig is None:
                    raise RuntimeError("Compute the eigendecomposition or Schur vectors first.")
                n = eigengap(self._eig.eigenvalues, alpha) + 1
            elif method == "eigengap_coarse":
                n = eigengap(np.sort(diag.to_numpy())[::-1], alpha)
            elif method == "top_n":
                if n_states is None or n_states <= 0:
                    raise ValueError(f"method='top_n' needs a positive n_states, got {n_states!r}.")
                n = n_states
            else:
                raise ValueError(
                    f"method={method!r} is not supported; use 'stability', 'top_n', 'eigengap' or 'eigengap_coarse'."
                )
            if n > len(diag):
                raise ValueError(f"{n} terminal states requested, but there are only {len(diag)} macrostates.")
            names = list(diag.index[np.argsort(diag.to_numpy(), kind="stable")][len(diag) - n :]) if n > 0 else []
            if not names:
                raise ValueError("The eigengap selected no terminal state; use method='top_n'.")
        self.set_terminal_states(names, n_cells=n_cells, allow_overlap=allow_overlap)
        self.params["terminal_states"] = {"method": method, "n_cells": n_cells, "names": names}
        return self

    def predict_initial_states(self, n_states: int = 1, *, n_cells: int = 30, allow_overlap: bool = False) -> GPCCA:
        """Choose initial states: the macrostates with the lowest coarse stationary probability.

        Parameters
        ----------
        n_states
            Number of initial states.
        n_cells
            Cells per state.
        allow_overlap
            Allow cells in both an initial and a terminal state.

        Returns
        -------
        Self; sets :attr:`initial_states`.
        """
        if self._memberships is None:
            raise RuntimeError("Compute macrostates first (compute_macrostates).")
        if n_states <= 0 or n_states > self._memberships.shape[1]:
            raise ValueError(f"n_states must be in [1, {self._memberships.shape[1]}], got {n_states}.")
        if self._coarse_stat is None:
            if self._memberships.shape[1] == 1:
                names = list(self._memberships.columns)
            else:
                raise ValueError(f"No coarse stationary distribution: {self.structure.describe()}")
        else:
            names = list(self._coarse_stat.index[np.argsort(self._coarse_stat.to_numpy())][:n_states])
        return self._set_from_macrostates("initial", names, n_cells, allow_overlap)

    def set_terminal_states(
        self,
        states: str | Sequence[str] | Mapping[str, Sequence[Any]] | pd.Series | None = None,
        *,
        n_cells: int = 30,
        allow_overlap: bool = False,
        cluster_key: str | None = None,
        merge: bool = False,
    ) -> GPCCA:
        """Set terminal states: macrostate names (the ``n_cells`` most typical cells each), cells or clusters.

        Parameters
        ----------
        states
            ``None`` (all macrostates), a macrostate name or list of names, a dict of state name to cells,
            ``{obs_column: [clusters]}``, a categorical Series indexed by the cell names (aligned by its index),
            or a 1-d array/:class:`pandas.Categorical` with one value per cell, in the cells' order.
        n_cells
            Cells per state when choosing macrostates.
        allow_overlap
            Allow cells in both an initial and a terminal state (otherwise they are dropped from the new states).
        cluster_key
            Colours from these clusters (dict/Series input).
        merge
            Add to the existing terminal states.

        Returns
        -------
        Self; sets :attr:`terminal_states`.
        """
        if (
            states is None
            or isinstance(states, str)
            or (isinstance(states, Sequence) and not isinstance(states, pd.Series))
        ):
            return self._set_from_macrostates("terminal", states, n_cells, allow_overlap, merge=merge)
        return super().set_terminal_states(states, cluster_key=cluster_key, merge=merge)

    def _set_from_macrostates(
        self, which: str, names: Any, n_cells: int, allow_overlap: bool, merge: bool = False
    ) -> GPCCA:
        if self._memberships is None:
            raise RuntimeError("Compute macrostates first (compute_macrostates).")
        available = list(self._memberships.columns)
        names = available if names is None else ([names] if isinstance(names, str) else list(names))
        if not names:
            raise ValueError("No macrostates were selected.")
        unknown = [n for n in names if n not in available]
        if unknown:
            raise KeyError(f"Unknown macrostate(s) {unknown}; the macrostates are {available}.")
        mem = self._memberships.loc[:, names]
        labels = top_cells(mem.to_numpy(), n_cells)
        other = self._initial_states if which == "terminal" else self._terminal_states
        if not allow_overlap and other is not None:
            overlap = (labels >= 0) & other.notna().to_numpy()
            if overlap.any():
                logger.warning(
                    "Dropping %d cell(s) that are also %s states.",
                    int(overlap.sum()),
                    "initial" if which == "terminal" else "terminal",
                )
                labels[overlap] = -1
        series = pd.Series(pd.Categorical.from_codes(labels, categories=names), index=self.obs_names)
        x = mem.to_numpy()
        probs = pd.Series((x / x.max(axis=0)).max(axis=1), index=self.obs_names)
        self._write_states(which, series, probs, merge=merge, memberships=mem)
        return self

    # ------------------------------------------------------------------ TSI
    def tsi(self, n_macrostates: int, *, terminal_states: Sequence[str], cluster_key: str, n_cells: int = 30) -> float:
        """Terminal-state identification (TSI) score (Weiler et al. 2024).

        For ``m = 1 .. n_macrostates`` macrostates, count how many of the known ``terminal_states`` are found among
        the macrostate names (ignoring ``_<n>`` suffixes); the score is the area under that curve over the area
        under the optimal one (``min(m, len(terminal_states))``).

        Parameters
        ----------
        n_macrostates
            Largest number of macrostates.
        terminal_states
            Names of the known terminal clusters.
        cluster_key
            Clusters the macrostates are named after.
        n_cells
            Cells per macrostate.

        Returns
        -------
        The score in ``[0, 1]``; the per-``m`` table is in ``self.tsi_table``.
        """
        known = set(terminal_states)
        g = self.copy(deep=False)
        g._schur, g._eig = self._schur, self._eig
        if g._schur is None or g._schur.vectors.shape[1] < n_macrostates:
            g.compute_schur(n_macrostates + 1)
        rows = []
        last = 0
        for m in range(1, n_macrostates + 1):
            try:
                g.compute_macrostates(m, n_cells=n_cells, cluster_key=cluster_key)
                found = {
                    str(c).rsplit("_", 1)[0] if str(c).rsplit("_", 1)[-1].isdigit() else str(c)
                    for c in g.macrostates.cat.categories
                }
                last = len(found & known)
            except ValueError as err:
                logger.info("TSI: %d macrostates failed (%s); carrying the previous count.", m, err)
            rows.append(
                {
                    "number_of_macrostates": m,
                    "identified_terminal_states": last,
                    "optimal_identification": min(m, len(known)),
                }
            )
        table = pd.DataFrame(rows)
        self.tsi_table = table
        return float(table["identified_terminal_states"].sum() / table["optimal_identification"].sum())

    def fit(
        self, n_states: int | Sequence[int] | None = None, *, n_cells: int = 30, cluster_key: str | None = None
    ) -> GPCCA:
        """Compute the Schur decomposition (if needed) and the macrostates.

        Returns
        -------
        Self.
        """
        return self.compute_macrostates(n_states, n_cells=n_cells, cluster_key=cluster_key)
