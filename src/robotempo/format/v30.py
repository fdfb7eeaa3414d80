"""Read v3.0 metadata (`meta/episodes/*/*.parquet`, `meta/tasks.parquet`) into an `EpisodeTable`.

Many episodes per data/video file. Only the columns the table needs are read (the per-episode stats columns
stay on disk until asked for). The in-file row offset of an episode is not stored in v3.0; the table holds
the metadata's guess (`dataset_from_index` minus the smallest `dataset_from_index` in the same file) and the
frame store re-derives it from the file's own first `index` before trusting it.
"""

from __future__ import annotations

import logging
import re

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from robotempo.arrays import take as take_rows
from robotempo.errors import DatasetFormatError, MissingFileError, RobotempoError
from robotempo.format.checks import check_video_windows, warn_on_totals
from robotempo.format.episodes import EpisodeTable, VideoLocation
from robotempo.format.info import MAX_COUNT, DatasetInfo
from robotempo.fs import DatasetRoot
from robotempo.fs.parquet_ranges import SourcedParquetFile, read_row_groups
from robotempo.store.parquet import within_footer

logger = logging.getLogger(__name__)

EPISODES_DIR = "meta/episodes"
REQUIRED = (
    "episode_index",
    "length",
    "data/chunk_index",
    "data/file_index",
    "dataset_from_index",
    "dataset_to_index",
)
_META_FILE = re.compile(r"meta/episodes/chunk-[^/]*/file-[^/]*\.parquet")
META_FIX = "re-export the dataset with LeRobot >= 0.4 (format v3.0) or repair the episode metadata parquet"


def open_parquet(root: DatasetRoot, rel: str, what: str, fix: str) -> SourcedParquetFile:
    """A metadata parquet file of the dataset (footer read once); typed errors when absent or unreadable."""
    try:
        if root.is_local:
            return SourcedParquetFile(root.open_input_file(rel), pre_buffer=False)
        where = str(root.where(rel))
        make = lambda s: SourcedParquetFile(s, pre_buffer=True)  # noqa: E731
        return within_footer(root.open_input_file(rel), make, where)
    except FileNotFoundError:
        raise root.missing_root_error(rel) or MissingFileError(root.where(rel), what, fix) from None
    except (pa.ArrowInvalid, OSError) as e:
        raise root.fault(
            e, rel, DatasetFormatError(root.where(rel), f"cannot read {what} ({e})", fix)
        ) from None


def _read(
    pf: SourcedParquetFile, columns: list[str] | None, root: DatasetRoot, rel: str, what: str, fix: str
) -> pa.Table:
    """The whole file's `columns`; from an object store, its chunks fetched first in concurrent requests
    (pyarrow's own read fetched LeRobot's `meta/episodes` one row group after another)."""
    where = root.where(rel)
    try:
        if root.is_local:
            return pf.read(columns=columns, use_threads=False)
        with root.guard(rel):
            return read_row_groups(pf, range(pf.metadata.num_row_groups), columns, where)
    except RobotempoError:
        raise  # a store fault (StorageError is an OSError) stays one
    except (pa.ArrowInvalid, OSError) as e:
        raise DatasetFormatError(where, f"cannot read {what} ({e})", fix) from None


def read_tasks_v30(root: DatasetRoot) -> dict[int, str]:
    path = root.where("meta/tasks.parquet")
    fix = "meta/tasks.parquet must hold the task strings (index or column 'task') and a 'task_index' column"
    what = "the task table meta/tasks.parquet"
    rel = "meta/tasks.parquet"
    table = _read(open_parquet(root, rel, what, fix), None, root, rel, what, fix)
    names = table.column_names
    task_col = "task" if "task" in names else ("__index_level_0__" if "__index_level_0__" in names else None)
    if task_col is None or "task_index" not in names:
        raise DatasetFormatError(path, f"columns {names} lack the task strings or 'task_index'", fix)
    tasks = table.column(task_col).to_pylist()
    indices = table.column("task_index").to_pylist()
    out: dict[int, str] = {}
    for row, (idx, task) in enumerate(zip(indices, tasks)):
        if not isinstance(idx, int) or not isinstance(task, str) or idx in out:
            raise DatasetFormatError(
                path, f"row {row}: bad or duplicate task_index {idx!r} / task {task!r}", fix
            )
        out[idx] = task
    return out


