"""``cf.pp.highly_variable_genes_streaming``: Seurat v3 HVG streamed over an AnnData in chunks."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from cellflux.results import Results, resolve_target

from .._fit import stream_fit
from .._keys import ResultKey
from ..models import HVGSeuratV3
from ._batches import anndata_batches, batch_codes, check_chunk_size

if TYPE_CHECKING:
    from anndata import AnnData

__all__ = ["highly_variable_genes_streaming"]


def highly_variable_genes_streaming(
    adata: AnnData,
    *,
    n_top_genes: int = 2000,
    flavor: Literal["seurat_v3", "seurat_v3_paper"] = "seurat_v3",
    batch_key: str | None = None,
    layer: str | None = None,
    span: float = 0.3,
    chunk_size: int = 10_000,
    show_progress: bool = False,
    key_added: str = ResultKey.HVG.value,
    copy: bool = False,
    mod: str | None = None,
    overwrite: bool = False,
) -> AnnData | None:
    """Highly variable genes (Seurat v3) computed in two streamed passes over chunks of cells.

    The same selection as ``scanpy.pp.highly_variable_genes(flavor=...)`` on raw counts, with memory
    bounded by ``chunk_size`` cells; works on backed AnnData.

    Parameters
    ----------
    adata
        Raw counts in ``X`` or ``layers[layer]``.
    n_top_genes
        Number of genes to select.
    flavor
        ``"seurat_v3"`` or ``"seurat_v3_paper"`` (how batches are combined).
    batch_key
        ``obs`` column of batches.
    layer
        Layer to use instead of ``X``.
    span
        LOESS span.
    chunk_size
        Cells per chunk.
    show_progress
        Show progress bars.
    key_added
        Prefix of the written columns and key of the provenance record.
    copy
        Return a modified copy instead of writing into ``adata``.
    mod
        MuData modality.
    overwrite
        Replace existing results.

    Returns
    -------
    ``None``, or the copy with ``copy=True``. Writes ``var[key_added]`` (bool), ``var[f"{key_added}_rank"]``,
    ``var[f"{key_added}_means"]``, ``var[f"{key_added}_variances"]``, ``var[f"{key_added}_variances_norm"]``,
    with ``batch_key`` also ``var[f"{key_added}_nbatches"]``, and the parameters in ``uns[key_added]``.
    """
    target = resolve_target(adata, mod=mod, copy=copy)
    data = target.adata
    check_chunk_size(chunk_size)
    codes, n_batch = batch_codes(data, batch_key)
    model = HVGSeuratV3(
        data.var_names, n_top_genes, n_batch=n_batch, flavor=flavor, use_batch_key=batch_key is not None, span=span
    )
    stream_fit(
        model,
        lambda epoch: anndata_batches(data, layer=layer, chunk_size=chunk_size, codes=codes),
        show_progress=show_progress,
    )
    df = model.hvg_df
    assert df is not None
    params: dict[str, Any] = {
        "n_top_genes": n_top_genes,
        "flavor": flavor,
        "batch_key": batch_key,
        "layer": layer,
        "span": span,
        "chunk_size": chunk_size,
    }
    results = Results(
        key_added, function="pp.highly_variable_genes_streaming", plugin="cellflux-streaming-models", params=params
    )
    results.add("var", key_added, df["highly_variable"].to_numpy())
    results.add("var", f"{key_added}_rank", df["highly_variable_rank"].to_numpy())
    results.add("var", f"{key_added}_means", df["means"].to_numpy())
    results.add("var", f"{key_added}_variances", df["variances"].to_numpy())
    results.add("var", f"{key_added}_variances_norm", df["variances_norm"].to_numpy())
    if batch_key is not None:
        results.add("var", f"{key_added}_nbatches", df["highly_variable_nbatches"].to_numpy())
    results.write(data, overwrite=overwrite)
    return target.returned()
