"""Setting, merging and renaming terminal and initial states."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd

from .._colors import colors_for
from .._engine._states import check_state_name
from ._base import BaseEstimator

__all__ = ["StatesMixin", "states_from_spec"]

logger = logging.getLogger(__name__)


def _categorical(labels: np.ndarray, names: list[str], index: pd.Index) -> pd.Series:
    cat = pd.Categorical.from_codes(labels, categories=names)
    return pd.Series(cat, index=index)


def states_from_spec(est: BaseEstimator, states: Any, cluster_key: str | None = None) -> pd.Series:
    """Turn a dict/Series state specification into a categorical Series over the cells.

    ``states`` may be a categorical Series indexed by the cell names (aligned by its index, in any order; NaN
    outside states), a 1-d array or :class:`pandas.Categorical` with one value per cell in the cells' order, a
    dict of state name to cell names or integer indices, or ``{obs_column: [cluster, ...]}`` to take whole
    clusters.
    """
    index = est.obs_names
    if isinstance(states, (np.ndarray, pd.Categorical)):
        if states.ndim != 1 or len(states) != len(index):
            raise ValueError(f"The states array has shape {states.shape}; expected one value per cell ({len(index)}).")
        states = pd.Series(states, index=index)
    if isinstance(states, pd.Series):
        if len(states) != len(index):
            raise ValueError(f"The states Series has {len(states)} values; expected one per cell ({len(index)}).")
        series = states.astype("category")
        labels = series.index.astype(str)
        if not labels.equals(index):
            if labels.has_duplicates:
                raise ValueError("The states Series' index has duplicate cell names; it must hold each cell once.")
            missing = index.difference(labels, sort=False)
            if len(missing):
                raise ValueError(
                    f"The states Series is aligned by its index, but {len(missing)} of the {len(index)} cell names "
                    f"are not in it (e.g. {list(missing[:3])}). Index it by the cell names (obs_names), or pass "
                    "positional values as an array (series.to_numpy())."
                )
            series = series.set_axis(labels).reindex(index)
        else:
            series = series.set_axis(index)
        for name in series.cat.categories:
            check_state_name(str(name))
        series = series.cat.rename_categories({c: str(c) for c in series.cat.categories})
        return series
    if not isinstance(states, Mapping) or not states:
        raise TypeError("states must be a non-empty dict, a categorical Series, a state name or a list of names.")
    adata = est.adata
    if len(states) == 1 and adata is not None and next(iter(states)) in adata.obs.columns:
        key = next(iter(states))
        wanted = states[key]
        wanted = [wanted] if isinstance(wanted, str) or not isinstance(wanted, Sequence) else list(wanted)
        column = adata.obs[key].astype(str)
        missing = [w for w in wanted if str(w) not in set(column)]
        if missing:
            raise KeyError(f"Cluster(s) {missing} are not in adata.obs[{key!r}].")
        states = {str(w): np.flatnonzero(column.to_numpy() == str(w)) for w in wanted}
    labels = np.full(len(index), -1, dtype=np.int64)
    names = []
    for j, (name, cells) in enumerate(states.items()):
        names.append(check_state_name(str(name)))
        cells = np.asarray(list(cells))
        if cells.size == 0:
            raise ValueError(f"State {name!r} has no cells.")
        if cells.dtype.kind in "iu":
            if cells.min() < 0 or cells.max() >= len(index):
                raise IndexError(f"State {name!r} has cell indices outside [0, {len(index)}).")
            idx = cells
        else:
            idx = index.get_indexer(cells.astype(str))
            if np.any(idx < 0):
                raise KeyError(f"State {name!r}: {int(np.sum(idx < 0))} cell name(s) are not in the data.")
        if np.any(labels[idx] >= 0):
            raise ValueError(f"State {name!r} overlaps another state; every cell may be in one state only.")
        labels[idx] = j
    if len(set(names)) != len(names):
        raise ValueError(f"State names must be unique, got {names}.")
    return _categorical(labels, names, index)


class StatesMixin(BaseEstimator):
    """Terminal and initial states: set from cells, clusters or a Series; merged; renamed."""

    def _cluster_colors(self, cluster_key: str | None) -> dict[str, str] | None:
        if cluster_key is None or self.adata is None:
            return None
        colors = self.adata.uns.get(f"{cluster_key}_colors")
        col = self.adata.obs.get(cluster_key)
        if colors is None or col is None or not isinstance(col.dtype, pd.CategoricalDtype):
            return None
        return {str(c): str(v) for c, v in zip(col.cat.categories, colors, strict=False)}

    def _write_states(
        self,
        which: Literal["terminal", "initial"],
        series: pd.Series,
        probs: pd.Series | None,
        *,
        merge: bool = False,
        cluster_key: str | None = None,
        memberships: pd.DataFrame | None = None,
    ) -> None:
        if series.isna().all():
            raise ValueError(f"No cell was assigned to any {which} state.")
        empty = [str(c) for c in series.cat.categories if not (series == c).any()]
        if empty:
            raise ValueError(f"{which.capitalize()} state(s) {empty} have no cells.")
        old = self._terminal_states if which == "terminal" else self._initial_states
        if merge and old is not None:
            names = list(dict.fromkeys([*map(str, old.cat.categories), *map(str, series.cat.categories)]))
            values = old.astype(object).where(series.isna(), series.astype(object))
            series = pd.Series(pd.Categorical(values, categories=names), index=series.index)
            series = series.cat.remove_unused_categories()
            if probs is not None and (self._terminal_probs if which == "terminal" else self._initial_probs) is not None:
                prev = self._terminal_probs if which == "terminal" else self._initial_probs
                probs = prev.where(series.isna() | probs.isna(), probs)
            memberships = None
        if probs is None:
            probs = pd.Series(np.where(series.isna(), 0.0, 1.0), index=series.index)
        names = [str(c) for c in series.cat.categories]
        self._colors.update(
            {k: v for k, v in colors_for(names, self._cluster_colors(cluster_key)).items() if k not in self._colors}
        )
        if which == "terminal":
            self._terminal_states, self._terminal_probs = series, probs
            self._terminal_memberships = memberships
            self._fate_probabilities = self._absorption_times = self._priming_degree = None
            self._lineage_drivers = None
        else:
            self._initial_states, self._initial_probs = series, probs
        logger.info("Set %d %s state(s): %s", len(names), which, names)

    def set_terminal_states(
        self,
        states: Mapping[str, Sequence[Any]] | pd.Series,
        *,
        cluster_key: str | None = None,
        merge: bool = False,
    ) -> StatesMixin:
        """Set the terminal states from cells or clusters.

        Parameters
        ----------
        states
            A dict of state name to cell names or indices; ``{obs_column: [cluster, ...]}`` for whole clusters; a
            categorical Series indexed by the cell names (aligned by its index; NaN outside states); or a 1-d
            array/:class:`pandas.Categorical` with one value per cell, in the cells' order.
        cluster_key
            Clusters whose colours the states take.
        merge
            Keep the existing terminal states and add these (the new ones win on shared cells).

        Returns
        -------
        Self; sets :attr:`terminal_states` (and clears fate probabilities computed for other states).
        """
        series = states_from_spec(self, states, cluster_key)
        self._write_states("terminal", series, None, merge=merge, cluster_key=cluster_key)
        self.params["terminal_states"] = {"method": "set", "merge": merge}
        return self

    def set_initial_states(
        self,
        states: Mapping[str, Sequence[Any]] | pd.Series,
        *,
        cluster_key: str | None = None,
        merge: bool = False,
    ) -> StatesMixin:
        """Set the initial states from cells or clusters (see :meth:`set_terminal_states`).

        Returns
        -------
        Self; sets :attr:`initial_states`.
        """
        series = states_from_spec(self, states, cluster_key)
        self._write_states("initial", series, None, merge=merge, cluster_key=cluster_key)
        return self

    def rename_terminal_states(self, new_names: Mapping[str, str]) -> StatesMixin:
        """Rename terminal states (and the lineages of computed fate probabilities).

        Parameters
        ----------
        new_names
            Old name to new name.

        Returns
        -------
        Self, with renamed :attr:`terminal_states` and :attr:`fate_probabilities` columns.
        """
        if self._terminal_states is None:
            raise RuntimeError("Compute or set terminal states first.")
        cats = [str(c) for c in self._terminal_states.cat.categories]
        unknown = [k for k in new_names if k not in cats]
        if unknown:
            raise KeyError(f"Unknown terminal state(s) {unknown}; the states are {cats}.")
        renamed = [check_state_name(str(new_names.get(c, c))) for c in cats]
        if len(set(renamed)) != len(renamed):
            raise ValueError(f"Renaming would give duplicate state names: {renamed}.")
        mapping = dict(zip(cats, renamed, strict=True))
        self._terminal_states = self._terminal_states.cat.rename_categories(mapping)
        if self._terminal_memberships is not None:
            self._terminal_memberships = self._terminal_memberships.rename(columns=mapping)
        self._colors = {mapping.get(k, k): v for k, v in self._colors.items()}
        if self._fate_probabilities is not None:
            self._fate_probabilities = self._fate_probabilities.rename(
                columns={c: ", ".join(mapping.get(p, p) for p in c.split(", ")) for c in self._fate_probabilities}
            )
        return self
