"""Step ``kernels``: 0.8 velocity kernel + 0.2 connectivity kernel (cellflux-kernels)."""

from __future__ import annotations

import numpy as np

from .._keys import TruthKey
from ._context import Context
from ._util import require_function

__all__ = ["WEIGHTS", "run"]

WEIGHTS = {"velocity": 0.8, "connectivity": 0.2}
TKEY = "T_fwd"


def run(ctx: Context) -> None:
    """Write the transition matrix ``obsp["T_fwd"]`` and its UMAP projection ``obsm["T_fwd_umap"]``."""
    import cellflux as cf

    require_function("tl", "transition_matrix", "cellflux-kernels")
    adata = ctx.adata
    cf.tl.transition_matrix(
        adata, weights=WEIGHTS, xkey="Ms", vkey="velocity", conn_key="connectivities", overwrite=True
    )
    t = adata.obsp[TKEY]
    ctx.info(f"transition matrix 0.8 x velocity + 0.2 x connectivity kernel: {t.nnz:,} transitions")
    if "X_umap" in adata.obsm:
        emb = np.asarray(adata.obsm["X_umap"], dtype=np.float64)[:, :2]
        adata.obsm[f"{TKEY}_umap"] = np.asarray(t @ emb - emb)
    if ctx.has_truth:
        time = adata.obs[TruthKey.TIME].to_numpy(dtype=np.float64)
        moving = ~adata.obs[TruthKey.TERMINAL].to_numpy(dtype=bool)
        forward = float(np.mean((t @ time - time)[moving] > 0))
        ctx.score("kernels", "cells whose expected step moves forward in true time", forward, "non-terminal cells")
