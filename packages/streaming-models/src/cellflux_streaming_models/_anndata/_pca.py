"""``cf.tl.pca_streaming``: incremental PCA streamed over an AnnData in chunks."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import numpy as np
import torch

from cellflux.results import Results, resolve_target

from .._fit import stream_fit
from .._keys import ResultKey
from ..models import IncrementalPCA
from ._batches import anndata_batches, check_chunk_size

if TYPE_CHECKING:
    from anndata import AnnData

__all__ = ["pca_streaming"]


def pca_streaming(
    adata: AnnData,
    *,
    n_components: int = 50,
    layer: str | None = None,
    chunk_size: int = 10_000,
    algorithm: Literal["auto", "covariance", "svd"] = "auto",
    n_oversamples: int = 10,
    seed: int = 0,
    show_progress: bool = False,
    key_added: str = ResultKey.PCA.value,
    copy: bool = False,
    mod: str | None = None,
    overwrite: bool = False,
) -> AnnData | None:
    """Principal components by incremental PCA over chunks of cells (two passes: fit, then embed).

    Memory is bounded by ``chunk_size`` cells; works on backed AnnData. The data are used as they
    are (normalise and log-transform them first, as for ``scanpy.pp.pca``).

    Parameters
    ----------
    adata
        The data in ``X`` or ``layers[layer]``.
    n_components
        Number of components.
    layer
        Layer to use instead of ``X``.
    chunk_size
        Cells per chunk.
    algorithm
        ``"covariance"`` (exact, a genes x genes matrix in memory), ``"svd"`` (incremental truncated
        SVD, memory linear in genes) or ``"auto"`` (covariance up to 4,096 genes); see
        :class:`~cellflux_streaming_models.IncrementalPCA`.
    n_oversamples
        ``"svd"``: extra components carried for accuracy.
    seed
        ``"svd"``: seed of the random directions.
    show_progress
        Show progress bars.
    key_added
        Key of the embedding, the loadings and the provenance record.
    copy
        Return a modified copy instead of writing into ``adata``.
    mod
        MuData modality.
    overwrite
        Replace existing results.

    Returns
    -------
    ``None``, or the copy with ``copy=True``. Writes ``obsm[key_added]`` (cells x components),
    ``varm[key_added]`` (genes x components loadings) and ``uns[key_added]`` with
    ``explained_variance``, ``explained_variance_ratio``, ``mean`` and the parameters.
    """
    target = resolve_target(adata, mod=mod, copy=copy)
    data = target.adata
    check_chunk_size(chunk_size)
    if not isinstance(n_components, int) or not 1 <= n_components <= min(data.n_obs, data.n_vars):
        raise ValueError(
            f"n_components must be an integer in [1, {min(data.n_obs, data.n_vars)}], got {n_components!r}."
        )
    model = IncrementalPCA(data.var_names, n_components, n_oversamples=n_oversamples, seed=seed, algorithm=algorithm)
    stream_fit(
        model, lambda epoch: anndata_batches(data, layer=layer, chunk_size=chunk_size), show_progress=show_progress
    )
    embedding = np.empty((data.n_obs, n_components), dtype=np.float32)
    sums = np.zeros(data.n_vars)
    squares = np.zeros(data.n_vars)
    at = 0
    with torch.no_grad():
        for batch in anndata_batches(data, layer=layer, chunk_size=chunk_size):
            x = batch["x_ng"]
            n = x.shape[0]
            embedding[at : at + n] = model.predict(x, batch["var_names_g"])["x_ng"].numpy()
            x64 = x.to(torch.float64)
            sums += x64.sum(0).numpy()
            squares += (x64 * x64).sum(0).numpy()
            at += n
    mean = sums / data.n_obs
    total_variance = float((squares / data.n_obs - mean**2).sum())
    explained = model.explained_variance_k.numpy()
    results = Results(
        key_added,
        function="tl.pca_streaming",
        plugin="cellflux-streaming-models",
        params={
            "n_components": n_components,
            "layer": layer,
            "chunk_size": chunk_size,
            "algorithm": model.algorithm,
            "n_oversamples": n_oversamples,
            "seed": seed,
        },
    )
    results.add("obsm", key_added, embedding)
    results.add("varm", key_added, model.components_kg.T.numpy())
    results.add(
        "uns",
        key_added,
        {
            "explained_variance": explained,
            "explained_variance_ratio": explained / total_variance,
            "mean": model.mean_g.numpy(),
        },
    )
    results.write(data, overwrite=overwrite)
    return target.returned()
