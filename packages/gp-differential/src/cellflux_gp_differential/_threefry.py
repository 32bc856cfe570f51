"""JAX's ``random.choice(PRNGKey(seed), n, (m,), replace=False)`` in numpy, without compiling anything.

mellon samples the cells of its fractal-dimension estimate with JAX's random permutation; JAX compiles
that permutation for every population size, about 0.3 s per size in a fresh process (held under the
GIL, so threads do not hide it), and a differential-abundance fit meets two or three sizes. The same
indices follow from JAX's algorithm written out in numpy:

- the key of ``PRNGKey(seed)`` is the seed's two 32-bit words (high, low);
- Threefry-2x32 with 20 rounds hashes counter pairs under a key;
- with ``jax_threefry_partitionable`` (JAX's default since 0.5), splitting a key hashes the counters
  ``(0, i)`` and random bits are the XOR of the two hashed words of ``(0, i)``;
- a permutation of ``n`` sorts ``arange(n)`` by fresh 32-bit random keys (stable sort), in
  ``ceil(3 log n / log(2^32 - 1))`` rounds, each with a new subkey split off the key.

Tested equal to JAX on many sizes; with the partitionable flag off (older JAX) or another default PRNG
(``jax_default_prng_impl``), callers use JAX itself.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["choice_without_replacement", "threefry2x32"]

_ROTATIONS = ((13, 15, 26, 6), (17, 29, 16, 24))
_PARITY = np.uint32(0x1BD11BDA)


def _rotate_left(v: np.ndarray, r: int) -> np.ndarray:
    return (v << np.uint32(r)) | (v >> np.uint32(32 - r))


def threefry2x32(key: tuple[int, int], x1: np.ndarray, x2: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The Threefry-2x32 hash (20 rounds) of the counter pairs ``(x1, x2)`` under ``key``, as JAX computes it.

    Parameters
    ----------
    key
        Two 32-bit words.
    x1, x2
        ``uint32`` arrays of one shape.

    Returns
    -------
    The two hashed ``uint32`` words.
    """
    k = [np.uint32(key[0]), np.uint32(key[1])]
    ks = (k[0], k[1], k[0] ^ k[1] ^ _PARITY)
    a = np.asarray(x1, dtype=np.uint32) + ks[0]
    b = np.asarray(x2, dtype=np.uint32) + ks[1]
    for i in range(5):
        for r in _ROTATIONS[i % 2]:
            a += b
            b = _rotate_left(b, r)
            b ^= a
        a += ks[(i + 1) % 3]
        b += ks[(i + 2) % 3]  # added to the array, not to each other: uint32 wraps without a warning
        b += np.uint32(i + 1)
    return a, b


def _split(key: tuple[int, int]) -> tuple[tuple[int, int], tuple[int, int]]:
    """``jax.random.split(key)`` (partitionable Threefry): the next key and a subkey."""
    bits1, bits2 = threefry2x32(key, np.zeros(2, np.uint32), np.arange(2, dtype=np.uint32))
    return (int(bits1[0]), int(bits2[0])), (int(bits1[1]), int(bits2[1]))


def _random_bits(key: tuple[int, int], n: int) -> np.ndarray:
    """``n`` random 32-bit words of ``key`` (partitionable Threefry)."""
    bits1, bits2 = threefry2x32(key, np.zeros(n, np.uint32), np.arange(n, dtype=np.uint32))
    return bits1 ^ bits2


def choice_without_replacement(seed: int, n: int, m: int) -> np.ndarray:
    """``jax.random.choice(jax.random.PRNGKey(seed), n, shape=(m,), replace=False)`` as numpy indices.

    Parameters
    ----------
    seed
        Non-negative integer seed (below ``2**32``).
    n
        Population size (``< 2**32``).
    m
        Draws, at most ``n``.

    Returns
    -------
    ``(m,)`` distinct indices in ``[0, n)``, the ones JAX draws with the partitionable Threefry PRNG.
    """
    if not 0 <= seed < 2**32:
        raise ValueError(f"seed must be in [0, 2**32), got {seed}.")
    if not 0 <= m <= n < 2**32:
        raise ValueError(f"need 0 <= m <= n < 2**32, got m={m}, n={n}.")
    key = (0, seed)  # PRNGKey(seed): the seed's high and low words
    values = np.arange(n, dtype=np.int64)
    rounds = math.ceil(3 * math.log(max(1, n)) / math.log(np.iinfo(np.uint32).max))
    for _ in range(rounds):
        key, subkey = _split(key)
        values = values[np.argsort(_random_bits(subkey, n), kind="stable")]
    return values[:m]
