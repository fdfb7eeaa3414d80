"""Keyed bijections of [0, n), computed per position: sampling orders without a materialised permutation.

`permute(x, n, key)` is an unbalanced Feistel network over the smallest power-of-two domain >= n (at most
2n), with cycle-walking back into [0, n): a bijection for every (n, key), O(1) memory, vectorised over numpy
arrays (one call computes thousands of positions). `locality_permute` composes two of them: blocks of
`block` consecutive indices in keyed order, then positions shuffled inside windows of `window` positions.
No torch, no global random state: the keys come from `robotempo.hashing`.
"""

from __future__ import annotations

import numpy as np

from robotempo.hashing import GOLDEN, derive_key, mix64

_HALF_ROUNDS = 8  # four full Feistel rounds: each half is rewritten four times from the other
with np.errstate(over="ignore"):
    _ROUND_OFFSETS = [np.uint64(r + 1) * GOLDEN for r in range(_HALF_ROUNDS)]


def _take(a: np.ndarray, idx: np.ndarray) -> np.ndarray:
    return a if a.ndim == 0 else a[idx]


def _bit_length(v: np.ndarray) -> np.ndarray:
    """bit_length of non-negative int64 values (float frexp: exact below 2**53, one bit high beyond)."""
    return np.frexp(v.astype(np.float64))[1].astype(np.uint64)


class _Network:
    """The Feistel network of one domain size (scalar or per element) and key (scalar or per element)."""

    def __init__(self, n: np.ndarray, key: np.ndarray):
        self.n = n
        bits = np.maximum(np.uint64(2), _bit_length(n - 1))
        self.lo_bits = bits // np.uint64(2)
        one = np.uint64(1)
        self.lo_mask = (one << self.lo_bits) - one
        self.hi_mask = (one << (bits - self.lo_bits)) - one
        self.key = key

    def subset(self, idx: np.ndarray) -> _Network:
        sub = object.__new__(_Network)
        sub.n, sub.lo_bits, sub.key = _take(self.n, idx), _take(self.lo_bits, idx), _take(self.key, idx)
        sub.lo_mask, sub.hi_mask = _take(self.lo_mask, idx), _take(self.hi_mask, idx)
        return sub

    def _round(self, v: np.ndarray, r: int) -> np.ndarray:
        # `key` is already a hash and the round function mixes again, so offsets make distinct round keys;
        # computed per round rather than stored: per-element keys would otherwise hold 8 arrays at once.
        with np.errstate(over="ignore"):
            return mix64(v ^ (self.key + _ROUND_OFFSETS[r]))

    def step(self, x: np.ndarray, inverse: bool) -> np.ndarray:
        lo, hi = x & self.lo_mask, x >> self.lo_bits
        if not inverse:
            for r in range(0, _HALF_ROUNDS, 2):
                lo = lo ^ (self._round(hi, r) & self.lo_mask)
                hi = hi ^ (self._round(lo, r + 1) & self.hi_mask)
        else:
            for r in range(_HALF_ROUNDS - 2, -1, -2):
                hi = hi ^ (self._round(lo, r + 1) & self.hi_mask)
                lo = lo ^ (self._round(hi, r) & self.lo_mask)
        return (hi << self.lo_bits) | lo


def permute(x, n, key, inverse: bool = False) -> np.ndarray:
    """Images of `x` (ints in [0, n)) under the keyed bijection of [0, n); `inverse=True` undoes it.

    `n` (>= 1) and `key` (uint64) are scalars or arrays broadcastable against `x`, so one call can apply a
    different permutation to each element. Returns int64 values in [0, n).
    """
    x, n, key = np.asarray(x, dtype=np.int64), np.asarray(n, dtype=np.int64), np.asarray(key, dtype=np.uint64)
    shape = np.broadcast_shapes(x.shape, n.shape, key.shape)
    x = np.broadcast_to(x, shape).ravel()
    n, key = (a if a.ndim == 0 else np.broadcast_to(a, shape).ravel() for a in (n, key))
    net = _Network(n.astype(np.uint64), key)
    y = net.step(x.astype(np.uint64), inverse)
    # Cycle-walking: re-apply until the value falls back inside [0, n); it must, since x was inside.
    out_of_range = np.flatnonzero(y >= net.n)
    while out_of_range.size:
        sub = net.subset(out_of_range)
        y[out_of_range] = sub.step(y[out_of_range], inverse)
        out_of_range = out_of_range[y[out_of_range] >= sub.n]
    return y.astype(np.int64).reshape(shape)


def locality_permute(x, n, block: int, window: int, key) -> np.ndarray:
    """A bijection of [0, n) that keeps runs of `block` consecutive indices together.

    The indices are cut into blocks of `block` consecutive values (the last one may be short); the blocks
    are laid out in a keyed order; then, if `window > 1`, positions are shuffled inside each window of
    `window` consecutive positions. Position `x` returns the index laid out there. `n` may be per element.
    """
    x = np.asarray(x, dtype=np.int64)
    n = np.asarray(n, dtype=np.int64)
    key = np.asarray(key, dtype=np.uint64)
    if window > 1:
        w = x // window
        inside = permute(x - w * window, np.minimum(window, n - w * window), derive_key(key, 1, w))
        x = w * window + inside
    block_key = derive_key(key, 2)
    n_blocks = (n + block - 1) // block
    last_len = n - (n_blocks - 1) * block
    last_at = permute(n_blocks - 1, n_blocks, block_key, inverse=True) * block  # where the short block lies
    after = x >= last_at + last_len
    inside_last = (x >= last_at) & ~after
    shifted = np.where(after, x - last_len + block, x)  # as if the short block were full
    slot = np.where(inside_last, last_at // block, shifted // block)
    offset = np.where(inside_last, x - last_at, shifted % block)
    return permute(slot, n_blocks, block_key) * block + offset
