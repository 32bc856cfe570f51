"""Input checks shared by the model and the tools: clear errors that name the field and the fix."""

from __future__ import annotations

import logging
import warnings
from typing import TYPE_CHECKING

import numpy as np
from scipy import sparse

if TYPE_CHECKING:
    from anndata import AnnData

__all__ = ["check_layers", "check_same_genes", "dense", "layer_values"]

logger = logging.getLogger(__name__)

_FIX_MOMENTS = (
    "compute first-order moments first (scvelo.pp.moments, or cellflux_velocity_vae.moments) and "
    "scale them with cellflux_velocity_vae.preprocess_data"
)


def dense(matrix: np.ndarray | sparse.spmatrix, dtype: np.dtype | type | None = None) -> np.ndarray:
    """``matrix`` as a dense array of ``dtype`` (sparse matrices densified; no copy when already one)."""
    return np.asarray(matrix.toarray() if sparse.issparse(matrix) else matrix, dtype=dtype)


def layer_values(adata: AnnData, layer: str) -> np.ndarray | sparse.spmatrix:
    """The layer's matrix, or a ``KeyError`` that says how to make it."""
    if layer not in adata.layers:
        raise KeyError(f"adata.layers[{layer!r}] is missing (layers: {list(adata.layers)}); {_FIX_MOMENTS}.")
    return adata.layers[layer]


def _data(matrix: np.ndarray | sparse.spmatrix) -> np.ndarray:
    return matrix.data if sparse.issparse(matrix) else np.asarray(matrix)


def check_layers(
    adata: AnnData,
    spliced_layer: str,
    unspliced_layer: str,
    warn_unscaled: bool = True,
    allow_zero_genes: bool = False,
) -> None:
    """Check that both layers exist and hold finite, non-negative values with no all-zero gene.

    Raises ``KeyError``/``ValueError`` naming the layer and the fix; warns when a layer is not
    min-max scaled (values above 1), which veloVI's initialisation and priors assume.
    ``allow_zero_genes`` lets all-zero genes through (for callers whose gene filter drops them).
    """
    for layer in (spliced_layer, unspliced_layer):
        matrix = layer_values(adata, layer)
        if matrix.shape != adata.shape:
            raise ValueError(f"adata.layers[{layer!r}] has shape {matrix.shape}, expected {adata.shape}.")
        values = _data(matrix)
        if not np.all(np.isfinite(values)):
            raise ValueError(
                f"adata.layers[{layer!r}] contains NaN or infinite values; remove or impute them "
                "(e.g. recompute moments) before fitting."
            )
        if values.size and values.min() < 0:
            raise ValueError(
                f"adata.layers[{layer!r}] contains negative values; veloVI models non-negative abundances. "
                f"Pass the moments of counts, {_FIX_MOMENTS}."
            )
        column_max = np.asarray(matrix.max(axis=0).toarray() if sparse.issparse(matrix) else matrix.max(axis=0)).ravel()
        zero = np.flatnonzero(column_max <= 0)
        if zero.size and not allow_zero_genes:
            names = ", ".join(map(str, adata.var_names[zero[:5]]))
            raise ValueError(
                f"{zero.size} gene(s) are all zero in adata.layers[{layer!r}] (e.g. {names}); drop them "
                "(cellflux_velocity_vae.preprocess_data with filter_on_r2=True does) before fitting."
            )
        if warn_unscaled and column_max.max() > 1 + 1e-6:
            warnings.warn(
                f"adata.layers[{layer!r}] is not min-max scaled (maximum {column_max.max():.3g} > 1); veloVI "
                "expects values in [0, 1]. Run cellflux_velocity_vae.preprocess_data(adata) first.",
                UserWarning,
                stacklevel=3,
            )


def check_same_genes(reference: np.ndarray, adata: AnnData) -> None:
    """Raise if ``adata`` does not have the genes the model was set up with, in the same order."""
    names = np.asarray(adata.var_names)
    reference = np.asarray(reference)
    if names.shape != reference.shape or not np.array_equal(names, reference):
        missing = np.setdiff1d(reference, names)
        detail = (
            f"{missing.size} of the model's genes are missing" if missing.size else "the genes are in another order"
        )
        raise ValueError(
            f"This AnnData has {names.size} genes, the model was set up with {reference.size} ({detail}). "
            "Query with the model's genes: adata[:, model.adata.var_names]."
        )
