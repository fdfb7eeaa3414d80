"""What the two on-disk layouts (v2.1, v3.0) share: their configuration and the record of one episode."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from robotempo.writer.features import FeatureSet


@dataclass
class LayoutConfig:
    root: Path
    fps: float
    features: FeatureSet
    chunks_size: int
    data_path: str
    video_path: str | None
    video_codec: str
    data_files_size_in_mb: float
    video_files_size_in_mb: float
    quantiles: bool = True  # stats with q01-q99 (False: resuming a dataset written without them)


@dataclass
class EpisodeRecord:
    """One written episode, as the metadata will describe it. `location` holds the v3.0 file columns."""

    episode_index: int
    tasks: list[str]
    length: int
    dataset_from_index: int
    stats: dict
    location: dict = field(default_factory=dict)

    @property
    def dataset_to_index(self) -> int:
        return self.dataset_from_index + self.length
