"""Examples for the suite's convention tests: prepare a simulated AnnData, return the call's kwargs."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from anndata import AnnData

__all__ = ["hvg_example", "pca_example"]


def hvg_example(adata: AnnData) -> dict[str, Any]:
    """Raw counts are in ``X``: select 20 genes, per sample."""
    return {"n_top_genes": 20, "batch_key": "condition", "chunk_size": 100}


def pca_example(adata: AnnData) -> dict[str, Any]:
    """Log-normalised counts in a layer, five components."""
    x = adata.X.toarray() if hasattr(adata.X, "toarray") else np.asarray(adata.X)
    adata.layers["log1p"] = np.log1p(x / x.sum(1, keepdims=True) * 1e4).astype(np.float32)
    return {"n_components": 5, "layer": "log1p", "chunk_size": 64}
