"""What the files on disk mean. Knows nothing about torch."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from robotempo.format.episodes import EpisodeTable, VideoLocation
from robotempo.format.info import DatasetInfo, FeatureSpec, read_info
from robotempo.format.v21 import read_episodes_v21, read_tasks_v21
from robotempo.format.v30 import read_episodes_v30, read_tasks_v30
from robotempo.fs import DatasetRoot, as_root

# LeRobot 0.6's language annotation columns (`lerobot.datasets.language.LANGUAGE_COLUMNS`)
LANGUAGE_COLUMNS = ("language_persistent", "language_events")

__all__ = [
    "DatasetInfo",
    "DatasetMeta",
    "EpisodeTable",
    "FeatureSpec",
    "VideoLocation",
    "read_info",
    "read_metadata",
    "TaskTable",
]


class TaskTable(dict):
    """`{task_index: task}`; `.index` lists the tasks in task-index order, as the index of LeRobot's task
    table (a pandas DataFrame indexed by task) does: its policy card iterates `meta.tasks.index` (QA:
    `AttributeError` at the end of a LeRobot training run)."""

    @property
    def index(self) -> list[str]:
        return [self[i] for i in sorted(self)]


@dataclass
class DatasetMeta:
    """Everything `meta/` says about a dataset, read once."""

    root: Path | str  # a local folder, or the URL of an object-store root
    info: DatasetInfo
    tasks: dict[int, str]  # a `TaskTable`
    episodes: EpisodeTable
    location: DatasetRoot | None = field(default=None, repr=False)  # reads the files; set by read_metadata
    _stats: dict | None = field(default=None, repr=False)
    stats_snapshot: Any = field(default=None, repr=False)  # meta/stats.json as the open found it (v3.0)
    repo_id: str | None = None  # set by the dataset that reads it
    revision: str | None = None  # LeRobot's Hub revision; robotempo reads the files at `root` as they are

    def __post_init__(self) -> None:
        if self.location is None:
            self.location = as_root(self.root)
        if not isinstance(self.tasks, TaskTable):
            self.tasks = TaskTable(self.tasks)
        self._features: dict | None = None

    @property
    def fps(self) -> float:
        return self.info.fps

    @property
    def total_episodes(self) -> int:
        return len(self.episodes)

    @property
    def total_frames(self) -> int:
        return int(self.episodes.length.sum())

    @property
    def total_tasks(self) -> int:
        return len(self.tasks)

    @property
    def features(self) -> dict:
        """`{key: {"dtype", "shape" (a tuple), "names", "info"}}` as LeRobot's metadata has it: one dict,
        built once, so that a script editing it (dropping a feature before making a policy) edits what it
        reads."""
        if self._features is None:
            self._features = {k: f.as_lerobot() for k, f in self.info.features.items()}
        return self._features

    @property
    def names(self) -> dict:
        return {k: ft["names"] for k, ft in self.features.items()}

    @property
    def shapes(self) -> dict:
        return {k: tuple(ft["shape"]) for k, ft in self.features.items()}

    @property
    def depth_keys(self) -> list[str]:
        """Cameras LeRobot marks as depth maps (`info.is_depth_map`): served as depth values, as LeRobot 0.6.1
        serves them (`robotempo.depth`)."""

        def is_depth(ft: dict) -> bool:
            info = ft.get("info") or {}
            video = ft.get("video_info") or {}
            return bool(
                info.get("is_depth_map") or info.get("video.is_depth_map") or video.get("video.is_depth_map")
            )

        return [k for k, ft in self.features.items() if is_depth(ft)]

    @property
    def has_language_columns(self) -> bool:
        """Whether the dataset declares LeRobot 0.6's language annotation columns (not served here)."""
        return any(k in self.features for k in LANGUAGE_COLUMNS)

    @property
    def chunks_size(self) -> int:
        return self.info.chunks_size

    @property
    def data_path(self) -> str:
        return self.info.data_path

    @property
    def video_path(self) -> str | None:
        return self.info.video_path

    @property
    def data_files_size_in_mb(self) -> float | None:
        return self.info.extra.get("data_files_size_in_mb")

    @property
    def video_files_size_in_mb(self) -> float | None:
        return self.info.extra.get("video_files_size_in_mb")

    def get_task_index(self, task: str) -> int | None:
        """The task_index of a task string, None when the dataset has no such task."""
        return next((i for i, name in sorted(self.tasks.items()) if name == task), None)

    @property
    def camera_keys(self) -> list[str]:
        return self.info.camera_keys

    @property
    def video_keys(self) -> list[str]:
        return self.info.video_keys

    @property
    def image_keys(self) -> list[str]:
        return self.info.image_keys

    @property
    def robot_type(self) -> str | None:
        return self.info.robot_type

    @property
    def stats(self):
        """Feature statistics for normalisation (`robotempo.stats.read_stats`), computed on first use from the
        files as the open found them (v3.0's stats.json is read at open; aggregates cover the episodes the
        open read)."""
        if self._stats is None:
            from robotempo.stats import read_stats

            self._stats = read_stats(self.location, self.info, self.episodes, self.stats_snapshot)
        return self._stats

    @stats.setter
    def stats(self, value: dict) -> None:  # LeRobot's tools replace the statistics (quantiles added, ...)
        self._stats = value


def read_metadata(
    root: str | Path | DatasetRoot, storage_options: Mapping[str, Any] | None = None
) -> DatasetMeta:
    """`meta/` of the dataset at `root` (a folder or an object-store URL; see `robotempo.fs.DatasetRoot`)."""
    root = as_root(root, storage_options)
    info = read_info(root)
    snapshot = None
    if info.is_v3:
        from robotempo.stats import StatsSnapshot

        tasks = read_tasks_v30(root)
        episodes = read_episodes_v30(root, info, tasks)
        snapshot = StatsSnapshot(root)
    else:
        tasks = read_tasks_v21(root)
        episodes = read_episodes_v21(root, info, tasks)
    meta = DatasetMeta(root=root.where(), info=info, tasks=tasks, episodes=episodes, location=root)
    meta.stats_snapshot = snapshot
    return meta
