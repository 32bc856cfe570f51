"""Example calls of the registered functions on a small simulation (used by the suite's convention tests)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from cellflux._keys import TruthKey

from ._engine._toy import knn_transition_matrix
from ._keys import Key
from ._tools import fate_probabilities as tl_fate
from ._tools import macrostates as tl_macrostates
from ._tools import terminal_states as tl_terminal_states

if TYPE_CHECKING:
    from anndata import AnnData

__all__ = ["absorption_times", "fate_probabilities", "lineage_drivers", "macrostates", "terminal_states"]


def _prepare(adata: AnnData) -> None:
    """Log-normalised expression, a PCA and a toy forward-biased kNN transition matrix in ``obsp["T_fwd"]``."""
    if Key.transition() in adata.obsp:
        return
    x = np.asarray(
        adata.layers[TruthKey.SPLICED].toarray()
        if hasattr(adata.layers[TruthKey.SPLICED], "toarray")
        else adata.layers[TruthKey.SPLICED],
        dtype=np.float64,
    )
    x = np.log1p(x / x.sum(axis=1, keepdims=True) * 1e4)
    x -= x.mean(axis=0)
    u, s, _ = np.linalg.svd(x, full_matrices=False)
    coords = u[:, :10] * s[:10]
    adata.obsp[Key.transition()] = knn_transition_matrix(coords, adata.obs[TruthKey.TIME].to_numpy(), n_neighbors=15)


def _with_terminal(adata: AnnData) -> None:
    _prepare(adata)
    if Key.terminal() not in adata.obs:
        tl_macrostates(adata, n_states=4, n_cells=10, cluster_key=TruthKey.CLUSTERS)
        tl_terminal_states(adata, method="top_n", n_states=3, n_cells=10)


def macrostates(adata: AnnData) -> dict[str, Any]:
    """Example of ``cf.tl.macrostates``."""
    _prepare(adata)
    return {"n_states": 4, "n_cells": 10, "cluster_key": TruthKey.CLUSTERS}


def terminal_states(adata: AnnData) -> dict[str, Any]:
    """Example of ``cf.tl.terminal_states``."""
    _prepare(adata)
    tl_macrostates(adata, n_states=4, n_cells=10, cluster_key=TruthKey.CLUSTERS)
    return {"method": "top_n", "n_states": 3, "n_cells": 10}


def fate_probabilities(adata: AnnData) -> dict[str, Any]:
    """Example of ``cf.tl.fate_probabilities``."""
    _with_terminal(adata)
    return {}


def absorption_times(adata: AnnData) -> dict[str, Any]:
    """Example of ``cf.tl.absorption_times``."""
    _with_terminal(adata)
    return {"calculate_variance": True}


def lineage_drivers(adata: AnnData) -> dict[str, Any]:
    """Example of ``cf.tl.lineage_drivers``."""
    _with_terminal(adata)
    tl_fate(adata)
    adata.layers["log1p"] = np.log1p(np.asarray(adata.X.toarray() if hasattr(adata.X, "toarray") else adata.X))
    return {"layer": "log1p"}
