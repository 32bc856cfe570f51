"""Chunks of an in-memory or backed AnnData as batch dicts."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch
from scipy import sparse

from .._keys import BatchKey

if TYPE_CHECKING:
    from anndata import AnnData

__all__ = ["anndata_batches", "batch_codes", "check_chunk_size"]


def check_chunk_size(chunk_size: int) -> int:
    """Refuse a non-positive chunk size."""
    if not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive integer, got {chunk_size!r}.")
    return chunk_size


def batch_codes(adata: AnnData, batch_key: str | None) -> tuple[np.ndarray | None, int]:
    """Integer codes of ``obs[batch_key]`` and the number of batches."""
    if batch_key is None:
        return None, 1
    if batch_key not in adata.obs:
        raise KeyError(f"obs[{batch_key!r}] does not exist; pass an existing obs column as batch_key.")
    values = pd.Categorical(adata.obs[batch_key])
    missing = int(np.count_nonzero(values.codes < 0))
    if missing:
        raise ValueError(
            f"obs[{batch_key!r}] has {missing} missing value(s); fill them (e.g. with a batch of their own) or drop "
            "those cells."
        )
    return values.codes.astype(np.int64), len(values.categories)


def anndata_batches(
    adata: AnnData, *, layer: str | None, chunk_size: int, codes: np.ndarray | None = None
) -> Iterator[dict[str, Any]]:
    """Yield ``{"x_ng", "var_names_g", "batch_index_n"}`` for consecutive chunks of cells."""
    if layer is not None and layer not in adata.layers:
        raise KeyError(f"layers[{layer!r}] does not exist; pass an existing layer or layer=None for X.")
    matrix = adata.X if layer is None else adata.layers[layer]
    if matrix is None:
        raise ValueError("adata.X is empty; pass layer=.")
    var_names = np.asarray(adata.var_names, dtype=object)
    for start in range(0, adata.n_obs, chunk_size):
        stop = min(start + chunk_size, adata.n_obs)
        chunk = matrix[start:stop]
        dense = chunk.toarray() if sparse.issparse(chunk) or hasattr(chunk, "toarray") else np.asarray(chunk)
        dense = np.ascontiguousarray(dense, dtype=np.float32)
        if not np.isfinite(dense).all():
            raise ValueError(f"{'X' if layer is None else f'layers[{layer!r}]'} has NaN or infinite values.")
        batch: dict[str, Any] = {BatchKey.X_NG.value: torch.from_numpy(dense), BatchKey.VAR_NAMES_G.value: var_names}
        if codes is not None:
            batch[BatchKey.BATCH_INDEX_N.value] = torch.from_numpy(codes[start:stop])
        yield batch
