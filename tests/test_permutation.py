"""Keyed bijections of [0, n): each (n, key) gives a permutation, the inverse undoes it, blocks stay whole."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from robotempo.hashing import derive_key
from robotempo.permutation import locality_permute, permute


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 3000), seed=st.integers(0, 2**64 - 1))
def test_permute_is_a_bijection_and_inverse_undoes_it(n, seed):
    key = derive_key(seed)
    image = permute(np.arange(n), n, key)
    assert np.array_equal(np.sort(image), np.arange(n))
    assert np.array_equal(permute(image, n, key, inverse=True), np.arange(n))


def test_permute_per_element_domains_and_keys():
    sizes = np.array([1, 2, 5, 64, 65, 1000])
    x = np.concatenate([np.arange(m) for m in sizes])
    key = derive_key(7, np.repeat(np.arange(len(sizes)), sizes))
    image = permute(x, np.repeat(sizes, sizes), key)
    for part, m in zip(np.split(image, np.cumsum(sizes)[:-1]), sizes):
        assert np.array_equal(np.sort(part), np.arange(m))


def test_permute_scalar_and_large_domain():
    n = 10**12 + 3
    x = np.array([0, 1, n - 1, 123456789])
    y = permute(x, n, derive_key(1))
    assert y.min() >= 0 and y.max() < n and len(set(y.tolist())) == 4
    assert np.array_equal(permute(y, n, derive_key(1), inverse=True), x)
    assert permute(5, 10, derive_key(2)).shape == ()


def test_permute_depends_on_the_key_and_looks_random():
    n = 10_000
    a, b = permute(np.arange(n), n, derive_key(0)), permute(np.arange(n), n, derive_key(1))
    assert not np.array_equal(a, b)
    # A uniform permutation has ~1 fixed point and correlation ~0 with the identity.
    assert (a == np.arange(n)).sum() < 10
    assert abs(np.corrcoef(a, np.arange(n))[0, 1]) < 0.05


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(1, 2000), block=st.integers(1, 40), window=st.integers(0, 300), seed=st.integers(0, 2**32)
)
def test_locality_permute_is_a_bijection_keeping_blocks(n, block, window, seed):
    out = locality_permute(np.arange(n), n, block, window, derive_key(seed))
    assert np.array_equal(np.sort(out), np.arange(n))
    if window <= 1:
        # Without the window shuffle, every block of `block` indices is laid out whole and in order.
        starts = np.flatnonzero(np.diff(out, prepend=-2) != 1)
        runs = np.diff(np.append(starts, n))
        assert all(out[s] % block == 0 for s in starts)
        assert all(r == block or out[s] + r == n or r % block == 0 for s, r in zip(starts, runs))
