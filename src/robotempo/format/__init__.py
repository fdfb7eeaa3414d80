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

__all__ = [
    "DatasetInfo",
    "DatasetMeta",
    "EpisodeTable",
    "FeatureSpec",
    "VideoLocation",
    "read_info",
    "read_metadata",
]


@dataclass
class DatasetMeta:
    """Everything `meta/` says about a dataset, read once."""

    root: Path | str  # a local folder, or the URL of an object-store root
    info: DatasetInfo
    tasks: dict[int, str]
    episodes: EpisodeTable
    location: DatasetRoot | None = field(default=None, repr=False)  # reads the files; set by read_metadata
    _stats: dict | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.location is None:
            self.location = as_root(self.root)

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
        return {k: f.to_dict() for k, f in self.info.features.items()}

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
        """Feature statistics for normalisation (`robotempo.stats.read_stats`), read on first use."""
        if self._stats is None:
            from robotempo.stats import read_stats

            self._stats = read_stats(self.location, self.info.is_v3)
        return self._stats


def read_metadata(
    root: str | Path | DatasetRoot, storage_options: Mapping[str, Any] | None = None
) -> DatasetMeta:
    """`meta/` of the dataset at `root` (a folder or an object-store URL; see `robotempo.fs.DatasetRoot`)."""
    root = as_root(root, storage_options)
    info = read_info(root)
    if info.is_v3:
        tasks = read_tasks_v30(root)
        episodes = read_episodes_v30(root, info, tasks)
    else:
        tasks = read_tasks_v21(root)
        episodes = read_episodes_v21(root, info, tasks)
    return DatasetMeta(root=root.where(), info=info, tasks=tasks, episodes=episodes, location=root)
