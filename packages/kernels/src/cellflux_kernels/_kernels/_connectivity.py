"""ConnectivityKernel: transitions proportional to kNN connectivities (undirected)."""

from __future__ import annotations

from typing import Any

import numpy as np
from anndata import AnnData
from scipy import sparse

from .._keys import Key
from ._anndata import read_connectivities
from ._base import Kernel

__all__ = ["ConnectivityKernel", "density_normalize"]


def density_normalize(matrix: sparse.csr_matrix, connectivities: sparse.csr_matrix) -> sparse.csr_matrix:
    """``Q @ matrix @ Q`` with ``Q = diag(1 / column sums of connectivities)`` (CellRank's density correction)."""
    q = np.asarray(connectivities.sum(axis=0)).ravel()
    if np.any(q == 0):
        raise ValueError(
            f"{int((q == 0).sum())} cells have no incoming connectivity; density normalisation is undefined."
        )
    Q = sparse.diags(1.0 / q)
    return sparse.csr_matrix(Q @ matrix @ Q)


class ConnectivityKernel(Kernel):
    """Transition probabilities proportional to (density-normalised) kNN connectivities.

    Undirected: it carries no information about the direction of the process; combine it with a
    directed kernel (e.g. ``0.8 * VelocityKernel + 0.2 * ConnectivityKernel``).

    Parameters
    ----------
    adata
        Annotated data with a kNN graph.
    conn_key
        ``obsp`` key of the connectivities (spatial graphs work too).
    check_connectivity
        Accepted for CellRank compatibility; the graph is always checked and a disconnected one logged.
    """

    directed = False

    def __init__(self, adata: AnnData, conn_key: str = Key.CONNECTIVITIES, check_connectivity: bool = False) -> None:
        super().__init__(adata)
        self._conn_key = conn_key
        self._conn = read_connectivities(adata, conn_key)

    @property
    def connectivities(self) -> sparse.csr_matrix:
        """The kNN connectivities."""
        return self._conn

    def _init_kwargs(self) -> dict[str, Any]:
        return {"conn_key": self._conn_key}

    def compute_transition_matrix(self, density_normalize: bool = True) -> ConnectivityKernel:
        """Row-normalise the connectivities, density-normalised first if asked.

        Parameters
        ----------
        density_normalize
            Divide by the local density on both sides (``Q C Q`` with ``Q = diag(1 / column sums)``), as
            CellRank does, so that dense regions do not attract the walk.

        Returns
        -------
        ``self``, with :attr:`transition_matrix` and :attr:`params` updated.
        """
        conn = density_normalize_fn(self._conn, self._conn) if density_normalize else self._conn
        self._set_transition_matrix(conn, {"density_normalize": bool(density_normalize), "conn_key": self._conn_key})
        return self


density_normalize_fn = density_normalize
