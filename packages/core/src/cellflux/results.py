"""Writing results into AnnData, with their provenance, the same way everywhere.

Every registered ``tl``/``pp`` function follows one pattern::

    def my_score(adata, *, layer=None, key_added="my_score", copy=False, mod=None, overwrite=False):
        target = resolve_target(adata, mod=mod, copy=copy)
        score = engine(target.adata.layers[layer])           # arrays in, arrays out
        results = Results(key_added, function="tl.my_score", plugin="my-plugin", params={"layer": layer})
        results.add("obs", key_added, score)
        results.write(target.adata, overwrite=overwrite)      # checks everything, then writes
        return target.returned()

:meth:`Results.write` checks every value first (shape, h5ad-writability, existing keys) and writes
only if all checks pass, so a failing call leaves the AnnData untouched. Provenance goes to
``uns[key]["params"]`` (scanpy's pattern) and ``uns[key]["provenance"]`` (function, plugin,
version and the fields written).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from importlib import metadata
from pathlib import PurePath
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from scipy import sparse

from ._keys import ProvenanceKey

if TYPE_CHECKING:
    from anndata import AnnData

__all__ = ["SLOTS", "Results", "Target", "clean_params", "resolve_target", "check_writable"]

#: The AnnData slots a result can be written to.
SLOTS = ("obs", "obsm", "obsp", "var", "varm", "layers", "uns")

#: Above this many cells a dense ``obsp`` matrix is refused (n x n dense matrices do not scale).
MAX_DENSE_OBSP = 5_000


@dataclass(frozen=True)
class Target:
    """Where a function reads and writes: the AnnData, and what the caller passed in.

    Attributes
    ----------
    container
        The object to return with ``copy=True``: the AnnData or MuData (copied if asked).
    adata
        The AnnData to read from and write to (``container.mod[mod]`` for MuData).
    copy
        Whether the caller asked for a copy.
    """

    container: Any
    adata: AnnData
    copy: bool

    def returned(self) -> Any:
        """What a registered function returns: the copy when ``copy=True``, else ``None``."""
        return self.container if self.copy else None


def resolve_target(data: Any, *, mod: str | None = None, copy: bool = False) -> Target:
    """Resolve the ``adata``/``mod``/``copy`` arguments of a registered function.

    Parameters
    ----------
    data
        An :class:`~anndata.AnnData` or a :class:`~mudata.MuData`.
    mod
        For MuData, the modality to work on (required).
    copy
        Work on a copy and return it instead of modifying ``data``.

    Returns
    -------
    The :class:`Target` to read from and write to.
    """
    from anndata import AnnData

    if isinstance(data, AnnData):
        if mod is not None:
            raise ValueError(f"mod={mod!r} was given, but the input is an AnnData, not a MuData; drop `mod`.")
        if data.is_view and not copy:
            raise ValueError(
                "The input AnnData is a view; results cannot be written into it. Pass `adata.copy()` or copy=True."
            )
        container = data.copy() if copy else data
        return Target(container, container, copy)
    if type(data).__name__ == "MuData" and hasattr(data, "mod"):
        if mod is None:
            raise ValueError(f"The input is a MuData; pass mod= one of {list(data.mod)}.")
        if mod not in data.mod:
            raise KeyError(f"MuData has no modality {mod!r}; it has {list(data.mod)}.")
        container = data.copy() if copy else data
        adata = container.mod[mod]
        if adata.is_view:
            raise ValueError(f"MuData modality {mod!r} is a view; pass a copy of the MuData or copy=True.")
        return Target(container, adata, copy)
    raise TypeError(f"Expected an AnnData or MuData, got {type(data).__name__}.")


def clean_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """Turn call parameters into values h5ad can store.

    Tuples become lists, paths and callables become strings (the callable's qualified name),
    ``None`` stays ``None``. Anything else that :func:`check_writable` refuses raises a
    ``TypeError`` naming the parameter.
    """
    cleaned = {str(k): _clean(v) for k, v in params.items()}
    check_writable(cleaned, "params")
    return cleaned


def _clean(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (tuple, list)):
        items = [_clean(v) for v in value]
        if any(v is None for v in items) or any(isinstance(v, (dict, list)) for v in items):
            return {str(i): v for i, v in enumerate(items)}
        return items
    if isinstance(value, PurePath):
        return str(value)
    if callable(value) and not isinstance(value, np.ndarray):
        return f"{getattr(value, '__module__', '')}.{getattr(value, '__qualname__', repr(value))}".lstrip(".")
    return value


def check_writable(value: Any, where: str) -> None:
    """Raise ``TypeError`` (naming ``where``) if ``value`` cannot be written to h5ad."""
    if value is None or isinstance(value, (bool, int, float, str, np.generic)):
        return
    if isinstance(value, Mapping):
        for k, v in value.items():
            if not isinstance(k, str):
                raise TypeError(f"{where} has a non-string key {k!r}; h5ad stores string keys only.")
            if "/" in k:
                raise ValueError(f"{where} has the key {k!r}; h5ad reads a '/' in a key as a nested group.")
            check_writable(v, f"{where}[{k!r}]")
        return
    if isinstance(value, list):
        check_writable(_list_to_array(value, where), where)
        return
    if isinstance(value, np.ndarray):
        if value.dtype == object:
            if not all(isinstance(v, str) for v in value.ravel()):
                raise TypeError(f"{where} is an object array with non-string values; h5ad cannot store it.")
        elif value.dtype.kind not in "biufcUS":
            raise TypeError(f"{where} has dtype {value.dtype}, which h5ad cannot store.")
        return
    if sparse.issparse(value):
        if value.format not in ("csr", "csc"):
            raise TypeError(f"{where} is a {value.format.upper()} sparse matrix; convert it to CSR (`.tocsr()`).")
        return
    if isinstance(value, pd.DataFrame):
        for column in value.columns:
            check_writable(_series_values(value[column]), f"{where}[{column!r}]")
        return
    if isinstance(value, (pd.Series, pd.Categorical)):
        check_writable(_series_values(value), where)
        return
    raise TypeError(f"{where} is a {type(value).__name__}, which h5ad cannot store.")


def _list_to_array(value: list, where: str) -> np.ndarray:
    if any(v is None for v in value):
        raise TypeError(f"{where} is a list containing None; h5ad cannot store it. Use a dict or drop the Nones.")
    array = np.asarray(value)
    if array.dtype == object and not all(isinstance(v, str) for v in value):
        raise TypeError(f"{where} is a list of mixed types; h5ad cannot store it.")
    return array


def _series_values(values: pd.Series | pd.Categorical) -> np.ndarray:
    if isinstance(values.dtype, pd.CategoricalDtype):
        return np.asarray(values.categories if isinstance(values, pd.Categorical) else values.cat.categories)
    array = np.asarray(values)
    if array.dtype == object:
        missing = pd.isna(array)
        return array[~missing]
    return array


@cache
def _version_of(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "unknown"


@dataclass
class Results:
    """The fields one call writes, checked together and written together.

    Parameters
    ----------
    key
        The result's key: provenance is stored in ``uns[key]``.
    function
        The registered name, e.g. ``"tl.transition_matrix"``.
    plugin
        The distribution that provides the function (its installed version is recorded).
    params
        The call's parameters; cleaned with :func:`clean_params`.
    """

    key: str
    function: str
    plugin: str
    params: Mapping[str, Any] = field(default_factory=dict)
    _fields: list[tuple[str, str, Any]] = field(default_factory=list, init=False, repr=False)

    def add(self, slot: str, key: str, value: Any) -> Results:
        """Add ``value`` to be written at ``adata.<slot>[key]``; returns ``self`` for chaining.

        For ``slot="uns"`` and ``key`` equal to the result's key, ``value`` must be a dict; it is
        stored next to ``params`` and ``provenance``.
        """
        if slot not in SLOTS:
            raise ValueError(f"Unknown slot {slot!r}; expected one of {SLOTS}.")
        if not isinstance(key, str) or not key:
            raise ValueError(f"Result keys must be non-empty strings, got {key!r}.")
        if "/" in key:
            raise ValueError(
                f"{slot}[{key!r}]: h5ad reads a '/' in a key as a nested group, so the file would not read back; "
                "rename what the key is made of (e.g. a condition or cluster name) without '/'."
            )
        if any(s == slot and k == key for s, k, _ in self._fields):
            raise ValueError(f"{slot}[{key!r}] is added twice to one result.")
        if slot == "uns" and key == self.key:
            if not isinstance(value, Mapping):
                raise TypeError(f"uns[{key!r}] holds the provenance, so its value must be a dict.")
            reserved = {ProvenanceKey.PARAMS, ProvenanceKey.PROVENANCE} & set(value)
            if reserved:
                raise ValueError(f"uns[{key!r}] may not set {sorted(reserved)}: they are written by the helper.")
        self._fields.append((slot, key, value))
        return self

    @property
    def written(self) -> dict[str, list[str]]:
        """Slot to the keys this result writes (provenance included)."""
        written: dict[str, list[str]] = {}
        for slot, key, _ in self._fields:
            written.setdefault(slot, []).append(key)
        if self.key not in written.get("uns", []):
            written.setdefault("uns", []).append(self.key)
        return written

    def provenance(self) -> dict[str, Any]:
        """The record stored at ``uns[key]["provenance"]``."""
        return {
            "function": self.function,
            "plugin": self.plugin,
            "version": _version_of(self.plugin),
            "written": {slot: list(keys) for slot, keys in self.written.items()},
        }

    def write(self, adata: AnnData, *, overwrite: bool = False) -> None:
        """Check every field, then write them all with the provenance record.

        Parameters
        ----------
        adata
            The AnnData to write into.
        overwrite
            Replace existing keys instead of refusing to.

        Raises
        ------
        KeyError
            A key exists already and ``overwrite`` is false (nothing is written).
        ValueError, TypeError
            A value has the wrong shape or cannot be stored in h5ad (nothing is written).
        """
        params = clean_params(self.params)
        uns_value: dict[str, Any] = {}
        prepared: list[tuple[str, str, Any]] = []
        for slot, key, value in self._fields:
            value = _prepare(adata, slot, key, value)
            if slot == "uns" and key == self.key:
                uns_value.update(value)
            else:
                prepared.append((slot, key, value))
        uns_value[ProvenanceKey.PARAMS] = params
        uns_value[ProvenanceKey.PROVENANCE] = self.provenance()
        check_writable(uns_value, f"uns[{self.key!r}]")
        prepared.append(("uns", self.key, uns_value))
        if not overwrite:
            taken = [f"{slot}[{key!r}]" for slot, key, _ in prepared if key in getattr(adata, slot)]
            if taken:
                raise KeyError(
                    f"{', '.join(taken)} already exist{'s' if len(taken) == 1 else ''}; nothing was written. "
                    "Pass key_added= to write elsewhere, or overwrite=True to replace."
                )
        stale = _stale_fields(adata, self.key, {(slot, key) for slot, key, _ in prepared}) if overwrite else []
        touched = [(slot, key) for slot, key, _ in prepared] + stale
        previous = [(slot, key, getattr(adata, slot).get(key, _MISSING)) for slot, key in touched]
        try:
            for slot, key in stale:
                del getattr(adata, slot)[key]
            for slot, key, value in prepared:
                getattr(adata, slot)[key] = value
        except Exception:
            _restore(adata, previous)
            raise


def _stale_fields(adata: AnnData, key: str, fields: set[tuple[str, str]]) -> list[tuple[str, str]]:
    """Fields the previous result under ``uns[key]`` wrote (its provenance) that this one does not.

    Overwriting removes them, so no field of an earlier call with other options (e.g. FDR columns of a
    run with null genes) is left beside the new results, as if this call had made it.
    """
    old = adata.uns.get(key)
    written = old.get(ProvenanceKey.PROVENANCE, {}).get("written") if isinstance(old, Mapping) else None
    if not isinstance(written, Mapping):
        return []
    stale = []
    for slot, keys in written.items():
        if slot not in SLOTS:
            continue
        container = getattr(adata, slot)
        for name in np.atleast_1d(np.asarray(keys, dtype=object)).tolist():
            name = str(name)
            if (slot, name) not in fields and not (slot == "uns" and name == key) and name in container:
                stale.append((slot, name))
    return stale


_MISSING = object()


def _restore(adata: AnnData, previous: list[tuple[str, str, Any]]) -> None:
    for slot, key, value in previous:
        container = getattr(adata, slot)
        if value is _MISSING:
            if key in container:
                del container[key]
        else:
            container[key] = value


def _prepare(adata: AnnData, slot: str, key: str, value: Any) -> Any:
    where = f"{slot}[{key!r}]"
    n_obs, n_vars = adata.n_obs, adata.n_vars
    if slot in ("obs", "var"):
        n = n_obs if slot == "obs" else n_vars
        index = adata.obs_names if slot == "obs" else adata.var_names
        if isinstance(value, pd.Series):
            if not value.index.equals(index):
                raise ValueError(f"{where}: the Series' index does not match {slot}_names.")
            value = value.to_numpy() if not isinstance(value.dtype, pd.CategoricalDtype) else value.array
        elif not isinstance(value, pd.Categorical):
            value = np.asarray(value)
            if value.ndim != 1:
                raise ValueError(f"{where} must be one-dimensional, got shape {value.shape}.")
        if len(value) != n:
            raise ValueError(f"{where} has length {len(value)}, expected {n} ({slot}).")
    elif slot in ("obsm", "varm", "layers", "obsp"):
        if not (sparse.issparse(value) or isinstance(value, pd.DataFrame)):
            value = np.asarray(value)
        if value.ndim != 2:
            raise ValueError(f"{where} must be two-dimensional, got shape {value.shape}.")
        expected = {
            "obsm": (n_obs, None),
            "varm": (n_vars, None),
            "layers": (n_obs, n_vars),
            "obsp": (n_obs, n_obs),
        }[slot]
        if value.shape[0] != expected[0] or (expected[1] is not None and value.shape[1] != expected[1]):
            shape = tuple("any" if e is None else e for e in expected)
            raise ValueError(f"{where} has shape {value.shape}, expected {shape}.")
        if slot == "obsp" and not sparse.issparse(value) and n_obs > MAX_DENSE_OBSP:
            raise ValueError(f"{where} is a dense {n_obs} x {n_obs} matrix; store it as a scipy CSR matrix.")
        names = adata.var_names if slot == "varm" else adata.obs_names
        if isinstance(value, pd.DataFrame) and not value.index.equals(names):
            raise ValueError(
                f"{where}: the DataFrame's index does not match {'var' if slot == 'varm' else 'obs'}_names."
            )
    check_writable(value, where)
    return value
