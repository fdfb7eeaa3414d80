"""What the files on disk mean. Knows nothing about torch."""

from __future__ import annotations

from dataclasses import dataclass
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

    @property
    def fps(self) -> float:
        return self.info.fps

    @property
    def total_episodes(self) -> int:
        return len(self.episodes)

    @property
    def total_frames(self) -> int:
        return int(self.episodes.length.sum())


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
