"""The v3.0 layout: many episodes per data parquet and per MP4, parquet metadata.

The data file and each camera's MP4 are separate rolling sequences `chunk-CCC/file-FFF`: a file is closed
after the episode that takes it past its size limit, and `file_index` wraps at `chunks_size` into the next
chunk.
A data file's row groups hold whole episodes, as many as it takes to pass `ROW_GROUP_BYTES`: a reader parses
the footer (every row group's metadata) on each open, so one row group per episode, as LeRobot writes, made
a 20,000-episode tabular file carry a 14.6 MB footer that cost 0.16 s to parse on every `episodes=[k]` open;
with row groups of ~1 MB it is 45 KB (docs/benchmarks.md, "v3.0 row groups"). Files with embedded images
close their groups past `IMAGE_ROW_GROUP_BYTES` (96 KB): the image reader reads a group's whole image column
on a miss while its cache has room, so its groups stay small; an episode of a few dozen 64x64 frames or of
larger images passes that alone (one group per episode, as before), while tiny images still get a small
footer.
Every file is staged (hidden temp name) until the commit that publishes it with the metadata describing it.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from robotempo.format.info import V30_EPISODES_PATH
from robotempo.video.encoder import VideoEncoder
from robotempo.writer.files import Staging, heavy_columns, open_parquet, open_video, write_table_file
from robotempo.writer.layout import EpisodeRecord, LayoutConfig
from robotempo.writer.stats import QUANTILES, STAT_NAMES

MB = 1024 * 1024
# Rows buffered (in memory, as arrow counts them) before they are written as one row group. ~1 MB keeps the
# footer small (a file of `data_files_size_in_mb` holds about that many row groups) and reading the row group
# of one selected episode cheap; measured on a 20,000-episode file, 8,192-row groups (1.2 MB) opened
# `episodes=[k]` in 0.027 s against 0.026 s for 1,024 rows and 0.07 s for 65,536.
ROW_GROUP_BYTES = 1 * MB
# The same for files with embedded images. Grouping P9's 64x64 episodes (118-877 KB each) 3-4 to a group
# under the 1 MB rule cost +71 MB of node PSS in a short 2-worker pass (docs/benchmarks.md, "v3.0 row
# groups"). Below their smallest, every episode of the benchmarks' image corpora is its own group, as
# before; 32x32 episodes of ~15 KB still make groups of ~6 (a 100 MB file: ~1,000 groups, not 7,000).
IMAGE_ROW_GROUP_BYTES = 96 * 1024

# What `pandas.DataFrame.to_parquet` records for a frame indexed by the task string: LeRobot reads
# meta/tasks.parquet with `pd.read_parquet`, which restores the "task" index from this.
_TASKS_PANDAS_METADATA = {
    "index_columns": ["task"],
    "column_indexes": [
        {
            "name": None,
            "field_name": None,
            "pandas_type": "unicode",
            "numpy_type": "object",
            "metadata": {"encoding": "UTF-8"},
        }
    ],
    "columns": [
        {
            "name": "task_index",
            "field_name": "task_index",
            "pandas_type": "int64",
            "numpy_type": "int64",
            "metadata": None,
        },
        {
            "name": "task",
            "field_name": "task",
            "pandas_type": "unicode",
            "numpy_type": "object",
            "metadata": None,
        },
    ],
    "attributes": {},
    "creator": {"library": "pyarrow", "version": pa.__version__},
    "pandas_version": "2.2.3",
}


class _Sequence:
    """The position `(chunk_index, file_index)` of the current file of one rolling file sequence."""

    def __init__(self, chunks_size: int):
        self.chunks_size = chunks_size
        self.chunk_index = 0
        self.file_index = 0

    def fields(self) -> dict[str, int]:
        return {"chunk_index": self.chunk_index, "file_index": self.file_index}

    def resume_after(self, chunk_index: int, file_index: int) -> None:
        self.chunk_index, self.file_index = chunk_index, file_index
        self.advance()

    def advance(self) -> None:
        self.file_index += 1
        if self.file_index >= self.chunks_size:
            self.chunk_index, self.file_index = self.chunk_index + 1, 0


def episodes_schema(cfg: LayoutConfig) -> pa.Schema:
    i64, f64 = pa.int64(), pa.float64()
    fields = [
        ("episode_index", i64),
        ("tasks", pa.list_(pa.string())),
        ("length", i64),
        ("data/chunk_index", i64),
        ("data/file_index", i64),
        ("dataset_from_index", i64),
        ("dataset_to_index", i64),
    ]
    for key in cfg.features.video_keys:
        fields += [
            (f"videos/{key}/chunk_index", i64),
            (f"videos/{key}/file_index", i64),
            (f"videos/{key}/from_timestamp", f64),
            (f"videos/{key}/to_timestamp", f64),
        ]
    for key, spec in cfg.features.stats_specs().items():
        value = pa.list_(pa.list_(pa.list_(f64))) if spec.is_camera else pa.list_(f64)
        names = STAT_NAMES if cfg.quantiles else [s for s in STAT_NAMES if s not in QUANTILES]
        fields += [(f"stats/{key}/{s}", pa.list_(i64) if s == "count" else value) for s in names]
    fields += [("meta/episodes/chunk_index", i64), ("meta/episodes/file_index", i64)]
    return pa.schema(fields)


class V30Layout:
    def __init__(self, cfg: LayoutConfig):
        self.cfg = cfg
        self._staging = Staging()
        self._data = _Sequence(cfg.chunks_size)
        self._data_file: tuple[pq.ParquetWriter, Path, Path] | None = None  # writer, staged, final
        self._rows: list[pa.Table] = []  # whole episodes waiting for their row group
        self._rows_bytes = 0
        self._heavy = False  # the data file embeds images: IMAGE_ROW_GROUP_BYTES
        self._videos = {k: _Sequence(cfg.chunks_size) for k in cfg.features.video_keys}
        self._encoders: dict[str, tuple[VideoEncoder, Path]] = {}  # key -> (encoder, final)
        self._frames_in_file = {k: 0 for k in cfg.features.video_keys}
        self._meta = _Sequence(cfg.chunks_size)
        self._meta_rows: list[dict] = []
        self._meta_schema = episodes_schema(cfg)

    def write_episode(self, rec: EpisodeRecord, table: pa.Table, videos: dict[str, np.ndarray]) -> bool:
        """Append one episode; returns True when its data file rolled over (a commit point)."""
        cfg = self.cfg
        if self._data_file is None:
            final = cfg.root / cfg.data_path.format(**self._data.fields())
            self._data_file = (*open_parquet(final, table.schema), final)
            self._heavy = bool(heavy_columns(table.schema))
        self._rows.append(table)
        self._rows_bytes += table.nbytes
        if self._rows_bytes >= (IMAGE_ROW_GROUP_BYTES if self._heavy else ROW_GROUP_BYTES):
            self._write_row_group()
        rec.location.update(
            {"data/chunk_index": self._data.chunk_index, "data/file_index": self._data.file_index}
        )
        for key, frames in videos.items():
            self._write_video(rec, key, frames)
        # The rows still waiting count at their in-memory size: a file never passes its limit by more than
        # one episode, whatever the row groups.
        if os.stat(self._data_file[1]).st_size + self._rows_bytes >= cfg.data_files_size_in_mb * MB:
            self._close_data()
            return True
        return False

    def _write_video(self, rec: EpisodeRecord, key: str, frames: np.ndarray) -> None:
        cfg, seq = self.cfg, self._videos[key]
        if key not in self._encoders:
            final = cfg.root / cfg.video_path.format(video_key=key, **seq.fields())
            self._encoders[key] = (
                open_video(final, cfg.fps, cfg.features.specs[key], cfg.video_codec),
                final,
            )
            self._frames_in_file[key] = 0
        encoder = self._encoders[key][0]
        start = self._frames_in_file[key]
        encoder.write(frames)
        self._frames_in_file[key] = start + len(frames)
        rec.location.update(
            {
                f"videos/{key}/chunk_index": seq.chunk_index,
                f"videos/{key}/file_index": seq.file_index,
                f"videos/{key}/from_timestamp": start / cfg.fps,
                f"videos/{key}/to_timestamp": (start + len(frames)) / cfg.fps,
            }
        )
        if encoder.bytes_written >= cfg.video_files_size_in_mb * MB:  # muxed packets (lookahead not yet)
            self._close_video(key)

    def _write_row_group(self) -> None:
        if self._rows:
            table = pa.concat_tables(self._rows)
            self._rows, self._rows_bytes = [], 0
            self._data_file[0].write_table(table, row_group_size=len(table))

    def _close_data(self) -> None:
        self._write_row_group()
        writer, staged, final = self._data_file
        self._data_file = None
        writer.close()
        self._staging.add(staged, final)
        self._data.advance()

    def _close_video(self, key: str) -> None:
        encoder, final = self._encoders.pop(key)
        encoder.close()
        self._staging.add(encoder.path, final)
        self._videos[key].advance()

    def publish_files(self) -> None:
        """Close the files being appended (the next episodes start new ones) and publish every staged file."""
        if self._data_file is not None:
            self._close_data()
        for key in list(self._encoders):
            self._close_video(key)
        self._staging.publish()

    def settle(self) -> None:
        self._staging.settle()

    def write_tasks(self, tasks: dict[str, int]) -> None:
        table = pa.table(
            {
                "task_index": pa.array(list(tasks.values()), pa.int64()),
                "task": pa.array(list(tasks), pa.string()),
            }
        )
        table = table.replace_schema_metadata({b"pandas": json.dumps(_TASKS_PANDAS_METADATA).encode()})
        write_table_file(self.cfg.root / "meta" / "tasks.parquet", table)

    def write_episodes(self, records: list[EpisodeRecord]) -> None:
        """Rewrite the current episode-metadata file with the new rows; roll it over once it is large."""
        if not records:
            return
        meta = {
            "meta/episodes/chunk_index": self._meta.chunk_index,
            "meta/episodes/file_index": self._meta.file_index,
        }
        for rec in records:
            row = {
                "episode_index": rec.episode_index,
                "tasks": rec.tasks,
                "length": rec.length,
                "dataset_from_index": rec.dataset_from_index,
                "dataset_to_index": rec.dataset_to_index,
                **rec.location,
                **meta,
            }
            for key, stats in rec.stats.items():
                row.update({f"stats/{key}/{s}": v.tolist() for s, v in stats.items()})
            self._meta_rows.append(row)
        path = self.cfg.root / V30_EPISODES_PATH.format(**self._meta.fields())
        write_table_file(path, pa.Table.from_pylist(self._meta_rows, schema=self._meta_schema))
        if path.stat().st_size >= self.cfg.data_files_size_in_mb * MB:
            self._meta.advance()
            self._meta_rows = []

    def restore(self, rows: list[dict]) -> None:
        """Continue after an existing dataset's last episode: every sequence starts its next file."""
        if not rows:
            return
        last = rows[-1]
        self._data.resume_after(last["data/chunk_index"], last["data/file_index"])
        for key, seq in self._videos.items():
            seq.resume_after(last[f"videos/{key}/chunk_index"], last[f"videos/{key}/file_index"])
        self._meta.resume_after(last["meta/episodes/chunk_index"], last["meta/episodes/file_index"])

    def info_extra(self, total_episodes: int) -> dict:
        return {
            "data_files_size_in_mb": self.cfg.data_files_size_in_mb,
            "video_files_size_in_mb": self.cfg.video_files_size_in_mb,
        }

    def abort(self) -> None:
        self._rows, self._rows_bytes = [], 0
        if self._data_file is not None:
            writer, staged, _ = self._data_file
            self._data_file = None
            with contextlib.suppress(Exception):
                writer.close()
            with contextlib.suppress(FileNotFoundError):
                os.unlink(staged)
        for encoder, _ in self._encoders.values():
            encoder.abort()
        self._encoders.clear()
        self._staging.discard()
