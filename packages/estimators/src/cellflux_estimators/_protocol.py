"""What the estimators accept: a kernel (duck-typed), a kernel expression, or a sparse matrix."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np
from scipy import sparse

from ._engine._checks import as_transition_matrix
from ._keys import Key

if TYPE_CHECKING:
    from anndata import AnnData

__all__ = ["KernelLike", "resolve_input"]


@runtime_checkable
class KernelLike(Protocol):
    """Anything with a row-stochastic ``transition_matrix`` (cellflux-kernels kernels and expressions).

    ``adata``, ``backward`` and ``params`` are read when present.
    """

    @property
    def transition_matrix(self) -> Any:
        """Row-stochastic transition matrix (scipy CSR)."""


def resolve_input(
    obj: Any, adata: AnnData | None = None, backward: bool | None = None, obsp_key: str | None = None
) -> tuple[sparse.csr_matrix, AnnData | None, bool, dict[str, Any]]:
    """Turn a kernel, kernel expression, AnnData or matrix into ``(T, adata, backward, kernel_params)``."""
    params: dict[str, Any] = {}
    if hasattr(obj, "transition_matrix") and not sparse.issparse(obj) and not isinstance(obj, np.ndarray):
        matrix = obj.transition_matrix
        if matrix is None:
            raise ValueError(f"{type(obj).__name__} has no transition matrix yet; compute it first.")
        adata = adata if adata is not None else getattr(obj, "adata", None)
        if backward is None:
            backward = bool(getattr(obj, "backward", False) or False)
        raw = getattr(obj, "params", {}) or {}
        params = dict(raw) if isinstance(raw, Mapping) else {}
        params.setdefault("kernel", repr(obj))
    elif type(obj).__name__ == "AnnData" and hasattr(obj, "obsp"):
        adata = obj
        backward = bool(backward)
        key = obsp_key or Key.transition(backward)
        if key not in adata.obsp:
            raise KeyError(
                f"adata.obsp[{key!r}] holds no transition matrix. Compute a kernel and write it there, "
                "pass obsp_key=, or pass the kernel itself."
            )
        matrix = adata.obsp[key]
        params = {"obsp_key": key}
    elif sparse.issparse(obj) or isinstance(obj, np.ndarray):
        matrix = obj
        backward = bool(backward)
    else:
        raise TypeError(
            f"Expected a kernel (an object with .transition_matrix), an AnnData or a matrix, got {type(obj).__name__}."
        )
    mat = as_transition_matrix(matrix)
    if adata is not None and adata.n_obs != mat.shape[0]:
        raise ValueError(f"The transition matrix has {mat.shape[0]} states but the AnnData has {adata.n_obs} cells.")
    return mat, adata, bool(backward), params
