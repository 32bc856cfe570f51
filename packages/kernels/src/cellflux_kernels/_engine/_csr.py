"""Segment operations over the rows of a CSR graph, and row-stochastic checks."""

from __future__ import annotations

import numpy as np
from scipy import sparse
from scipy.sparse import csgraph

__all__ = [
    "as_csr",
    "check_row_stochastic",
    "components",
    "row_ids",
    "row_normalize",
    "segment_max",
    "segment_sum",
    "segment_softmax",
]


def as_csr(matrix: sparse.spmatrix | sparse.sparray | np.ndarray, *, dtype: type = np.float64) -> sparse.csr_matrix:
    """A canonical CSR copy-free view of ``matrix`` (sorted indices, no duplicates) in ``dtype``."""
    csr = sparse.csr_matrix(matrix, dtype=dtype)
    if not csr.has_canonical_format:
        csr = csr.copy()
        csr.sum_duplicates()
        csr.sort_indices()
    return csr


def row_ids(indptr: np.ndarray) -> np.ndarray:
    """The row of every stored entry of a CSR matrix with this ``indptr``."""
    return np.repeat(np.arange(len(indptr) - 1), np.diff(indptr))


def _reduce(ufunc: np.ufunc, values: np.ndarray, indptr: np.ndarray, empty: float) -> np.ndarray:
    n = len(indptr) - 1
    out = np.full(n, empty, dtype=np.result_type(values.dtype, np.float64))
    nonempty = np.flatnonzero(np.diff(indptr) > 0)
    if len(nonempty):
        out[nonempty] = ufunc.reduceat(values, indptr[nonempty])
    return out


def segment_sum(values: np.ndarray, indptr: np.ndarray) -> np.ndarray:
    """Sum of ``values`` over each CSR row (0 for empty rows)."""
    return _reduce(np.add, values, indptr, 0.0)


def segment_max(values: np.ndarray, indptr: np.ndarray) -> np.ndarray:
    """Maximum of ``values`` over each CSR row (``-inf`` for empty rows)."""
    return _reduce(np.maximum, values, indptr, -np.inf)


def segment_softmax(logits: np.ndarray, indptr: np.ndarray, scale: float, mask: np.ndarray | None = None) -> np.ndarray:
    """Row-wise softmax of ``scale * logits`` over CSR rows; masked entries get probability 0.

    The row maximum is taken over all entries (masked ones included), as CellRank does; it only
    shifts the exponent.
    """
    scaled = scale * logits
    rows = row_ids(indptr)
    numerator = np.exp(scaled - segment_max(scaled, indptr)[rows])
    if mask is not None:
        numerator[mask] = 0.0
    total = segment_sum(numerator, indptr)
    with np.errstate(invalid="ignore", divide="ignore"):
        return numerator / total[rows]


def row_normalize(matrix: sparse.csr_matrix) -> sparse.csr_matrix:
    """Divide every row by its sum (rows summing to 0 are left at 0)."""
    sums = np.asarray(matrix.sum(axis=1)).ravel()
    with np.errstate(divide="ignore"):
        inv = np.where(sums != 0, 1.0 / sums, 0.0)
    out = matrix.copy()
    out.data = out.data * np.repeat(inv, np.diff(out.indptr))
    return out


def check_row_stochastic(matrix: sparse.csr_matrix, *, name: str = "transition matrix", rtol: float = 1e-6) -> None:
    """Raise ``ValueError`` unless ``matrix`` is finite, non-negative and has rows summing to 1."""
    data = matrix.data
    if not np.all(np.isfinite(data)):
        raise ValueError(f"The {name} contains {int((~np.isfinite(data)).sum())} NaN or infinite values.")
    if np.any(data < 0):
        raise ValueError(f"The {name} contains {int((data < 0).sum())} negative values.")
    sums = np.asarray(matrix.sum(axis=1)).ravel()
    bad = ~np.isclose(sums, 1.0, rtol=rtol, atol=rtol)
    if np.any(bad):
        rows = np.flatnonzero(bad)
        raise ValueError(
            f"The {name} is not row-stochastic: {len(rows)} rows do not sum to 1 "
            f"(first rows {rows[:5].tolist()} sum to {np.round(sums[rows[:5]], 6).tolist()})."
        )


def components(matrix: sparse.spmatrix, *, connection: str = "weak") -> tuple[int, np.ndarray]:
    """Number of connected components of the graph of ``matrix`` and each node's component label."""
    return csgraph.connected_components(matrix, directed=True, connection=connection)
