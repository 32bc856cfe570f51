"""Checks of transition matrices: shape, finiteness, row-stochasticity, reducibility."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from scipy import sparse
from scipy.sparse import csgraph

__all__ = ["ChainStructure", "ReducibleChainError", "as_transition_matrix", "chain_structure"]

logger = logging.getLogger(__name__)

#: Largest deviation of a row sum from 1 that is accepted.
ROW_SUM_TOL = 1e-6


class ReducibleChainError(ValueError):
    """The Markov chain is reducible in a way the requested computation cannot handle."""


def as_transition_matrix(matrix: object, *, name: str = "transition matrix") -> sparse.csr_matrix:
    """Validate ``matrix`` as a square, finite, non-negative, row-stochastic matrix; return it as float64 CSR.

    Parameters
    ----------
    matrix
        A scipy sparse matrix or a dense array.
    name
        How to call the matrix in error messages.

    Returns
    -------
    The matrix as a :class:`scipy.sparse.csr_matrix` of dtype float64 (not a copy when already one).
    """
    if sparse.issparse(matrix):
        mat = sparse.csr_matrix(matrix, dtype=np.float64)
    else:
        arr = np.asarray(matrix)
        if arr.dtype == object or arr.ndim != 2:
            raise TypeError(f"The {name} must be a 2-D sparse matrix or array, got {type(matrix).__name__}.")
        mat = sparse.csr_matrix(arr.astype(np.float64))
    n, m = mat.shape
    if n != m:
        raise ValueError(f"The {name} must be square, got shape {mat.shape}.")
    if n < 2:
        raise ValueError(f"The {name} has {n} state(s); at least 2 are needed.")
    if not np.all(np.isfinite(mat.data)):
        raise ValueError(f"The {name} contains NaN or infinite values; recompute the kernel.")
    if mat.nnz and mat.data.min() < 0:
        raise ValueError(
            f"The {name} has negative entries (min {mat.data.min():.3g}); transition probabilities are >= 0."
        )
    sums = np.asarray(mat.sum(axis=1)).ravel()
    dev = np.abs(sums - 1.0)
    if dev.max() > ROW_SUM_TOL:
        bad = int(np.argmax(dev))
        raise ValueError(
            f"The {name} is not row-stochastic: row {bad} sums to {sums[bad]:.6g} "
            f"({int(np.sum(dev > ROW_SUM_TOL))} rows deviate by more than {ROW_SUM_TOL:g}). "
            "Normalise each row to sum to 1 (a kernel's `.transition_matrix` already is)."
        )
    return mat


@dataclass(frozen=True)
class ChainStructure:
    """The communicating classes of a Markov chain.

    Attributes
    ----------
    labels
        Strongly connected component of each state.
    n_components
        Number of strongly connected (communicating) classes.
    closed
        Labels of the closed (recurrent) classes: no probability leaves them.
    n_weak_components
        Number of weakly connected components (disconnected pieces of the graph).
    """

    labels: np.ndarray
    n_components: int
    closed: np.ndarray
    n_weak_components: int

    @property
    def irreducible(self) -> bool:
        """Whether every state communicates with every other."""
        return self.n_components == 1

    def describe(self) -> str:
        """A sentence for users: how the chain decomposes and what follows."""
        if self.irreducible:
            return "The chain is irreducible."
        sizes = np.bincount(self.labels)
        closed_sizes = sorted((int(sizes[c]) for c in self.closed), reverse=True)
        text = (
            f"The chain is reducible: {self.n_components} communicating classes, {len(self.closed)} of them closed "
            f"(sizes {closed_sizes[:10]}{' ...' if len(closed_sizes) > 10 else ''})"
        )
        if self.n_weak_components > 1:
            text += f", in {self.n_weak_components} disconnected pieces of the graph"
        return text + "."


def chain_structure(matrix: sparse.spmatrix) -> ChainStructure:
    """Find the communicating classes of the chain with transition matrix ``matrix``."""
    mat = sparse.csr_matrix(matrix)
    n_comp, labels = csgraph.connected_components(mat, directed=True, connection="strong")
    n_weak, _ = csgraph.connected_components(mat, directed=True, connection="weak")
    if n_comp == 1:
        closed = np.array([0])
    else:
        coo = mat.tocoo()
        leaving = (labels[coo.row] != labels[coo.col]) & (coo.data > 0)
        open_classes = np.unique(labels[coo.row[leaving]])
        closed = np.setdiff1d(np.arange(n_comp), open_classes)
    return ChainStructure(labels=labels, n_components=int(n_comp), closed=closed, n_weak_components=int(n_weak))
