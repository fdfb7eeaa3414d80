"""The v2.1 layout: one parquet and one MP4 per camera per episode, JSON-lines metadata."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa

from robotempo.io import atomic_write_bytes
from robotempo.writer.files import Staging, open_video, stage_table
from robotempo.writer.layout import EpisodeRecord, LayoutConfig
from robotempo.writer.stats import stats_to_json


class V21Layout:
    """Episode files are staged as they are written and published, with the metadata, at each commit."""

    def __init__(self, cfg: LayoutConfig):
        self.cfg = cfg
        self._staging = Staging()
        self._episode_lines: list[str] = []
        self._stats_lines: list[str] = []

    def _fields(self, episode_index: int) -> dict:
        return {"episode_chunk": episode_index // self.cfg.chunks_size, "episode_index": episode_index}

    def write_episode(self, rec: EpisodeRecord, table: pa.Table, videos: dict[str, np.ndarray]) -> bool:
        """Stage one episode's files; returns False (v2.1 has no size-based commit points)."""
        cfg, fields = self.cfg, self._fields(rec.episode_index)
        stage_table(cfg.root / cfg.data_path.format(**fields), table, self._staging)
        for key, frames in videos.items():
            final = cfg.root / cfg.video_path.format(video_key=key, **fields)
            encoder = open_video(final, cfg.fps, cfg.features.specs[key], cfg.video_codec)
            try:
                encoder.write(frames)
                encoder.close()
            except BaseException:
                encoder.abort()
                raise
            self._staging.add(encoder.path, final)
        return False

    def publish_files(self) -> None:
        self._staging.publish()

    def settle(self) -> None:
        self._staging.settle()

    def write_tasks(self, tasks: dict[str, int]) -> None:
        lines = "".join(json.dumps({"task_index": i, "task": t}) + "\n" for t, i in tasks.items())
        atomic_write_bytes(self.cfg.root / "meta" / "tasks.jsonl", lines.encode())

    def write_episodes(self, records: list[EpisodeRecord]) -> None:
        for rec in records:
            self._episode_lines.append(
                json.dumps({"episode_index": rec.episode_index, "tasks": rec.tasks, "length": rec.length})
                + "\n"
            )
            self._stats_lines.append(
                json.dumps({"episode_index": rec.episode_index, "stats": stats_to_json(rec.stats)}) + "\n"
            )
        meta = self.cfg.root / "meta"
        atomic_write_bytes(meta / "episodes_stats.jsonl", "".join(self._stats_lines).encode())
        atomic_write_bytes(meta / "episodes.jsonl", "".join(self._episode_lines).encode())

    def restore(self, rows: list[dict]) -> None:
        """Take over the episodes of an existing dataset (rows as `resume.read_existing` gives them)."""
        for row in rows:
            self._episode_lines.append(json.dumps({k: v for k, v in row.items() if k != "stats"}) + "\n")
            stats = {"episode_index": row["episode_index"], "stats": stats_to_json(row["stats"])}
            self._stats_lines.append(json.dumps(stats) + "\n")

    def info_extra(self, total_episodes: int) -> dict:
        chunks = (total_episodes - 1) // self.cfg.chunks_size + 1 if total_episodes else 0
        return {"total_videos": total_episodes * len(self.cfg.features.video_keys), "total_chunks": chunks}

    def abort(self) -> None:
        self._staging.discard()
