"""`DatasetWriter`: the facade that validates episodes, keeps tasks, totals and stats, and commits."""

from __future__ import annotations

import contextlib
import logging
import os
import types
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from robotempo.errors import DatasetFormatError, WriterError

try:
    import fcntl
except ImportError:  # not POSIX
    fcntl = None  # type: ignore[assignment]
from robotempo.format.info import (
    MAX_FPS,
    MIN_FPS,
    V21_DATA_PATH,
    V21_VIDEO_PATH,
    V30_DATA_PATH,
    V30_VIDEO_PATH,
    DatasetInfo,
    FeatureSpec,
)
from robotempo.io import atomic_write_json
from robotempo.video.encoder import CODECS, available_codecs
from robotempo.writer.features import FeatureSet
from robotempo.writer.files import check_template
from robotempo.writer.layout import EpisodeRecord, LayoutConfig
from robotempo.writer.resume import read_existing, remove_leftovers
from robotempo.writer.stats import QUANTILES, RunningStats, episode_stats, stats_to_json
from robotempo.writer.v21 import V21Layout
from robotempo.writer.v30 import V30Layout

logger = logging.getLogger(__name__)

VERSIONS = ("v2.1", "v3.0")


def _check_tasks(task: str | Sequence[str]) -> list[str]:
    tasks = [task] if isinstance(task, str) else list(task) if isinstance(task, Sequence) else None
    if not tasks or not all(isinstance(t, str) and t for t in tasks):
        raise WriterError(f"task must be a non-empty string or a non-empty list of them, got {task!r}")
    for t in tasks:
        try:
            t.encode("utf-8")
        # a lone surrogate passed here, then the commit's tasks file failed and the episodes were lost
        except UnicodeEncodeError as e:
            raise WriterError(
                f"task {t!r} is not valid text ({e.reason} at character {e.start}). Fix: pass a str that "
                "UTF-8 can encode (decode bytes with errors='replace' first)"
            ) from None
    return list(dict.fromkeys(tasks))


def _video_info(spec: FeatureSpec, fps: float, codec: str) -> dict:
    height, width, channels = spec.shape
    return {
        "video.fps": fps,
        "video.height": height,
        "video.width": width,
        "video.codec": codec,
        "video.pix_fmt": "yuv420p",
        "video.channels": channels,
        "has_audio": False,
        "video.is_depth_map": False,
        "is_depth_map": False,
    }


LOCK_NAME = ".robotempo-writer.lock"


class WriterLock:
    """An exclusive lock on a dataset folder for one writer's lifetime (flock on a hidden file, removed when
    the writer closes; the OS releases it if the process dies). Two writers on one folder mixed their rows
    and metadata into a dataset every reader accepted; a second resume deleted the first writer's files."""

    def __init__(self, root: Path):
        self.path = root / LOCK_NAME
        self.fd: int | None = None
        if fcntl is None:  # no flock on this platform: one writer per dataset is the user's to keep
            return
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise WriterError(
                f"{root}: another DatasetWriter is writing this dataset (it holds {self.path}). Fix: one "
                "writer per dataset: let it finish (finalize), or write to another folder"
            ) from None
        self.fd = fd

    def release(self) -> None:
        if self.fd is None:
            return
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)  # while holding it: a writer that opens it later makes a new one
        os.close(self.fd)
        self.fd = None


