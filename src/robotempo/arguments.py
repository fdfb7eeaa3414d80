"""Loader arguments checked where they enter: finite numbers in range, or an `ArgumentError` saying which."""

from __future__ import annotations

import math

import numpy as np

from robotempo.errors import ArgumentError


def check_tolerance(tolerance_s, fps: float) -> float:
    """A finite number of seconds in [0, 1/fps): a tolerance of a whole frame would accept a neighbour's."""
    if not is_real(tolerance_s) or not 0 <= tolerance_s < 1 / fps:
        raise ArgumentError(
            f"tolerance_s must be a number of seconds in [0, 1/fps = {1 / fps:g}), got {tolerance_s!r}; the "
            "default 1e-4 suits LeRobot datasets"
        )
    return float(tolerance_s)


def check_size(name: str, value, kind: type, low: float, high: float) -> None:
    """`value` is None or a finite number in [low, high] (a whole one when `kind` is int)."""
    ok = value is None or (is_real(value) and (kind is float or float(value).is_integer()))
    if not ok or (value is not None and not low <= value <= high):
        raise ArgumentError(
            f"{name} must be None or {'an integer' if kind is int else 'a number'} in [{low:g}, {high:g}], "
            f"got {value!r}"
        )


def is_real(v: object) -> bool:
    """A finite real number (not a bool, not a string, not NaN or infinity, not an int beyond float range)."""
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, float, np.integer, np.floating)):
        return False
    try:
        return math.isfinite(v)
    except OverflowError:
        return False
