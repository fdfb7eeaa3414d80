"""`delta_timestamps` -> row offsets; clamped rows and `<key>_is_pad` masks, vectorised over a batch."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from robotempo.arguments import is_real
from robotempo.errors import DeltaTimestampsError, TimestampError

# Offsets beyond this many frames pad every row of any real episode; bounding them keeps row arithmetic exact.
MAX_DELTA_FRAMES = 2**31


def plan_deltas(
    delta_timestamps: dict | None, fps: float, keys: list[str], tolerance_s: float
) -> dict[str, np.ndarray]:
    """Validate `delta_timestamps` and turn each key's offsets (seconds) into row offsets (int64)."""
    if not delta_timestamps:
        return {}
    if not isinstance(delta_timestamps, dict):
        raise DeltaTimestampsError(
            f"delta_timestamps must be a dict {{key: [seconds, ...]}}, got {delta_timestamps!r}"
        )
    plan = {}
    for key, deltas in delta_timestamps.items():
        if key not in keys:
            raise DeltaTimestampsError(
                f"delta_timestamps has key {key!r}, which is not a feature of this dataset; "
                f"use one of {sorted(keys)}"
            )
        if isinstance(deltas, (str, bytes, dict)) or not isinstance(deltas, Iterable):
            raise DeltaTimestampsError(
                f"delta_timestamps[{key!r}] must be a list of numbers (seconds), got {deltas!r}"
            )
        deltas = list(deltas)
        if not deltas or not all(is_real(v) for v in deltas):
            raise DeltaTimestampsError(
                f"delta_timestamps[{key!r}] must be a non-empty list of finite numbers (seconds), "
                f"got {deltas!r}"
            )
        values = np.array([float(v) for v in deltas], dtype=np.float64)
        if np.any(np.abs(values * fps) > MAX_DELTA_FRAMES):
            raise DeltaTimestampsError(
                f"delta_timestamps[{key!r}] must hold seconds within {MAX_DELTA_FRAMES} frames "
                f"({MAX_DELTA_FRAMES / fps:g} s), got {deltas!r}"
            )
        rows, off = grid_rows(values, fps)
        bad = np.flatnonzero(off > tolerance_s)
        if len(bad):
            v, nearest = float(values[bad[0]]), float(rows[bad[0]] / fps)  # plain floats: no numpy repr
            raise DeltaTimestampsError(
                f"delta_timestamps[{key!r}] has {v!r} s, which is {off[bad[0]]:.2g} s off the "
                f"1/{fps:g} s frame "
                f"grid (tolerance_s={tolerance_s:g}); use multiples of 1/fps, e.g. {nearest:.6g}"
            )
        plan[key] = rows.astype(np.int64)
    return plan


def grid_rows(seconds: np.ndarray, fps: float) -> tuple[np.ndarray, np.ndarray]:
    """Nearest frame offset (as float rows) of each offset in seconds, and its distance from it in seconds.

    An offset halfway between two frames goes to the one farther from the current frame (half away from
    zero), the same way for every offset of a window: banker's rounding sent 0.1 and 0.5 s down and 0.3 s up
    at 5 fps, so [0, 0.1, 0.3, 0.5] s served rows [0, 0, 2, 2], each frame twice (QA)."""
    ticks = np.asarray(seconds, dtype=np.float64) * fps
    rows = np.sign(ticks) * np.floor(np.abs(ticks) + 0.5 + 1e-9)
    return rows, np.abs(seconds - rows / fps)


def query_rows(
    rows: np.ndarray, offsets: np.ndarray, ep_from: np.ndarray, ep_to: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Rows `rows[:, None] + offsets` clamped into each row's episode `[ep_from, ep_to)`, and the pad mask."""
    target = rows[:, None] + offsets[None, :]
    lo, hi = ep_from[:, None], ep_to[:, None] - 1
    is_pad = (target < lo) | (target > hi)
    return np.clip(target, lo, hi), is_pad


def check_timestamps(
    timestamp: np.ndarray,
    frame_index: np.ndarray,
    ep_from: np.ndarray,
    ep_to: np.ndarray,
    fps: float,
    tolerance_s: float,
    where,
    starts_at_zero: bool = False,
) -> None:
    """Every episode's frame_index runs 0..n-1 and consecutive timestamps are 1/fps apart (within tolerance);
    with `starts_at_zero` (a dataset with video, whose frames are looked up by timestamp) each episode's
    first timestamp is also 0, so every timestamp is frame_index / fps: a shifted episode would be served
    the video frames of its neighbours' rows, each row its next one's.

    `where(row) -> (path, description)` names the file of a bad row. Raises `TimestampError` at the first one.
    """
    n = len(timestamp)
    if n == 0:
        return
    episode = np.repeat(np.arange(len(ep_from)), ep_to - ep_from)
    expected_frame = np.arange(n) - ep_from[episode]
    _raise_at_first(
        np.flatnonzero(frame_index != expected_frame),
        where,
        lambda row: f"frame_index is {frame_index[row]}, expected {expected_frame[row]}",
        "frame_index must count 0, 1, 2, ... inside each episode; re-export the dataset",
    )
    # The checks below compare pairs of timestamps: a one-frame episode has none.
    non_finite = np.flatnonzero(~np.isfinite(timestamp))
    _raise_at_first(
        non_finite,
        where,
        lambda row: f"timestamp is {timestamp[row]}, not a time ({len(non_finite)} such rows selected)",
        "fix the timestamps (frame_index / fps), or re-export the dataset",
    )
    if starts_at_zero:
        first = ep_from[ep_to > ep_from]
        _raise_at_first(
            first[~(np.abs(timestamp[first].astype(np.float64)) <= tolerance_s)],
            where,
            lambda row: (
                f"timestamp {timestamp[row]:.6f} s, not 0: an episode's timestamps are frame_index / "
                f"fps, and its video frames are looked up by them ({timestamp[row] * fps:.3g} frames off "
                f"here; tolerance_s={tolerance_s:g})"
            ),
            "re-export the dataset with timestamps counting from 0 in each episode, or pass "
            "check_timestamps=False to skip this check (frames would then be served from those times)",
        )
    diffs = np.diff(timestamp.astype(np.float64))
    starts = ep_from[1:] - 1  # diff positions that cross an episode boundary
    # A float32 value is within half a step of frame_index / fps, and its steps are 2.4e-4 s past 2048 s (more
    # than the default tolerance): a difference of two may be off by one step.
    step = np.spacing(np.abs(timestamp[1:])).astype(np.float64) if timestamp.dtype == np.float32 else 0.0
    ok = np.abs(diffs - 1.0 / fps) <= tolerance_s + step
    ok[starts[starts >= 0]] = True
    _raise_at_first(
        np.flatnonzero(~ok) + 1,
        where,
        lambda row: (
            f"timestamp {timestamp[row]:.6f} s follows {timestamp[row - 1]:.6f} s, not 1/{fps:g} s "
            f"later (tolerance_s={tolerance_s:g})"
        ),
        "fix the timestamps, raise tolerance_s, or pass check_timestamps=False to skip this check",
    )


def _raise_at_first(rows: np.ndarray, where, describe, fix: str) -> None:
    """A `TimestampError` at the first of `rows` (table rows), if there is one: `where(row)` names its file
    and frame, `describe(row)` what is wrong there."""
    if len(rows):
        row = int(rows[0])
        path, what = where(row)
        raise TimestampError(path, f"{what}: {describe(row)}", fix)
