"""Per-gene t-digests in flat numpy arrays, vectorised over genes.

A digest of one gene is a sorted list of centroids ``(mean, weight, min, max)``; the digests of all
genes live in flat arrays sorted by (gene, mean). New values are buffered as sorted, de-duplicated
``(gene, value, count)`` runs (one radix sort of 64-bit keys: the gene in the high word, the float32
value's order-preserving bits in the low word) and merged with the centroids when the buffer is full.

Merging (Dunning's merging digest with the ``k1`` scale ``k(q) = delta / (2 pi) asin(2q - 1)``):
items that repeat one value are combined first (so the counts of discrete data stay exact), then
consecutive items whose whole span ``[q_left, q_right]`` lies in one unit of ``k`` are combined; an
item straddling a unit boundary stays alone. Every combined centroid therefore spans at most one unit
of ``k`` (at most ``pi / delta`` of the mass, at the median), and there are at most about ``delta``
centroids per gene.

Quantiles interpolate linearly between the centroids' means placed at the middle of their cumulative
weight (and each gene's minimum and maximum at its ends), except that a centroid of one repeated
value is a point mass, a flat step over its whole weight: discrete data (counts) get exact quantiles
while their distinct values fit in the digest.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["GeneDigests", "float_keys", "keys_to_values"]

_SIGN = np.uint32(0x80000000)


def float_keys(values: np.ndarray) -> np.ndarray:
    """Order-preserving unsigned 32-bit keys of float32 values (negative values included)."""
    bits = np.ascontiguousarray(values, dtype=np.float32).view(np.uint32)
    return np.where(bits & _SIGN, ~bits, bits | _SIGN)


def keys_to_values(keys: np.ndarray) -> np.ndarray:
    """The float32 values of :func:`float_keys` keys."""
    keys = keys.astype(np.uint32)
    return np.where(keys & _SIGN, keys & ~_SIGN, ~keys).view(np.float32)


@dataclass
class GeneDigests:
    """T-digests of ``n_vars`` genes.

    Attributes
    ----------
    n_vars
        Number of genes.
    compression
        ``delta``: larger is more accurate (and larger).
    gene, mean, weight, vmin, vmax
        The centroids, sorted by gene and mean.
    """

    n_vars: int
    compression: float = 200.0
    buffer_size: int = 1_000_000
    gene: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    mean: np.ndarray = field(default_factory=lambda: np.zeros(0))
    weight: np.ndarray = field(default_factory=lambda: np.zeros(0))
    vmin: np.ndarray = field(default_factory=lambda: np.zeros(0))
    vmax: np.ndarray = field(default_factory=lambda: np.zeros(0))
    _buffer: list[tuple[np.ndarray, np.ndarray]] = field(default_factory=list, repr=False)
    _buffered: int = field(default=0, repr=False)

    # adding values -------------------------------------------------------------------------------
    def add_dense(self, x_ng: np.ndarray) -> None:
        """Add the nonzero values of each column (gene) of a dense cells x genes matrix."""
        if x_ng.shape[1] != self.n_vars:
            raise ValueError(f"x_ng has {x_ng.shape[1]} columns, the digests {self.n_vars} genes.")
        xt = np.ascontiguousarray(np.asarray(x_ng, dtype=np.float32).T)
        mask = xt != 0
        values = xt[mask]
        genes = np.repeat(np.arange(self.n_vars, dtype=np.uint64), mask.sum(axis=1))
        self._add_keys((genes << np.uint64(32)) | float_keys(values).astype(np.uint64))

    def add_values(self, genes: np.ndarray, values: np.ndarray) -> None:
        """Add values with their gene indices (any order)."""
        genes = np.asarray(genes, dtype=np.uint64)
        self._add_keys((genes << np.uint64(32)) | float_keys(values).astype(np.uint64))

    def _add_keys(self, keys: np.ndarray) -> None:
        if len(keys) == 0:
            return
        keys = np.sort(keys, kind="stable")  # radix sort
        new = np.ones(len(keys), dtype=bool)
        new[1:] = keys[1:] != keys[:-1]
        starts = np.flatnonzero(new)
        counts = np.diff(np.append(starts, len(keys))).astype(np.float64)
        self._buffer.append((keys[starts], counts))
        self._buffered += len(starts)
        if self._buffered >= self.buffer_size:
            self.flush()

    # merging -------------------------------------------------------------------------------------
    def flush(self) -> None:
        """Merge the buffered values into the centroids."""
        if not self._buffer:
            return
        keys = np.concatenate([k for k, _ in self._buffer])
        counts = np.concatenate([c for _, c in self._buffer])
        self._buffer, self._buffered = [], 0
        genes = (keys >> np.uint64(32)).astype(np.int64)
        values = keys_to_values(keys & np.uint64(0xFFFFFFFF)).astype(np.float64)
        self._merge(genes, values, counts, values, values)

    def merge(self, other: GeneDigests) -> None:
        """Merge another digest of the same genes into this one."""
        if other.n_vars != self.n_vars:
            raise ValueError(f"Cannot merge digests of {other.n_vars} and {self.n_vars} genes.")
        self.flush()
        other.flush()
        self._merge(other.gene, other.mean, other.weight, other.vmin, other.vmax)

    def _merge(
        self, gene: np.ndarray, mean: np.ndarray, weight: np.ndarray, vmin: np.ndarray, vmax: np.ndarray
    ) -> None:
        """Merge items (sorted by gene and mean) with the centroids and compress."""
        gene = np.concatenate([self.gene, gene])
        mean = np.concatenate([self.mean, mean])
        weight = np.concatenate([self.weight, weight])
        vmin = np.concatenate([self.vmin, vmin])
        vmax = np.concatenate([self.vmax, vmax])
        keys = (gene.astype(np.uint64) << np.uint64(32)) | float_keys(mean).astype(np.uint64)
        order = np.argsort(keys, kind="stable")  # radix sort; ties at float32 precision keep their order
        gene, mean, weight, vmin, vmax = gene[order], mean[order], weight[order], vmin[order], vmax[order]
        # 1. one repeated value: combine exactly (runs of equal point masses)
        pure = vmin == vmax
        start = np.ones(len(gene), dtype=bool)
        start[1:] = (gene[1:] != gene[:-1]) | ~pure[1:] | ~pure[:-1] | (mean[1:] != mean[:-1])
        gene, mean, weight, vmin, vmax = self._combine(start, gene, mean, weight, vmin, vmax)
        # 2. k1 scale: combine consecutive items whose span lies within one unit
        totals = np.bincount(gene, weights=weight, minlength=self.n_vars)
        before_gene = np.concatenate([[0.0], np.cumsum(totals)[:-1]])
        cum = np.cumsum(weight)
        right = (cum - before_gene[gene]) / totals[gene]
        left = np.clip(right - weight / totals[gene], 0.0, 1.0)
        right = np.clip(right, 0.0, 1.0)
        scale = self.compression / (2 * np.pi)
        k_left = np.floor(scale * np.arcsin(2 * left - 1) + 1e-9)
        k_right = np.ceil(scale * np.arcsin(2 * right - 1) - 1e-9)
        alone = k_right - k_left > 1
        start = np.ones(len(gene), dtype=bool)
        start[1:] = (gene[1:] != gene[:-1]) | alone[1:] | alone[:-1] | (k_left[1:] != k_left[:-1])
        self.gene, self.mean, self.weight, self.vmin, self.vmax = self._combine(start, gene, mean, weight, vmin, vmax)

    @staticmethod
    def _combine(start: np.ndarray, gene, mean, weight, vmin, vmax) -> tuple[np.ndarray, ...]:
        starts = np.flatnonzero(start)
        if len(starts) == len(gene):
            return gene, mean, weight, vmin, vmax
        w = np.add.reduceat(weight, starts)
        m = np.add.reduceat(weight * mean, starts) / w
        lo = np.minimum.reduceat(vmin, starts)
        hi = np.maximum.reduceat(vmax, starts)
        return gene[starts], np.clip(m, lo, hi), w, lo, hi

    # results -------------------------------------------------------------------------------------
    @property
    def count_g(self) -> np.ndarray:
        """Number of values per gene."""
        self.flush()
        return np.bincount(self.gene, weights=self.weight, minlength=self.n_vars)

    def _knots(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """The piecewise-linear quantile function: knot genes, cumulative weights, values; totals per gene."""
        totals = np.bincount(self.gene, weights=self.weight, minlength=self.n_vars)
        before_gene = np.concatenate([[0.0], np.cumsum(totals)[:-1]])
        end = np.cumsum(self.weight) - before_gene[self.gene]
        begin = end - self.weight
        pure = self.vmin == self.vmax
        # a point mass is a flat step from its start to its end; any other centroid a knot at its middle
        at_a = np.where(pure, begin, begin + self.weight / 2)
        at_b = np.where(pure, end, begin + self.weight / 2)
        first = np.ones(len(self.gene), dtype=bool)
        first[1:] = self.gene[1:] != self.gene[:-1]
        last = np.ones(len(self.gene), dtype=bool)
        last[:-1] = self.gene[1:] != self.gene[:-1]
        # per centroid: [gene start (min, 0)], a, b, [gene end (max, total)]
        n = len(self.gene)
        genes = np.repeat(self.gene, 4)
        cum = np.stack([np.zeros(n), at_a, at_b, totals[self.gene]], axis=1).ravel()
        values = np.stack([self.vmin, self.mean, self.mean, self.vmax], axis=1).ravel()
        keep = np.stack([first, np.ones(n, bool), np.ones(n, bool), last], axis=1).ravel()
        return genes[keep], cum[keep], values[keep], totals

    def quantile(self, q: float | np.ndarray) -> np.ndarray:
        """Quantiles per gene: ``(n_vars,)`` for a scalar ``q``, else ``(n_vars, len(q))``; NaN without values."""
        qs = np.atleast_1d(np.asarray(q, dtype=np.float64))
        if qs.ndim != 1 or np.any(np.isnan(qs)) or np.any((qs < 0) | (qs > 1)):
            raise ValueError(f"Quantiles must lie in [0, 1], got {q!r}.")
        self.flush()
        out = np.full((self.n_vars, len(qs)), np.nan)
        genes, cum, values, totals = self._knots()
        has = np.flatnonzero(totals > 0)
        if len(has):
            # knots of gene j occupy [first_j, last_j]; a global position gene + fraction keeps them sorted
            position = genes + cum / totals[genes] * 0.5
            first = np.searchsorted(genes, has, side="left")
            last = np.searchsorted(genes, has, side="right") - 1
            for j, qj in enumerate(qs):
                i = np.clip(np.searchsorted(position, has + qj * 0.5, side="left"), first + 1, last)
                c0, c1 = cum[i - 1], cum[i]
                target = qj * totals[has]
                frac = np.where(c1 > c0, np.clip((target - c0) / np.where(c1 > c0, c1 - c0, 1), 0, 1), 1.0)
                out[has, j] = values[i - 1] + frac * (values[i] - values[i - 1])
        return out[:, 0] if np.ndim(q) == 0 else out

    # state ---------------------------------------------------------------------------------------
    def state(self) -> dict[str, np.ndarray]:
        """The centroids as a dict of arrays (after flushing)."""
        self.flush()
        return {"gene": self.gene, "mean": self.mean, "weight": self.weight, "vmin": self.vmin, "vmax": self.vmax}

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        """Replace the centroids by a :meth:`state`."""
        self._buffer, self._buffered = [], 0
        self.gene = np.asarray(state["gene"], dtype=np.int64)
        self.mean, self.weight, self.vmin, self.vmax = (
            np.asarray(state[key], dtype=np.float64) for key in ("mean", "weight", "vmin", "vmax")
        )

    @classmethod
    def from_state(cls, n_vars: int, compression: float, state: dict[str, np.ndarray]) -> GeneDigests:
        """A digest with the given centroids."""
        digests = cls(n_vars, compression)
        digests.load_state(state)
        return digests
