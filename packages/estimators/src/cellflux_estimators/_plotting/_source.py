"""Reading what to plot from an AnnData (keys written by ``cf.tl``/``to_adata``) or from an estimator.

An estimator is plotted from a copy of its AnnData into which it wrote its results
(:func:`estimator_adata`): results stored there by anything else (``cf.tl``, an estimator of the other
direction, an earlier write) are removed from the copy, so that only the estimator's own results are shown.
The readers take ``own``, the estimator's direction (``None`` for an AnnData): an estimator's eigenvalues,
coarse-grained chain and Schur vectors are read from its own state, an AnnData's from ``uns[key]`` (``cf.tl``)
or else from the estimator state of the direction that ``key`` names by its suffix (``_fwd``/``_bwd``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .._colors import colors_for
from .._estimators._base import BaseEstimator
from .._io import _own_keys
from .._keys import Key

__all__ = [
    "basis_coords",
    "coarse",
    "colors",
    "eigenvalues",
    "estimator_adata",
    "estimator_hint",
    "fates",
    "finish",
    "gene_list",
    "memberships",
    "scanpy_colors",
    "schur",
    "select_lineages",
    "source",
    "to_adata",
]

# keys that ``cf.tl`` writes for results named like an estimator's (besides the estimator's own obs/obsm keys)
_RESULT_KEYS = (Key.macrostates, Key.terminal, Key.initial, Key.fate_probabilities, Key.absorption_times, Key.priming)


def estimator_adata(est: BaseEstimator):
    """A copy of the estimator's AnnData holding the estimator's results and no other results under their keys.

    Parameters
    ----------
    est
        The estimator.

    Returns
    -------
    The AnnData written by ``est.to_adata()``, without the result keys (of either direction) that ``est`` did not
    write: fate probabilities, states, Schur vectors, drivers etc. stored by ``cf.tl`` or an earlier write,
    ``cf.tl``'s ``uns`` entries and scanpy's colours of those keys, and the other direction's estimator state.
    """
    ad = est.to_adata()
    own = est.backward
    written = {str(k) for k in np.asarray(ad.uns[Key.estimator(own)]["written"], dtype=object).ravel()}
    ad.uns.pop(Key.estimator(not own), None)
    for b in (False, True):
        for entry in _own_keys(b, []):
            attr, key = entry.split("/", 1)
            if entry not in written and key in getattr(ad, attr):
                del getattr(ad, attr)[key]
        stale_var = [c for c in ad.var.columns if str(c).startswith(f"{Key.drivers(b)}_") and f"var/{c}" not in written]
        if stale_var:
            ad.var = ad.var.drop(columns=stale_var)
        ad.obsm.pop(f"{Key.macrostates(b)}_schur", None)
        for key in (*(k(b) for k in _RESULT_KEYS), Key.drivers(b)):
            ad.uns.pop(key, None)
            ad.uns.pop(Key.colors(key), None)
    return ad


def source(obj: Any) -> tuple[Any, bool | None]:
    """The AnnData to plot from and, for an estimator, its direction.

    Parameters
    ----------
    obj
        An AnnData or an estimator.

    Returns
    -------
    The AnnData (for an estimator, :func:`estimator_adata`) and ``own``: the estimator's direction (``True`` when
    backward), ``None`` for an AnnData.

    Raises
    ------
    TypeError
        If ``obj`` is neither.
    """
    if isinstance(obj, BaseEstimator):
        return estimator_adata(obj), obj.backward
    if type(obj).__name__ == "AnnData":
        return obj, None
    raise TypeError(f"Expected an AnnData or an estimator, got {type(obj).__name__}.")


def to_adata(obj: Any):
    """The AnnData behind ``obj`` (an estimator: a copy holding only its own results, see :func:`source`)."""
    return source(obj)[0]


def _direction(key: str, own: bool | None) -> bool | None:
    return own if own is not None else Key.direction(key)


def _missing(what: str, key: str, own: bool | None, where: str, compute: str, tl: str, est_where: str = "uns") -> str:
    """The message for results found neither in ``adata.<where>`` nor with the estimator of the key's direction.

    ``est_where`` is where a written estimator keeps them: ``"uns"`` (its state) or an ``obsm`` key.
    """
    if own is not None:
        return f"The {'backward' if own else 'forward'} estimator has no {what}; call {compute} first."
    b = Key.direction(key)
    if b is None:
        return (
            f"No {what} in adata.{where}; run {tl} with key_added={key!r} first, or pass a key ending in _fwd or "
            "_bwd to read an estimator written with to_adata()."
        )
    name = "backward" if b else "forward"
    est = f"uns[{Key.estimator(b)!r}]" if est_where == "uns" else f"obsm[{est_where!r}]"
    return (
        f"No {what} in adata.{where} or adata.{est}; run {tl}, or call {compute} on a {name} estimator "
        "and write it with to_adata()."
    )


def eigenvalues(adata, key: str, own: bool | None = None) -> np.ndarray:
    """Eigenvalues to plot.

    Parameters
    ----------
    adata
        The AnnData (see :func:`source`).
    key
        ``uns`` key written by ``cf.tl.macrostates``.
    own
        The estimator's direction when plotting an estimator (read only its state), else ``None``.

    Returns
    -------
    The eigenvalues: ``uns[key]`` (not for an estimator), else those of the estimator state of ``own`` or of the
    direction ``key`` names (``uns["estimator_<fwd|bwd>"]``).

    Raises
    ------
    KeyError
        If there are none.
    """
    if own is None and key in adata.uns and "eigenvalues_real" in adata.uns[key]:
        d = adata.uns[key]
        return np.asarray(d["eigenvalues_real"]) + 1j * np.asarray(d["eigenvalues_imag"])
    b = _direction(key, own)
    state = None if b is None else adata.uns.get(Key.estimator(b))
    if state is not None and "eig" in state:
        return np.asarray(state["eig"]["real"]) + 1j * np.asarray(state["eig"]["imag"])
    if state is not None and "schur" in state:
        s = state["schur"]
        return np.asarray(s["eigenvalues_real"]) + 1j * np.asarray(s["eigenvalues_imag"])
    raise KeyError(
        _missing(
            "eigenvalues",
            key,
            own,
            f"uns[{key!r}]",
            "compute_schur() or compute_eigendecomposition()",
            "cf.tl.macrostates",
        )
    )


def schur(adata, key: str, own: bool | None = None) -> np.ndarray:
    """Schur vectors to plot.

    Parameters
    ----------
    adata
        The AnnData (see :func:`source`).
    key
        ``cf.tl.macrostates``'s key (its Schur vectors are in ``obsm[key + "_schur"]``).
    own
        The estimator's direction when plotting an estimator, else ``None``.

    Returns
    -------
    The Schur vectors (cells x vectors): ``obsm[key + "_schur"]`` (not for an estimator), else
    ``obsm["schur_vectors_<fwd|bwd>"]`` of ``own`` or of the direction ``key`` names.

    Raises
    ------
    KeyError
        If there are none.
    """
    if own is None and f"{key}_schur" in adata.obsm:
        return np.asarray(adata.obsm[f"{key}_schur"])
    b = _direction(key, own)
    if b is not None and Key.schur(b) in adata.obsm:
        return np.asarray(adata.obsm[Key.schur(b)])
    where = f"obsm[{key + '_schur'!r}]"
    est_where = "uns" if b is None else Key.schur(b)
    raise KeyError(_missing("Schur vectors", key, own, where, "compute_schur()", "cf.tl.macrostates", est_where))


def memberships(adata, key: str, own: bool | None = None) -> pd.DataFrame:
    """Macrostate memberships.

    Parameters
    ----------
    adata
        The AnnData (see :func:`source`).
    key
        The macrostates' ``obs`` key.
    own
        The estimator's direction when plotting an estimator (for the message), else ``None``.

    Returns
    -------
    ``obsm[key + "_memberships"]`` as a DataFrame (cells x macrostates).

    Raises
    ------
    KeyError
        If there are none.
    """
    mkey = Key.memberships(key)
    if mkey not in adata.obsm:
        hint = "run cf.tl.macrostates first." if own is None else estimator_hint(key, own, "compute_macrostates()")
        raise KeyError(f"adata.obsm[{mkey!r}] does not exist; {hint}")
    return pd.DataFrame(adata.obsm[mkey]).set_axis(adata.obs_names)


def coarse(adata, key: str, own: bool | None = None) -> tuple[pd.DataFrame, pd.Series | None, pd.Series | None]:
    """Coarse-grained transition matrix and distributions.

    Parameters
    ----------
    adata
        The AnnData (see :func:`source`).
    key
        ``uns`` key written by ``cf.tl.macrostates``.
    own
        The estimator's direction when plotting an estimator (read only its state), else ``None``.

    Returns
    -------
    The coarse transition matrix, initial and stationary distribution (``None`` when not stored) from
    ``uns[key]`` (not for an estimator), else from the estimator state of ``own`` or of the direction ``key``
    names.

    Raises
    ------
    KeyError
        If there is none.
    """
    if own is None and key in adata.uns and "coarse_T" in adata.uns[key]:
        d = adata.uns[key]
        names = [str(n) for n in d["names"]]
        stat = d.get("coarse_stat")
        return (
            pd.DataFrame(np.asarray(d["coarse_T"]), index=names, columns=names),
            pd.Series(np.asarray(d["coarse_init"]), index=names),
            None if stat is None else pd.Series(np.asarray(stat), index=names),
        )
    b = _direction(key, own)
    state = None if b is None else adata.uns.get(Key.estimator(b))
    if state is not None and "coarse" in state:
        c = state["coarse"]
        names = [str(n) for n in c["names"]]
        return (
            pd.DataFrame(np.asarray(c["T"]), index=names, columns=names),
            pd.Series(np.asarray(c["init"]), index=names),
            pd.Series(np.asarray(c["stat"]), index=names) if "stat" in c else None,
        )
    raise KeyError(
        _missing(
            "coarse-grained transition matrix",
            key,
            own,
            f"uns[{key!r}]",
            "compute_macrostates() with n_states >= 2",
            "cf.tl.macrostates (with n_states >= 2)",
        )
    )


def estimator_hint(key: str, own: bool, compute: str) -> str:
    """Why an estimator's AnnData lacks ``key``.

    Parameters
    ----------
    key
        The missing key.
    own
        The estimator's direction.
    compute
        The method that computes the result.

    Returns
    -------
    The key of the estimator's direction when ``key`` names the other one, else the method to call.
    """
    name = "backward" if own else "forward"
    if Key.direction(key) not in (None, own):
        return f"the estimator is {name}: pass key={key[:-4] + ('_bwd' if own else '_fwd')!r}."
    return f"the {name} estimator has none; call {compute} first."


def fates(adata, key: str, own: bool | None = None) -> pd.DataFrame:
    """Fate probabilities.

    Parameters
    ----------
    adata
        The AnnData (see :func:`source`).
    key
        The ``obsm`` key.
    own
        The estimator's direction when plotting an estimator (for the message), else ``None``.

    Returns
    -------
    ``obsm[key]`` as a DataFrame (cells x lineages).

    Raises
    ------
    KeyError
        If there are none.
    """
    if key not in adata.obsm:
        hint = (
            "run cf.tl.fate_probabilities first."
            if own is None
            else estimator_hint(key, own, "compute_fate_probabilities()")
        )
        raise KeyError(f"adata.obsm[{key!r}] does not exist; {hint}")
    return pd.DataFrame(adata.obsm[key]).set_axis(adata.obs_names)


def select_lineages(fp: pd.DataFrame, lineages: str | list[str] | None, key: str) -> pd.DataFrame:
    """The columns of ``fp`` for ``lineages``, checked.

    Parameters
    ----------
    fp
        Fate probabilities (cells x lineages).
    lineages
        A lineage, a list of them, or ``None`` for all.
    key
        Where ``fp`` was read from (for the message).

    Returns
    -------
    The selected columns, in the order given.

    Raises
    ------
    KeyError
        If a lineage is not a column of ``fp``; the message lists the lineages.
    ValueError
        If ``lineages`` is empty.
    """
    if lineages is None:
        return fp
    names = [lineages] if isinstance(lineages, str) else list(lineages)
    valid = [str(c) for c in fp.columns]
    if not names:
        raise ValueError(f"No lineages were given; choose among {valid}.")
    unknown = [n for n in names if n not in fp.columns]
    if unknown:
        raise KeyError(f"Lineage(s) {unknown} are not among {valid} (the lineages in adata.obsm[{key!r}]).")
    return fp.loc[:, names]


def gene_list(genes: str | list[str]) -> list[str]:
    """Genes as a list: a single name given as a string is one gene.

    Parameters
    ----------
    genes
        A gene name or a list of them.

    Returns
    -------
    The list of names.

    Raises
    ------
    ValueError
        If there is no gene.
    """
    out = [genes] if isinstance(genes, str) else list(genes)
    if not out:
        raise ValueError("No genes were given; pass a gene name or a list of gene names.")
    return out


def scanpy_colors(adata, key: str) -> dict[str, str]:
    """Scanpy's colours of a categorical ``obs[key]``: ``uns[key + "_colors"]``, matched to the categories by position.

    Parameters
    ----------
    adata
        The AnnData.
    key
        The ``obs`` column.

    Returns
    -------
    Colour of each category (all categories, used or not); empty when ``obs[key]`` is not categorical or, as
    scanpy decides, when there are fewer colours than categories.
    """
    if key not in adata.obs or Key.colors(key) not in adata.uns:
        return {}
    col = adata.obs[key]
    if not isinstance(col.dtype, pd.CategoricalDtype):
        return {}
    cats = list(col.cat.categories)
    cols = list(np.asarray(adata.uns[Key.colors(key)], dtype=object).ravel())
    if len(cols) < len(cats):
        return {}
    return {str(c): str(v) for c, v in zip(cats, cols, strict=False)}


def colors(adata, key: str, names: list[str], own: bool | None = None) -> dict[str, str]:
    """Colours of named states or clusters.

    Parameters
    ----------
    adata
        The AnnData (see :func:`source`).
    key
        Where the names come from (an ``obs`` column or a result key).
    names
        The names to colour.
    own
        The estimator's direction when plotting an estimator, else ``None``.

    Returns
    -------
    A colour per name, by priority: scanpy's ``uns[key + "_colors"]`` (for a categorical ``obs[key]``), the
    estimator state's colours (of ``own``, or of the direction ``key`` names), ``uns[key]["colors"]``
    (``cf.tl``), else the palette.
    """
    known: dict[str, str] = {}
    if key in adata.uns and isinstance(adata.uns[key], dict):
        d = adata.uns[key]
        if "colors" in d and "names" in d:
            known = dict(zip(map(str, d["names"]), map(str, d["colors"]), strict=False))
    b = Key.direction(key)
    if b is not None and own is not None:
        b = own
    state = None if b is None else adata.uns.get(Key.estimator(b))
    if state is not None:
        known.update({str(k): str(v) for k, v in dict(state.get("colors", {})).items()})
    known.update(scanpy_colors(adata, key))
    return colors_for(names, known)


def basis_coords(adata, basis: str) -> np.ndarray:
    """2-D coordinates from ``obsm["X_<basis>"]`` (or ``obsm[basis]``)."""
    key = basis if basis in adata.obsm else f"X_{basis}"
    if key not in adata.obsm:
        raise KeyError(f"adata.obsm[{key!r}] does not exist; compute the embedding or pass another basis.")
    return np.asarray(adata.obsm[key])[:, :2]


def finish(fig, save: str | Path | None):
    """Save the figure if asked; return it."""
    if save is not None:
        fig.savefig(save, bbox_inches="tight", dpi=120)
    return fig
