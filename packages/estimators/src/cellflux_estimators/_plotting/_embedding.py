"""Schur vectors, macrostates and fate probabilities on an embedding."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.colors import to_rgba

from ._source import (
    basis_coords,
    colors,
    estimator_hint,
    fates,
    finish,
    memberships,
    schur,
    select_lineages,
    source,
)

__all__ = ["fate_probabilities", "macrostates", "schur_vectors"]


def _panels(coords: np.ndarray, values: pd.DataFrame, cmap: str, ncols: int, title: str, save, size: float = 3.2):
    k = values.shape[1]
    ncols = min(ncols, k)
    nrows = int(np.ceil(k / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols, size * nrows), squeeze=False, layout="constrained")
    order = None
    for i, (name, col) in enumerate(values.items()):
        ax = axes.flat[i]
        v = col.to_numpy()
        order = np.argsort(v)
        sc = ax.scatter(
            coords[order, 0], coords[order, 1], c=v[order], cmap=cmap, s=4, vmin=0 if v.min() >= 0 else None
        )
        ax.set(title=str(name), xticks=[], yticks=[])
        fig.colorbar(sc, ax=ax, shrink=0.7)
    for ax in axes.flat[k:]:
        ax.axis("off")
    fig.suptitle(title)
    return finish(fig, save)


def _discrete(coords: np.ndarray, labels: pd.Series, cmap: dict[str, str], title: str, save, figsize=(5, 4)):
    fig, ax = plt.subplots(figsize=figsize, layout="constrained")
    ax.scatter(coords[:, 0], coords[:, 1], c="lightgray", s=4)
    for name in labels.cat.categories:
        mask = (labels == name).to_numpy()
        ax.scatter(coords[mask, 0], coords[mask, 1], c=cmap[str(name)], s=12, label=str(name))
    ax.legend(loc="center left", bbox_to_anchor=(1, 0.5), frameon=False)
    ax.set(title=title, xticks=[], yticks=[])
    return finish(fig, save)


def schur_vectors(
    adata: Any,
    *,
    key: str = "macrostates_fwd",
    basis: str = "umap",
    n: int = 4,
    ncols: int = 4,
    save: str | Path | None = None,
) -> plt.Figure:
    """Plot the leading non-constant Schur vectors on an embedding.

    Parameters
    ----------
    adata
        AnnData with ``obsm[key + "_schur"]`` (``cf.tl.macrostates``) or an estimator (its own Schur vectors
        are plotted, whatever ``key``).
    key
        Where the Schur vectors are: ``obsm[key + "_schur"]``, else the estimator's ``obsm["schur_vectors_fwd"]``
        or ``obsm["schur_vectors_bwd"]``, as the key's suffix names.
    basis
        Embedding in ``obsm["X_<basis>"]``.
    n
        Number of vectors (after the constant first one).
    ncols
        Panels per row.
    save
        Path to save the figure to.

    Returns
    -------
    The matplotlib figure.
    """
    ad, own = source(adata)
    x = schur(ad, key, own)[:, 1 : n + 1]
    values = pd.DataFrame(x, columns=[f"Schur vector {i + 1}" for i in range(x.shape[1])])
    return _panels(basis_coords(ad, basis), values, "RdBu_r", ncols, "Schur vectors", save)


def macrostates(
    adata: Any,
    *,
    key: str = "macrostates_fwd",
    basis: str = "umap",
    discrete: bool = True,
    ncols: int = 4,
    save: str | Path | None = None,
) -> plt.Figure:
    """Plot macrostates on an embedding: the assigned cells (discrete) or the memberships (continuous).

    Parameters
    ----------
    adata
        AnnData with ``obs[key]`` and ``obsm[key + "_memberships"]`` or an estimator.
    key
        Where the macrostates are (``term_states_fwd`` shows terminal states). A column that is not categorical
        (strings, integers, booleans; missing values for unassigned cells) is shown as one, categories sorted.
    basis
        Embedding in ``obsm["X_<basis>"]``.
    discrete
        Colour the assigned cells, or show each membership on its own panel.
    ncols
        Panels per row (continuous).
    save
        Path to save the figure to.

    Returns
    -------
    The matplotlib figure.
    """
    ad, own = source(adata)
    coords = basis_coords(ad, basis)
    if discrete:
        if key not in ad.obs:
            hint = "" if own is None else "; " + estimator_hint(key, own, "compute_macrostates() or set the states")
            raise KeyError(f"adata.obs[{key!r}] does not exist{hint or '.'}")
        labels = ad.obs[key]
        if not isinstance(labels.dtype, pd.CategoricalDtype):
            if pd.api.types.is_float_dtype(labels.dtype) or pd.api.types.is_complex_dtype(labels.dtype):
                raise ValueError(
                    f"adata.obs[{key!r}] is numeric ({labels.dtype}), not state labels; pass a column of labels "
                    "(e.g. .astype('category')), or discrete=False to show the memberships."
                )
            labels = labels.astype("category")
        names = [str(c) for c in labels.cat.categories]
        return _discrete(coords, labels, colors(ad, key, names, own), key, save)
    return _panels(coords, memberships(ad, key, own), "viridis", ncols, f"{key} memberships", save)


def fate_probabilities(
    adata: Any,
    *,
    key: str = "lineages_fwd",
    basis: str = "umap",
    lineages: list[str] | None = None,
    same_plot: bool = False,
    ncols: int = 4,
    save: str | Path | None = None,
) -> plt.Figure:
    """Plot fate probabilities on an embedding, one panel per lineage or all in one.

    Parameters
    ----------
    adata
        AnnData with ``obsm[key]`` or an estimator.
    key
        Where the fate probabilities are.
    basis
        Embedding in ``obsm["X_<basis>"]``.
    lineages
        Subset of lineages (a name or a list; unknown names raise a ``KeyError`` listing the lineages).
    same_plot
        One panel: each cell coloured by its most likely lineage, opacity by the probability.
    ncols
        Panels per row.
    save
        Path to save the figure to.

    Returns
    -------
    The matplotlib figure.
    """
    ad, own = source(adata)
    fp = select_lineages(fates(ad, key, own), lineages, key)
    coords = basis_coords(ad, basis)
    if not same_plot:
        return _panels(coords, fp, "viridis", ncols, "fate probabilities", save)
    cmap = colors(ad, key, list(fp.columns), own)
    best = fp.to_numpy().argmax(axis=1)
    rgba = np.array([to_rgba(cmap[fp.columns[b]]) for b in best])
    rgba[:, 3] = np.clip(fp.to_numpy().max(axis=1), 0.1, 1.0)
    fig, ax = plt.subplots(figsize=(5, 4), layout="constrained")
    ax.scatter(coords[:, 0], coords[:, 1], c=rgba, s=5)
    for name in fp.columns:
        ax.scatter([], [], c=cmap[name], label=name)
    ax.legend(loc="center left", bbox_to_anchor=(1, 0.5), frameon=False)
    ax.set(title="fate probabilities", xticks=[], yticks=[])
    return finish(fig, save)
