"""A video's own stream information, checked against the dataset's metadata when its decoder first opens.

The container says its frame rate, frame count, duration and frame size without decoding anything; comparing
them with what the metadata promises (fps, the declared height and width, the episode windows that live in
the file) catches a re-encoded or truncated video before any frame is served, instead of when a late
timestamp finally runs off the end.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from robotempo.errors import VideoMismatchError

# Frame-rate agreement: containers store rates as rationals (30000/1001), metadata as a rounded float.
FPS_RELATIVE_TOLERANCE = 1e-3
# Windows may stray from the stream's bounds by float error, never by a frame.
SLACK_FRAMES = 0.5
MISMATCH_FIX = (
    "the video does not hold the frames the metadata describes: re-encode the episode's video from its "
    "frames at the dataset's fps and size, or re-download the dataset"
)


@dataclass(frozen=True)
class StreamInfo:
    """What the container says about its first video stream (times in seconds)."""

    fps: float
    frames: int  # 0 when the container does not say
    start_s: float
    end_s: float | None  # end of the last frame; None when the container says neither duration nor frames
    width: int
    height: int


@dataclass(frozen=True)
class VideoExpectation:
    """What the metadata promises about one video file: every episode window the metadata puts in it."""

    key: str
    fps: float
    height: int
    width: int
    episode_index: np.ndarray
    start: np.ndarray  # seconds, per episode in this file
    end: np.ndarray


def check_stream(path: Path, info: StreamInfo, expect: VideoExpectation) -> None:
    """Raise `VideoMismatchError` unless the stream has the dataset's fps and frame size and holds exactly the
    episode windows the metadata lists for this file."""
    fps = expect.fps
    if abs(info.fps - fps) > FPS_RELATIVE_TOLERANCE * fps:
        raise VideoMismatchError(
            path, f"its frame rate is {info.fps:g} fps but the dataset's fps is {fps:g}", MISMATCH_FIX
        )
    if (info.height, info.width) != (expect.height, expect.width):
        raise VideoMismatchError(
            path,
            f"its frames are {info.height}x{info.width} (height x width) but meta/info.json declares "
            f"{expect.key} as {expect.height}x{expect.width}",
            MISMATCH_FIX + ", or correct the feature's shape in meta/info.json",
        )
    if not len(expect.start):
        return
    slack = SLACK_FRAMES / fps
    first = int(np.argmin(expect.start))
    last = int(np.argmax(expect.end))
    lo, hi = float(expect.start[first]), float(expect.end[last])
    if lo < info.start_s - slack:
        raise VideoMismatchError(
            path,
            f"episode {expect.episode_index[first]} starts at {lo:.6f} s but the video starts at "
            f"{info.start_s:.6f} s",
            MISMATCH_FIX,
        )
    end_s = info.end_s
    if end_s is None and info.frames:
        end_s = info.start_s + info.frames / info.fps
    if end_s is None:
        return
    if abs(hi - end_s) > slack:
        problem = "ends before" if end_s < hi else "runs past"
        raise VideoMismatchError(
            path,
            f"the video {problem} the episodes the metadata lists for it: it ends at {end_s:.6f} s "
            f"({info.frames or '?'} frames at {info.fps:g} fps), the last episode window (episode "
            f"{expect.episode_index[last]}) ends at {hi:.6f} s",
            MISMATCH_FIX,
        )
    # Fewer samples than the duration holds: frames are missing. More can be samples an edit list hides (a
    # clip cut by stream copy keeps the frames from the keyframe before its start): never presented.
    if info.frames and info.frames < (end_s - info.start_s) * fps - SLACK_FRAMES:
        raise VideoMismatchError(
            path,
            f"it holds {info.frames} frames but lasts {end_s - info.start_s:.6f} s at {fps:g} fps",
            MISMATCH_FIX,
        )
