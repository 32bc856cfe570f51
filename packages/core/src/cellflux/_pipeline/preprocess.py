"""Step ``preprocess``: normalise, log, PCA, neighbours, UMAP and first-order moments (scanpy)."""

from __future__ import annotations

import numpy as np
from scipy import sparse

from ._context import Context, StepSkipped
from ._util import dense, require_module

__all__ = ["moments", "run"]

COUNTS = "counts"
AUTO_CLUSTERS = "pipeline_clusters"


def _is_counts(x) -> bool:
    values = x.data if sparse.issparse(x) else np.asarray(x).ravel()
    values = values[:100_000]
    return bool(values.size) and bool(np.all(values >= 0)) and bool(np.allclose(values, np.round(values)))


def moments(connectivities: sparse.spmatrix, counts: sparse.spmatrix | np.ndarray) -> np.ndarray:
    """First-order moments: means of size-normalised counts over each cell's neighbours and itself.

    Parameters
    ----------
    connectivities
        kNN connectivities (cells x cells); every non-zero counts as a neighbour.
    counts
        Counts (cells x genes).

    Returns
    -------
    ``numpy.ndarray`` cells x genes, float32.
    """
    graph = (sparse.csr_matrix(connectivities) > 0).astype(np.float64) + sparse.identity(connectivities.shape[0])
    graph = sparse.diags(1.0 / np.asarray(graph.sum(axis=1)).ravel()) @ graph
    x = sparse.csr_matrix(counts, dtype=np.float64)
    totals = np.asarray(x.sum(axis=1)).ravel()
    scale = np.median(totals[totals > 0]) / np.where(totals > 0, totals, 1.0)
    return np.asarray(dense(graph @ (sparse.diags(scale) @ x)), dtype=np.float32)


def run(ctx: Context) -> None:
    """Preprocess ``ctx.adata`` in place (genes filtered, ``X`` log-normalised, raw counts in ``layers["counts"]``)."""
    sc = require_module("scanpy", "scanpy")
    cfg, adata = ctx.config, ctx.adata
    if not _is_counts(adata.X):
        raise StepSkipped("X does not hold counts (non-integer or negative values); pass raw counts in X")
    adata.layers[COUNTS] = sparse.csr_matrix(adata.X, dtype=np.float32)
    n_genes = adata.n_vars
    min_counts = 20 if adata.n_obs >= 1000 else 5
    keep = np.asarray(adata.X.sum(axis=0)).ravel() >= min_counts
    rule = f">= {min_counts} counts"
    if "unspliced" in adata.layers:
        keep &= np.asarray(adata.layers["unspliced"].sum(axis=0)).ravel() > 0  # VELOVI refuses all-zero unspliced
        rule += " and some unspliced counts"
    if keep.sum() < 10:
        raise StepSkipped(f"only {int(keep.sum())} genes have {rule}")
    adata._inplace_subset_var(keep)
    ctx.info(f"kept {adata.n_vars:,} of {n_genes:,} genes with {rule}")
    sc.pp.normalize_total(adata)
    sc.pp.log1p(adata)
    n_pcs = int(min(cfg.n_pcs, adata.n_vars - 1, adata.n_obs - 1))
    sc.pp.pca(adata, n_comps=n_pcs, random_state=cfg.seed)
    sc.pp.neighbors(adata, n_neighbors=cfg.n_neighbors, n_pcs=n_pcs, random_state=cfg.seed)
    if "X_umap" in adata.obsm:
        ctx.info("using the existing UMAP in obsm['X_umap']")
    else:
        sc.tl.umap(adata, random_state=cfg.seed)
    if "spliced" in adata.layers and "unspliced" in adata.layers:
        conn = adata.obsp["connectivities"]
        adata.layers["Ms"] = moments(conn, adata.layers["spliced"])
        adata.layers["Mu"] = moments(conn, adata.layers["unspliced"])
        ctx.info("first-order moments Ms/Mu of spliced/unspliced counts over the kNN graph")
    else:
        ctx.info("no spliced/unspliced layers: no moments")
    _clusters(ctx)


def check_cluster_key(obs, key: str) -> None:
    """Refuse a ``--cluster-key`` that is not a column of ``obs``."""
    if key not in obs:
        raise ValueError(f"--cluster-key {key!r} is not a column of obs; available: {list(obs.columns)}")


def _clusters(ctx: Context) -> None:
    cfg, adata = ctx.config, ctx.adata
    key = cfg.cluster_key or ("clusters" if "clusters" in adata.obs else None)
    if key is not None:
        check_cluster_key(adata.obs, key)
        column = adata.obs[key]
        # labels as strings, missing values kept missing (not a category "nan")
        adata.obs[key] = column.astype(str).where(column.notna()).astype("category")
        ctx.objects["cluster_key"] = key
        return
    from sklearn.cluster import KMeans

    n = int(min(10, max(2, adata.n_obs // 100)))
    labels = KMeans(n, n_init=4, random_state=cfg.seed).fit_predict(adata.obsm["X_pca"][:, :10])
    adata.obs[AUTO_CLUSTERS] = [f"c{i}" for i in labels]
    adata.obs[AUTO_CLUSTERS] = adata.obs[AUTO_CLUSTERS].astype("category")
    ctx.objects["cluster_key"] = AUTO_CLUSTERS
    ctx.info(f"no cluster annotation: {n} k-means clusters of the PCA in obs[{AUTO_CLUSTERS!r}]")
