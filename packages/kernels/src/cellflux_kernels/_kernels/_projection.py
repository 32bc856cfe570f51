"""compute_projection: the AnnData side of projecting a transition matrix onto an embedding."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import numpy as np
from scipy import sparse

from .._engine._projection import project, quiver_autoscale
from .._keys import Key

if TYPE_CHECKING:
    from ._base import KernelExpression

__all__ = ["compute_projection", "read_basis"]

logger = logging.getLogger(__name__)


def read_basis(adata, basis: str) -> np.ndarray:
    """``obsm[f"X_{basis}"]`` or ``obsm[basis]``, first two dimensions."""
    name = basis.removeprefix("X_")
    for key in (f"X_{name}", basis):
        if key in adata.obsm:
            emb = np.asarray(adata.obsm[key], dtype=np.float64)
            if emb.ndim != 2 or emb.shape[1] < 2:
                raise ValueError(f"adata.obsm[{key!r}] must have at least two columns, got shape {emb.shape}.")
            return emb[:, :2]
    raise KeyError(
        f"adata.obsm['X_{name}'] is missing; compute the embedding first (e.g. scanpy.tl.umap). "
        f"Available: {sorted(adata.obsm.keys())}."
    )


def compute_projection(
    kexpr: KernelExpression,
    *,
    basis: str = "umap",
    key_added: str | None = None,
    connectivities: sparse.spmatrix | None = None,
    overwrite: bool = False,
) -> np.ndarray:
    """See :meth:`KernelExpression.compute_projection`."""
    from cellflux.results import Results

    adata = kexpr.adata
    emb = read_basis(adata, basis)
    if connectivities is None:
        found = [k.connectivities for k in kexpr.kernels if hasattr(k, "connectivities")]
        if not found:
            raise RuntimeError("No kNN-based kernel in the expression; pass connectivities= explicitly.")
        connectivities = found[0]
    if connectivities.shape != (adata.n_obs, adata.n_obs):
        raise ValueError(f"connectivities has shape {connectivities.shape}, expected ({adata.n_obs}, {adata.n_obs}).")
    T = kexpr.transition_matrix
    out = project(T, connectivities, emb)
    out /= 3 * quiver_autoscale(np.nan_to_num(emb), out)
    key = key_added or Key.projection(Key.transition(kexpr.backward), basis)
    results = Results(
        key,
        function="kernels.compute_projection",
        plugin="cellflux-kernels",
        params={"basis": basis, "kernel": repr(kexpr)},
    )
    results.add("obsm", key, out)
    results.write(adata, overwrite=overwrite)
    return out
