"""``preprocess_data``: the preparation veloVI needs (min-max scaling, gene filtering on the steady-state fit)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import numpy as np
from scipy import sparse

from ._steady_state import fit_steady_state
from ._validate import layer_values

if TYPE_CHECKING:
    from anndata import AnnData

__all__ = ["min_max_scale", "preprocess_data"]

logger = logging.getLogger(__name__)


def min_max_scale(x: np.ndarray | sparse.spmatrix) -> np.ndarray:
    """Scale each column to ``[0, 1]`` (constant columns become 0), as scikit-learn's ``MinMaxScaler``."""
    x = np.asarray(x.toarray() if sparse.issparse(x) else x, dtype=np.float64)
    lo, hi = x.min(axis=0), x.max(axis=0)
    span = hi - lo
    span[span == 0] = 1.0
    return ((x - lo) / span).astype(np.float32)


def preprocess_data(
    adata: AnnData,
    spliced_layer: str = "Ms",
    unspliced_layer: str = "Mu",
    min_max_scale: bool = True,
    filter_on_r2: bool = True,
) -> AnnData:
    """Prepare moments for veloVI: scale them to ``[0, 1]`` and keep genes with a steady-state fit.

    Parameters
    ----------
    adata
        AnnData with first-order moments in ``layers[spliced_layer]`` and ``layers[unspliced_layer]``.
    spliced_layer, unspliced_layer
        The moment layers.
    min_max_scale
        Min-max scale both layers per gene.
    filter_on_r2
        Keep genes whose steady-state fit on the (scaled) moments has ``R² > 0`` and ``gamma > 0``
        and passes scVelo's velocity-gene thresholds (``R² > 0.01``, ``gamma > 0.01``, and
        ``var["highly_variable"]`` where present).

    Returns
    -------
    A new AnnData (the input is not modified) with scaled layers, restricted to the kept genes;
    ``var["velocity_gamma"]``, ``var["velocity_r2"]`` and ``var["velocity_genes"]`` hold the fit.
    """
    spliced = layer_values(adata, spliced_layer)
    unspliced = layer_values(adata, unspliced_layer)
    out = adata.copy()
    if min_max_scale:
        out.layers[spliced_layer] = _scale(spliced)
        out.layers[unspliced_layer] = _scale(unspliced)
    if filter_on_r2:
        fit = fit_steady_state(out.layers[spliced_layer], out.layers[unspliced_layer])
        out.var["velocity_gamma"] = fit["gamma"]
        out.var["velocity_r2"] = fit["r2"]
        genes = fit["velocity_genes"] & (fit["r2"] > 0) & (fit["gamma"] > 0)
        if "highly_variable" in out.var:
            genes &= np.asarray(out.var["highly_variable"], dtype=bool)
        out.var["velocity_genes"] = genes
        if genes.sum() < 2:
            raise ValueError(
                f"Only {int(genes.sum())} gene(s) pass the steady-state R² filter; there is too little splicing "
                "signal. Check the moments, or pass filter_on_r2=False."
            )
        logger.info("preprocess_data keeps %d of %d genes", int(genes.sum()), out.n_vars)
        out = out[:, genes].copy()
    return out


def _scale(x: np.ndarray | sparse.spmatrix) -> np.ndarray:
    return min_max_scale(x)
