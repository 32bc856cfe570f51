"""Column maxima ``max_i (y @ b)[i, :]`` over many points, for GPCCA's objective.

The crispness objective needs, at every Nelder–Mead step, the largest value of ``m`` linear functions over
all ``n`` rows of the Schur vectors. The rows are stored transposed (``(d, n)``, contiguous), so the product
``b.T @ y.T`` is one level-3 BLAS call and the maxima run along contiguous memory; above :data:`CHUNK` rows
the product is taken in cache-sized chunks so no ``(m, n)`` temporary is formed.

Pruning with bounding boxes (k-d tree leaves) was tried and dropped: memberships of cells that do not belong to
a macrostate all sit at the bound ``chi = 0``, so a large share of the rows ties with the maximum and no
bound can discard them.
"""

from __future__ import annotations

import numpy as np

__all__ = ["CHUNK", "ColumnMax"]

#: Rows per chunk of the product.
CHUNK = 65_536


class ColumnMax:
    """``(y @ b).max(axis=0)`` for a fixed ``y`` of shape ``(n, d)`` and many ``b`` of shape ``(d, m)``.

    Parameters
    ----------
    y
        The points (rows).
    """

    def __init__(self, y: np.ndarray) -> None:
        self.yt = np.ascontiguousarray(np.asarray(y, dtype=np.float64).T)
        self.n = self.yt.shape[1]

    def __call__(self, b: np.ndarray) -> np.ndarray:
        """Return ``(y @ b).max(axis=0)``."""
        bt = np.ascontiguousarray(b.T)
        if self.n <= CHUNK:
            return (bt @ self.yt).max(axis=1)
        out = np.full(bt.shape[0], -np.inf)
        for start in range(0, self.n, CHUNK):
            np.maximum(out, (bt @ self.yt[:, start : start + CHUNK]).max(axis=1), out=out)
        return out
