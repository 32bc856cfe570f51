"""Rebuilding an estimator from an AnnData written by ``to_adata``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._estimators._cflare import CFLARE
from ._estimators._gpcca import GPCCA
from ._keys import Key

if TYPE_CHECKING:
    from anndata import AnnData

__all__ = ["from_adata"]


def from_adata(adata: AnnData, *, backward: bool = False) -> GPCCA | CFLARE:
    """Rebuild the estimator (GPCCA or CFLARE) whose results :meth:`~GPCCA.to_adata` wrote into ``adata``.

    Parameters
    ----------
    adata
        The AnnData.
    backward
        Which direction's estimator to read.

    Returns
    -------
    The estimator, with its transition matrix from ``obsp`` and its results restored.
    """
    key = Key.estimator(backward)
    if key not in adata.uns:
        raise KeyError(f"adata.uns[{key!r}] does not exist: no estimator was written with to_adata().")
    kind = adata.uns[key].get("kind")
    classes = {"GPCCA": GPCCA, "CFLARE": CFLARE}
    if kind not in classes:
        raise TypeError(f"Unknown estimator kind {kind!r} in adata.uns[{key!r}].")
    return classes[kind].from_adata(adata, backward=backward)
