"""Shared fixtures: a simulated differentiation with a toy forward-biased kNN transition matrix."""

from __future__ import annotations

import numpy as np
import pytest

from cellflux._keys import TruthKey
from cellflux_estimators import knn_transition_matrix


def pca(adata, n_comps: int = 10) -> np.ndarray:
    x = adata.layers[TruthKey.SPLICED]
    x = np.asarray(x.toarray() if hasattr(x, "toarray") else x, dtype=np.float64)
    x = np.log1p(x / x.sum(axis=1, keepdims=True) * 1e4)
    adata.layers["log1p"] = x
    x = x - x.mean(axis=0)
    u, s, _ = np.linalg.svd(x, full_matrices=False)
    return u[:, :n_comps] * s[:n_comps]


@pytest.fixture
def chain(simulated):
    """(adata, T): 600 simulated cells, 3 lineages, log1p layer, 2-D embedding and a kNN transition matrix."""
    adata = simulated(n_cells=600, n_genes=80, n_lineages=3, seed=1)
    coords = pca(adata)
    adata.obsm["X_umap"] = coords[:, :2]
    adata.obs[TruthKey.CLUSTERS] = adata.obs[TruthKey.CLUSTERS].astype("category")
    t = knn_transition_matrix(coords, adata.obs[TruthKey.TIME].to_numpy(), n_neighbors=20)
    adata.obsp["T_fwd"] = t
    return adata, t
