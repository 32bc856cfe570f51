"""PAGA-style summary: clusters as pies of their mean fate probabilities on a cluster transition graph."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from scipy import sparse

from .._keys import Key
from ._source import basis_coords, colors, fates, finish, source

__all__ = ["cluster_transitions", "fate_pies"]


def cluster_transitions(matrix: sparse.spmatrix, labels: np.ndarray, n_clusters: int) -> np.ndarray:
    """Mean probability of a cell of cluster ``a`` to step into cluster ``b``.

    Parameters
    ----------
    matrix
        Row-stochastic transition matrix (cells x cells).
    labels
        Cluster of each cell in ``[0, n_clusters)``; ``-1`` for a cell in no cluster.
    n_clusters
        Number of clusters.

    Returns
    -------
    ``(n_clusters, n_clusters)``; the rows sum to 1 when every cell has a cluster, else to the mean probability
    of a step into a cell with a cluster (cells without one are neither averaged over nor stepped into).
    """
    labels = np.asarray(labels)
    n = len(labels)
    cells = np.flatnonzero(labels >= 0)
    ind = sparse.csr_matrix((np.ones(len(cells)), (cells, labels[cells])), shape=(n, n_clusters))
    agg = np.asarray((ind.T @ sparse.csr_matrix(matrix) @ ind).todense())
    sizes = np.bincount(labels[cells], minlength=n_clusters).astype(float)
    return agg / np.where(sizes > 0, sizes, 1.0)[:, None]


def fate_pies(
    adata: Any,
    *,
    cluster_key: str = "clusters",
    basis: str = "umap",
    key: str = "lineages_fwd",
    transition_key: str | None = None,
    min_edge: float = 0.01,
    radius: float | None = None,
    save: str | Path | None = None,
) -> plt.Figure:
    """Draw each cluster as a pie of its mean fate probabilities, joined by cluster transition probabilities.

    Pies sit at the clusters' centres on an embedding; edges are as a PAGA graph's (here: the mean probability
    of a cell to step into the other cluster, the larger of the two directions).

    Parameters
    ----------
    adata
        AnnData with fate probabilities in ``obsm[key]``, clusters and an embedding, or an estimator.
    cluster_key
        Clusters (the nodes); cells without a cluster (missing values, e.g. outside the states of
        ``"term_states_fwd"``) are left out.
    basis
        Embedding whose cluster means place the nodes.
    key
        Where the fate probabilities are.
    transition_key
        ``obsp`` key of the transition matrix for the edges (default ``"T_fwd"`` when present, an estimator's own
        matrix for an estimator; no edges without one).
    min_edge
        Hide edges whose transition probability (either direction) is below this.
    radius
        Pie radius in embedding units (default: 4% of the embedding's extent).
    save
        Path to save the figure to.

    Returns
    -------
    The matplotlib figure.
    """
    ad, own = source(adata)
    fp = fates(ad, key, own)
    if cluster_key not in ad.obs:
        raise KeyError(f"adata.obs[{cluster_key!r}] does not exist.")
    coords = basis_coords(ad, basis)
    col = ad.obs[cluster_key]
    labelled = col.notna().to_numpy()
    if not labelled.any():
        raise ValueError(f"adata.obs[{cluster_key!r}] assigns no cell to a cluster.")
    cats = [str(c) for c in col.cat.categories] if isinstance(col.dtype, pd.CategoricalDtype) else None
    labels_str = col.astype(str).to_numpy()
    present = set(labels_str[labelled])
    cats = [c for c in (cats or sorted(present)) if c in present]
    labels = np.where(labelled, pd.Index(cats).get_indexer(labels_str), -1)  # -1: no cluster
    k = len(cats)
    centres = np.array([coords[labels == i].mean(axis=0) for i in range(k)])
    means = np.array([fp.to_numpy(dtype=float)[labels == i].mean(axis=0) for i in range(k)])
    extent = float(np.ptp(coords, axis=0).max()) or 1.0
    r = 0.04 * extent if radius is None else radius
    fig, ax = plt.subplots(figsize=(6, 5), layout="constrained")
    default = Key.transition(bool(own))
    tkey = transition_key or (default if default in ad.obsp else None)
    if tkey is not None:
        if tkey not in ad.obsp:
            raise KeyError(f"adata.obsp[{tkey!r}] does not exist.")
        w = cluster_transitions(ad.obsp[tkey], labels, k)
        w = np.maximum(w, w.T)
        np.fill_diagonal(w, 0.0)
        top = w.max() or 1.0
        for a in range(k):
            for b in range(a + 1, k):
                if w[a, b] >= min_edge:
                    ax.plot(*centres[[a, b]].T, color="gray", lw=0.5 + 4 * w[a, b] / top, alpha=0.6, zorder=1)
    lcol = colors(ad, key, list(fp.columns), own)
    wedge_colors = [lcol[n] for n in fp.columns]
    for i in range(k):
        frac = means[i] / means[i].sum() if means[i].sum() > 0 else np.full(len(means[i]), 1 / len(means[i]))
        ax.pie(
            frac, colors=wedge_colors, radius=r, center=tuple(centres[i]), frame=True,
            wedgeprops={"linewidth": 0.5, "edgecolor": "white"},
        )  # fmt: skip
        ax.annotate(cats[i], centres[i], xytext=(0, 12), textcoords="offset points", ha="center", fontsize=7)
    handles = [plt.Line2D([], [], marker="o", ls="", color=lcol[n], label=n) for n in fp.columns]
    ax.legend(handles=handles, loc="center left", bbox_to_anchor=(1, 0.5), frameon=False, fontsize=8)
    pad = 2 * r
    ax.set(
        xlim=(centres[:, 0].min() - pad, centres[:, 0].max() + pad),
        ylim=(centres[:, 1].min() - pad, centres[:, 1].max() + pad),
        aspect="equal",
        title="mean fate probabilities per cluster",
    )
    ax.set_xticks([])
    ax.set_yticks([])
    return finish(fig, save)
