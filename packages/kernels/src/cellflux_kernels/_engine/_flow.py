"""Flow of transition mass out of one cluster between consecutive time points (CellRank's single flow)."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
from scipy import sparse

__all__ = ["single_flow"]


def single_flow(
    matrix: sparse.spmatrix,
    clusters: pd.Categorical,
    time: pd.Categorical,
    cluster: str,
) -> pd.DataFrame:
    """Fraction of the mass of ``cluster`` at each time point that moves to every cluster at the next one.

    For consecutive time points ``t_a, t_b`` and every cluster ``c``: the sum of ``T[i, j]`` over cells
    ``i`` of ``cluster`` at ``t_a`` and cells ``j`` of ``c`` at ``t_b``, divided by the number of
    cells ``i`` (each row of ``T`` carries mass 1). A row therefore sums to the share of the
    cluster's mass that reaches the next time point (1 for a real-time kernel without self-transitions).

    Parameters
    ----------
    matrix
        Row-stochastic transition matrix, ``(n_cells, n_cells)``.
    clusters
        Cluster of every cell.
    time
        Time point of every cell (ordered categories).
    cluster
        The source cluster.

    Returns
    -------
    A frame indexed by ``(t_a, t_b)`` with one column per cluster; ``NaN`` rows where ``cluster`` has
    no cell at ``t_a``.
    """
    if cluster not in clusters.categories:
        raise KeyError(f"Cluster {cluster!r} is not one of {list(clusters.categories)}.")
    T = sparse.csr_matrix(matrix)
    points = [p for p in time.categories if (np.asarray(time) == p).any()]
    c_codes = np.asarray(clusters.codes)
    t_codes = np.asarray(time.codes)
    onehot = sparse.csr_matrix(
        (np.ones(len(c_codes)), (np.arange(len(c_codes)), np.maximum(c_codes, 0))),
        shape=(len(c_codes), len(clusters.categories)),
    )
    rows, index = [], []
    src_code = list(clusters.categories).index(cluster)
    for a, b in itertools.pairwise(points):
        ta, tb = list(time.categories).index(a), list(time.categories).index(b)
        src = np.flatnonzero((c_codes == src_code) & (t_codes == ta))
        tgt_mask = (t_codes == tb) & (c_codes >= 0)
        if not len(src):
            rows.append(np.full(len(clusters.categories), np.nan))
        else:
            block = T[src].multiply(tgt_mask[None, :]).tocsr()
            rows.append(np.asarray(block.sum(axis=0) @ onehot).ravel() / len(src))
        index.append((a, b))
    return pd.DataFrame(
        np.vstack(rows),
        index=pd.MultiIndex.from_tuples(index, names=["source", "target"]),
        columns=list(clusters.categories),
    )
