"""When to seek while reading frames forward through a video: a pure cost model, no I/O.

Reading frame `p` costs either
- decoding forward from the frame the decoder last produced (`p - current` frame decodes), or
- one seek plus decoding from the keyframe at or before `p` up to `p` (`seek_cost + p - keyframe + 1`).
After either way the decoder sits on frame `p`, so choosing the cheaper way gap by gap is optimal for the
whole sorted list of frames one call needs. Each seek opens a cluster that is read in one forward pass.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

# Overhead of one seek (demuxer seek, decoder flush and refill) in frame decodes, on top of decoding from the
# keyframe. From `benchmarks/bench_decoder.py --policy` (96x96 camera-like frames, single-threaded decoding,
# CPU us per target, forward/seek): AV1 (libdav1d) GOP 2: gap 1 105/192, gap 2 208/183 -> seeking pays from a
# gap of 2, as the model predicts with 0.5; H.264 GOP 2: gap 3 183/192, gap 4 243/152 -> pays from 4 (model
# with 2.0: above 3.5); H.264 GOP 30: gap 16 511/598, gap 24 773/675 -> pays from ~20 (model: above 17.5);
# H.264 GOP 250: forward always wins up to gap 48 (model: above ~127).
SEEK_COST_FRAMES: dict[str, float] = {"libdav1d": 0.5, "av1": 0.5, "libaom-av1": 0.5, "h264": 2.0}
DEFAULT_SEEK_COST_FRAMES = 2.0


def seek_cost_frames(decoder_name: str) -> float:
    """The seek overhead, in frame decodes, of a decoder (by FFmpeg decoder name)."""
    return SEEK_COST_FRAMES.get(decoder_name, DEFAULT_SEEK_COST_FRAMES)


def plan_seeks(
    positions: Sequence[int], keyframes: Sequence[int], current: int | None, seek_cost: float
) -> list[bool]:
    """Whether to seek before reading each of `positions`.

    positions: sorted frame positions (0-based frame numbers in presentation order) one call needs.
    keyframes: for each position, the position of the keyframe a seek for it lands on.
    current: position of the frame the decoder last produced (-1 for a fresh decoder at the start of the
        file), or None when the decoder cannot reach `positions[0]` without seeking (the caller knows whether
        the frames it still holds cover a target a little before `current`).
    Returns one bool per position; `True` starts a new cluster with a seek. Plain Python: calls are short
    (one to a few hundred frames) and numpy's per-call overhead would dominate.
    """
    seeks = []
    previous = current
    for position, keyframe in zip(positions, keyframes):
        forward = math.inf if previous is None else max(position - previous, 0)
        seek = seek_cost + position - min(keyframe, position) + 1
        seeks.append(seek < forward)
        previous = position
    return seeks
