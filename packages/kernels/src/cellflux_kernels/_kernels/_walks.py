"""Random walks from chosen cells: resolving cell selections on AnnData, then the engine."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from .._engine._random_walk import random_walks

if TYPE_CHECKING:
    from anndata import AnnData

    from ._base import KernelExpression

__all__ = ["resolve_cells", "simulate_random_walks"]


def resolve_cells(adata: AnnData, selection: Any, what: str) -> np.ndarray | None:
    """A boolean mask of the cells in ``selection`` (names, indices, or ``{obs_key: values | (low, high)}``)."""
    if selection is None:
        return None
    mask = np.zeros(adata.n_obs, dtype=bool)
    if isinstance(selection, Mapping):
        for key, values in selection.items():
            if key not in adata.obs:
                raise KeyError(f"{what}: adata.obs[{key!r}] is missing.")
            column = adata.obs[key]
            if isinstance(values, tuple) and len(values) == 2 and pd.api.types.is_numeric_dtype(column):
                low, high = values
                mask |= np.asarray((column >= low) & (column <= high))
            else:
                values = [values] if isinstance(values, str) else list(values)
                missing = set(values) - set(column.astype(str).unique()) - set(column.unique())
                if missing:
                    raise ValueError(f"{what}: {sorted(map(str, missing))} not found in adata.obs[{key!r}].")
                mask |= np.asarray(column.isin(values))
        return mask
    items = np.asarray(
        list(selection) if isinstance(selection, Sequence) and not isinstance(selection, str) else [selection]
    )
    if items.dtype.kind in "iu":
        if np.any((items < 0) | (items >= adata.n_obs)):
            raise IndexError(f"{what}: indices must be in [0, {adata.n_obs}).")
        mask[items] = True
        return mask
    idx = adata.obs_names.get_indexer(items.astype(str))
    if np.any(idx < 0):
        raise KeyError(
            f"{what}: {int((idx < 0).sum())} names are not in obs_names, e.g. {items[idx < 0][:3].tolist()}."
        )
    mask[idx] = True
    return mask


def simulate_random_walks(
    kexpr: KernelExpression,
    *,
    n_sims: int,
    max_iter: int | float,
    seed: int | None,
    start_ixs: Any,
    stop_ixs: Any,
    successive_hits: int,
) -> list[np.ndarray]:
    """See :meth:`KernelExpression.simulate_random_walks`."""
    if n_sims <= 0:
        raise ValueError(f"n_sims must be positive, got {n_sims}.")
    if successive_hits < 0:
        raise ValueError(f"successive_hits must be non-negative, got {successive_hits}.")
    adata = kexpr.adata
    n = adata.n_obs
    if isinstance(max_iter, float):
        if not 0 < max_iter <= 1:
            raise ValueError(f"A float max_iter is a fraction of the cells and must be in (0, 1], got {max_iter}.")
        max_iter = int(np.ceil(max_iter * n))
    if max_iter <= 0:
        raise ValueError(f"max_iter must be positive, got {max_iter}.")
    start = resolve_cells(adata, start_ixs, "start_ixs")
    stop = resolve_cells(adata, stop_ixs, "stop_ixs")
    candidates = np.arange(n) if start is None else np.flatnonzero(start)
    if not len(candidates):
        raise ValueError("start_ixs selects no cell.")
    rng = np.random.default_rng(seed)
    starts = rng.choice(candidates, size=n_sims)
    return random_walks(
        kexpr.transition_matrix, starts, max_iter=max_iter, stop=stop, successive_hits=successive_hits, rng=rng
    )
