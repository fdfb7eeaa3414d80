"""What the files on disk mean. Knows nothing about torch."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from robotempo.format.episodes import EpisodeTable, VideoLocation
from robotempo.format.info import DatasetInfo, FeatureSpec, read_info
from robotempo.format.v21 import read_episodes_v21, read_tasks_v21
from robotempo.format.v30 import read_episodes_v30, read_tasks_v30

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

    root: Path
    info: DatasetInfo
    tasks: dict[int, str]
    episodes: EpisodeTable
    _stats: dict | None = field(default=None, repr=False)

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

            self._stats = read_stats(self.root, self.info.is_v3)
        return self._stats


def read_metadata(root: str | Path) -> DatasetMeta:
    root = Path(root)
    info = read_info(root)
    if info.is_v3:
        tasks = read_tasks_v30(root)
        episodes = read_episodes_v30(root, info, tasks)
    else:
        tasks = read_tasks_v21(root)
        episodes = read_episodes_v21(root, info, tasks)
    return DatasetMeta(root=root, info=info, tasks=tasks, episodes=episodes)
