"""Parquet access: a bounded, fork-safe cache of open files; footer helpers (row groups, statistics)."""

from __future__ import annotations

import os
import stat
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from robotempo.errors import DatasetFormatError, MissingFileError
from robotempo.safepath import check_file

DEFAULT_HANDLES = 64
READ_FIX = "re-download or re-export this file; the dataset's metadata refers to it"


def _env_size(name: str, default: int) -> int:
    try:
        return max(1, int(os.environ.get(name, default)))
    except ValueError:
        return default


class ParquetFiles:
    """Open `pq.ParquetFile`s by path, at most `max_open` at a time (LRU), never shared across a fork.

    A handle is reused only while the file on disk is the one it opened (same inode, size and mtime): the
    cache outlives any one dataset, and a dataset rewritten in place must not be read through a stale handle.
    """

    def __init__(self, max_open: int | None = None):
        self.max_open = max_open or _env_size("ROBOTEMPO_PARQUET_HANDLES", DEFAULT_HANDLES)
        self._open: OrderedDict[Path, tuple[tuple[int, int, int], pq.ParquetFile]] = OrderedDict()
        self._pid = os.getpid()

    def get(self, path: Path) -> pq.ParquetFile:
        return self.get_with_identity(path)[1]

    def get_with_identity(self, path: Path) -> tuple[tuple[int, int, int], pq.ParquetFile]:
        """(identity of the file: inode, size, mtime; its open handle)."""
        if self._pid != os.getpid():  # forked child: the parent's handles are not ours to use or close
            self._open = OrderedDict()
            self._pid = os.getpid()
        try:
            st = os.stat(path)
        except OSError:
            check_file(path.parent, path, "the data file", READ_FIX)  # raises the typed error
            raise
        if not stat.S_ISREG(st.st_mode):  # a FIFO would block the open below: name it instead
            check_file(path.parent, path, "the data file", READ_FIX)
        identity = (st.st_ino, st.st_size, st.st_mtime_ns)
        hit = self._open.get(path)
        if hit is not None and hit[0] == identity:
            self._open.move_to_end(path)
            return hit
        if hit is not None:
            del self._open[path]
            hit[1].close()
        try:
            pf = pq.ParquetFile(path)
        except FileNotFoundError:
            raise MissingFileError(path, "the data file", READ_FIX) from None
        except (pa.ArrowInvalid, OSError) as e:
            raise DatasetFormatError(path, f"not a readable parquet file ({e})", READ_FIX) from None
        self._open[path] = (identity, pf)
        if len(self._open) > self.max_open:
            _, (_, old) = self._open.popitem(last=False)
            old.close()
        return identity, pf

    def close(self) -> None:
        if self._pid == os.getpid():
            for _, pf in self._open.values():
                pf.close()
        self._open.clear()

    def __reduce__(self):
        if self is _default_files:
            return default_parquet_files, ()  # the receiving process's own shared handles
        return ParquetFiles, (self.max_open,)


_default_files: ParquetFiles | None = None


def default_parquet_files() -> ParquetFiles:
    """The process's one cache of open parquet files (`ROBOTEMPO_PARQUET_HANDLES`, default 64), shared by
    every dataset, so the number of open files does not grow with the number of datasets."""
    global _default_files
    if _default_files is None:
        _default_files = ParquetFiles()
    return _default_files


def row_group_offsets(pf: pq.ParquetFile) -> np.ndarray:
    """Start row of each row group, plus the total row count at the end."""
    md = pf.metadata
    return np.concatenate(
        [[0], np.cumsum([md.row_group(i).num_rows for i in range(md.num_row_groups)])]
    ).astype(np.int64)


def leaf_index(pf: pq.ParquetFile, column: str) -> int | None:
    """Position of a top-level primitive column among the file's leaf columns (as statistics index them)."""
    schema = pf.metadata.schema
    for i in range(len(schema)):
        if schema.column(i).path == column:
            return i
    return None


def column_stats(pf: pq.ParquetFile, group: int, column: str):
    """Min/max statistics of a primitive column in one row group, or None when the file has none."""
    leaf = leaf_index(pf, column)
    if leaf is None:
        return None
    stats = pf.metadata.row_group(group).column(leaf).statistics
    return stats if stats is not None and stats.has_min_max else None


def first_value(pf: pq.ParquetFile, column: str) -> int | None:
    """The first value of an integer column from row-group statistics (footer only), else by reading rows."""
    md = pf.metadata
    if md.num_row_groups == 0 or md.num_rows == 0 or column not in pf.schema_arrow.names:
        return None
    stats = column_stats(pf, 0, column)
    rows = md.row_group(0).num_rows
    if stats is not None and rows and stats.min == stats.max - rows + 1:
        return int(stats.min)  # a contiguous run of `rows` values starting at min: the first row holds min
    return int(pf.read_row_group(0, columns=[column]).column(0)[0].as_py())
