"""Metadata-only consistency checks, vectorised over the whole episode table at open (no file is read)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from robotempo.errors import DatasetFormatError

logger = logging.getLogger(__name__)

WINDOW_FIX = (
    "the episode metadata's video windows disagree with the episode lengths: re-export the dataset, or "
    "recompute videos/<key>/from_timestamp and to_timestamp from the videos"
)
# How far (in frames) a window's bounds may stray from the frame grid: merged datasets carry float error;
# a whole frame of disagreement is a shifted window.
WINDOW_SLACK_FRAMES = 0.5


def check_video_windows(
    where: Path,
    key: str,
    episode_index: np.ndarray,
    length: np.ndarray,
    file: np.ndarray,
    start: np.ndarray,
    end: np.ndarray,
    fps: float,
) -> None:
    """Each episode's window `[start, end)` in its video file holds exactly its `length` frames, and no two
    windows of one file overlap (a shifted window would serve a neighbour's frames)."""
    slack = WINDOW_SLACK_FRAMES / fps

    def fail(i: int, problem: str) -> None:
        raise DatasetFormatError(
            where,
            f"episode {episode_index[i]}: videos/{key} window from_timestamp {float(start[i])!r} .. "
            f"to_timestamp {float(end[i])!r} {problem}",
            WINDOW_FIX,
        )

    finite = np.isfinite(start) & np.isfinite(end) & (start >= -slack) & (end < 2.0**53)
    if not finite.all():
        fail(int(np.flatnonzero(~finite)[0]), "is not a finite, non-negative time")
    span = (end - start) * fps
    bad = np.flatnonzero(np.abs(span - length) > WINDOW_SLACK_FRAMES)
    if len(bad):
        i = int(bad[0])
        fail(i, f"spans {span[i]:.3f} frames at {fps:g} fps, but the episode has {length[i]} frames")
    order = np.lexsort((start, file))
    same_file = file[order][1:] == file[order][:-1]
    overlap = np.flatnonzero(same_file & (start[order][1:] < end[order][:-1] - slack))
    if len(overlap):
        i, j = int(order[overlap[0]]), int(order[overlap[0] + 1])
        fail(
            j,
            f"overlaps the window of episode {episode_index[i]} "
            f"({float(start[i])!r} .. {float(end[i])!r}) in its file",
        )


def warn_on_totals(where: Path | str, length: np.ndarray, info, source: str) -> None:
    """info.json's totals are a summary; the episode table (`source`, at `where`) decides. A summary that
    disagrees is said once per open: the episode count first, else the frame count.

    Except a table that lists fewer episodes than info.json counts: that is a table cut short (a partial
    download or copy of meta/, an interrupted write of it), whose missing episodes' data is still there;
    serving the rest would train on a subset without a word, so it is a `DatasetFormatError`. (A writer
    killed between its two writes leaves the table ahead of info.json, never behind: that is warned.)"""
    if len(length) < info.total_episodes:
        missing = info.total_episodes - len(length)
        raise DatasetFormatError(
            where,
            f"the {source} lists {len(length)} episodes but {info.path} says total_episodes="
            f"{info.total_episodes}: {missing} {'is' if missing == 1 else 'are'} missing from it (a writer "
            "still adding episodes that has not finalized, a partial download or copy of meta/, or a write "
            "of it that did not finish)",
            "if a recording or conversion is still writing into this dataset, wait for it to finish "
            "(LeRobot: finalize()) or open a finished copy; otherwise restore the whole meta/ folder "
            "(download or copy it again), and if those episodes were removed on purpose, set total_episodes "
            f"to {len(length)} in info.json",
        )
    if len(length) != info.total_episodes:
        logger.warning(
            "%s lists %d episodes but %s says total_episodes=%d; using the %s",
            where, len(length), info.path, info.total_episodes, source,
        )  # fmt: skip
    elif int(length.sum()) != info.total_frames:
        logger.warning(
            "%s gives its episodes %d frames in all but %s says total_frames=%d; using the %s",
            where, int(length.sum()), info.path, info.total_frames, source,
        )  # fmt: skip