def episode_metadata_files(root: DatasetRoot) -> list[str]:
    """The episode-metadata parquet files (relative to the root) in (chunk, file) order: one listing."""
    files = [f for f in root.list_files(EPISODES_DIR, ".parquet") if _META_FILE.fullmatch(f)]
    if not files:
        rel = f"{EPISODES_DIR}/chunk-000/file-000.parquet"
        raise root.missing_root_error(rel) or MissingFileError(
            root.where(rel), "the v3.0 episode metadata", META_FIX
        )
    return files


def _codes(
    chunk: np.ndarray, file: np.ndarray, fmt, info: DatasetInfo, template: str
) -> tuple[np.ndarray, list[str]]:
    pairs, inverse = np.unique(np.stack([chunk, file], axis=1), axis=0, return_inverse=True)
    files = [fmt(chunk_index=int(c), file_index=int(f)) for c, f in pairs]
    if len(set(files)) < len(files):  # two files of the metadata would be read from one
        first = {}
        for (c, f), name in zip(pairs.tolist(), files):
            if name in first:
                raise DatasetFormatError(
                    info.path,
                    f"{template} {getattr(info, template)!r} names {name!r} for both (chunk_index, "
                    f"file_index) {first[name]} and {(c, f)} of the episode metadata",
                    f"put {{chunk_index}} and {{file_index}} in {template}",
                )
            first[name] = (c, f)
    return inverse.reshape(-1).astype(np.int32), files


def _raise_duplicate(root, rels, rows, order, episode_index) -> None:
    """The first episode held by two rows of the episode metadata, named with the file(s) holding them: a
    stray copy of a file ("file-000 (1).parquet", a second download) is the usual cause."""
    at = int(np.flatnonzero(np.diff(episode_index) == 0)[0])
    file_of = np.repeat(np.arange(len(rels)), rows)[order]
    a, b = rels[file_of[at]], rels[file_of[at + 1]]
    ep = int(episode_index[at])
    if a == b:
        raise DatasetFormatError(root.where(a), f"episode_index {ep} appears twice", META_FIX)
    raise DatasetFormatError(
        root.where(EPISODES_DIR),
        f"episode_index {ep} is held by two files, {a} and {b}",
        'remove the file that is a stray copy (a file manager\'s "file-000 (1).parquet", a second '
        "download), or " + META_FIX,
    )


