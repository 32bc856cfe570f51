"""Reading one h5ad shard with h5py: its shape, names, obs columns and contiguous row blocks of X."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pandas as pd
from scipy import sparse

__all__ = ["ShardFile", "ShardReadError"]


class ShardReadError(OSError):
    """A shard cannot be opened or read; the message names the file."""


def _decode(values: np.ndarray) -> np.ndarray:
    if values.dtype.kind in "SO":
        return np.array([v.decode() if isinstance(v, bytes) else str(v) for v in values], dtype=object)
    return values.astype(object)


class ShardFile:
    """One h5ad shard, opened lazily and read without AnnData.

    Parameters
    ----------
    path
        The h5ad file.
    layer
        Read ``layers[layer]`` instead of ``X``.
    """

    def __init__(self, path: str | os.PathLike[str], *, layer: str | None = None) -> None:
        self.path = Path(path)
        self.layer = layer
        self._file: h5py.File | None = None
        self._pid: int | None = None

    # -- opening -----------------------------------------------------------------------------------
    @property
    def file(self) -> h5py.File:
        """The open h5py file (reopened in a new process, e.g. a DataLoader worker)."""
        if self._file is None or self._pid != os.getpid():
            try:
                self._file = h5py.File(self.path, "r")
            except (OSError, ValueError) as error:
                raise ShardReadError(f"Cannot open shard {str(self.path)!r} as h5ad: {error}") from error
            self._pid = os.getpid()
        return self._file

    def close(self) -> None:
        """Close the file handle."""
        if self._file is not None and self._pid == os.getpid():
            self._file.close()
        self._file = None

    def __getstate__(self) -> dict[str, Any]:
        return {"path": self.path, "layer": self.layer, "_file": None, "_pid": None}

    @property
    def _x(self) -> h5py.Group | h5py.Dataset:
        f = self.file
        if self.layer is None:
            if "X" not in f:
                raise ShardReadError(f"Shard {str(self.path)!r} has no X.")
            return f["X"]
        if "layers" not in f or self.layer not in f["layers"]:
            raise ShardReadError(f"Shard {str(self.path)!r} has no layer {self.layer!r}.")
        return f["layers"][self.layer]

    # -- metadata ----------------------------------------------------------------------------------
    @property
    def encoding(self) -> str:
        """``"csr_matrix"`` or ``"array"``."""
        x = self._x
        if isinstance(x, h5py.Dataset):
            return "array"
        encoding = x.attrs.get("encoding-type", "")
        if encoding != "csr_matrix":
            raise ShardReadError(
                f"Shard {str(self.path)!r}: X is stored as {encoding or 'an unknown group'}; only CSR sparse "
                "or dense X can be streamed by rows. Rewrite it with `adata.X = adata.X.tocsr()`."
            )
        return encoding

    @property
    def shape(self) -> tuple[int, int]:
        """(cells, genes), read from the file."""
        x = self._x
        shape = x.shape if isinstance(x, h5py.Dataset) else tuple(int(s) for s in x.attrs["shape"])
        self.encoding  # noqa: B018 - validates the encoding
        return int(shape[0]), int(shape[1])

    def _index(self, group: str) -> np.ndarray:
        g = self.file[group]
        name = g.attrs.get("_index", "_index")
        return _decode(g[name][...])

    @property
    def var_names(self) -> np.ndarray:
        """The shard's gene names."""
        return self._index("var")

    def obs_names(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Cell names of rows ``start:stop``."""
        g = self.file["obs"]
        return _decode(g[g.attrs.get("_index", "_index")][start:stop])

    def obs_column(self, column: str) -> pd.Categorical | np.ndarray:
        """One ``obs`` column for all of the shard's cells (categoricals as :class:`pandas.Categorical`)."""
        g = self.file["obs"]
        if column not in g:
            columns = [c for c in g if c != g.attrs.get("_index", "_index")]
            raise KeyError(f"Shard {str(self.path)!r} has no obs column {column!r}; it has {columns}.")
        item = g[column]
        if isinstance(item, h5py.Group) and "codes" in item:
            codes = item["codes"][...]
            categories = _decode(item["categories"][...])
            return pd.Categorical.from_codes(codes, categories=categories)
        if isinstance(item, h5py.Group) and "values" in item and "mask" in item:
            # anndata's nullable encodings (Int64, boolean, nullable strings): values plus a missing mask
            missing = int(np.count_nonzero(item["mask"][...]))
            if missing:
                raise ValueError(
                    f"obs column {column!r} of shard {str(self.path)!r} has {missing} missing value(s); fill them "
                    "(or drop those cells) before streaming."
                )
            item = item["values"]
        if not isinstance(item, h5py.Dataset):
            encoding = item.attrs.get("encoding-type", "unknown")
            raise ValueError(
                f"obs column {column!r} of shard {str(self.path)!r} has the encoding {encoding!r}, which is not read "
                "here; store it as numbers, strings or a categorical."
            )
        values = item[...]
        return _decode(values) if values.dtype.kind in "SO" else values

    # -- reading rows ------------------------------------------------------------------------------
    def read_rows(self, start: int, stop: int) -> sparse.csr_matrix | np.ndarray:
        """Rows ``start:stop`` of X in one contiguous read: a CSR matrix, or an array for dense X."""
        x = self._x
        try:
            if isinstance(x, h5py.Dataset):
                return np.asarray(x[start:stop])
            indptr = x["indptr"][start : stop + 1].astype(np.int64)
            lo, hi = int(indptr[0]), int(indptr[-1])
            data = x["data"][lo:hi]
            indices = x["indices"][lo:hi]
        except (OSError, KeyError) as error:
            raise ShardReadError(f"Cannot read rows {start}:{stop} of shard {str(self.path)!r}: {error}") from error
        indptr -= lo
        n_genes = int(x.attrs["shape"][1])
        return sparse.csr_matrix((data, indices, indptr), shape=(stop - start, n_genes))
