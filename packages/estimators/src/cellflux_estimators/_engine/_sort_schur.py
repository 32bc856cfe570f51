"""Reordering a real Schur form so that the dominant eigenvalues come first, in descending order."""

from __future__ import annotations

from typing import Literal

import numpy as np
from scipy.linalg import lapack

__all__ = ["block_starts", "schur_eigenvalues", "sort_schur", "sort_key"]

Which = Literal["LR", "LM"]


def sort_key(values: np.ndarray, which: Which) -> np.ndarray:
    """The quantity eigenvalues are sorted by (descending): real part (``"LR"``) or modulus (``"LM"``)."""
    if which == "LR":
        return np.real(values)
    if which == "LM":
        return np.abs(values)
    raise ValueError(f"which={which!r} is not supported; use 'LR' (largest real part) or 'LM' (largest magnitude).")


def block_starts(t: np.ndarray, tol: float = 0.0) -> list[tuple[int, int]]:
    """``(start, size)`` of the 1x1 and 2x2 diagonal blocks of a quasi-upper-triangular matrix."""
    n = t.shape[0]
    blocks, i = [], 0
    while i < n:
        size = 2 if i + 1 < n and abs(t[i + 1, i]) > tol else 1
        blocks.append((i, size))
        i += size
    return blocks


def _block_eigenvalues(t: np.ndarray, start: int, size: int) -> np.ndarray:
    if size == 1:
        return np.array([complex(t[start, start])])
    vals = np.linalg.eigvals(t[start : start + 2, start : start + 2]).astype(complex)
    return vals[np.argsort(-vals.imag)]  # the eigenvalue with positive imaginary part first


def schur_eigenvalues(t: np.ndarray) -> np.ndarray:
    """Eigenvalues of a real Schur form, in the order of its diagonal blocks."""
    return np.concatenate([_block_eigenvalues(t, s, k) for s, k in block_starts(t)]) if len(t) else np.zeros(0, complex)


def sort_schur(t: np.ndarray, z: np.ndarray, k: int, which: Which = "LR") -> tuple[np.ndarray, np.ndarray]:
    """Move the ``k`` dominant eigenvalues of the real Schur form ``t`` to the top, in descending order.

    Uses LAPACK's ``dtrexc`` (orthogonal swaps of adjacent diagonal blocks), so ``z @ t @ z.T`` is preserved.

    Parameters
    ----------
    t
        Real Schur form (quasi-upper-triangular), shape ``(m, m)``.
    z
        Schur vectors, shape ``(n, m)``; they are rotated along.
    k
        How many leading positions to sort; a complex pair straddling position ``k`` is kept whole.
    which
        ``"LR"`` (largest real part) or ``"LM"`` (largest magnitude).

    Returns
    -------
    The reordered ``t`` and ``z``.
    """
    t = np.array(t, dtype=np.float64, order="F")
    m = t.shape[0]
    q = np.eye(m, order="F")
    # The eigenvalues of the diagonal blocks do not change when blocks are swapped, so the target order is one
    # stable sort of the blocks' keys; the moves then only track where each block currently starts (O(m) work in
    # Python per move instead of re-reading every block's eigenvalues after each swap).
    blocks = block_starts(t)
    sizes = [size for _, size in blocks]
    keys = np.array([sort_key(_block_eigenvalues(t, s, size), which).max() for s, size in blocks])
    order = np.argsort(-keys, kind="stable")
    current = list(range(len(blocks)))
    pos, i = 0, 0
    while pos < min(k, m):
        b = int(order[i])
        idx = current.index(b)
        start = pos + sum(sizes[c] for c in current[i:idx])
        if start != pos:
            t, q, info = lapack.dtrexc(t, q, start + 1, pos + 1)
            if info != 0:
                raise np.linalg.LinAlgError(
                    f"Reordering the Schur form failed (LAPACK dtrexc info={info}): eigenvalues too close to swap."
                )
            current.insert(i, current.pop(idx))
        size = 2 if pos + 1 < m and t[pos + 1, pos] != 0 else 1
        if size != sizes[b]:  # a 2x2 block split (or merged) in the swap: finish block by block
            return _sort_schur_rescan(t, q, z, pos, k, which)
        pos += size
        i += 1
    t = np.triu(t, -1)
    return t, np.asarray(z) @ q


def _sort_schur_rescan(
    t: np.ndarray, q: np.ndarray, z: np.ndarray, pos: int, k: int, which: Which
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`sort_schur` from position ``pos`` on, re-reading the blocks after every swap."""
    m = t.shape[0]
    while pos < min(k, m):
        blocks = [(s, size) for s, size in block_starts(t) if s >= pos]
        keys = [sort_key(_block_eigenvalues(t, s, size), which).max() for s, size in blocks]
        best = int(np.argmax(keys))
        start, size = blocks[best]
        if start != pos:
            t, q, info = lapack.dtrexc(t, q, start + 1, pos + 1)
            if info != 0:
                raise np.linalg.LinAlgError(
                    f"Reordering the Schur form failed (LAPACK dtrexc info={info}): eigenvalues too close to swap."
                )
        # the block may have changed size (a 2x2 block can split); re-read it at `pos`
        size = 2 if pos + 1 < m and t[pos + 1, pos] != 0 else 1
        pos += size
    t = np.triu(t, -1)
    return t, np.asarray(z) @ q
