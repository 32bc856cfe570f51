"""First-order kNN moments of spliced and unspliced counts (scVelo's ``Ms``/``Mu``), without scVelo.

Counts are normalised per cell to the median total, a PCA of ``log1p`` spliced counts gives a
k-nearest-neighbour graph (each cell with itself), and each cell's moments are the mean of its
neighbours' normalised counts.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from scipy import sparse

from ._keys import Key
from ._validate import layer_values

if TYPE_CHECKING:
    from anndata import AnnData

__all__ = ["knn_graph", "knn_moments", "moments"]


def _normalize(x: np.ndarray | sparse.spmatrix) -> sparse.csr_matrix:
    x = sparse.csr_matrix(x, dtype=np.float64)
    totals = np.asarray(x.sum(axis=1)).ravel()
    scale = np.median(totals[totals > 0]) / np.where(totals > 0, totals, 1.0)
    return sparse.diags(scale) @ x


def knn_graph(
    x: np.ndarray | sparse.spmatrix, n_neighbors: int = 30, n_pcs: int = 30, seed: int = 0
) -> sparse.csr_matrix:
    """Row-normalised kNN connectivities (self included) on a PCA of ``log1p(x)``."""
    from sklearn.decomposition import PCA
    from sklearn.neighbors import NearestNeighbors

    logged = np.log1p(np.asarray(x.toarray() if sparse.issparse(x) else x, dtype=np.float64))
    n_comps = int(min(n_pcs, logged.shape[0] - 1, logged.shape[1] - 1))
    pcs = PCA(n_components=n_comps, random_state=seed).fit_transform(logged)
    k = int(min(n_neighbors, logged.shape[0]))
    _, neighbours = NearestNeighbors(n_neighbors=k).fit(pcs).kneighbors(pcs)
    rows = np.repeat(np.arange(logged.shape[0]), k)
    graph = sparse.csr_matrix((np.full(rows.size, 1.0 / k), (rows, neighbours.ravel())), shape=(logged.shape[0],) * 2)
    return graph


def knn_moments(
    spliced: np.ndarray | sparse.spmatrix,
    unspliced: np.ndarray | sparse.spmatrix,
    n_neighbors: int = 30,
    n_pcs: int = 30,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """First-order moments ``(Ms, Mu)`` of raw spliced and unspliced counts (cells x genes, float32)."""
    s, u = _normalize(spliced), _normalize(unspliced)
    graph = knn_graph(s, n_neighbors=n_neighbors, n_pcs=n_pcs, seed=seed)
    return np.asarray((graph @ s).toarray(), dtype=np.float32), np.asarray((graph @ u).toarray(), dtype=np.float32)


def second_order_moments(
    graph: sparse.spmatrix, spliced: np.ndarray | sparse.spmatrix, unspliced: np.ndarray | sparse.spmatrix
) -> tuple[np.ndarray, np.ndarray]:
    """Second-order moments ``<s s>`` and ``<u s>`` over a row-normalised neighbour graph.

    Parameters
    ----------
    graph
        Row-normalised connectivities (cells x cells, each cell its own neighbour), e.g.
        ``knn_graph``, or scVelo's binarised, self-looped, row-normalised connectivities.
    spliced, unspliced
        Spliced and unspliced abundances (cells x genes; scVelo uses its normalised count layers).

    Returns
    -------
    ``(Mss, Mus)``, dense float32 cells x genes, for :func:`fit_stochastic`.
    """
    s, u = sparse.csr_matrix(spliced), sparse.csr_matrix(unspliced)
    if graph.shape != (s.shape[0], s.shape[0]) or u.shape != s.shape:
        raise ValueError(f"graph {graph.shape}, spliced {s.shape} and unspliced {u.shape} do not match.")
    mss, mus = graph @ s.multiply(s), graph @ s.multiply(u)
    return (
        np.asarray(mss.toarray() if sparse.issparse(mss) else mss, dtype=np.float32),
        np.asarray(mus.toarray() if sparse.issparse(mus) else mus, dtype=np.float32),
    )


def moments(
    adata: AnnData,
    spliced_layer: str = "spliced",
    unspliced_layer: str = "unspliced",
    n_neighbors: int = 30,
    n_pcs: int = 30,
    seed: int = 0,
) -> None:
    """Write first-order moments of raw counts into ``layers["Ms"]`` and ``layers["Mu"]``.

    Parameters
    ----------
    adata
        AnnData with raw spliced and unspliced counts.
    spliced_layer, unspliced_layer
        Layers with the counts.
    n_neighbors
        Neighbours per cell (the cell included).
    n_pcs
        Principal components of ``log1p`` normalised spliced counts for the neighbour search.
    seed
        Seed of the PCA.

    Returns
    -------
    Nothing; writes ``layers["Ms"]`` and ``layers["Mu"]``.
    """
    spliced = layer_values(adata, spliced_layer)
    unspliced = layer_values(adata, unspliced_layer)
    ms, mu = knn_moments(spliced, unspliced, n_neighbors=n_neighbors, n_pcs=n_pcs, seed=seed)
    adata.layers[Key.SPLICED] = ms
    adata.layers[Key.UNSPLICED] = mu
