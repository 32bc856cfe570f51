"""Threads over independent pieces of work (the two conditions, chunks of cells), BLAS on one thread in them.

Coarse-grained threads (each running single-threaded BLAS, which releases the GIL) use the cores without
the fine-grained synchronisation of a multithreaded BLAS, whose spinning threads slow down badly when
the machine is shared. Results do not depend on the number of threads: every piece is computed the same
way and combined in a fixed order.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import numpy as np

__all__ = ["available_cores", "resolve_n_jobs", "thread_map"]

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
