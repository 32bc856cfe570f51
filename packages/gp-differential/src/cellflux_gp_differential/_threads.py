"""Threads over independent pieces of work (the two conditions, chunks of cells), BLAS on one thread in them.

Coarse-grained threads (each running single-threaded BLAS, called without the GIL through :mod:`._blas`)
use the cores without the fine-grained synchronisation of a multithreaded BLAS, whose spinning threads
slow down badly when the machine is shared. Results do not depend on the number of threads: every piece
is computed the same way and combined in a fixed order.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from functools import cache
from typing import TypeVar

import numpy as np

__all__ = ["available_cores", "blas_threads", "resolve_n_jobs", "stage_jobs", "thread_map"]

T = TypeVar("T")
R = TypeVar("R")


def available_cores() -> int:
    """Cores this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def resolve_n_jobs(n_jobs: int | None) -> int:
    """Number of threads: ``None`` all available cores, ``-1`` too (``-2`` all but one, ...), else ``n_jobs``."""
    if n_jobs is None:
        return available_cores()
    if isinstance(n_jobs, bool) or not isinstance(n_jobs, int | np.integer) or n_jobs == 0:
        raise ValueError(f"n_jobs must be None, a positive integer or a negative one (-1: all cores), got {n_jobs!r}.")
    if n_jobs < 0:
        return max(1, available_cores() + 1 + int(n_jobs))
    return int(n_jobs)


@cache
def _blas_libraries() -> list:
    import scipy.linalg.cython_blas  # noqa: F401 - SciPy's BLAS (what :mod:`._blas` calls) must be loaded
    from threadpoolctl import ThreadpoolController

    return [lib for lib in ThreadpoolController().lib_controllers if lib.user_api == "blas"]


def blas_threads() -> int:
    """Threads one BLAS call uses in this process now (the fewest over the BLAS libraries loaded)."""
    return min((int(lib.num_threads) for lib in _blas_libraries()), default=1)


def stage_jobs(n_jobs: int) -> int:
    """Threads for a stage of a few large BLAS calls: ``n_jobs`` when BLAS itself runs on fewer, else 1.

    A multithreaded BLAS splits one large product across the cores better than our threads split the
    products (they share the packed panels of the common operand): measured at 1,000 landmarks x 1,100
    genes, the Mahalanobis stage took 159 ms on 2 BLAS threads and 194 ms on 2 of ours; with BLAS held to
    one thread (``OPENBLAS_NUM_THREADS=1``), ours bring it from 226 to 156 ms.
    """
    return n_jobs if blas_threads() < n_jobs else 1


def thread_map(func: Callable[[T], R], items: Iterable[T], n_jobs: int) -> list[R]:
    """``[func(item) for item in items]``, on up to ``n_jobs`` threads with BLAS held to one thread each.

    With ``n_jobs == 1`` (or one item) everything runs in the calling thread and BLAS is left as configured.
    """
    items = list(items)
    if n_jobs <= 1 or len(items) <= 1:
        return [func(item) for item in items]
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"), ThreadPoolExecutor(min(n_jobs, len(items))) as pool:
        return list(pool.map(func, items))
