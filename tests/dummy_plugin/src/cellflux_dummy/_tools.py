"""Two small registered functions written the suite's way."""

from __future__ import annotations

import numpy as np
from scipy import sparse

from cellflux.results import Results, resolve_target

_DIST = "cellflux-dummy-plugin"


def dummy_score(adata, *, layer=None, key_added="dummy_score", copy=False, mod=None, overwrite=False):
    """Score each cell by its total counts.

    Parameters
    ----------
    adata
        Annotated data.
    layer
        Layer to read; ``X`` by default.
    key_added
        Where to write.
    copy
        Return a copy instead of writing into ``adata``.
    mod
        Modality, when ``adata`` is a MuData.
    overwrite
        Replace existing results.

    Returns
    -------
    ``None``, or a copy of ``adata`` with ``copy=True``. Writes:

    ``obs[key_added]``
        The total counts per cell.
    ``obsm[key_added]``
        Totals and the number of detected genes, per cell.
    ``uns[key_added]``
        ``params`` and ``provenance``, plus ``mean``.
    """
    target = resolve_target(adata, mod=mod, copy=copy)
    x = target.adata.X if layer is None else target.adata.layers[layer]
    total = np.asarray(x.sum(axis=1)).ravel()
    detected = np.asarray((x > 0).sum(axis=1)).ravel()
    results = Results(key_added, function="tl.dummy_score", plugin=_DIST, params={"layer": layer})
    results.add("obs", key_added, total)
    results.add("obsm", key_added, np.column_stack([total, detected]))
    results.add("uns", key_added, {"mean": float(total.mean())})
    results.write(target.adata, overwrite=overwrite)
    return target.returned()


def dummy_log1p(adata, *, layer=None, key_added="dummy_log1p", copy=False, mod=None, overwrite=False):
    """Write ``log1p`` of a layer into a new layer.

    Parameters
    ----------
    adata
        Annotated data.
    layer
        Layer to read; ``X`` by default.
    key_added
        The new layer's name.
    copy
        Return a copy instead of writing into ``adata``.
    mod
        Modality, when ``adata`` is a MuData.
    overwrite
        Replace existing results.

    Returns
    -------
    ``None``, or a copy of ``adata`` with ``copy=True``. Writes:

    ``layers[key_added]``
        ``log1p`` of the input, sparse if the input is.
    ``uns[key_added]``
        ``params`` and ``provenance``.
    """
    target = resolve_target(adata, mod=mod, copy=copy)
    x = target.adata.X if layer is None else target.adata.layers[layer]
    value = x.log1p() if sparse.issparse(x) else np.log1p(x)
    results = Results(key_added, function="pp.dummy_log1p", plugin=_DIST, params={"layer": layer})
    results.add("layers", key_added, sparse.csr_matrix(value) if sparse.issparse(value) else value)
    results.write(target.adata, overwrite=overwrite)
    return target.returned()
