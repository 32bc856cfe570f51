"""Limiting BLAS to one thread around iterative kernels (ARPACK, GMRES, Nelder–Mead).

Their dense work is on tall, skinny blocks (level-1/2 BLAS) where extra threads barely help, and on a
shared or loaded machine multithreaded OpenBLAS spins and slows them down several-fold.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from functools import lru_cache

__all__ = ["single_blas_thread"]


@lru_cache(maxsize=1)
def _controller():
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


@contextlib.contextmanager
def single_blas_thread() -> Iterator[None]:
    """Run the block with one BLAS/OpenMP thread."""
    with _controller().limit(limits=1):
        yield
