"""Examples for the suite's convention tests: prepare a simulated AnnData, return a call's keyword arguments."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from anndata import AnnData

__all__ = ["differential_abundance", "differential_expression", "gp_smooth", "prepare"]

LAYER = "log_normalized"


def prepare(adata: AnnData, n_comps: int = 10) -> tuple[str, str]:
    """Add a log-normalised layer and a PCA representation (if missing); return the two condition names."""
    from cellflux._keys import TruthKey

    from ._keys import Key
    from ._representation import log_normalize, pca

    if LAYER not in adata.layers:
        adata.layers[LAYER] = log_normalize(adata.X)
    if Key.OBSM not in adata.obsm:
        adata.obsm[Key.OBSM] = pca(adata.layers[LAYER], n_comps)
    c1, c2 = list(adata.obs[TruthKey.CONDITION].astype(str).unique())[:2]
    return c1, c2


def differential_abundance(adata: AnnData) -> dict[str, Any]:
    """Kwargs of ``cf.tl.differential_abundance`` on a prepared simulation."""
    c1, c2 = prepare(adata)
    return {"groupby": "condition", "conditions": (c1, c2), "n_landmarks": 100}


def differential_expression(adata: AnnData) -> dict[str, Any]:
    """Kwargs of ``cf.tl.differential_expression`` on a prepared simulation."""
    c1, c2 = prepare(adata)
    return {"groupby": "condition", "conditions": (c1, c2), "layer": LAYER, "n_landmarks": 100, "n_null_genes": 60}


def gp_smooth(adata: AnnData) -> dict[str, Any]:
    """Kwargs of ``cf.tl.gp_smooth`` on a prepared simulation."""
    c1, _ = prepare(adata)
    return {"layer": LAYER, "groupby": "condition", "condition": c1, "n_landmarks": 100}
