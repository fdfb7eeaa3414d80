"""Parquet access: a bounded, fork-safe cache of open files; footer helpers (row groups, statistics)."""

from __future__ import annotations

import os
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
    """Open `pq.ParquetFile`s by path, at most `max_open` at a time (LRU), never shared across a fork."""

    def __init__(self, max_open: int | None = None, root: str | Path | None = None):
        self.max_open = max_open or _env_size("ROBOTEMPO_PARQUET_HANDLES", DEFAULT_HANDLES)
        self.root = root  # files are checked to be regular files inside it (`robotempo.safepath`) on open
        self._open: OrderedDict[Path, pq.ParquetFile] = OrderedDict()
        self._pid = os.getpid()

    def __getstate__(self) -> dict:
        return {"max_open": self.max_open, "root": self.root}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["max_open"], state["root"])

    def get(self, path: Path) -> pq.ParquetFile:
        if self._pid != os.getpid():  # forked child: the parent's handles are not ours to use or close
            self._open = OrderedDict()
            self._pid = os.getpid()
        pf = self._open.get(path)
        if pf is not None:
            self._open.move_to_end(path)
            return pf
        check_file(path.parent if self.root is None else self.root, path, "the data file", READ_FIX)
        try:
            pf = pq.ParquetFile(path)
        except FileNotFoundError:
            raise MissingFileError(path, "the data file", READ_FIX) from None
        except (pa.ArrowInvalid, OSError) as e:
            raise DatasetFormatError(path, f"not a readable parquet file ({e})", READ_FIX) from None
        self._open[path] = pf
        if len(self._open) > self.max_open:
            _, old = self._open.popitem(last=False)
            old.close()
        return pf

    def close(self) -> None:
        if self._pid == os.getpid():
            for pf in self._open.values():
                pf.close()
        self._open.clear()


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
