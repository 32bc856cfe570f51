"""A two-level (aggregation) preconditioner for ``(I - Q) x = b`` on large, slowly mixing chains.

Unpreconditioned Krylov solvers need about as many iterations as a random walk needs steps to be absorbed,
which grows with the number of cells. The slow, smooth components are removed by a coarse-grid correction:
cells are grouped into aggregates (a graph Voronoi partition around random seeds, one multi-source Dijkstra
pass), ``A_c = P^T A P`` with the piecewise-constant prolongation ``P`` is factorised once (sparse LU, small),
and each application is a V-cycle with one Richardson smoothing step before and after the coarse solve:

``x = r;  x += P A_c^-1 P^T (r - A x);  x += r - A x``.

It is a fixed linear operator, so right-preconditioned GMRES stays exact. ILU, by contrast, costs more to
factorise on kNN graphs than the whole solve (its fill grows quickly with the neighbourhood size).
"""

from __future__ import annotations

import numpy as np
from scipy import sparse
from scipy.sparse import csgraph
from scipy.sparse import linalg as splinalg

__all__ = ["TwoLevel", "aggregate"]


def aggregate(graph: sparse.spmatrix, n_aggregates: int, *, seed: int = 0) -> np.ndarray:
    """Group the nodes of ``graph`` around ``n_aggregates`` random seeds (nearest seed by hops).

    Edge weights and their signs are ignored; only the sparsity pattern counts.

    Returns
    -------
    Aggregate of each node, ``(n,)``, in ``[0, n_aggregates)``; nodes that no seed reaches get their own.
    """
    graph = sparse.csr_matrix(graph)
    n = graph.shape[0]
    pattern = sparse.csr_matrix((np.ones(graph.nnz), graph.indices, graph.indptr), shape=graph.shape)
    c = int(min(max(n_aggregates, 1), n))
    seeds = np.random.default_rng(seed).choice(n, c, replace=False)
    _, _, sources = csgraph.dijkstra(
        pattern, directed=False, indices=seeds, min_only=True, return_predecessors=True, unweighted=True
    )
    label = np.full(n, -1, dtype=np.int64)
    label[seeds] = np.arange(c)
    out = np.where(sources >= 0, label[np.maximum(sources, 0)], -1)
    lonely = np.flatnonzero(out < 0)
    out[lonely] = c + np.arange(len(lonely))
    return out


class TwoLevel:
    """The two-level preconditioner of ``a`` (see the module description), applied to ``(k, n)`` blocks.

    Parameters
    ----------
    a
        The system matrix ``I - Q``, CSR.
    n_aggregates
        Size of the coarse problem.
    seed
        Seed of the aggregation.
    """

    def __init__(self, a: sparse.csr_matrix, n_aggregates: int, *, seed: int = 0) -> None:
        n = a.shape[0]
        labels = aggregate(a, n_aggregates, seed=seed)
        c = int(labels.max()) + 1
        self.a = a
        self.p = sparse.csr_matrix((np.ones(n), (np.arange(n), labels)), shape=(n, c))
        self.r = sparse.csr_matrix(self.p.T)
        coarse = sparse.csc_matrix(self.r @ a @ self.p)
        self.lu = splinalg.splu(coarse)
        self.n_aggregates = c

    def apply(self, r: np.ndarray) -> np.ndarray:
        """Apply ``M^-1`` to each column of ``r`` (shape ``(n, k)``), all columns in one pass."""
        x = np.array(r, dtype=np.float64, order="C")
        x += self.p @ self.lu.solve(np.ascontiguousarray(self.r @ (r - self.a @ x)))
        x += r - self.a @ x
        return x

    def __call__(self, z: np.ndarray) -> np.ndarray:
        """Apply ``M^-1`` to each row of ``z`` (shape ``(k, n)``)."""
        return self.apply(np.ascontiguousarray(z.T)).T
