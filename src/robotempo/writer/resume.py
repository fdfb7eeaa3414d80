"""Reading back a dataset this writer wrote, so `DatasetWriter.resume` can append to it (after a crash, or to
grow it). One writer at a time: resuming deletes the hidden temp files a killed writer left behind."""

from __future__ import annotations

import contextlib
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from robotempo.errors import DatasetFormatError, WriterError
from robotempo.format.info import DEFAULT_COLUMNS, DatasetInfo, read_info
from robotempo.io import read_jsonl
from robotempo.writer.stats import STAT_NAMES, Stats

logger = logging.getLogger(__name__)
_FIX = "resume only datasets written by robotempo's DatasetWriter (v2.1 or v3.0)"


@dataclass
class Existing:
    info: DatasetInfo
    rows: list[dict]  # episode metadata rows, sorted by episode_index; each with a "stats" dict of arrays
    tasks: list[str]

    def user_features(self) -> dict[str, dict]:
        out = {}
        for k, spec in self.info.features.items():
            if k not in DEFAULT_COLUMNS:
                d = spec.to_dict()
                d.pop("info", None)
                out[k] = d
        return out

    def video_codec(self) -> str:
        codecs = {
            (s.info or {}).get("video.codec", "h264") for s in self.info.features.values() if s.is_video
        }
        return codecs.pop() if len(codecs) == 1 else "h264"


def _stats(flat: dict[str, list]) -> dict[str, Stats]:
    return {
        k: {s: np.asarray(v, dtype=np.int64 if s == "count" else np.float64) for s, v in f.items()}
        for k, f in flat.items()
    }


def read_existing(root: Path) -> Existing:
    try:
        return _read_existing(root)
    except WriterError:
        raise
    except DatasetFormatError as e:
        raise WriterError(f"cannot resume {root}: {e}") from None
    except (KeyError, TypeError, ValueError) as e:
        raise WriterError(
            f"cannot resume {root}: incomplete metadata ({type(e).__name__}: {e}). Fix: {_FIX}"
        ) from None


def _read_existing(root: Path) -> Existing:
    info = read_info(root)
    meta = root / "meta"
    if info.codebase_version == "v2.1":
        fix = _FIX
        rows = [r for _, r in read_jsonl(meta / "episodes.jsonl", "the episode list", fix)]
        stats = {
            r["episode_index"]: r["stats"] for _, r in read_jsonl(meta / "episodes_stats.jsonl", "stats", fix)
        }
        for row in rows:
            row["stats"] = _stats(stats[row["episode_index"]])
        tasks = [
            r["task"]
            for _, r in sorted(
                read_jsonl(meta / "tasks.jsonl", "the task list", fix), key=lambda lr: lr[1]["task_index"]
            )
        ]
    elif info.codebase_version == "v3.0":
        rows = [
            r
            for f in sorted((meta / "episodes").glob("chunk-*/file-*.parquet"))
            for r in pq.read_table(f).to_pylist()
        ]
        for row in rows:
            flat: dict[str, dict] = {}
            for key in [k for k in row if k.startswith("stats/")]:
                _, feature, stat = key.split("/")  # feature names never hold "/"
                value = row.pop(key)
                if stat in STAT_NAMES:
                    flat.setdefault(feature, {})[stat] = value
            row["stats"] = _stats(flat)
        tasks = pq.read_table(meta / "tasks.parquet").column("task").to_pylist()
    else:
        raise WriterError(f"cannot resume {root}: version {info.codebase_version}. Fix: {_FIX}")
    rows.sort(key=lambda r: r["episode_index"])
    if [r["episode_index"] for r in rows] != list(range(len(rows))):
        raise WriterError(f"cannot resume {root}: episode indices are not 0..{len(rows) - 1}. Fix: {_FIX}")
    return Existing(info, rows, tasks)


def _template_regex(template: str, video_keys: list[str]) -> re.Pattern:
    parts = re.split(r"(\{[^}]*\})", template)
    keys = "|".join(re.escape(k) for k in video_keys) or "[^/]+"
    body = "".join(
        (f"(?:{keys})" if p.startswith("{video_key") else r"\d+") if p.startswith("{") else re.escape(p)
        for p in parts
    )
    return re.compile(body + r"\Z")


def referenced_files(existing: Existing) -> set[str]:
    info, out = existing.info, set()
    for row in existing.rows:
        e = row["episode_index"]
        if info.is_v3:
            out.add(info.data_file(chunk_index=row["data/chunk_index"], file_index=row["data/file_index"]))
            for key in info.video_keys:
                out.add(
                    info.video_file(
                        key,
                        chunk_index=row[f"videos/{key}/chunk_index"],
                        file_index=row[f"videos/{key}/file_index"],
                    )
                )
        else:
            fields = {"episode_chunk": e // info.chunks_size, "episode_index": e}
            out.add(info.data_file(**fields))
            out.update(info.video_file(key, **fields) for key in info.video_keys)
    return out


def remove_leftovers(root: Path, existing: Existing) -> None:
    """Delete hidden temp files and data/video files no metadata references (from an interrupted commit)."""
    info, keep = existing.info, referenced_files(existing)
    patterns = [_template_regex(info.data_path, [])]
    if info.video_path:
        patterns.append(_template_regex(info.video_path, info.video_keys))
    for path in root.rglob("*"):
        rel = path.relative_to(root).as_posix()
        if rel.startswith("meta/") and not path.name.startswith("."):
            continue
        stale = path.name.startswith(".") and path.name.endswith(".tmp")
        orphan = not stale and rel not in keep and any(p.match(rel) for p in patterns)
        if (stale or orphan) and path.is_file():
            logger.warning("%s: removing %s left by an interrupted writer", root, rel)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
