"""``torch.sparse_csr`` batches: building them without warnings, their rows, and scipy views of them."""

from __future__ import annotations

import warnings

import numpy as np
import torch
from scipy import sparse

__all__ = ["csr_tensor", "is_csr", "row_ids", "row_sums", "to_scipy", "with_values"]


def csr_tensor(indptr, indices, values, shape: tuple[int, int]) -> torch.Tensor:
    """A ``torch.sparse_csr`` tensor sharing the given arrays (numpy arrays or tensors)."""
    as_tensor = lambda a: torch.from_numpy(a) if isinstance(a, np.ndarray) else a  # noqa: E731
    with warnings.catch_warnings():
        # torch labels its CSR layout "beta" with a UserWarning; the operations used here are stable
        warnings.simplefilter("ignore", UserWarning)
        return torch.sparse_csr_tensor(
            as_tensor(indptr), as_tensor(indices), as_tensor(values), size=tuple(shape), check_invariants=False
        )


def is_csr(x: object) -> bool:
    """Whether ``x`` is a ``torch.sparse_csr`` tensor."""
    return isinstance(x, torch.Tensor) and x.layout == torch.sparse_csr


def row_ids(x: torch.Tensor) -> torch.Tensor:
    """The row of every stored value of a CSR tensor."""
    crow = x.crow_indices()
    if crow.device.type == "cpu":  # numpy: torch's thread pool costs more than this on a loaded machine
        return torch.from_numpy(np.repeat(np.arange(x.shape[0]), np.diff(crow.numpy())))
    return torch.repeat_interleave(torch.arange(x.shape[0], device=crow.device), crow.diff())


def with_values(x: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """A CSR tensor with ``x``'s structure and new stored values."""
    return csr_tensor(x.crow_indices(), x.col_indices(), values, x.shape)


def to_scipy(x: torch.Tensor) -> sparse.csr_matrix:
    """A scipy CSR view of a CPU CSR tensor (no copy of the values)."""
    return sparse.csr_matrix(
        (x.values().detach().numpy(), x.col_indices().numpy(), x.crow_indices().numpy()), shape=tuple(x.shape)
    )


def row_sums(x: torch.Tensor) -> torch.Tensor:
    """Per-row sums of a CSR tensor's stored values, accumulated in float64."""
    crow, values = x.crow_indices(), x.values().detach()
    if crow.device.type != "cpu":
        cumulative = torch.cat([values.new_zeros(1, dtype=torch.float64), values.double().cumsum(0)])
        return cumulative[crow[1:]] - cumulative[crow[:-1]]
    indptr, data = crow.numpy(), values.numpy()
    sums = np.zeros(x.shape[0])
    nonempty = np.diff(indptr) > 0
    if nonempty.any():  # reduceat sums data[indptr[i]:indptr[i + 1]] for the rows that have values
        sums[nonempty] = np.add.reduceat(data, indptr[:-1][nonempty], dtype=np.float64)
    return torch.from_numpy(sums)
