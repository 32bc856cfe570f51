"""Row batching with fixed, padded batch shapes, so that jitted functions compile once per shape."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
from tqdm.auto import tqdm

__all__ = ["DEFAULT_BATCH", "iter_batches", "map_batches"]

#: Rows per prediction batch when the caller gives none.
DEFAULT_BATCH = 2048


def iter_batches(n: int, batch_size: int) -> Iterator[tuple[int, int]]:
    """``(start, stop)`` of consecutive batches of ``batch_size`` rows."""
    for start in range(0, n, batch_size):
        yield start, min(start + batch_size, n)


def map_batches(
    func: Callable[[np.ndarray], tuple[np.ndarray, ...]],
    x: np.ndarray,
    *,
    batch_size: int | None,
    progress: bool = False,
    desc: str | None = None,
) -> tuple[np.ndarray, ...]:
    """Apply ``func`` to padded row batches of ``x`` and concatenate its outputs (leading axis = rows).

    Every batch has exactly ``batch_size`` rows (the last one zero-padded and trimmed after), so a
    jitted ``func`` is compiled once. With fewer rows than ``batch_size`` the batch is shrunk to the
    next multiple of 256.
    """
    n = x.shape[0]
    size = int(batch_size or DEFAULT_BATCH)
    size = min(size, max(256, -(-n // 256) * 256))
    outputs: list[list[np.ndarray]] = []
    n_batches = -(-n // size)
    for start, stop in tqdm(iter_batches(n, size), total=n_batches, disable=not progress or n_batches < 2, desc=desc):
        xb = x[start:stop]
        if xb.shape[0] < size:
            pad = np.zeros((size - xb.shape[0], *xb.shape[1:]), dtype=xb.dtype)
            xb = np.concatenate([xb, pad])
        result = func(xb)
        if not isinstance(result, tuple):
            result = (result,)
        if not outputs:
            outputs = [[] for _ in result]
        for store, value in zip(outputs, result, strict=True):
            store.append(np.asarray(value)[: stop - start])
    return tuple(np.concatenate(store) for store in outputs)
