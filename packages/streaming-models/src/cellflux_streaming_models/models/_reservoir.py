"""A bounded uniform sample of a stream of rows: keep the rows with the smallest random keys (bottom-k).

Each row gets an independent uniform key; the ``capacity`` rows with the smallest keys are a uniform
sample without replacement of all rows seen. With keys derived from the cell index (the same key for a
cell in whichever batch, process or order it comes), merging the samples of several processes gives
exactly the sample of one process over all rows.
"""

from __future__ import annotations

import torch

from .._dist import all_gather_objects, world
from ._tokenizers import cell_uniforms

__all__ = ["BottomKReservoir", "cell_keys"]

_INDEX_BITS = 39  # cell indices below 2**39 stay unique inside a key


def cell_keys(cell_index_n: torch.Tensor, *, seed: int, stream: int) -> torch.Tensor:
    """Integer sampling keys of cells: a 24-bit uniform draw keyed by (seed, stream, cell), ties broken by cell.

    Parameters
    ----------
    cell_index_n
        Global cell indices (non-negative, below ``2**39``).
    seed, stream
        The draw (see :func:`~cellflux_streaming_models.models._tokenizers.cell_uniforms`).

    Returns
    -------
    int64 keys, distinct for distinct cells; their order is a uniformly random order of the cells.
    """
    cells = torch.as_tensor(cell_index_n).long().reshape(-1).cpu()
    if len(cells) and (int(cells.min()) < 0 or int(cells.max()) >= 1 << _INDEX_BITS):
        raise ValueError(f"cell_index_n must be in [0, 2**{_INDEX_BITS}).")
    u24 = (cell_uniforms(cells, 1, seed=seed, stream=stream)[:, 0] * float(1 << 24)).long()
    return (u24 << _INDEX_BITS) | cells


class BottomKReservoir:
    """At most ``capacity`` rows (features and a label) sampled uniformly without replacement from a stream.

    Parameters
    ----------
    capacity
        Most rows kept.
    n_features
        Features per row.
    seed
        Seed of the keys drawn for rows without keys (offset by the process's rank).

    Attributes
    ----------
    seen
        Rows offered since the last :meth:`reset` (summed over processes after :meth:`merge`).
    """

    def __init__(self, capacity: int, n_features: int, *, seed: int = 0) -> None:
        if not isinstance(capacity, int) or capacity < 1:
            raise ValueError(f"The reservoir size must be a positive integer, got {capacity!r}.")
        self.capacity = capacity
        self.n_features = int(n_features)
        self.seed = int(seed)
        self.reset()

    def reset(self) -> None:
        """Empty the reservoir and restart the key generator."""
        self.keys = torch.empty(0, dtype=torch.long)
        self.values = torch.empty(0, self.n_features, dtype=torch.float64)
        self.labels = torch.empty(0, dtype=torch.long)
        self.seen = 0
        # rows without keys: a different stream on each process
        self.generator = torch.Generator().manual_seed(self.seed + 1_000_003 * world()[0])

    def __len__(self) -> int:
        return len(self.keys)

    def add(self, values_nk: torch.Tensor, labels_n: torch.Tensor, keys_n: torch.Tensor | None = None) -> None:
        """Offer rows: each ends up in the sample with the same chance as every other row of the stream.

        Parameters
        ----------
        values_nk
            Features (rows x ``n_features``).
        labels_n
            A label per row.
        keys_n
            Sampling keys (e.g. :func:`cell_keys`); by default drawn from the reservoir's seeded generator.
        """
        values = torch.as_tensor(values_nk).detach().to("cpu", torch.float64)
        labels = torch.as_tensor(labels_n).detach().reshape(-1).to("cpu", torch.long)
        n = values.shape[0]
        if values.ndim != 2 or values.shape[1] != self.n_features or labels.shape[0] != n:
            raise ValueError(
                f"Expected rows x {self.n_features} features and one label per row; "
                f"got {tuple(values.shape)} and {tuple(labels.shape)}."
            )
        if keys_n is None:
            keys = torch.randint(0, 1 << 62, (n,), generator=self.generator)
        else:
            keys = torch.as_tensor(keys_n).reshape(-1).to("cpu", torch.long)
            if keys.shape[0] != n:
                raise ValueError(f"{keys.shape[0]} keys for {n} rows.")
        self.seen += n
        if len(self.keys) == self.capacity:  # only rows that beat the current largest key can enter
            keep = keys < self.keys.max()
            keys, values, labels = keys[keep], values[keep], labels[keep]
        self._keep_smallest(
            torch.cat([self.keys, keys]), torch.cat([self.values, values]), torch.cat([self.labels, labels])
        )

    def _keep_smallest(self, keys: torch.Tensor, values: torch.Tensor, labels: torch.Tensor) -> None:
        if len(keys) > self.capacity:
            order = torch.argsort(keys, stable=True)[: self.capacity]
            keys, values, labels = keys[order], values[order], labels[order]
        self.keys, self.values, self.labels = keys, values, labels

    def merge(self) -> None:
        """Join the reservoirs of all processes (every process gets the same uniform sample of the union)."""
        parts = all_gather_objects((self.keys, self.values, self.labels, self.seen))
        if len(parts) == 1:
            return
        keys = torch.cat([p[0] for p in parts])
        order = torch.argsort(keys, stable=True)  # the same order on every process
        self._keep_smallest(
            keys[order], torch.cat([p[1] for p in parts])[order], torch.cat([p[2] for p in parts])[order]
        )
        self.seen = sum(int(p[3]) for p in parts)
