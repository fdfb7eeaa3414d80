"""`validate_dataset(root)`: every file of a dataset checked against its metadata, every problem reported.

What a loader meets only when it reads a file is checked here for all files, one by one, so one run lists
every bad file rather than the first: each data file (schema against the declared features, its rows against
the metadata's layout, list lengths, dtypes, task indices, timestamps), NaN / infinity per float feature
(reported, not a failure: see docs/architecture.md), each video file (stream against the metadata, then the
first and last frame of every episode), each embedded image (size from its header, then the first and last
frame of every episode decoded), and the speed percentile file.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from robotempo.arguments import check_tolerance
from robotempo.arrays import distinct
from robotempo.cameras import DEPTH_MODES, IMAGE_FORMATS, RGB_MODES, image_mode
from robotempo.errors import DatasetFormatError, FeatureMismatchError, RobotempoError
from robotempo.format import DatasetMeta, read_metadata
from robotempo.speed import SPEED_PERCENTILES_FILE, read_percentiles_file
from robotempo.store.frames import FrameTable
from robotempo.temporal import check_timestamps

Progress = Callable[[str, int, int], None]
MAX_LISTED = 20  # failures listed per check; the count covers all


@dataclass(frozen=True)
class Finding:
    check: str
    status: str  # "ok", "failed" or "note" (reported, not a failure)
    details: str


def _error(e: BaseException) -> str:
    return f"{type(e).__name__}: {e}"


def _noop(stage: str, done: int, total: int) -> None:
    return None


def validate_dataset(
    root: str | Path,
    tolerance_s: float = 1e-4,
    video: bool = True,
    progress: Progress | None = None,
    storage_options: Mapping[str, Any] | None = None,
) -> list[Finding]:
    """Findings for the dataset at `root`; any with status "failed" means it must not be trained on as is.

    `tolerance_s` is the timestamp tolerance (as in `LeRobotDataset`: seconds in [0, 1/fps), else an
    `ArgumentError`); `video=False` checks each video stream against the metadata but decodes no frame;
    `progress(stage, done, total)` is called as files are checked; `storage_options` as in `LeRobotDataset`
    (object-store roots).
    """
    progress = progress or _noop
    try:
        meta = read_metadata(root, storage_options)
    except RobotempoError as e:
        return [Finding("metadata (info.json, tasks, episodes)", "failed", _error(e))]
    info = meta.info
    tolerance_s = check_tolerance(tolerance_s, info.fps)  # a bad argument is raised, not a dataset finding
    found = [
        Finding(
            "metadata (info.json, tasks, episodes)",
            "ok",
            f"{info.codebase_version}, {len(meta.episodes):,} episodes, {meta.total_frames:,} frames",
        )
    ]
    try:
        _check_totals(meta)
    except RobotempoError as e:
        found.append(Finding("info.json totals", "failed", _error(e)))
    good, data_findings = _check_data_files(meta, tolerance_s, progress)
    found += data_findings
    if len(good) and info.camera_keys:
        from robotempo.dataset import LeRobotDataset

        try:
            ds = LeRobotDataset(
                "validate",
                root=root,
                episodes=good.tolist(),
                speed_labels=False,
                check_timestamps=False,
                storage_options=storage_options,
            )
        except RobotempoError as e:
            found.append(Finding("cameras", "failed", _error(e)))
        else:
            for key in ds.camera_keys:
                found += _check_camera(ds, key, progress, decode=video or key not in ds.video_keys)
    try:
        stats = meta.stats
        found.append(Finding("statistics", "ok", f"{len(stats)} features"))
    except RobotempoError as e:
        found.append(Finding("statistics", "failed", _error(e)))
    speed_file = meta.location.file(SPEED_PERCENTILES_FILE)
    if speed_file.is_file():
        try:
            rows = read_percentiles_file(speed_file).rows
            found.append(Finding(SPEED_PERCENTILES_FILE, "ok", f"{len(rows)} task rows"))
        except RobotempoError as e:
            found.append(Finding(SPEED_PERCENTILES_FILE, "failed", _error(e)))
    return found


def _check_totals(meta: DatasetMeta) -> None:
    """info.json's totals against the episode table (the open warns of a stale summary; validate fails it,
    as it fails total_frames: the table holding more episodes than total_episodes is the same summary)."""
    info = meta.info
    listed = len(meta.episodes)
    if info.total_episodes and info.total_episodes != listed:
        raise DatasetFormatError(
            info.path,
            f"total_episodes is {info.total_episodes} but the episode table lists {listed} episodes",
            f"set total_episodes to {listed} (the table decides which episodes the dataset holds)",
        )
    if info.total_frames and info.total_frames != meta.total_frames:
        raise DatasetFormatError(
            info.path,
            f"total_frames is {info.total_frames} but the episodes sum to {meta.total_frames}",
            "set total_frames to the sum of the episode lengths",
        )


def _summary(
    check: str, failures: list[tuple[str, str]], total: int, what: str, ok_text: str
) -> list[Finding]:
    if not failures:
        return [Finding(check, "ok", ok_text)]
    out = [Finding(check, "failed", f"{len(failures)} of {total} {what} failed")]
    out += [Finding(f"  {name}", "failed", text) for name, text in failures[:MAX_LISTED]]
    return out


def _check_data_files(meta: DatasetMeta, tolerance_s: float, progress: Progress) -> tuple[np.ndarray, list]:
    """Each data file on its own; returns the episodes of the good files and the findings."""
    eps = meta.episodes
    order = np.argsort(eps.data_file, kind="stable")
    codes, starts = np.unique(eps.data_file[order], return_index=True)
    bounds = [*starts[1:], len(order)]
    failures: list[tuple[str, str]] = []
    good: list[np.ndarray] = []
    non_finite: dict[str, int] = {}
    for done, (code, lo, hi) in enumerate(zip(codes, starts, bounds)):
        positions = np.sort(order[lo:hi])
        sub = eps.take(positions)
        name = eps.data_files[int(code)]
        try:
            # the root itself, not its URL: an object store's root carries its storage options (endpoint,
            # keys); from the URL alone each data file waited out its deadline against the default endpoint
            frames = FrameTable(
                meta.location, meta.info, sub, catalog=eps, tasks=meta.tasks, heavy_cache_mb=1
            )
            check_timestamps(
                frames.columns["timestamp"],
                frames.columns["frame_index"],
                frames.ep_from,
                frames.ep_to,
                meta.info.fps,
                tolerance_s,
                lambda row, f=frames: _where(f, row),
                starts_at_zero=bool(meta.info.video_keys),  # as a dataset's open checks them
            )
        except (RobotempoError, OSError) as e:
            failures.append((name, _error(e)))
        else:
            good.append(sub.episode_index)
            for column, (count, _) in frames.non_finite().items():
                non_finite[column] = non_finite.get(column, 0) + count
        progress("data files", done + 1, len(codes))
    found = _summary(
        "data files (schema, rows, dtypes, tasks, timestamps)",
        failures,
        len(codes),
        "data files",
        f"{len(codes):,} data files match the metadata and the declared features",
    )
    if non_finite:
        counts = ", ".join(f"{k}: {v:,}" for k, v in sorted(non_finite.items()))
        found.append(
            Finding(
                "NaN / infinity in float features",
                "note",
                f"{counts} value(s) (check_finite=True refuses them)",
            )
        )
    return (np.concatenate(good) if good else np.empty(0, dtype=np.int64)), found


def _where(frames: FrameTable, row: int) -> tuple[Path, str]:
    e = int(frames.episode_of(np.array([row]))[0])
    path = frames.root / frames.episodes.data_files[int(frames.episodes.data_file[e])]
    return path, f"episode {frames.episodes.episode_index[e]} frame {row - frames.ep_from[e]}"


def _check_camera(ds, key: str, progress: Progress, decode: bool = True) -> list[Finding]:
    found = []
    if key in ds.video_keys:
        loc = ds.meta.episodes.videos[key]
        codes = distinct(loc.file)
        failures = []
        for done, code in enumerate(codes):
            try:
                ds.video_file(key, int(code))
            except (RobotempoError, OSError) as e:
                failures.append((loc.files[int(code)], _error(e)))
            progress(f"{key}: video streams", done + 1, len(codes))
        found += _summary(
            f"camera {key}: video files",
            failures,
            len(codes),
            "video files",
            f"{len(codes):,} video files: fps, frame size and frames match the metadata",
        )
        if failures:
            return found
    else:
        try:
            _check_image_sizes(ds, key, progress)
            found.append(Finding(f"camera {key}: image sizes", "ok", "every image has the declared size"))
        except (RobotempoError, OSError) as e:
            return [*found, Finding(f"camera {key}: image sizes", "failed", _error(e))]
    if not decode:
        return [*found, Finding(f"camera {key}: frames", "note", "not decoded (--no-video)")]
    ends = np.stack([ds.frames.ep_from, ds.frames.ep_to - 1], axis=1).reshape(-1)
    try:
        for start in range(0, len(ends), 256):
            ds.camera_frames({key: ends[start : start + 256]})
            progress(f"{key}: first/last frames", min(start + 256, len(ends)), len(ends))
    except (RobotempoError, OSError) as e:
        return [*found, Finding(f"camera {key}: frames", "failed", _error(e))]
    return [
        *found,
        Finding(f"camera {key}: frames", "ok", f"first and last frame of {len(ends) // 2:,} episodes"),
    ]


def _check_image_sizes(ds, key: str, progress: Progress, batch: int = 4096) -> None:
    """Every embedded image: its header (size, mode) against the declared shape, and its chunks' integrity
    (`Image.verify`, no pixel decoding)."""
    height, width = ds.meta.info.features[key].hwc[:2]
    depth = key in ds._depth_images  # a depth image: 16-bit or float, served as its values
    modes, kind = (DEPTH_MODES, "depth (16-bit or float)") if depth else (RGB_MODES, "RGB")
    frames = ds.frames
    for start in range(0, frames.num_rows, batch):
        rows = np.arange(start, min(start + batch, frames.num_rows))
        for row, cell in zip(rows, frames.read_heavy(key, rows)):
            data = cell.get("bytes") if isinstance(cell, dict) else cell
            try:
                with Image.open(io.BytesIO(data or b""), formats=IMAGE_FORMATS) as img:
                    size, mode = img.size, image_mode(img)
                    img.verify()
            except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):  # damaged: SyntaxError
                size = mode = None
            if size != (width, height) or mode not in modes:
                path, where = _where(frames, int(row))
                held = (
                    "bytes that are not a whole image"
                    if size is None
                    else f"a {size[1]}x{size[0]} {mode} image"
                )
                raise FeatureMismatchError(
                    path,
                    f"{where}: image column {key!r} holds {held}; info.json declares {height}x{width} {kind}",
                    f"re-export the images as {kind} at the declared size, or correct the feature's shape",
                )
        progress(f"{key}: image sizes", int(rows[-1]) + 1, frames.num_rows)
