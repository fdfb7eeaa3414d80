"""Read v2.0 / v2.1 metadata (`meta/episodes.jsonl`, `meta/tasks.jsonl`) into an `EpisodeTable`.

One parquet (and one MP4 per camera) per episode; paths come from the info.json templates. Each episode's MP4
starts at t = 0, so every `from_timestamp` is 0. The global `index` runs contiguously in episode order.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from robotempo.errors import DatasetFormatError
from robotempo.format.episodes import EpisodeTable, VideoLocation
from robotempo.format.info import DatasetInfo
from robotempo.io import read_jsonl

logger = logging.getLogger(__name__)

EPISODES_FIX = (
    'each line of meta/episodes.jsonl must be {"episode_index": int, "tasks": [str], "length": int}'
)
TASKS_FIX = 'each line of meta/tasks.jsonl must be {"task_index": int, "task": str}'


def _int_field(path: Path, lineno: int, row: dict, key: str, fix: str, minimum: int = 0) -> int:
    v = row.get(key)
    if isinstance(v, bool) or not isinstance(v, int) or v < minimum:
        raise DatasetFormatError(path, f"{key} must be an integer >= {minimum}, got {v!r}", fix, line=lineno)
    return v


def read_tasks_v21(root: Path) -> dict[int, str]:
    path = root / "meta" / "tasks.jsonl"
    tasks: dict[int, str] = {}
    for lineno, row in read_jsonl(path, "the task table meta/tasks.jsonl", TASKS_FIX):
        idx = _int_field(path, lineno, row, "task_index", TASKS_FIX)
        task = row.get("task")
        if not isinstance(task, str):
            raise DatasetFormatError(path, f"task must be a string, got {task!r}", TASKS_FIX, line=lineno)
        if idx in tasks:
            raise DatasetFormatError(path, f"task_index {idx} appears twice", TASKS_FIX, line=lineno)
        tasks[idx] = task
    return tasks


def read_episodes_v21(root: Path, info: DatasetInfo, tasks: dict[int, str]) -> EpisodeTable:
    path = root / "meta" / "episodes.jsonl"
    rows = read_jsonl(path, "the episode table meta/episodes.jsonl", EPISODES_FIX)
    n = len(rows)
    episode_index = np.empty(n, dtype=np.int64)
    length = np.empty(n, dtype=np.int64)
    task_strings: list[list[str]] = []
    for i, (lineno, row) in enumerate(rows):
        episode_index[i] = _int_field(path, lineno, row, "episode_index", EPISODES_FIX)
        length[i] = _int_field(path, lineno, row, "length", EPISODES_FIX, minimum=1)
        ep_tasks = row.get("tasks", [])
        if isinstance(ep_tasks, str):
            ep_tasks = [ep_tasks]
        if not isinstance(ep_tasks, list) or not all(isinstance(t, str) for t in ep_tasks):
            raise DatasetFormatError(
                path, f"tasks must be a list of strings, got {ep_tasks!r}", EPISODES_FIX, line=lineno
            )
        task_strings.append(ep_tasks)
    order = np.argsort(episode_index, kind="stable")
    episode_index, length = episode_index[order], length[order]
    task_strings = [task_strings[i] for i in order]
    dup = np.flatnonzero(np.diff(episode_index) == 0)
    if len(dup):
        ep = int(episode_index[dup[0]])
        raise DatasetFormatError(path, f"episode_index {ep} appears twice", "remove the duplicate line")
    if n != info.total_episodes:
        logger.warning(
            "%s lists %d episodes but %s says total_episodes=%d; using the episode table",
            path,
            n,
            info.path,
            info.total_episodes,
        )

    by_name = {t: i for i, t in tasks.items()}
    task_index = np.array([by_name.get(t[0], -1) if t else -1 for t in task_strings], dtype=np.int64)
    to_index = np.cumsum(length)
    from_index = to_index - length
    chunks = episode_index // info.chunks_size
    data_files = [
        info.data_file(episode_chunk=int(c), episode_index=int(e)) for c, e in zip(chunks, episode_index)
    ]
    codes = np.arange(n, dtype=np.int32)
    videos = {}
    for key in info.video_keys:
        files = [
            info.video_file(key, episode_chunk=int(c), episode_index=int(e))
            for c, e in zip(chunks, episode_index)
        ]
        videos[key] = VideoLocation(file=codes.copy(), from_timestamp=np.zeros(n), files=files)
    return EpisodeTable(
        episode_index=episode_index,
        length=length,
        task_index=task_index,
        dataset_from_index=from_index,
        dataset_to_index=to_index,
        data_file=codes,
        data_row_from=np.zeros(n, dtype=np.int64),
        data_files=data_files,
        videos=videos,
        tasks=task_strings,
    )
