"""`EpisodeTable`: every episode of a dataset as columnar numpy arrays, one row per episode.

Both format readers (v2.1, v3.0) produce this one shape, so nothing above `format/` knows the version.
Rows are sorted by `episode_index`. File columns are integer codes into the table's path lists, so a
million-episode table stays a handful of arrays.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from robotempo.arrays import take


@dataclass
class VideoLocation:
    """Where one camera's frames of each episode live: MP4 file (code into `files`) and time offset in it."""

    file: np.ndarray  # int32, code into `files`
    from_timestamp: np.ndarray  # float64 seconds; video time of a row = from_timestamp + row timestamp
    files: list[str]  # paths relative to the dataset root
    to_timestamp: np.ndarray | None = (
        None  # float64 end of the episode's window (v3.0); None: start + length/fps
    )


@dataclass
class EpisodeTable:
    episode_index: np.ndarray  # int64, sorted, unique
    length: np.ndarray  # int64 frames
    task_index: np.ndarray  # int64 task of the episode per metadata (first task); -1 if the table lacks it
    dataset_from_index: np.ndarray  # int64 global `index` of the first row (half-open range)
    dataset_to_index: np.ndarray
    data_file: np.ndarray  # int32 code into `data_files`
    data_row_from: np.ndarray  # int64 row offset of the episode inside its data file (derived from metadata)
    data_files: list[str]  # relative to the dataset root
    videos: dict[str, VideoLocation] = field(default_factory=dict)
    # Whether the metadata states each episode's global `index` range (v3.0). v2.1's is the running sum of
    # the lengths, a position: its data may skip values (an episode deleted by hand keeps the others' index).
    index_stated: bool = True
    # Each episode's task strings (v3.0's `tasks` column, a pyarrow list<string> array), as LeRobot's
    # `meta.episodes["tasks"]` gives them (its training script's eval split reads it); None: not in metadata
    tasks: object = field(default=None, repr=False)

    def __post_init__(self) -> None:
        n = len(self.episode_index)
        for name in (
            "length",
            "task_index",
            "dataset_from_index",
            "dataset_to_index",
            "data_file",
            "data_row_from",
        ):
            assert len(getattr(self, name)) == n, name

    def __len__(self) -> int:
        return len(self.episode_index)

    # LeRobot's `meta.episodes` is a Hugging Face Dataset: `["dataset_from_index"]` gives a column as a list,
    # `[i]` a row as a dict (its training script builds its episode-aware sampler that way). The same here,
    # for the columns this table holds.
    def _columns(self) -> dict[str, np.ndarray]:
        out = {
            "episode_index": self.episode_index,
            "length": self.length,
            "dataset_from_index": self.dataset_from_index,
            "dataset_to_index": self.dataset_to_index,
        }
        if (self.task_index >= 0).all():
            out["task_index"] = self.task_index
        for key, loc in self.videos.items():
            out[f"videos/{key}/from_timestamp"] = loc.from_timestamp
            if loc.to_timestamp is not None:
                out[f"videos/{key}/to_timestamp"] = loc.to_timestamp
        return out

    @property
    def num_rows(self) -> int:
        """The episodes (rows), as a Hugging Face Dataset's `num_rows`."""
        return len(self)

    @property
    def column_names(self) -> list[str]:
        return list(self._columns()) + (["tasks"] if self.tasks is not None else [])

    def __getitem__(self, key: str | int) -> list | dict:
        columns = self._columns()
        if isinstance(key, str):
            if key == "tasks" and self.tasks is not None:
                return self.tasks.to_pylist()
            if key not in columns:
                raise KeyError(f"the episode table has no column {key!r}; it has {self.column_names}")
            return columns[key].tolist()
        if isinstance(key, (int, np.integer)) and not isinstance(key, (bool, np.bool_)):
            i = int(key) + len(self) if key < 0 else int(key)
            if not 0 <= i < len(self):
                raise IndexError(f"episode row {key} is out of range for {len(self)} episodes")
            row = {name: column[i].item() for name, column in columns.items()}
            if self.tasks is not None:
                row["tasks"] = self.tasks[i].as_py()
            return row
        raise TypeError(f"index the episode table with a column name or a row number, got {key!r}")

    def positions(self, episodes: np.ndarray) -> np.ndarray:
        """Row positions of the given episode indices (which must exist: callers validate first)."""
        return np.searchsorted(self.episode_index, episodes)

    def take(self, positions: np.ndarray) -> EpisodeTable:
        """A sub-table of the given rows (sorted positions); path lists are shared, not copied."""
        return EpisodeTable(
            episode_index=self.episode_index[positions],
            length=self.length[positions],
            task_index=self.task_index[positions],
            dataset_from_index=self.dataset_from_index[positions],
            dataset_to_index=self.dataset_to_index[positions],
            data_file=self.data_file[positions],
            data_row_from=self.data_row_from[positions],
            data_files=self.data_files,
            index_stated=self.index_stated,
            tasks=None if self.tasks is None else take(self.tasks, positions),  # no numpy.ma (arrays.py)
            videos={
                k: VideoLocation(
                    v.file[positions],
                    v.from_timestamp[positions],
                    v.files,
                    None if v.to_timestamp is None else v.to_timestamp[positions],
                )
                for k, v in self.videos.items()
            },
        )
