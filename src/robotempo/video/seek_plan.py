"""When to seek while reading frames forward through a video: a pure cost model, no I/O.

Reading frame `p` costs either
- decoding forward from the frame the decoder last produced (`p - current` frame decodes), or
- one seek plus decoding from the keyframe at or before `p` up to `p` (`seek_cost + p - keyframe + 1`).
After either way the decoder sits on frame `p`, so choosing the cheaper way gap by gap is optimal for the whole
sorted list of frames one call needs. Each seek opens a cluster that is read in one forward pass.
"""

from __future__ import annotations

import numpy as np

# Overhead of one seek (demuxer seek + decoder flush + refill), in units of one frame decode. Measured on
# 96x96 files, single-threaded decoding, 2-core machine (see benchmarks/bench_decoder.py and the module
# docstring of robotempo.video.reader): AV1 (libdav1d), GOP 2: seek + 1.5 decodes ~= 80-100 us against
# ~50 us per decode -> break-even at a gap of 2-3 frames; H.264, GOP 2: seek + 1.5 decodes ~= 105-135 us against
# ~35 us per decode -> break-even at a gap of 4; H.264, GOP 60: seek ~= 3-4 decodes on top of the GOP.
SEEK_COST_FRAMES: dict[str, float] = {"libdav1d": 0.5, "av1": 0.5, "libaom-av1": 0.5, "h264": 2.0}
DEFAULT_SEEK_COST_FRAMES = 2.0


def seek_cost_frames(decoder_name: str) -> float:
    """The seek overhead, in frame decodes, of a decoder (by FFmpeg decoder name)."""
    return SEEK_COST_FRAMES.get(decoder_name, DEFAULT_SEEK_COST_FRAMES)


def plan_seeks(
    positions: np.ndarray, keyframes: np.ndarray, current: int | None, seek_cost: float
) -> np.ndarray:
    """Whether to seek before reading each of `positions`.

    positions: sorted frame positions (0-based frame numbers in presentation order) one call needs.
    keyframes: for each position, the position of the keyframe a seek for it lands on (<= the position).
    current: position of the frame the decoder last produced (-1 for a fresh decoder at the start of the
        file), or None when the decoder cannot continue forward to `positions[0]`.
    Returns a bool array; `True` starts a new cluster with a seek.
    """
    positions = np.asarray(positions, dtype=np.int64)
    if positions.size == 0:
        return np.zeros(0, dtype=bool)
    keyframes = np.minimum(np.asarray(keyframes, dtype=np.int64), positions)
    forward = np.empty(positions.size, dtype=np.float64)
    forward[0] = np.inf if current is None or current > positions[0] else positions[0] - current
    forward[1:] = np.diff(positions)
    seek = seek_cost + (positions - keyframes + 1)
    return seek < forward
