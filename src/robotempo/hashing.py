"""Counter-based hashing: pure functions of their inputs, never of a global random state.

Everything seeded in robotempo (speed-label dropout, sampler order, episode splits) derives its randomness
here, so the same (seed, epoch, index) gives the same value in every process, worker and rank.
"""

from __future__ import annotations

import numpy as np

GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def _mix(z: np.ndarray) -> np.ndarray:
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def mix64(z: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser over uint64 values (wrapping arithmetic): a bijection of 64-bit words."""
    if np.ndim(z):  # array arithmetic wraps silently; only numpy scalars warn on overflow
        return _mix(z)
    with np.errstate(over="ignore"):
        return _mix(z)


def as_uint64(value) -> np.ndarray:
    """An int (any sign, any size: taken modulo 2**64) or an int array as uint64."""
    if isinstance(value, np.ndarray):
        return value.astype(np.int64).astype(np.uint64) if value.dtype != np.uint64 else value
    return np.asarray(int(value) % 2**64, dtype=np.uint64)


def derive_key(*parts) -> np.ndarray:
    """A 64-bit key from a sequence of ints or int arrays (broadcast): hash chaining, order-sensitive."""
    key = np.asarray(0x5BD1E9955BD1E995, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for part in parts:
            key = mix64((key + GOLDEN) ^ mix64(as_uint64(part) + GOLDEN))
    return key
