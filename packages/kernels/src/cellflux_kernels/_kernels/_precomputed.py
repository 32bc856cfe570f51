"""PrecomputedKernel: a transition matrix given as an obsp key, an array or a sparse matrix."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
from anndata import AnnData
from scipy import sparse

from .._engine._csr import as_csr, check_row_stochastic
from .._engine._csr import row_normalize as _row_normalize
from .._keys import Key
from ._base import Kernel, KernelExpression, _to_python

__all__ = ["PrecomputedKernel"]

logger = logging.getLogger(__name__)


class PrecomputedKernel(Kernel):
    """A kernel around a transition matrix computed elsewhere.

    Parameters
    ----------
    object
        An ``obsp`` key of ``adata``, a dense array, a sparse matrix or a computed kernel expression.
    adata
        The annotated data; without it (for a matrix) a minimal AnnData of shape ``(n_cells, 1)`` is created.
    backward
        Direction of the process the matrix describes (``None``: undirected or unknown).
    row_normalize
        Row-normalise a matrix whose rows do not sum to 1 instead of refusing it.
    copy
        Copy the matrix.
    """

    def __init__(
        self,
        object: str | np.ndarray | sparse.spmatrix | KernelExpression,
        adata: AnnData | None = None,
        backward: bool | None = None,
        row_normalize: bool = False,
        copy: bool = False,
        *,
        obsp_key: str | None = None,
    ) -> None:
        origin: str
        params: dict[str, Any] = {}
        if isinstance(object, AnnData):
            adata, object = object, obsp_key or Key.transition(bool(backward))
        if isinstance(object, str):
            if adata is None:
                raise ValueError(f"Pass adata= to read the transition matrix from adata.obsp[{object!r}].")
            if object not in adata.obsp:
                raise KeyError(
                    f"adata.obsp[{object!r}] is missing; write a kernel there first (kernel.write_to_adata()). "
                    f"Available: {sorted(adata.obsp.keys())}."
                )
            matrix = adata.obsp[object]
            origin = f"adata.obsp[{object!r}]"
            self._obsp_key: str | None = object
        elif isinstance(object, KernelExpression):
            matrix = object.transition_matrix
            adata = object.adata if adata is None else adata
            backward = object.backward if backward is None else backward
            origin = repr(object)
            params = dict(object.params)
            self._obsp_key = None
        elif isinstance(object, np.ndarray) or sparse.issparse(object):
            matrix = object
            origin = "array"
            self._obsp_key = None
        else:
            raise TypeError(
                f"Expected an obsp key, a numpy array, a scipy sparse matrix or a kernel, got {type(object).__name__}."
            )
        if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1]:
            raise ValueError(f"The transition matrix must be square, got shape {matrix.shape}.")
        if adata is None:
            logger.info("Creating a minimal AnnData of shape (%d, 1) for the precomputed matrix.", matrix.shape[0])
            adata = AnnData(sparse.csr_matrix((matrix.shape[0], 1), dtype=np.float32))
        if matrix.shape[0] != adata.n_obs:
            raise ValueError(f"The transition matrix has shape {matrix.shape}, but adata has {adata.n_obs} cells.")
        super().__init__(adata, backward=bool(backward))
        self._direction = backward
        csr = as_csr(matrix.copy() if copy else matrix)
        if not np.all(np.isfinite(csr.data)):
            raise ValueError("The transition matrix contains NaN or infinite values.")
        if np.any(csr.data < 0):
            raise ValueError(f"The transition matrix contains {int((csr.data < 0).sum())} negative values.")
        if row_normalize:
            csr = _row_normalize(csr)
        check_row_stochastic(csr, name="precomputed transition matrix (pass row_normalize=True to normalise it)")
        self._transition_matrix = csr
        self._params = {**params, "origin": origin}

    @property
    def backward(self) -> bool | None:
        """The direction given at construction (``None`` if unknown)."""
        return self._direction

    invertible = False

    def __invert__(self) -> PrecomputedKernel:
        """A precomputed matrix cannot be inverted (inside an expression it is left as it is)."""
        raise TypeError("A PrecomputedKernel's matrix cannot be inverted; build the backward matrix and wrap it.")

    def compute_transition_matrix(self, *args: Any, **kwargs: Any) -> PrecomputedKernel:
        """Nothing to compute: the matrix is given."""
        return self

    def _init_kwargs(self) -> dict[str, Any]:
        return {}

    @classmethod
    def from_adata(cls, adata: AnnData, key: str, *, copy: bool = False) -> PrecomputedKernel:
        """A precomputed kernel over ``adata.obsp[key]`` with the parameters stored in ``adata.uns[key]``.

        Parameters
        ----------
        adata
            The annotated data.
        key
            ``obsp`` key of the matrix.
        copy
            Copy the matrix.

        Returns
        -------
        The kernel.
        """
        info = adata.uns.get(key, {})
        backward = info.get("backward", None)
        kernel = cls(key, adata=adata, backward=None if backward in (None, "none") else bool(backward), copy=copy)
        if "params" in info:
            kernel._params = {**_to_python(dict(info["params"])), "origin": f"adata.obsp[{key!r}]"}
        return kernel
