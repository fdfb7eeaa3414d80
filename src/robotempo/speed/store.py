"""`meta/speed_percentiles.jsonl`: strict reading, atomic writing, staleness, and the read-only fallback.

One JSON object per task, sorted by `task_index`, no header line::

    {"task_index": 0, "task": "pick", "n_episodes": 47, "percentiles": [10 floats] | null,
     "version": 1, "fingerprint": "9f2c...", "population": "41be.../4"}

The first four keys are OpenTau's, so files written by either tool are read by the other; other keys are
kept. `population` hashes the whole metadata view (every episode's index, length and metadata task) and
counts the rows written: while it matches, the file is fresh whatever the metadata's task strings say.
Otherwise `fingerprint` (the task's `(episode_index, length)` pairs as the *metadata* sees them) says which
task changed, and a row's `task` must still name the table's task. Staleness is checked from metadata
alone: opening a dataset reads no frame data when the file is present and complete.

Distributed runs need no barrier and no collective: every rank resolves the same inputs to the same numbers
(reading one file, or computing deterministically), only local rank 0 writes (atomically, so concurrent nodes
on a shared filesystem and ranks reading while another writes are safe), and only global rank 0 warns. With no
collective there is no code path on which one rank can leave the others waiting.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import tempfile
import threading
from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from robotempo.arrays import distinct, stable_order, value_counts
from robotempo.distributed import process_info
from robotempo.errors import SpeedLabelError
from robotempo.fs import DatasetRoot, FileRef, as_file, as_root
from robotempo.io import atomic_write_jsonl, parse_jsonl
from robotempo.safepath import in_hub_cache
from robotempo.speed.labels import (
    SPARSE_TASK_BUCKET,
    SPEED_PERCENTILES,
    compute_percentiles_by_task,
    label_episodes,
)

log = logging.getLogger(__name__)

SPEED_PERCENTILES_FILE = "meta/speed_percentiles.jsonl"
SCHEMA_VERSION = 1
_MAX_FRAMES = 2**53  # beyond it a count or a length is no real dataset's, and float64 loses integers
_REQUIRED_KEYS = ("task_index", "task", "n_episodes", "percentiles")
_EMPTY_FINGERPRINT = hashlib.blake2b(b"", digest_size=8).hexdigest()
_FEW_TASKS = 64  # up to this many tasks, fingerprints take a pass per task instead of a sort

Source = Literal["file", "cache", "computed"]


class Warner:
    """Logs each distinct warning once, and only where `enabled` (by default: on global rank 0).

    One instance belongs to one dataset (or one call), so deduplication never leaks between datasets or tests.
    `messages` keeps every distinct warning raised, logged or not.
    """

    def __init__(self, enabled: bool | None = None, logger: logging.Logger | None = None):
        self.enabled = process_info().is_global_main if enabled is None else enabled
        self._logger = logger or log
        self._seen: set[Hashable] = set()
        self._lock = threading.Lock()
        self.messages: list[str] = []

    def warn(self, key: Hashable, message: str) -> None:
        with self._lock:
            if key in self._seen:
                return
            self._seen.add(key)
            self.messages.append(message)
        if self.enabled:
            self._logger.warning("%s", message)


def _int_array(values: Any) -> np.ndarray:
    return np.asarray(values, dtype=np.int64).reshape(-1)


@dataclass
class _EpisodeArrays:
    episode_index: np.ndarray
    length: np.ndarray
    task_index: np.ndarray

    def __post_init__(self) -> None:
        self.episode_index = _int_array(self.episode_index)
        self.length = _int_array(self.length)
        self.task_index = _int_array(self.task_index)
        n = len(self.episode_index)
        if len(self.length) != n or len(self.task_index) != n:
            raise ValueError(
                f"episode_index, length and task_index must have one entry per episode, got "
                f"{n}, {len(self.length)}, {len(self.task_index)}"
            )


@dataclass
class SpeedPopulation(_EpisodeArrays):
    """Every episode of the dataset (whatever a load selects), with `task_index` from the frame data."""


@dataclass
class MetadataView(_EpisodeArrays):
    """Every episode as the metadata describes it (first task mapped through the task table; -1 if unknown).

    Cheap to build, used only to detect a stale file, never to decide which task an episode belongs to.
    """


@dataclass(frozen=True)
class PercentileRow:
    task_index: int
    task: str
    n_episodes: int
    percentiles: list[float] | None
    extra: dict[str, Any] = field(default_factory=dict)  # e.g. version, fingerprint; unknown keys kept

    @property
    def fingerprint(self) -> str | None:
        return self.extra.get("fingerprint")

    def to_dict(self) -> dict[str, Any]:
        return {**{key: getattr(self, key) for key in _REQUIRED_KEYS}, **self.extra}


@dataclass(frozen=True)
class PercentilesFile:
    path: Path | str  # a local path, or the URL of a file in an object-store root
    rows: tuple[PercentileRow, ...]  # in file order

    @property
    def by_task(self) -> dict[int, list[float] | None]:
        return {r.task_index: r.percentiles for r in self.rows}


def _fix(path: Path | str, root: Path | str | None) -> str:
    if root is None and isinstance(path, Path) and path.parent.name == "meta":
        root = path.parent.parent
    return f"delete {path} or run `robotempo speed {root if root is not None else 'ROOT'} --recompute`"


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _row_problem(obj: dict[str, Any]) -> str | None:
    """What is wrong with one parsed row, or None if it is valid."""
    missing = [k for k in _REQUIRED_KEYS if k not in obj]
    if missing:
        return f"missing key(s) {missing} in {json.dumps(obj)[:120]}"
    if not _is_int(obj["task_index"]) or not 0 <= obj["task_index"] <= _MAX_FRAMES:
        return f"'task_index' must be an int in 0..2**53, got {obj['task_index']!r}"
    if not isinstance(obj["task"], str):
        return f"'task' must be a string, got {obj['task']!r}"
    if not _is_int(obj["n_episodes"]) or not 0 <= obj["n_episodes"] <= _MAX_FRAMES:
        return f"'n_episodes' must be an int in 0..2**53, got {obj['n_episodes']!r}"
    if "version" in obj and not (_is_int(obj["version"]) and 1 <= obj["version"] <= SCHEMA_VERSION):
        return f"'version' {obj['version']!r} is not one this robotempo reads (<= {SCHEMA_VERSION})"
    if "fingerprint" in obj and not isinstance(obj["fingerprint"], str):
        return f"'fingerprint' must be a string, got {obj['fingerprint']!r}"
    p = obj["percentiles"]
    if p is None:
        return None
    if not isinstance(p, list) or len(p) != len(SPEED_PERCENTILES):
        n = len(SPEED_PERCENTILES)
        return f"'percentiles' must be null or a list of {n} boundaries (p5..p95), got {p!r}"
    if not all(isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) for x in p):
        return f"'percentiles' must be finite numbers, got {p!r}"
    if any(not 0 <= x <= _MAX_FRAMES for x in p):
        return f"'percentiles' must be episode lengths (not negative, at most 2**53 frames), got {p!r}"
    if any(b < a for a, b in zip(p[:-1], p[1:], strict=True)):
        return f"'percentiles' must be sorted ascending, got {p!r}"
    return None


def read_percentiles_file(path: str | Path | FileRef, root: str | Path | None = None) -> PercentilesFile:
    """Parse and validate the whole file; `FileNotFoundError` if absent, `SpeedLabelError` if malformed.

    Rows may come in any order (OpenTau appends rows for new tasks at the end); a task may appear only once.
    """
    ref = as_file(path)
    path = ref.where
    fix = _fix(path, None if root is None else root)
    rows: list[PercentileRow] = []
    seen: dict[int, int] = {}
    for lineno, obj in parse_jsonl(ref.read_bytes(), path, fix, SpeedLabelError):
        problem = _row_problem(obj)
        if problem is not None:
            raise SpeedLabelError(path, problem, fix, line=lineno)
        ti = obj["task_index"]
        if ti in seen:
            raise SpeedLabelError(
                path, f"task_index {ti} appears twice (lines {seen[ti]} and {lineno})", fix, line=lineno
            )
        seen[ti] = lineno
        p = None if obj["percentiles"] is None else [float(x) for x in obj["percentiles"]]
        extra = {k: v for k, v in obj.items() if k not in _REQUIRED_KEYS}
        rows.append(PercentileRow(ti, obj["task"], obj["n_episodes"], p, extra))
    return PercentilesFile(path, tuple(rows))


def write_percentiles_file(path: str | Path, rows: Iterable[PercentileRow]) -> None:
    """Write `rows` sorted by task_index, atomically (unique temp file in the same folder + os.replace)."""
    atomic_write_jsonl(path, [r.to_dict() for r in sorted(rows, key=lambda r: r.task_index)])


def fingerprints_by_task(view: MetadataView) -> dict[int, str]:
    """Per task (>= 0) of the view: a hash of its `(episode_index, length)` pairs in episode order."""
    tasks, episodes, lengths = view.task_index, view.episode_index, view.length
    keep = tasks >= 0
    if not keep.all():
        tasks, episodes, lengths = tasks[keep], episodes[keep], lengths[keep]
    if len(tasks) == 0:
        return {}
    if not np.all(episodes[1:] > episodes[:-1]):  # metadata tables are usually sorted already
        by_episode = np.argsort(episodes, kind="stable")
        tasks, episodes, lengths = tasks[by_episode], episodes[by_episode], lengths[by_episode]
    present = value_counts(tasks)[0]
    if len(present) <= _FEW_TASKS:  # a pass per task: small arrays, no sort (a fresh page costs a fault)
        by_task = {}
        for task in present.tolist():
            mine = tasks == task
            by_task[task] = _fingerprint(episodes[mine], lengths[mine])
        return by_task
    order = stable_order(tasks)
    tasks, episodes, lengths = tasks[order], episodes[order], lengths[order]
    starts = np.flatnonzero(np.r_[True, tasks[1:] != tasks[:-1]])
    ends = np.append(starts[1:], len(tasks))
    return {
        int(tasks[s]): _fingerprint(episodes[s:e], lengths[s:e]) for s, e in zip(starts, ends, strict=True)
    }


def population_fingerprint(view: MetadataView) -> str:
    """One hash of the whole metadata view, `(episode_index, length, task_index)` in episode order (task -1
    where the metadata's task string is not in the table). Equal to the one a file was written with (and the
    file holds all the rows it was written with): the metadata has not changed since, whatever its task
    strings say, so nothing is stale. Per-task fingerprints rest on those strings, which may be paraphrased
    or list a multi-task episode's tasks in any order: they missed appended episodes, or called a fresh
    file stale on every open."""
    order = np.argsort(view.episode_index, kind="stable")
    triples = np.empty((len(order), 3), dtype="<i8")
    triples[:, 0], triples[:, 1], triples[:, 2] = (
        view.episode_index[order],
        view.length[order],
        view.task_index[order],
    )
    return hashlib.blake2b(triples.data, digest_size=8).hexdigest()


def _fingerprint(episodes: np.ndarray, lengths: np.ndarray) -> str:
    """blake2b-64 of the `(episode_index, length)` pairs as little-endian int64, interleaved."""
    pairs = np.empty((len(episodes), 2), dtype="<i8")
    pairs[:, 0], pairs[:, 1] = episodes, lengths
    return hashlib.blake2b(pairs.data, digest_size=8).hexdigest()


def default_cache_dir() -> Path:
    """`$ROBOTEMPO_CACHE`, else `$XDG_CACHE_HOME/robotempo`, else `~/.cache/robotempo`."""
    if os.environ.get("ROBOTEMPO_CACHE"):
        return Path(os.environ["ROBOTEMPO_CACHE"])
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]) / "robotempo"
    try:
        return Path.home() / ".cache" / "robotempo"
    except RuntimeError:  # no home directory (some containers)
        return Path(tempfile.gettempdir()) / "robotempo-cache"


def cache_file_for(root: str | Path | DatasetRoot, cache_dir: str | Path | None = None) -> Path:
    """Where the copy for a read-only or object-store `root` lives: `<cache>/speed/<hash>/...jsonl`.

    The hash is of the resolved folder, or of the URL and its endpoint."""
    key = hashlib.blake2b(as_root(root).cache_key.encode(), digest_size=8).hexdigest()
    base = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    return base / "speed" / key / Path(SPEED_PERCENTILES_FILE).name


@dataclass
class SpeedPercentiles:
    """Boundaries per task for one dataset, and where they came from (for the CLI and logs)."""

    root: Path | str
    by_task: dict[int, list[float] | None]
    task_names: Mapping[int, str]
    source: Source  # "file": meta/speed_percentiles.jsonl; "cache": the user-cache copy; "computed": now
    path: Path | str | None  # the file read, or the file written; None if computed and nothing was written
    warner: Warner
    stale_tasks: tuple[int, ...] = ()  # rows that no longer match the metadata (used as they are)
    computed_tasks: tuple[int, ...] = ()  # tasks the file lacks, computed in memory for this run

    def labels(self, task_index: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        """int64 label per episode; tasks without boundaries (unknown, sparse, not in the file) get 50."""
        task_index = _int_array(task_index)
        present = distinct(task_index).tolist()
        _warn_unknown_tasks(self.warner, self.root, [t for t in present if t not in self.task_names])
        for t in present:
            if t in self.task_names and t not in self.by_task:
                self.warner.warn(
                    ("uncovered", t),
                    f"{self.path} has no row for task_index {t}; its episodes get speed "
                    f"{SPARSE_TASK_BUCKET}. Refresh it with `robotempo speed {self.root} --recompute`.",
                )
        return label_episodes(task_index, lengths, self.by_task)


def _warn_unknown_tasks(warner: Warner, root: Path | str, unknown: Iterable[int]) -> None:
    for t in unknown:
        warner.warn(
            ("unknown-task", int(t)),
            f"Frame data of {root} references task_index {t}, which the task table (meta/tasks.*) does not "
            f"define; its episodes get speed {SPARSE_TASK_BUCKET}. Fix the dataset's task table.",
        )


def _short(tasks: list[int]) -> str:
    return str(tasks) if len(tasks) <= 10 else f"{tasks[:10]} and {len(tasks) - 10} more"


def _compare_with_metadata(
    file: PercentilesFile, view: MetadataView, task_names: Mapping[int, str]
) -> tuple[list[int], list[int], list[int]]:
    """(tasks whose row no longer matches the metadata, tasks the metadata has but the file lacks, tasks whose
    row names another task than the task table: a re-export that re-indexed the tasks).

    A row with a fingerprint is compared by fingerprint; one without (OpenTau's) by its episode count.
    """
    renamed = sorted(
        r.task_index for r in file.rows if r.task_index in task_names and r.task != task_names[r.task_index]
    )
    view_tasks, counts = value_counts(view.task_index[view.task_index >= 0])
    count = dict(zip(view_tasks.tolist(), counts.tolist(), strict=True))
    fingerprints = fingerprints_by_task(view) if any(r.fingerprint for r in file.rows) else {}

    def differs(row: PercentileRow) -> bool:
        if row.fingerprint:
            return row.fingerprint != fingerprints.get(row.task_index, _EMPTY_FINGERPRINT)
        return row.n_episodes != count.get(row.task_index, 0)

    changed = sorted(
        r.task_index
        for r in file.rows
        if differs(r) and r.task_index not in renamed and r.task_index in task_names
    )
    renamed += sorted(r.task_index for r in file.rows if r.task_index not in task_names)
    in_file = {r.task_index for r in file.rows}
    return changed, [t for t in view_tasks.tolist() if t not in in_file], renamed


@dataclass
class _Request:
    """One call of `load_or_compute_percentiles`: what it was given."""

    location: DatasetRoot
    task_names: Mapping[int, str]
    population: Callable[[], SpeedPopulation]
    view: MetadataView
    warner: Warner

    @property
    def root(self) -> Path | str:
        return self.location.where()

    def known_population(self) -> tuple[np.ndarray, np.ndarray]:
        """(task_index, length) of episodes whose task the table defines; the others are warned about."""
        pop = self.population()
        names = np.fromiter(self.task_names, dtype=np.int64, count=len(self.task_names))
        known = np.isin(pop.task_index, names)
        _warn_unknown_tasks(self.warner, self.root, distinct(pop.task_index[~known]).tolist())
        return pop.task_index[known], pop.length[known]

    def from_file(self, file: PercentilesFile, source: Source) -> SpeedPercentiles:
        written_for = {r.extra.get("population") for r in file.rows}
        if file.rows and written_for == {f"{population_fingerprint(self.view)}/{len(file.rows)}"}:
            log.info("speed percentiles of %d task(s) read from %s", len(file.rows), file.path)
            return self.result(file.by_task, source, file.path, (), ())  # the metadata is as it was written
        changed, missing, renamed = _compare_with_metadata(file, self.view, self.task_names)
        if not (changed or missing or renamed) and written_for - {None}:
            # the metadata changed where the per-task view cannot see it (task strings not in the table)
            changed = [r.task_index for r in file.rows]
        by_task = file.by_task
        if missing:
            task, length = self.known_population()
            wanted = np.isin(task, missing)
            by_task.update(compute_percentiles_by_task(task[wanted], length[wanted]))
        parts = (
            [f"the episodes of task_index {_short(changed)} changed since it was written"] if changed else []
        )
        parts += (
            [f"task_index {_short(missing)} have no row (computed in memory for this run)"] if missing else []
        )
        if renamed:
            parts += [
                f"the rows of task_index {_short(renamed)} name other tasks than the task table (or none)"
            ]
        if parts:
            self.warner.warn(
                "stale",
                f"{file.path} is stale: {'; '.join(parts)}. Using it as it is; refresh it with "
                f"`robotempo speed {self.root} --recompute`.",
            )
        log.info("speed percentiles of %d task(s) read from %s", len(file.rows), file.path)
        return self.result(by_task, source, file.path, tuple(changed + renamed), tuple(missing))

    def result(
        self, by_task: dict, source: Source, path: Path | str | None, *tasks: tuple[int, ...]
    ) -> SpeedPercentiles:
        return SpeedPercentiles(self.root, by_task, self.task_names, source, path, self.warner, *tasks)

    def compute(self) -> tuple[dict[int, list[float] | None], list[PercentileRow]]:
        task, length = self.known_population()
        by_task = compute_percentiles_by_task(task, length)
        tasks, counts = np.unique(task, return_counts=True)
        n_episodes = dict(zip(tasks.tolist(), counts.tolist(), strict=True))
        fingerprints = fingerprints_by_task(self.view)
        whole = f"{population_fingerprint(self.view)}/{len(by_task)}"  # and how many rows it wrote
        extra = {t: {"version": SCHEMA_VERSION, "fingerprint": fingerprints.get(t, _EMPTY_FINGERPRINT),
                     "population": whole}
                 for t in by_task}  # fmt: skip
        rows = [
            PercentileRow(t, self.task_names[t], n_episodes[t], p, extra[t])
            for t, p in sorted(by_task.items())
        ]
        return by_task, rows

    def write(self, cache: Path, rows: list[PercentileRow]) -> Path | None:
        """Write to the dataset, else to the user cache; the path written, or None if neither is writable.

        An object-store root, or a huggingface_hub cache snapshot (content-addressed, shared by every tool:
        a file there looks like part of the revision), is never written to: its copy goes straight to the
        user cache.
        """
        if not self.location.is_local or in_hub_cache(self.location.base):
            return self.write_cache(cache, rows)
        path = self.location.where(SPEED_PERCENTILES_FILE)
        try:
            write_percentiles_file(path, rows)
            log.info("wrote speed percentiles of %d task(s) to %s", len(rows), path)
            return path
        except OSError as root_error:
            failed = f"Cannot write {path} ({root_error})"
            if self.write_cache(cache, rows, failed) is None:
                return None
            self.warner.warn(
                "read-only",
                f"{failed}: speed percentiles of {self.root} were computed in memory; a copy is kept in "
                f"{cache} and read on the next load.",
            )
            return cache

    def write_cache(self, cache: Path, rows: list[PercentileRow], failed: str = "") -> Path | None:
        """Write the user-cache copy; None (and one warning, after `failed` if given) if it cannot be."""
        try:
            cache.parent.mkdir(parents=True, exist_ok=True)
            write_percentiles_file(cache, rows)
        except OSError as e:
            self.warner.warn(
                "read-only",
                f"{failed + ' nor' if failed else 'Cannot write'} the cache copy {cache} ({e}): speed "
                f"percentiles of {self.root} are computed in memory and will be recomputed on every load. "
                "Set ROBOTEMPO_CACHE to a writable folder.",
            )
            return None
        log.info("speed percentiles of %s computed in memory; a copy is kept in %s", self.root, cache)
        return cache


def _read_if_present(path: Path | FileRef, root: Path | str, *, cache: bool) -> PercentilesFile | None:
    try:
        return read_percentiles_file(path, root)
    except FileNotFoundError:
        return None
    except OSError as e:
        if not cache:
            ref = as_file(path)
            typed = ref.root.fault(e, ref.rel, e)  # not readable by this user: typed, with the fix
            if typed is e:
                raise
            raise typed from None
        log.debug("no usable cached speed percentiles at %s (%s)", path, e)  # an unusable cache folder
        return None


def load_or_compute_percentiles(
    root: str | Path | DatasetRoot,
    task_names: Mapping[int, str],
    population: Callable[[], SpeedPopulation],
    metadata_view: MetadataView,
    *,
    recompute: bool = False,
    cache_dir: str | Path | None = None,
    warner: Warner | None = None,
) -> SpeedPercentiles:
    """The dataset's per-task boundaries: read the file if there is one (else the cache copy), else compute.

    `population()` (which may read every data file) is called only to compute: file and cache absent,
    `recompute=True`, or tasks missing from the file. A malformed file raises `SpeedLabelError` on every rank.
    Only local rank 0 writes; if the root is not writable the copy goes to the user cache.
    """
    location = as_root(root)
    request = _Request(
        location, task_names, population, metadata_view, warner if warner is not None else Warner()
    )
    cache = cache_file_for(location, cache_dir)
    if not recompute:
        for candidate, source in ((location.file(SPEED_PERCENTILES_FILE), "file"), (cache, "cache")):
            file = _read_if_present(candidate, request.root, cache=source == "cache")
            if file is not None:
                return request.from_file(file, source)
    by_task, rows = request.compute()
    written = request.write(cache, rows) if process_info().is_local_main else None
    return request.result(by_task, "computed", written)
