"""From fuzzy memberships to discrete states; names of states from a reference clustering."""

from __future__ import annotations

from collections import Counter

import numpy as np

__all__ = ["check_state_name", "name_from_clusters", "parse_keys", "top_cells"]


def check_state_name(name: str) -> str:
    """Refuse names that cannot be told apart when states are merged with ``", "``."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"State names must be non-empty strings, got {name!r}.")
    if "," in name:
        raise ValueError(
            f"State name {name!r} contains a comma; commas separate states merged into one lineage "
            "(e.g. 'Alpha, Beta'). Rename it, e.g. with rename_terminal_states()."
        )
    if name != name.strip():
        raise ValueError(f"State name {name!r} has leading or trailing spaces; strip them.")
    return name


def parse_keys(keys: list[str] | None, names: list[str]) -> list[list[str]]:
    """Parse lineage keys like ``["Alpha, Beta", "Delta"]`` into groups of existing state names.

    ``None`` gives every state alone. Groups must be disjoint and name existing states.
    """
    if keys is None:
        return [[n] for n in names]
    if isinstance(keys, str):
        keys = [keys]
    groups, seen = [], set()
    for key in keys:
        if not isinstance(key, str):
            raise TypeError(f"Lineage keys must be strings, got {key!r}.")
        parts = [p.strip() for p in key.split(",")]
        if any(not p for p in parts):
            raise ValueError(f"Lineage key {key!r} has an empty part; write merged states as 'Alpha, Beta'.")
        unknown = [p for p in parts if p not in names]
        if unknown:
            raise KeyError(f"Unknown terminal state(s) {unknown} in key {key!r}; the states are {names}.")
        overlap = seen.intersection(parts)
        if overlap:
            raise ValueError(f"State(s) {sorted(overlap)} appear in more than one lineage key.")
        seen.update(parts)
        groups.append(sorted(set(parts), key=names.index))
    if not groups:
        raise ValueError("No lineage keys were given.")
    return groups


def top_cells(memberships: np.ndarray, n_cells: int, *, raise_threshold: float = 0.2) -> np.ndarray:
    """Assign the ``n_cells`` cells with the highest membership to each state; ``-1`` elsewhere.

    A cell among the top of several states goes to the one where its membership is highest.

    Raises
    ------
    ValueError
        If ``n_cells`` exceeds ``n / n_states`` or a state keeps fewer than ``raise_threshold * n_cells`` cells.
    """
    n, k = memberships.shape
    if n_cells <= 0:
        raise ValueError(f"n_cells must be positive, got {n_cells}.")
    if n_cells > n // k:
        raise ValueError(
            f"n_cells={n_cells} is too many: at most {n // k} cells per state for {n} cells and {k} states."
        )
    chosen = np.zeros((n, k), dtype=bool)
    for j in range(k):
        chosen[np.argpartition(-memberships[:, j], n_cells - 1)[:n_cells], j] = True
    labels = np.full(n, -1, dtype=np.int64)
    any_chosen = chosen.any(axis=1)
    masked = np.where(chosen, memberships, -np.inf)
    labels[any_chosen] = np.argmax(masked[any_chosen], axis=1)
    counts = np.bincount(labels[labels >= 0], minlength=k)
    n_min = max(int(raise_threshold * n_cells), 1)
    if np.any(counts < n_min):
        empty = np.flatnonzero(counts < n_min).tolist()
        raise ValueError(
            f"State(s) {empty} keep fewer than {n_min} cells after resolving overlaps (counts {counts.tolist()}): "
            "the macrostate has (almost) no cells of its own. Use fewer states or recompute the macrostates."
        )
    return labels


def name_from_clusters(
    labels: np.ndarray, clusters: np.ndarray, n_states: int, categories: list[str] | None = None
) -> list[str]:
    """Name each state after the cluster most of its cells belong to; repeated names get ``_1``, ``_2``, ...

    Ties go to the cluster that comes first in ``categories`` (the order of appearance by default).
    """
    cats = [str(c) for c in (categories if categories is not None else dict.fromkeys(clusters))]
    order = {c: i for i, c in enumerate(cats)}
    names = []
    for j in range(n_states):
        members = clusters[labels == j]
        if len(members) == 0:
            raise ValueError(f"State {j} has no cells, so it cannot be named from clusters.")
        counts = Counter(str(c) for c in members)
        best = max(counts.values())
        names.append(min((c for c, v in counts.items() if v == best), key=lambda c: order[c]))
    totals = Counter(names)
    seen: Counter[str] = Counter()
    out = []
    for name in names:
        if totals[name] > 1:
            seen[name] += 1
            out.append(f"{name}_{seen[name]}")
        else:
            out.append(name)
    return out
