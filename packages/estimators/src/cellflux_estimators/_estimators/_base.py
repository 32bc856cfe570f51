"""The base estimator: holds the transition matrix, the optional AnnData and the results."""

from __future__ import annotations

import copy as _copy
import logging
from typing import TYPE_CHECKING, Any

import anndata
import numpy as np
import pandas as pd
from scipy import sparse

from .._engine._checks import ChainStructure, chain_structure
from .._io import read_estimator, write_estimator
from .._protocol import resolve_input

if TYPE_CHECKING:
    from anndata import AnnData

__all__ = ["BaseEstimator"]

logger = logging.getLogger(__name__)


class BaseEstimator:
    """Common state of the estimators.

    Parameters
    ----------
    obj
        A kernel or kernel expression (anything with a row-stochastic ``.transition_matrix``; its ``.adata``,
        ``.backward`` and ``.params`` are used when present), an AnnData with the matrix in
        ``obsp[obsp_key]``, or a sparse/dense row-stochastic matrix.
    adata
        The AnnData the cells belong to (optional with a bare matrix; used for names, clusters, genes).
    backward
        Direction of the process (read from the kernel if ``None``).
    obsp_key
        Where an AnnData input holds the matrix (``"T_fwd"``/``"T_bwd"`` by default).
    seed
        Seed of every random choice (Krylov start vectors, clustering, permutations).
    """

    def __init__(
        self,
        obj: Any,
        *,
        adata: AnnData | None = None,
        backward: bool | None = None,
        obsp_key: str | None = None,
        seed: int = 0,
    ) -> None:
        matrix, adata, backward, kernel_params = resolve_input(obj, adata=adata, backward=backward, obsp_key=obsp_key)
        self._T: sparse.csr_matrix = matrix
        self._adata = adata
        self._backward = backward
        self.seed = int(seed)
        self.params: dict[str, Any] = {"kernel": kernel_params}
        self._structure: ChainStructure | None = None
        self._reset()

    def _reset(self) -> None:
        """Clear every result (subclasses extend)."""
        self._terminal_states: pd.Series | None = None
        self._terminal_probs: pd.Series | None = None
        self._terminal_memberships: pd.DataFrame | None = None
        self._initial_states: pd.Series | None = None
        self._initial_probs: pd.Series | None = None
        self._colors: dict[str, str] = {}
        self._fate_probabilities: pd.DataFrame | None = None
        self._absorption_times: pd.DataFrame | None = None
        self._priming_degree: pd.Series | None = None
        self._lineage_drivers: pd.DataFrame | None = None
        self._solve_report: dict[str, Any] = {}

    # ------------------------------------------------------------------ basic properties
    @property
    def transition_matrix(self) -> sparse.csr_matrix:
        """The row-stochastic transition matrix (CSR)."""
        return self._T

    @property
    def adata(self) -> AnnData | None:
        """The AnnData of the cells, if any."""
        return self._adata

    @property
    def backward(self) -> bool:
        """Whether the process runs backward in time."""
        return self._backward

    @property
    def n_cells(self) -> int:
        """Number of cells (states of the chain)."""
        return self._T.shape[0]

    def __len__(self) -> int:
        return self.n_cells

    @property
    def obs_names(self) -> pd.Index:
        """Cell names (``adata.obs_names``, or ``"0", "1", ...`` without an AnnData)."""
        if self._adata is not None:
            return pd.Index(self._adata.obs_names)
        return pd.Index(np.arange(self.n_cells).astype(str))

    @property
    def structure(self) -> ChainStructure:
        """The communicating classes of the chain (computed once)."""
        if self._structure is None:
            self._structure = chain_structure(self._T)
        return self._structure

    @property
    def terminal_states(self) -> pd.Series | None:
        """Categorical terminal state of each cell (NaN for cells in none)."""
        return self._terminal_states

    @property
    def terminal_states_probabilities(self) -> pd.Series | None:
        """How strongly each cell belongs to its terminal state, in ``[0, 1]``."""
        return self._terminal_probs

    @property
    def initial_states(self) -> pd.Series | None:
        """Categorical initial state of each cell (NaN for cells in none)."""
        return self._initial_states

    @property
    def fate_probabilities(self) -> pd.DataFrame | None:
        """Fate (absorption) probabilities: cells x lineages, rows summing to 1."""
        return self._fate_probabilities

    @property
    def absorption_times(self) -> pd.DataFrame | None:
        """Mean (and variance of) the time to absorption, per lineage."""
        return self._absorption_times

    @property
    def priming_degree(self) -> pd.Series | None:
        """Lineage priming of each cell."""
        return self._priming_degree

    @property
    def lineage_drivers(self) -> pd.DataFrame | None:
        """Driver statistics per gene (rows) and lineage (columns ``<lineage>_corr`` etc.)."""
        return self._lineage_drivers

    @property
    def colors(self) -> dict[str, str]:
        """Colour of each named state."""
        return dict(self._colors)

    def _require_adata(self, what: str) -> AnnData:
        if self._adata is None:
            raise ValueError(f"{what} needs an AnnData; pass adata= when creating the estimator.")
        return self._adata

    def copy(self, *, deep: bool = False) -> BaseEstimator:
        """Copy the estimator (``deep`` also copies the matrix and AnnData)."""
        return _copy.deepcopy(self) if deep else _copy.copy(self)

    def __repr__(self) -> str:
        kernel = self.params.get("kernel", {}).get("kernel", "matrix")
        return f"{type(self).__name__}[kernel={kernel}, n={self.n_cells}, backward={self.backward}]"

    # ------------------------------------------------------------------ AnnData round trip
    def to_adata(self, adata: AnnData | None = None, *, copy: bool = True) -> AnnData:
        """Write the transition matrix and every computed result into an AnnData.

        Parameters
        ----------
        adata
            Where to write (the estimator's AnnData by default, or an empty one with the cells' names).
        copy
            Write into a copy.

        Returns
        -------
        The AnnData, with ``obsp["T_fwd"]``, states in ``obs``, fate probabilities and memberships in ``obsm``,
        drivers in ``var`` and the estimator's state in ``uns["estimator_fwd"]`` (``_bwd`` when backward).
        """
        target = adata if adata is not None else self._adata
        if target is None:
            target = anndata.AnnData(obs=pd.DataFrame(index=self.obs_names))
        elif target.n_obs != self.n_cells:
            raise ValueError(f"The AnnData has {target.n_obs} cells; the estimator has {self.n_cells}.")
        target = target.copy() if copy else target
        write_estimator(self, target)
        return target

    @classmethod
    def from_adata(cls, adata: AnnData, *, backward: bool = False) -> BaseEstimator:
        """Rebuild an estimator written by :meth:`to_adata`.

        Parameters
        ----------
        adata
            The AnnData.
        backward
            Which direction to read.

        Returns
        -------
        The estimator with its results restored.
        """
        est = cls(adata, backward=backward)
        read_estimator(est, adata)
        return est
