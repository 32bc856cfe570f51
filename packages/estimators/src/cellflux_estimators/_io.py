"""Writing an estimator's results into AnnData and reading them back (``to_adata``/``from_adata``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ._engine._eigen import Eigendecomposition
from ._engine._schur import SchurResult
from ._keys import Key

if TYPE_CHECKING:
    from anndata import AnnData

__all__ = ["read_estimator", "write_estimator"]


def _cat(series: pd.Series, index: pd.Index) -> pd.Categorical:
    return pd.Categorical(series.reindex(index).astype(object), categories=list(series.cat.categories))


def _own_keys(b: bool, driver_columns: list[str]) -> list[str]:
    """Every key :func:`write_estimator` may write, as ``"<attr>/<key>"`` (``attr``: obs, obsm or var)."""
    return [
        f"obs/{Key.terminal(b)}",
        f"obs/{Key.initial(b)}",
        f"obs/{Key.probs(Key.terminal(b))}",
        f"obs/{Key.probs(Key.initial(b))}",
        f"obs/{Key.priming(b)}",
        f"obs/{Key.macrostates(b)}",
        f"obsm/{Key.fate_probabilities(b)}",
        f"obsm/{Key.absorption_times(b)}",
        f"obsm/{Key.schur(b)}",
        f"obsm/{Key.memberships(Key.macrostates(b))}",
        *(f"var/{Key.drivers(b)}_{c}" for c in driver_columns),
    ]


def _previously_written(adata: AnnData, b: bool) -> list[str]:
    """The keys an earlier :func:`write_estimator` wrote into ``adata`` (all its possible keys for old files)."""
    old = adata.uns.get(Key.estimator(b))
    if not isinstance(old, dict):
        return []
    if "written" in old:
        return [str(k) for k in np.asarray(old["written"], dtype=object).ravel()]
    return _own_keys(b, [str(c) for c in np.asarray(old.get("driver_columns", []), dtype=object).ravel()])


def _remove(adata: AnnData, entry: str) -> None:
    attr, key = entry.split("/", 1)
    if attr == "var":
        if key in adata.var:
            del adata.var[key]
    elif attr in ("obs", "obsm") and key in getattr(adata, attr):
        del getattr(adata, attr)[key]


def write_estimator(est: Any, adata: AnnData) -> None:
    """Write every computed result of ``est`` into ``adata`` (overwriting the estimator's own keys).

    The written keys are recorded in ``uns[Key.estimator(backward)]["written"]``. Keys that an earlier write
    recorded but that this estimator no longer has results for (e.g. terminal states cleared by recomputing the
    macrostates) are removed, so that :func:`read_estimator` cannot restore stale results.
    """
    b = est.backward
    idx = adata.obs_names
    previous = _previously_written(adata, b)
    written: list[str] = []
    adata.obsp[Key.transition(b)] = est.transition_matrix
    state: dict[str, Any] = {"kind": type(est).__name__, "backward": b, "seed": est.seed, "colors": dict(est._colors)}

    def put(attr: str, key: str, value: Any) -> None:
        getattr(adata, attr)[key] = value
        written.append(f"{attr}/{key}")

    for attr, key in (("_terminal_states", Key.terminal(b)), ("_initial_states", Key.initial(b))):
        series = getattr(est, attr)
        if series is not None:
            put("obs", key, _cat(series, idx))
    if est._terminal_probs is not None:
        put("obs", Key.probs(Key.terminal(b)), est._terminal_probs.to_numpy())
    if est._initial_probs is not None:
        put("obs", Key.probs(Key.initial(b)), est._initial_probs.to_numpy())
    if est._fate_probabilities is not None:
        put("obsm", Key.fate_probabilities(b), est._fate_probabilities.set_axis(idx))
    if est._absorption_times is not None:
        put("obsm", Key.absorption_times(b), est._absorption_times.set_axis(idx))
    if est._priming_degree is not None:
        put("obs", Key.priming(b), est._priming_degree.to_numpy())
    if est._lineage_drivers is not None:
        drivers = est._lineage_drivers.reindex(adata.var_names)
        for col in drivers.columns:
            put("var", f"{Key.drivers(b)}_{col}", drivers[col].to_numpy())
        state["driver_columns"] = list(drivers.columns)
    schur: SchurResult | None = getattr(est, "_schur", None)
    if schur is not None:
        put("obsm", Key.schur(b), schur.vectors)
        state["schur"] = {
            "matrix": schur.matrix,
            "eigenvalues_real": schur.eigenvalues.real,
            "eigenvalues_imag": schur.eigenvalues.imag,
            "which": schur.which,
            "method": schur.method,
            "residual": schur.residual,
        }
    eig: Eigendecomposition | None = getattr(est, "_eig", None)
    if eig is not None:
        state["eig"] = {
            "real": eig.eigenvalues.real,
            "imag": eig.eigenvalues.imag,
            "eigengap": eig.eigengap,
            "which": eig.which,
            "alpha": eig.alpha,
        }
    macro = getattr(est, "_macrostates", None)
    if macro is not None:
        put("obs", Key.macrostates(b), _cat(macro, idx))
        put("obsm", Key.memberships(Key.macrostates(b)), est._memberships.set_axis(idx))
        if est._coarse_T is not None:
            coarse = {
                "T": est._coarse_T.to_numpy(),
                "names": list(est._coarse_T.columns),
                "init": est._coarse_init.to_numpy(),
            }
            if est._coarse_stat is not None:
                coarse["stat"] = est._coarse_stat.to_numpy()
            state["coarse"] = coarse
    for entry in previous:
        if entry not in written:
            _remove(adata, entry)
    state["written"] = written
    adata.uns[Key.estimator(b)] = state


def read_estimator(est: Any, adata: AnnData) -> None:
    """Restore the results written by :func:`write_estimator` into ``est`` (same kind, same cells).

    Only the keys the last write recorded as written are read (every key present for files written before the
    record existed).
    """
    b = est.backward
    key = Key.estimator(b)
    if key not in adata.uns:
        raise KeyError(f"adata.uns[{key!r}] does not exist: no estimator was written with to_adata().")
    state = adata.uns[key]
    if state.get("kind") != type(est).__name__:
        raise TypeError(f"adata holds a {state.get('kind')} estimator, not a {type(est).__name__}.")
    est.seed = int(state.get("seed", 0))
    est._colors = {str(k): str(v) for k, v in dict(state.get("colors", {})).items()}
    obs, obsm = adata.obs, adata.obsm
    idx = est.obs_names
    # read only what the last write recorded (files written before the record: every key present)
    written = {str(k) for k in np.asarray(state["written"], dtype=object).ravel()} if "written" in state else None

    def has(attr: str, k: str) -> bool:
        return k in getattr(adata, attr) and (written is None or f"{attr}/{k}" in written)

    if has("obs", Key.terminal(b)):
        est._terminal_states = pd.Series(obs[Key.terminal(b)].to_numpy(), index=idx).astype(obs[Key.terminal(b)].dtype)
        probs = obs.get(Key.probs(Key.terminal(b))) if has("obs", Key.probs(Key.terminal(b))) else None
        est._terminal_probs = None if probs is None else pd.Series(probs.to_numpy(), index=idx)
    if has("obs", Key.initial(b)):
        est._initial_states = pd.Series(obs[Key.initial(b)].to_numpy(), index=idx).astype(obs[Key.initial(b)].dtype)
        probs = obs.get(Key.probs(Key.initial(b))) if has("obs", Key.probs(Key.initial(b))) else None
        est._initial_probs = None if probs is None else pd.Series(probs.to_numpy(), index=idx)
    if has("obsm", Key.fate_probabilities(b)):
        est._fate_probabilities = pd.DataFrame(obsm[Key.fate_probabilities(b)]).set_axis(idx)
    if has("obsm", Key.absorption_times(b)):
        est._absorption_times = pd.DataFrame(obsm[Key.absorption_times(b)]).set_axis(idx)
    if has("obs", Key.priming(b)):
        est._priming_degree = pd.Series(obs[Key.priming(b)].to_numpy(), index=idx, name="priming_degree")
    if "driver_columns" in state:
        cols = list(state["driver_columns"])
        est._lineage_drivers = pd.DataFrame(
            {c: adata.var[f"{Key.drivers(b)}_{c}"].to_numpy() for c in cols}, index=adata.var_names
        )
    if "schur" in state and has("obsm", Key.schur(b)):
        s = state["schur"]
        est._schur = SchurResult(
            vectors=np.asarray(obsm[Key.schur(b)]),
            matrix=np.asarray(s["matrix"]),
            eigenvalues=np.asarray(s["eigenvalues_real"]) + 1j * np.asarray(s["eigenvalues_imag"]),
            which=str(s["which"]),
            method=str(s["method"]),
            residual=float(s["residual"]),
        )
    if "eig" in state:
        e = state["eig"]
        est._eig = Eigendecomposition(
            np.asarray(e["real"]) + 1j * np.asarray(e["imag"]),
            None,
            None,
            None,
            int(e["eigengap"]),
            str(e["which"]),
            float(e["alpha"]),
        )
    if has("obs", Key.macrostates(b)) and hasattr(est, "_macrostates"):
        col = obs[Key.macrostates(b)]
        est._macrostates = pd.Series(col.to_numpy(), index=idx).astype(col.dtype)
        est._memberships = pd.DataFrame(obsm[Key.memberships(Key.macrostates(b))]).set_axis(idx)
        if "coarse" in state:
            c = state["coarse"]
            names = [str(n) for n in c["names"]]
            est._coarse_T = pd.DataFrame(np.asarray(c["T"]), index=names, columns=names)
            est._coarse_init = pd.Series(np.asarray(c["init"]), index=names)
            est._coarse_stat = pd.Series(np.asarray(c["stat"]), index=names) if "stat" in c else None
        if est._terminal_states is not None:
            names = [n for n in est._terminal_states.cat.categories if n in est._memberships.columns]
            est._terminal_memberships = est._memberships.loc[:, names] if names else None
