"""Step ``streaming``: write h5ad shards from the same counts, then HVG and incremental PCA over them.

Scored against in-memory computations on the same counts (explained variance of the PCA) and, on
simulated data, against the gene programs (share of dynamic genes among the highly variable ones).
"""

from __future__ import annotations

import itertools
import shutil

import numpy as np
from scipy import sparse

from .._keys import TruthKey
from ._context import Context, StepSkipped
from ._util import dense, require_function, require_module

__all__ = ["SHARDS", "run", "write_shards"]

SHARDS = "shards"
_SM = "cellflux-streaming-models"


def write_shards(adata, folder, n_shards: int = 4) -> list[str]:
    """Write the raw counts of ``adata`` as ``n_shards`` h5ad files (cells split in order) into ``folder``."""
    import anndata as ad

    folder.mkdir(parents=True, exist_ok=True)
    counts = adata.layers.get("counts", adata.X)
    counts = sparse.csr_matrix(counts, dtype=np.float32)
    bounds = np.linspace(0, adata.n_obs, n_shards + 1).astype(int)
    paths = []
    for i, (lo, hi) in enumerate(itertools.pairwise(bounds)):
        shard = ad.AnnData(X=counts[lo:hi], obs=adata.obs.iloc[lo:hi][[]].copy(), var=adata.var[[]].copy())
        path = folder / f"shard_{i:03d}.h5ad"
        shard.write_h5ad(path)
        paths.append(str(path))
    return paths


def run(ctx: Context) -> None:
    """Write ``var["streaming_highly_variable"]`` and the streaming PCA's explained variance to ``uns["streaming"]``."""
    require_function("tl", "pca_streaming", _SM)
    sm = require_module("cellflux_streaming_models", _SM)
    from cellflux_streaming_models.data import ShardCollection, ShardDataset
    from cellflux_streaming_models.transforms import Log1p, NormalizeTotal

    adata = ctx.adata
    if "counts" not in adata.layers:
        raise StepSkipped("no raw counts (layers['counts']): run the preprocess step")
    folder = ctx.out / SHARDS
    if folder.exists():
        shutil.rmtree(folder)
    paths = write_shards(adata, folder)
    collection = ShardCollection(paths)
    dataset = ShardDataset(collection, batch_size=500, shuffle=True, seed=ctx.config.seed)

    def epochs(epoch: int):
        dataset.set_epoch(epoch)
        return dataset

    n_top = int(min(max(10, adata.n_vars // 5), 2000))
    hvg = sm.stream_fit(sm.HVGSeuratV3(collection.var_names, n_top_genes=n_top), epochs)
    n_comp = int(min(10, adata.n_vars - 1))
    pca = sm.stream_fit(
        sm.IncrementalPCA(collection.var_names, n_components=n_comp), epochs, transforms=[NormalizeTotal(1e4), Log1p()]
    )
    flags = hvg.hvg_df["highly_variable"].reindex(adata.var_names).to_numpy(dtype=bool)
    adata.var["streaming_highly_variable"] = flags
    ev = np.asarray(pca.explained_variance_k.detach().cpu().numpy(), dtype=np.float64)
    ctx.info(f"streamed {collection.n_obs:,} cells in {len(paths)} shards ({folder}): {n_top} HVG, {n_comp} PCs")
    # reference: the same PCA in memory
    x = dense(adata.layers["counts"])
    x = np.log1p(x / np.maximum(x.sum(1, keepdims=True), 1e-12) * 1e4)
    x -= x.mean(0)
    ref = np.linalg.svd(x, compute_uv=False)[:n_comp] ** 2 / x.shape[0]
    rel = float(np.max(np.abs(ev - ref) / ref))
    adata.uns["streaming"] = {"explained_variance": ev, "n_shards": len(paths), "n_top_genes": n_top}
    ctx.score("streaming", "incremental PCA explained variance, max relative error vs in-memory PCA", f"{rel:.1e}")
    if ctx.has_truth and TruthKey.PROGRAM in adata.var:
        dynamic = adata.var[TruthKey.PROGRAM].astype(str).isin(["trunk", "lineage_specific", "shared"]).to_numpy()
        ctx.score(
            "streaming",
            "dynamic genes among the streaming HVG",
            float(dynamic[flags].mean()),
            f"{dynamic.mean():.2f} of all genes are dynamic",
        )
