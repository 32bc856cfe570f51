"""JAX set-up shared by the engine: float64 precision, the Matérn-5/2 kernel, padding helpers.

Importing this module switches JAX to 64-bit precision on the CPU, the configuration importing
:mod:`mellon` sets (``mellon.setup_jax``); the engine relies on it (Cholesky factorisations of kernel
matrices with a ``1e-6`` jitter need it). mellon itself is not imported: the engine does not use it, and
its import (scikit-learn included) was a third of a fresh process's differential-expression time.
Only engine modules import this one, never the package ``__init__`` or the manifest.
"""

from __future__ import annotations

import math
from functools import partial

import jax

# what ``import mellon`` does (mellon.setup_jax): 64-bit precision on the CPU
jax.config.update("jax_enable_x64", True)
jax.config.update("jax_platform_name", "cpu")

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from jax.scipy.linalg import solve_triangular  # noqa: E402

__all__ = [
    "DEFAULT_JITTER",
    "aligned_empty",
    "as_f64",
    "on_device",
    "bucket",
    "cholesky_jitter",
    "jnp",
    "jax",
    "matern52",
    "pad_rows",
    "solve_triangular",
]

#: Jitter on the diagonal of landmark kernel matrices (mellon's default).
DEFAULT_JITTER = 1e-6
_SQRT5 = math.sqrt(5.0)


def as_f64(x: np.ndarray) -> np.ndarray:
    """``x`` as a C-contiguous float64 numpy array."""
    return np.ascontiguousarray(np.asarray(x, dtype=np.float64))


@jax.jit
def matern52(x: jax.Array, y: jax.Array, ls: jax.Array) -> jax.Array:
    """Matérn-5/2 covariance between the rows of ``x`` and ``y`` (unit variance).

    Same definition as :class:`mellon.cov.Matern52`: ``(1 + r + r^2/3) exp(-r)`` with
    ``r = sqrt(5) |x - y| / ls`` and ``|x - y|`` computed as ``sqrt(max(xx - 2xy + yy + 1e-12, 0))``.
    """
    xx = jnp.sum(x * x, axis=1)[:, None]
    yy = jnp.sum(y * y, axis=1)[None, :]
    sq = xx - 2.0 * (x @ y.T) + yy + 1e-12
    r = _SQRT5 * jnp.sqrt(jnp.maximum(sq, 0.0)) / ls
    return (1.0 + r + r * r / 3.0) * jnp.exp(-r)


@partial(jax.jit, static_argnames=())
def cholesky_jitter(K: jax.Array, jitter: jax.Array) -> jax.Array:
    """Lower Cholesky factor of ``K + jitter * I``."""
    return jnp.linalg.cholesky(K + jitter * jnp.eye(K.shape[0], dtype=K.dtype))


#: Alignment (bytes) at which JAX's CPU client uses a C-contiguous numpy buffer without copying it.
_ALIGN = 64


def aligned_empty(shape: tuple[int, ...]) -> np.ndarray:
    """An uninitialised C-contiguous float64 array whose data start on a 64-byte boundary.

    :func:`on_device` hands such an array to JAX without copying it.
    """
    n_bytes = int(np.prod(shape)) * 8
    raw = np.empty(n_bytes + _ALIGN, dtype=np.uint8)
    start = -raw.ctypes.data % _ALIGN
    return raw[start : start + n_bytes].view(np.float64).reshape(shape)


def on_device(a: np.ndarray) -> jax.Array:
    """``a`` as a JAX array, once, for a jitted function called many times (an optimiser's loss).

    Passing a numpy array to a jitted function copies it into a JAX buffer at every call: for the
    ``cells x landmarks`` design of a density at 50,000 cells (400 MB) that copy was 87% of each loss
    evaluation (0.31 s against 0.04 s, measured). ``jax.device_put`` of a C-contiguous, 64-byte aligned
    float64 array (:func:`aligned_empty`) shares its memory on the CPU (no copy, no extra memory; the
    array must not be modified afterwards); other arrays are copied once.
    """
    return jax.device_put(a)


def bucket(n: int, step: int = 256) -> int:
    """``n`` rounded up to a multiple of ``step`` (array shapes seen by jitted code stay few)."""
    return max(step, -(-int(n) // step) * step)


def pad_rows(x: np.ndarray, n: int) -> np.ndarray:
    """``x`` padded with zero rows to ``n`` rows."""
    if x.shape[0] == n:
        return x
    out = np.zeros((n, *x.shape[1:]), dtype=x.dtype)
    out[: x.shape[0]] = x
    return out