def read_episodes_v30(root: DatasetRoot, info: DatasetInfo, tasks: dict[int, str]) -> EpisodeTable:
    parts = []
    video_cols = [
        f"videos/{k}/{c}" for k in info.video_keys for c in ("chunk_index", "file_index", "from_timestamp")
    ]
    what = "the v3.0 episode metadata"
    to_cols = [f"videos/{k}/to_timestamp" for k in info.video_keys]
    if info.total_episodes == 0 and not root.list_files(EPISODES_DIR, ".parquet"):
        raise DatasetFormatError(  # a finalized empty dataset: its metadata is not missing, it has none
            root.where("meta/info.json"),
            "the dataset holds no episodes (total_episodes is 0 and meta/episodes is empty)",
            "add episodes (DatasetWriter.resume(root)), or open another dataset",
        )
    rels = episode_metadata_files(root)
    for rel in rels:
        pf = open_parquet(root, rel, what, META_FIX)
        names = pf.schema_arrow.names
        missing = [c for c in REQUIRED + tuple(video_cols) if c not in names]
        if missing:
            raise DatasetFormatError(root.where(rel), f"columns {missing} are missing", META_FIX)
        optional = [c for c in ["tasks", *to_cols] if c in names]
        parts.append(_read(pf, list(REQUIRED) + video_cols + optional, root, rel, what, META_FIX))
    table = pa.concat_tables(parts, promote_options="permissive")
    meta_dir = root.where(EPISODES_DIR)

    def col(name: str, dtype=np.int64) -> np.ndarray:
        c = table.column(name)
        if c.null_count:
            raise DatasetFormatError(meta_dir, f"column {name!r} has {c.null_count} null values", META_FIX)
        kind_ok = pa.types.is_integer(c.type) or (dtype is np.float64 and pa.types.is_floating(c.type))
        if not kind_ok:
            want = "integers" if dtype is np.int64 else "numbers"
            raise DatasetFormatError(meta_dir, f"column {name!r} holds {c.type} values, not {want}", META_FIX)
        values = c.to_numpy()
        if dtype is np.int64 and values.dtype.kind in "iu":
            bad = np.flatnonzero((values < 0) | (values > MAX_COUNT))  # before a cast: uint64 max read as -1
            if len(bad):
                what = f"column {name!r} holds {values[bad[0]]} (row {bad[0]}), not an integer in 0..2**53"
                raise DatasetFormatError(meta_dir, what, META_FIX)
        return values.astype(dtype, copy=False)

    episode_index = col("episode_index")
    order = np.argsort(episode_index, kind="stable")
    if not np.all(order == np.arange(len(order))):
        table = take_rows(table, order)
        episode_index = episode_index[order]
    if len(episode_index) and np.any(np.diff(episode_index) == 0):
        _raise_duplicate(root, rels, [p.num_rows for p in parts], order, episode_index)
    length = col("length")
    from_index, to_index = col("dataset_from_index"), col("dataset_to_index")
    bad = np.flatnonzero(
        (to_index - from_index != length) | (length < 1) | (length > MAX_COUNT) | (from_index < 0)
    )
    if len(bad):
        i = bad[0]
        raise DatasetFormatError(
            meta_dir,
            f"episode {episode_index[i]}: length {length[i]} but dataset_from_index "
            f"{from_index[i]} / dataset_to_index {to_index[i]}",
            META_FIX,
        )
    warn_on_totals(meta_dir, length, info, "episode metadata")

    data_file, data_files = _codes(
        col("data/chunk_index"), col("data/file_index"), info.data_file, info, "data_path"
    )
    # Metadata's guess of the in-file row offset; verified against the file's own `index` column on read.
    file_start = np.full(len(data_files), np.iinfo(np.int64).max)
    np.minimum.at(file_start, data_file, from_index)
    data_row_from = from_index - file_start[data_file]

    videos = {}
    for key in info.video_keys:
        code, files = _codes(
            col(f"videos/{key}/chunk_index"),
            col(f"videos/{key}/file_index"),
            lambda k=key, **f: info.video_file(k, **f),
            info,
            "video_path",
        )
        start = col(f"videos/{key}/from_timestamp", np.float64)
        to_name = f"videos/{key}/to_timestamp"
        end = col(to_name, np.float64) if to_name in table.column_names else start + length / info.fps
        check_video_windows(meta_dir, key, episode_index, length, code, start, end, info.fps)
        videos[key] = VideoLocation(file=code, from_timestamp=start, files=files, to_timestamp=end)

    task_index = np.full(len(episode_index), -1, dtype=np.int64)
    if "tasks" in table.column_names and tasks:
        first_task = pc.list_element(table.column("tasks"), 0)
        names = pa.array([tasks[i] for i in sorted(tasks)])
        pos = pc.index_in(first_task, value_set=names).fill_null(-1).to_numpy().astype(np.int64)
        known = pos >= 0
        task_index[known] = np.array(sorted(tasks), dtype=np.int64)[pos[known]]
    return EpisodeTable(
        episode_index=episode_index,
        length=length,
        task_index=task_index,
        dataset_from_index=from_index,
        dataset_to_index=to_index,
        data_file=data_file,
        data_row_from=data_row_from,
        data_files=data_files,
        videos=videos,
        tasks=table.column("tasks") if "tasks" in table.column_names else None,
    )
