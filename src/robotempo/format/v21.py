"""Read v2.0 / v2.1 metadata (`meta/episodes.jsonl`, `meta/tasks.jsonl`) into an `EpisodeTable`.

One parquet (and one MP4 per camera) per episode; paths come from the info.json templates. Each episode's MP4
starts at t = 0, so every `from_timestamp` is 0. The global `index` runs contiguously in episode order.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Sequence
from functools import partial
from pathlib import Path

import numpy as np

from robotempo.errors import DatasetFormatError
from robotempo.format.checks import warn_on_totals
from robotempo.format.episodes import EpisodeTable, VideoLocation
from robotempo.format.info import MAX_COUNT, DatasetInfo
from robotempo.format.v21_columnar import Parsed, parse_canonical
from robotempo.fs import DatasetRoot
from robotempo.io import parse_jsonl, read_file, read_jsonl

logger = logging.getLogger(__name__)

EPISODES = "meta/episodes.jsonl"
EPISODES_FIX = (
    'each line of meta/episodes.jsonl must be {"episode_index": int, "tasks": [str], "length": int}'
)
TASKS_FIX = 'each line of meta/tasks.jsonl must be {"task_index": int, "task": str}'


def _int_field(path: Path | str, lineno: int, row: dict, key: str, fix: str, minimum: int = 0) -> int:
    v = row.get(key)
    if isinstance(v, bool) or not isinstance(v, int) or not minimum <= v <= MAX_COUNT:
        raise DatasetFormatError(
            path, f"{key} must be an integer in {minimum}..2**53, got {v!r}", fix, line=lineno
        )
    return v


def read_tasks_v21(root: DatasetRoot) -> dict[int, str]:
    path = root.where("meta/tasks.jsonl")
    tasks: dict[int, str] = {}
    for lineno, row in read_jsonl(
        root.file("meta/tasks.jsonl"), "the task table meta/tasks.jsonl", TASKS_FIX
    ):
        idx = _int_field(path, lineno, row, "task_index", TASKS_FIX)
        task = row.get("task")
        if not isinstance(task, str):
            raise DatasetFormatError(path, f"task must be a string, got {task!r}", TASKS_FIX, line=lineno)
        if idx in tasks:
            raise DatasetFormatError(path, f"task_index {idx} appears twice", TASKS_FIX, line=lineno)
        tasks[idx] = task
    return tasks


# Numbers of more than 15 digits (they would overflow int64) and with a leading zero (not JSON) do not match:
# the strict parser names the line.
_CANONICAL = re.compile(
    rb'\{"episode_index": (0|[1-9]\d{0,14}), "tasks": \["([^"\\]*)"[^\]]*\], "length": (0|[1-9]\d{0,14})[,}]'
)
_EPISODE = re.compile(rb'"episode_index"\s*:\s*(0|[1-9]\d{0,14})[,}\s]')
_LENGTH = re.compile(rb'"length"\s*:\s*(0|[1-9]\d{0,14})[,}\s]')
_TASK = re.compile(rb'"tasks"\s*:\s*\[\s*"((?:[^"\\]|\\.)*)"')


class TemplatePaths(Sequence):
    """File paths of a v2.x dataset, formatted from the info.json template only when asked for.

    Opening one episode of a 20,000-episode dataset formats one path, not 20,000.
    """

    def __init__(self, template, episode_index: np.ndarray, chunks_size: int):
        self._format, self._episodes, self._chunks = template, episode_index, chunks_size

    def __len__(self) -> int:
        return len(self._episodes)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        e = int(self._episodes[i])
        return self._format(episode_chunk=e // self._chunks, episode_index=e)


def _fast_episodes(data: bytes) -> Parsed | None:
    """The episode table without a per-line parser: columnar when every line is canonical, else regular
    expressions over the whole file; None when anything is unusual (the strict parser then decides)."""
    parsed = parse_canonical(data)
    return parsed if parsed is not None else _regex_episodes(data)


def _regex_episodes(data: bytes) -> Parsed | None:
    """The episode table by regular expressions over the whole file (about 0.6 us per episode).

    Used only when every line yields exactly one match of each field; anything unusual (a line not starting
    with "{", repeated key names in extra keys, a task list that is not strings) returns None and the strict
    per-line parser decides, with its line-numbered errors.
    """
    lines = data.count(b"\n") + (not data.endswith(b"\n"))
    if data.count(b"\n{") + data.startswith(b"{") != lines:
        return None  # a line that is not an object (or a blank line): the strict parser names it
    rows = _CANONICAL.findall(data)  # the key order LeRobot and OpenTau write
    if len(rows) == lines:
        episodes, tasks, lengths = zip(*rows) if rows else ((), (), ())
    else:
        episodes, lengths, tasks = _EPISODE.findall(data), _LENGTH.findall(data), _TASK.findall(data)
        if not (len(episodes) == len(lengths) == len(tasks) == lines == data.count(b'"tasks"')):
            return None
    codes: dict[bytes, int] = {}
    task_code = np.fromiter(
        (codes.setdefault(t, len(codes)) for t in tasks), dtype=np.int64, count=len(tasks)
    )
    try:
        names = [json.loads(b'"' + raw + b'"') for raw in codes]
    except ValueError:  # not UTF-8, or a bad escape: the strict parser names the line
        return None
    return np.array(episodes, dtype=np.int64), np.array(lengths, dtype=np.int64), task_code, names


def _strict_episodes(data: bytes, path: Path | str) -> Parsed:
    rows = parse_jsonl(data, path, EPISODES_FIX)
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
    codes: dict[str, int] = {}
    task_code = np.array(
        [codes.setdefault(t[0], len(codes)) if t else -1 for t in task_strings], dtype=np.int64
    )
    return episode_index, length, task_code, list(codes)


def _in_range(parsed: Parsed) -> bool:
    episode_index, length = parsed[0], parsed[1]
    return not (np.any(length < 1) or np.any(length > MAX_COUNT) or np.any(episode_index > MAX_COUNT))


def _canonical_on_disk(root: DatasetRoot) -> Parsed | None:
    """The columnar parse of a local root's file, read in slices (never all of its bytes in memory); None
    for a remote root, a file that is not canonical, or one that cannot be read (the whole-file read that
    follows then raises the typed error)."""
    if not root.is_local:
        return None
    try:
        with open(root.local(EPISODES), "rb") as f:
            return parse_canonical(f)
    except OSError:
        return None


def read_episodes_v21(root: DatasetRoot, info: DatasetInfo, tasks: dict[int, str]) -> EpisodeTable:
    path = root.where(EPISODES)
    parsed = _canonical_on_disk(root)
    if parsed is None or not _in_range(parsed):
        data, path = read_file(root.file(EPISODES), "the episode table meta/episodes.jsonl", EPISODES_FIX)
        parsed = _fast_episodes(data)
        if parsed is None or not _in_range(parsed):
            parsed = _strict_episodes(data, path)  # names the line at fault (it checks each line)
    episode_index, length, task_code, names = parsed
    n = len(episode_index)
    if length.sum(dtype=np.float64) > MAX_COUNT:
        raise DatasetFormatError(
            path,
            f"the episode lengths sum to {length.sum(dtype=np.float64):.3g} frames, beyond 2**53",
            EPISODES_FIX,
        )
    if not (episode_index[1:] > episode_index[:-1]).all():  # writers list episodes in order: no copies then
        order = np.argsort(episode_index, kind="stable")
        episode_index, length, task_code = episode_index[order], length[order], task_code[order]
        dup = np.flatnonzero(np.diff(episode_index) == 0)
        if len(dup):
            ep = int(episode_index[dup[0]])
            raise DatasetFormatError(path, f"episode_index {ep} appears twice", "remove the duplicate line")
    warn_on_totals(path, length, info, "episode table")

    by_name = {t: i for i, t in tasks.items()}
    index_of_code = np.array([by_name.get(name, -1) for name in names] + [-1], dtype=np.int64)
    task_index = index_of_code[task_code]  # code -1 (no task) picks the trailing -1
    to_index = np.cumsum(length)
    from_index = to_index - length
    data_files = TemplatePaths(info.data_file, episode_index, info.chunks_size)
    codes = np.arange(n, dtype=np.int32)
    videos = {}
    for key in info.video_keys:
        files = TemplatePaths(partial(info.video_file, key), episode_index, info.chunks_size)
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
        index_stated=False,
    )
