"""`distinct`: sorted distinct values of an array, for the open and read paths.

numpy >= 2.3's `np.unique(a)` (without return_index / return_inverse / return_counts) asks
`np.ma.is_masked`, which imports `numpy.ma` on its first call: ~40 ms of CPU in every process (the main one,
each spawned DataLoader worker) that robotempo otherwise never needs. The indices and codes robotempo
deduplicates are plain integer arrays, which a sort does as well.
"""

from __future__ import annotations

import numpy as np


def distinct(values: np.ndarray | list) -> np.ndarray:
    """The sorted distinct values of `values` (flattened), as `np.unique(values)` returns them."""
    s = np.sort(np.asarray(values).reshape(-1))
    if len(s) < 2:
        return s
    return s[np.concatenate(([True], s[1:] != s[:-1]))]
