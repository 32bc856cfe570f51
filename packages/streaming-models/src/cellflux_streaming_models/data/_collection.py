"""A lazy collection of h5ad shards: cell counts read from the files, genes checked, obs columns per batch."""

from __future__ import annotations

import glob
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import sparse

from ._h5 import ShardFile, ShardReadError

__all__ = ["ShardCollection", "resolve_paths"]

logger = logging.getLogger(__name__)


def resolve_paths(paths: str | os.PathLike[str] | Sequence[str | os.PathLike[str]]) -> list[Path]:
    """Expand a glob, a single path or a list of paths/globs into a sorted list of existing files."""
    items = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    resolved: list[Path] = []
    for item in items:
        text = os.fspath(item)
        if glob.has_magic(text):
            matches = sorted(glob.glob(text))
            if not matches:
                raise FileNotFoundError(f"The pattern {text!r} matches no shard.")
            resolved.extend(Path(m) for m in matches)
        else:
            if not Path(text).is_file():
                raise FileNotFoundError(f"Shard {text!r} does not exist.")
            resolved.append(Path(text))
    if not resolved:
        raise ValueError("No shards given; pass paths or a glob such as 'shards/*.h5ad'.")
    return resolved


class ShardCollection:
    """Many h5ad shards read as one dataset, without loading them.

    Parameters
    ----------
    paths
        Shard files, or globs (``"shards/*.h5ad"``); globs are sorted.
    var_names
        The gene schema. By default the first shard's genes; every shard must have exactly these
        genes in this order (the error names the shard and its first mismatch).
    genes
        Optional subset of genes (names from the schema) applied while reading.
    obs_columns
        Batch key to ``obs`` column, e.g. ``{"batch_index_n": "sample", "y_n": "clusters"}``.
        Categorical and string columns are delivered as integer codes into the categories listed in
        :attr:`categories` (the union over shards, sorted, unless given in ``categories``).
    categories
        ``obs`` column to its categories in code order, to fix the coding.
    layer
        Stream ``layers[layer]`` instead of ``X``.

    Attributes
    ----------
    n_obs_per_shard
        Cells per shard, read from the files.
    offsets
        Global index of each shard's first cell (length ``n_shards + 1``).
    """

    def __init__(
        self,
        paths: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
        *,
        var_names: Sequence[str] | None = None,
        genes: Sequence[str] | None = None,
        obs_columns: Mapping[str, str] | None = None,
        categories: Mapping[str, Sequence[str]] | None = None,
        layer: str | None = None,
    ) -> None:
        self.paths = resolve_paths(paths)
        self.layer = layer
        self.shards = [ShardFile(p, layer=layer) for p in self.paths]
        counts = []
        schema = None if var_names is None else np.asarray(var_names, dtype=object)
        for shard in self.shards:
            n_obs, n_vars = shard.shape
            if n_obs == 0:
                raise ShardReadError(f"Shard {str(shard.path)!r} has no cells; remove it from the collection.")
            names = shard.var_names
            if len(names) != n_vars:
                raise ShardReadError(f"Shard {str(shard.path)!r}: X has {n_vars} genes but var has {len(names)}.")
            if schema is None:
                schema = names
            elif len(names) != len(schema) or not np.array_equal(names, schema):
                raise ValueError(_mismatch_message(shard.path, names, schema))
            counts.append(n_obs)
            shard.close()
        assert schema is not None
        self.var_names_schema = schema
        self.n_obs_per_shard = np.asarray(counts, dtype=np.int64)
        self.offsets = np.concatenate([[0], np.cumsum(self.n_obs_per_shard)])
        self.gene_index: np.ndarray | None = None
        if genes is not None:
            position = pd.Index(schema).get_indexer(np.asarray(genes, dtype=object))
            if (position < 0).any():
                missing = np.asarray(genes, dtype=object)[position < 0]
                raise KeyError(f"genes not in the shards' var_names: {list(missing[:5])}")
            self.gene_index = position
        self.obs_columns = dict(obs_columns or {})
        self.categories: dict[str, np.ndarray] = {}
        self._fixed_categories = {k: np.asarray(v, dtype=object) for k, v in (categories or {}).items()}
        if self.obs_columns:
            self._collect_categories()

    # -- shape -------------------------------------------------------------------------------------
    @property
    def n_obs(self) -> int:
        """Total number of cells."""
        return int(self.offsets[-1])

    @property
    def n_shards(self) -> int:
        """Number of shards."""
        return len(self.shards)

    @property
    def var_names(self) -> np.ndarray:
        """Gene names delivered in each batch (after the gene subset)."""
        if self.gene_index is None:
            return self.var_names_schema
        return self.var_names_schema[self.gene_index]

    @property
    def n_vars(self) -> int:
        """Number of genes delivered."""
        return len(self.var_names)

    def __repr__(self) -> str:
        return f"ShardCollection({self.n_shards} shards, {self.n_obs} cells x {self.n_vars} genes)"

    # -- obs ---------------------------------------------------------------------------------------
    def _collect_categories(self) -> None:
        found: dict[str, set[str]] = {}
        for shard in self.shards:
            for column in self.obs_columns.values():
                values = shard.obs_column(column)
                if isinstance(values, pd.Categorical):
                    found.setdefault(column, set()).update(map(str, values.categories))
                elif np.asarray(values).dtype == object:
                    found.setdefault(column, set()).update(map(str, pd.unique(np.asarray(values))))
            shard.close()
        for column, values in found.items():
            if column in self._fixed_categories:
                fixed = self._fixed_categories[column]
                unknown = sorted(values - set(map(str, fixed)))
                if unknown:
                    raise ValueError(
                        f"obs column {column!r} has categories {unknown[:5]} not in categories[{column!r}]."
                    )
                self.categories[column] = fixed
            else:
                self.categories[column] = np.asarray(sorted(values), dtype=object)

    def obs_values(self, shard_index: int, column: str) -> np.ndarray:
        """A column for every cell of one shard: codes for categorical/string columns, else the values."""
        values = self.shards[shard_index].obs_column(column)
        if column in self.categories:
            strings = np.asarray(values.astype(str) if isinstance(values, pd.Categorical) else values, dtype=object)
            return pd.Index(self.categories[column]).get_indexer(strings).astype(np.int64)
        return np.asarray(values)

    # -- X -----------------------------------------------------------------------------------------
    def read_block(self, shard_index: int, start: int, stop: int) -> sparse.csr_matrix | np.ndarray:
        """Rows ``start:stop`` of one shard (contiguous read), with the gene subset applied."""
        block = self.shards[shard_index].read_rows(start, stop)
        if self.gene_index is not None:
            block = block[:, self.gene_index]
            if sparse.issparse(block):
                block = block.tocsr()
        return block

    def close(self) -> None:
        """Close every open shard."""
        for shard in self.shards:
            shard.close()


def _mismatch_message(path: Path, names: np.ndarray, schema: np.ndarray) -> str:
    head = f"has {len(names)} genes, the schema {len(schema)}" if len(names) != len(schema) else ""
    common = min(len(names), len(schema))
    diff = np.flatnonzero(names[:common] != schema[:common])
    if len(diff):
        i = int(diff[0])
        first = f"first mismatch at position {i}: {names[i]!r} where the schema has {schema[i]!r}"
    else:
        first = f"the first {common} genes agree"
    return (
        f"Shard {str(path)!r} does not match the gene schema ({', '.join(filter(None, [head, first]))}). "
        "Give every shard the same var_names in the same order, or pass var_names= to choose the schema."
    )