def _check_options(
    version: str, fps: Any, chunks_size: Any, commit_every: Any, data_mb: Any, video_mb: Any, png_level: Any
) -> None:
    if version not in VERSIONS:
        raise WriterError(f"version {version!r} is not written by robotempo. Fix: use one of {VERSIONS}")
    if isinstance(fps, bool) or not isinstance(fps, (int, float)) or not MIN_FPS <= fps <= MAX_FPS:
        # checked here, against the argument: the dataset card's check named a file the user never wrote
        raise WriterError(
            f"fps must be a number in [{MIN_FPS:g}, {MAX_FPS:g}], got {fps!r}. Fix: pass the "
            "frame rate the episodes were recorded at"
        )
    for name, value in (("chunks_size", chunks_size), ("commit_every", commit_every)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value <= 0):
            raise WriterError(f"{name} must be a positive integer, got {value!r}")
    for name, value in (("data_files_size_in_mb", data_mb), ("video_files_size_in_mb", video_mb)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
            raise WriterError(f"{name} must be a positive number, got {value!r}")
    if isinstance(png_level, bool) or not isinstance(png_level, int) or not 0 <= png_level <= 9:
        raise WriterError(f"png_compress_level must be an int in [0, 9], got {png_level!r}")


def _check_codec(codec: str, features: FeatureSet) -> str:
    if features.video_keys and codec not in available_codecs():
        known = f"one of {available_codecs()}" if codec in CODECS else f"one of {sorted(CODECS)}"
        raise WriterError(f"video codec {codec!r} is not available here. Fix: use {known}")
    return codec


def _paths(version: str, features: FeatureSet, data_path: str | None, video_path: str | None) -> tuple:
    """The (data_path, video_path) templates, checked; video_path is None without a video feature."""
    v3 = version == "v3.0"
    fields = {"chunk_index": 0, "file_index": 0} if v3 else {"episode_chunk": 0, "episode_index": 0}
    data_path = check_template(data_path or (V30_DATA_PATH if v3 else V21_DATA_PATH), "data_path", fields)
    if not features.video_keys:
        return data_path, None
    video_path = video_path or (V30_VIDEO_PATH if v3 else V21_VIDEO_PATH)
    return data_path, check_template(video_path, "video_path", {**fields, "video_key": "k"})


class DatasetWriter:
    """Write a LeRobot dataset (v2.1 or v3.0) episode by episode; see `robotempo.writer` for durability.

    `commit_every`: commit after this many episodes (v2.1 default 1; v3.0 default None: commit only at data
    file rollover, `commit()` and `finalize()`). `png_compress_level` (0-9) trades PNG size for speed.
    """

    def __init__(
        self,
        root: str | Path,
        fps: int | float,
        features: Mapping[str, Mapping],
        version: str = "v3.0",
        robot_type: str | None = None,
        video_codec: str = "h264",
        data_path: str | None = None,
        video_path: str | None = None,
        chunks_size: int = 1000,
        data_files_size_in_mb: float = 100,
        video_files_size_in_mb: float = 500,
        commit_every: int | None = None,
        png_compress_level: int = 1,
    ):
        _check_options(
            version,
            fps,
            chunks_size,
            commit_every,
            data_files_size_in_mb,
            video_files_size_in_mb,
            png_compress_level,
        )
        if (Path(root) / "meta" / "info.json").exists():
            raise WriterError(
                f"{root} already holds a dataset (meta/info.json). "
                "Fix: write to an empty folder, or append with DatasetWriter.resume(root)"
            )
        features_set = FeatureSet(features)
        fps = int(fps) if float(fps).is_integer() else float(fps)
        cfg = LayoutConfig(
            Path(root),
            fps,
            features_set,
            chunks_size,
            *_paths(version, features_set, data_path, video_path),
            _check_codec(video_codec, features_set),
            data_files_size_in_mb,
            video_files_size_in_mb,
        )
        self._setup(cfg, version, robot_type, commit_every, png_compress_level)

    def _setup(
        self,
        cfg: LayoutConfig,
        version: str,
        robot_type: str | None,
        commit_every: int | None,
        png_compress_level: int,
    ) -> None:
        self.root, self.version, self.fps, self.features = cfg.root, version, cfg.fps, cfg.features
        self.robot_type = robot_type
        self.png_compress_level = png_compress_level
        self.commit_every = commit_every if commit_every is not None else (1 if version == "v2.1" else None)
        self._cfg = cfg
        self._layout = V30Layout(cfg) if version == "v3.0" else V21Layout(cfg)
        self._tasks: dict[str, int] = {}
        self._uncommitted: list[EpisodeRecord] = []
        self._stats = RunningStats()
        self.num_episodes = 0  # added so far
        self.num_frames = 0
        self.num_committed_episodes = 0
        self._closed = False
        self._committed_once = False
        self._info_dict(0, 0, 0)  # validates the card once, before any file is written
        self.root.mkdir(parents=True, exist_ok=True)
        self._lock = WriterLock(self.root)  # before resume's clean-up, which deletes unreferenced files

    @classmethod
    def resume(
        cls, root: str | Path, commit_every: int | None = None, png_compress_level: int = 1
    ) -> DatasetWriter:
        """Reopen a dataset this writer wrote, to append episodes (after a crash, or to grow it).

        The dataset is taken as its metadata lists it (after a kill inside a commit that may be more than
        info.json's totals: those episodes' files are complete). Hidden temp files and data/video files that
        no metadata references are deleted, then a commit rewrites info.json to match. Features, fps, paths,
        chunk and file sizes and the video codec come from meta/info.json.
        """
        root = Path(root)
        existing = read_existing(root)
        info = existing.info
        features = FeatureSet(existing.user_features())
        data_mb = info.extra.get("data_files_size_in_mb", 100)
        video_mb = info.extra.get("video_files_size_in_mb", 500)
        _check_options(
            info.codebase_version,
            info.fps,
            info.chunks_size,
            commit_every,
            data_mb,
            video_mb,
            png_compress_level,
        )
        cfg = LayoutConfig(
            root,
            info.fps,
            features,
            info.chunks_size,
            info.data_path,
            info.video_path,
            _check_codec(existing.video_codec(), features),
            data_mb,
            video_mb,
            # a dataset written without quantiles stays so: one schema for every meta/episodes file
            quantiles=all(
                QUANTILES.keys() <= stats.keys() for row in existing.rows for stats in row["stats"].values()
            ),
        )
        writer = cls.__new__(cls)
        writer._setup(cfg, info.codebase_version, info.robot_type, commit_every, png_compress_level)
        remove_leftovers(root, existing)
        writer._tasks = {t: i for i, t in enumerate(existing.tasks)}
        for row in existing.rows:
            writer._stats.add(row["stats"])
        writer.num_episodes = writer.num_committed_episodes = len(existing.rows)
        writer.num_frames = sum(row["length"] for row in existing.rows)
        writer._layout.restore(existing.rows)
        writer._commit()
        logger.info("resumed %s at episode %d", root, writer.num_episodes)
        return writer

    @property
    def tasks(self) -> list[str]:
        """Task strings in task_index order."""
        return list(self._tasks)

    def add_episode(self, episode: Mapping[str, Any], task: str | Sequence[str]) -> int:
        """Validate and write one episode; returns its episode_index. Bad input raises WriterError and
        leaves the writer usable; a failure while writing aborts the uncommitted episodes."""
        self._check_open()
        tasks = _check_tasks(task)
        length, arrays = self.features.check_episode(episode)
        for t in tasks:
            self._tasks.setdefault(t, len(self._tasks))
        ep = self.num_episodes
        defaults = self.features.default_values(
            length,
            episode_index=ep,
            first_index=self.num_frames,
            task_index=self._tasks[tasks[0]],
            fps=self.fps,
        )
        stats = episode_stats(self.features.stats_specs(), {**arrays, **defaults}, self._cfg.quantiles)
        rec = EpisodeRecord(ep, tasks, length, self.num_frames, stats)
        try:
            table = self.features.episode_table(arrays, defaults, self.png_compress_level)
            videos = {k: arrays[k] for k in self.features.video_keys}
            rolled_over = self._layout.write_episode(rec, table, videos)
        except BaseException:
            self.abort()
            raise
        self._uncommitted.append(rec)
        self._stats.add(stats)
        self.num_episodes += 1
        self.num_frames += length
        if rolled_over or (self.commit_every and len(self._uncommitted) >= self.commit_every):
            self._commit()
        return ep

    def commit(self) -> None:
        """Make every episode added so far durable and visible (v3.0: the next episodes start new files)."""
        self._check_open()
        self._commit()

    def finalize(self) -> None:
        """Commit and close. Idempotent; the writer accepts no more episodes afterwards."""
        if self._closed:
            return
        self._commit()
        self._closed = True
        self._lock.release()
        logger.info(
            "wrote %s: %d episodes, %d frames, %d tasks",
            self.root,
            self.num_episodes,
            self.num_frames,
            len(self._tasks),
        )

    def abort(self) -> None:
        """Drop the uncommitted episodes (their staged files are deleted) and close; the dataset on disk stays
        at its last commit."""
        if self._closed:
            return
        self._closed = True
        self._layout.abort()
        self._lock.release()
        if self._uncommitted:
            logger.warning("%s: dropped %d uncommitted episodes", self.root, len(self._uncommitted))

    def __enter__(self) -> DatasetWriter:
        return self

    def __exit__(
        self, exc_type: type | None, exc: BaseException | None, tb: types.TracebackType | None
    ) -> None:
        if exc_type is None:
            self.finalize()
        else:
            self.abort()

    def _check_open(self) -> None:
        if self._closed:
            raise WriterError(
                f"{self.root}: the writer is closed (finalized or aborted). Fix: create a new writer"
            )

    def _commit(self) -> None:
        """Files first, then metadata, info.json last: info.json is the commit marker."""
        if not self._uncommitted and self._committed_once:
            return
        try:
            (self.root / "meta").mkdir(parents=True, exist_ok=True)
            self._layout.publish_files()
            self._layout.write_tasks(self._tasks)
            atomic_write_json(self.root / "meta" / "stats.json", stats_to_json(self._stats.result()))
            self._layout.write_episodes(self._uncommitted)
            info = self._info_dict(self.num_episodes, self.num_frames, len(self._tasks))
            atomic_write_json(self.root / "meta" / "info.json", info)
        except BaseException:
            self.abort()  # also takes back the files this commit published
            raise
        self._layout.settle()
        self._uncommitted.clear()
        self.num_committed_episodes = self.num_episodes
        self._committed_once = True

    def _info_dict(self, episodes: int, frames: int, tasks: int) -> dict:
        specs = dict(self.features.specs)
        for k in self.features.video_keys:
            s = specs[k]
            specs[k] = FeatureSpec(
                s.name, s.dtype, s.shape, s.names, _video_info(s, self.fps, self._cfg.video_codec)
            )
        info = DatasetInfo(
            codebase_version=self.version,
            fps=self.fps,
            features={**specs, **self.features.default_specs()},
            total_episodes=episodes,
            total_frames=frames,
            total_tasks=tasks,
            chunks_size=self._cfg.chunks_size,
            data_path=self._cfg.data_path,
            video_path=self._cfg.video_path,
            robot_type=self.robot_type,
            splits={"train": f"0:{episodes}"},
            extra=self._layout.info_extra(episodes),
        )
        d = info.to_dict()
        try:
            DatasetInfo.from_dict(d, self.root / "meta" / "info.json")
        except DatasetFormatError as e:
            raise WriterError(f"the dataset card would not be valid: {e}") from None
        return d
