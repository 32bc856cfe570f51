"""Random walks on a row-stochastic CSR matrix, all walks advanced together."""

from __future__ import annotations

import numpy as np
from scipy import sparse

__all__ = ["random_walks"]


def random_walks(
    transition: sparse.csr_matrix,
    starts: np.ndarray,
    *,
    max_iter: int,
    stop: np.ndarray | None = None,
    successive_hits: int = 0,
    rng: np.random.Generator,
) -> list[np.ndarray]:
    """Simulate one walk from every cell in ``starts``.

    Parameters
    ----------
    transition
        Row-stochastic CSR matrix.
    starts
        Starting cell of every walk.
    max_iter
        Maximum number of steps.
    stop
        Boolean mask of cells that stop a walk once visited ``successive_hits + 1`` times in a row.
    successive_hits
        See ``stop``.
    rng
        Random generator.

    Returns
    -------
    One array of visited cells per walk (the start included), at most ``max_iter + 1`` long.
    """
    T = sparse.csr_matrix(transition)
    cum = np.cumsum(T.data)
    before = np.concatenate([[0.0], cum])[T.indptr[:-1]]
    row_sum = np.asarray(T.sum(axis=1)).ravel()
    n_walks = len(starts)
    path = np.full((max_iter + 1, n_walks), -1, dtype=np.int64)
    path[0] = current = np.asarray(starts, dtype=np.int64)
    active = np.ones(n_walks, dtype=bool)
    hits = np.full(n_walks, -1)
    length = np.full(n_walks, max_iter + 1)
    for step in range(1, max_iter + 1):
        idx = np.flatnonzero(active)
        if not len(idx):
            break
        cur = current[idx]
        target = before[cur] + rng.random(len(idx)) * row_sum[cur]
        pos = np.searchsorted(cum, target, side="right")
        pos = np.clip(pos, T.indptr[cur], T.indptr[cur + 1] - 1)
        nxt = T.indices[pos]
        current[idx] = nxt
        path[step, idx] = nxt
        if stop is not None:
            hit = stop[nxt]
            hits[idx] = np.where(hit, hits[idx] + 1, -1)
            done = idx[hits[idx] >= successive_hits]
            length[done] = step + 1
            active[done] = False
    return [path[: length[w], w].copy() for w in range(n_walks)]
