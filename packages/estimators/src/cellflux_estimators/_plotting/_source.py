"""Reading what to plot from an AnnData (keys written by ``cf.tl``/``to_adata``) or from an estimator."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .._colors import colors_for
from .._estimators._base import BaseEstimator
from .._keys import Key

__all__ = ["basis_coords", "coarse", "colors", "eigenvalues", "fates", "finish", "memberships", "to_adata"]


def to_adata(obj: Any):
    """The AnnData behind ``obj`` (an estimator is written into a copy of its AnnData)."""
    if isinstance(obj, BaseEstimator):
        return obj.to_adata()
    if type(obj).__name__ == "AnnData":
        return obj
    raise TypeError(f"Expected an AnnData or an estimator, got {type(obj).__name__}.")


def eigenvalues(adata, key: str) -> np.ndarray:
    """Eigenvalues stored by ``tl.macrostates`` (``uns[key]``) or ``to_adata`` (``uns["estimator_fwd"]``)."""
    if key in adata.uns and "eigenvalues_real" in adata.uns[key]:
        d = adata.uns[key]
        return np.asarray(d["eigenvalues_real"]) + 1j * np.asarray(d["eigenvalues_imag"])
    for b in (False, True):
        state = adata.uns.get(Key.estimator(b))
        if state is not None and ("eig" in state or "schur" in state):
            if "eig" in state:
                return np.asarray(state["eig"]["real"]) + 1j * np.asarray(state["eig"]["imag"])
            s = state["schur"]
            return np.asarray(s["eigenvalues_real"]) + 1j * np.asarray(s["eigenvalues_imag"])
    raise KeyError(f"No eigenvalues in adata.uns[{key!r}]; run cf.tl.macrostates or a decomposition first.")


def memberships(adata, key: str) -> pd.DataFrame:
    """Macrostate memberships (``obsm[key + "_memberships"]``)."""
    mkey = Key.memberships(key)
    if mkey not in adata.obsm:
        raise KeyError(f"adata.obsm[{mkey!r}] does not exist; run cf.tl.macrostates first.")
    return pd.DataFrame(adata.obsm[mkey]).set_axis(adata.obs_names)


def coarse(adata, key: str) -> tuple[pd.DataFrame, pd.Series | None, pd.Series | None]:
    """Coarse-grained transition matrix and distributions."""
    if key in adata.uns and "coarse_T" in adata.uns[key]:
        d = adata.uns[key]
        names = [str(n) for n in d["names"]]
        stat = d.get("coarse_stat")
        return (
            pd.DataFrame(np.asarray(d["coarse_T"]), index=names, columns=names),
            pd.Series(np.asarray(d["coarse_init"]), index=names),
            None if stat is None else pd.Series(np.asarray(stat), index=names),
        )
    for b in (False, True):
        state = adata.uns.get(Key.estimator(b))
        if state is not None and "coarse" in state:
            c = state["coarse"]
            names = [str(n) for n in c["names"]]
            return (
                pd.DataFrame(np.asarray(c["T"]), index=names, columns=names),
                pd.Series(np.asarray(c["init"]), index=names),
                pd.Series(np.asarray(c["stat"]), index=names) if "stat" in c else None,
            )
    raise KeyError(f"No coarse-grained transition matrix in adata.uns[{key!r}]; run cf.tl.macrostates first.")


def fates(adata, key: str) -> pd.DataFrame:
    """Fate probabilities (``obsm[key]``)."""
    if key not in adata.obsm:
        raise KeyError(f"adata.obsm[{key!r}] does not exist; run cf.tl.fate_probabilities first.")
    return pd.DataFrame(adata.obsm[key]).set_axis(adata.obs_names)


def colors(adata, key: str, names: list[str]) -> dict[str, str]:
    """Colours of named states from ``uns[key]`` or the estimator state, else the palette."""
    known: dict[str, str] = {}
    if key in adata.uns and "colors" in adata.uns[key] and "names" in adata.uns[key]:
        known = dict(zip(map(str, adata.uns[key]["names"]), map(str, adata.uns[key]["colors"]), strict=False))
    for b in (False, True):
        state = adata.uns.get(Key.estimator(b))
        if state is not None:
            known.update({str(k): str(v) for k, v in dict(state.get("colors", {})).items()})
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
