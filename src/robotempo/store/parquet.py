"""Parquet access: a bounded, fork-safe cache of open files; footer helpers (row groups, statistics).

An open `ParquetFile` holds its parsed footer, so a file's footer is read once per process while it stays
in the cache (`ROBOTEMPO_PARQUET_HANDLES`, default 64). On an object store a read fetches only the column
chunks of the row groups asked for: the open's reads (`read_groups`) plan them from the footer and fetch
them concurrently in few ranged requests (`fs/parquet_ranges.py`); a later read of one row group's images
coalesces its chunks into one request (`pre_buffer`), a page read is one.
"""

from __future__ import annotations

import ctypes
import functools
import math
import os
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from robotempo.env import descriptor_limit, env_int
from robotempo.errors import DatasetFormatError, FeatureMismatchError, MissingFileError, RobotempoError
from robotempo.forksafe import ProcessLocal, singleton_lock
from robotempo.fs import FileRef, as_file
from robotempo.fs.parquet_ranges import SourcedParquetFile, read_row_groups
from robotempo.fs.store import within_deadline
from robotempo.store import pages

HANDLES_ENV = "ROBOTEMPO_PARQUET_HANDLES"
DEFAULT_HANDLES = 64
READ_FIX = "re-download or re-export this file; the dataset's metadata refers to it"


def file_identity(ref: FileRef) -> tuple:
    """`DatasetRoot.identity` of a data file (what tells a rewritten file apart), typed when it is absent."""
    try:
        return ref.root.identity(ref.rel)
    except FileNotFoundError:
        raise MissingFileError(ref.where, "the data file", READ_FIX) from None


class DataFile(SourcedParquetFile):
    """A `ParquetFile` that keeps its input file beside the reader: single pages are read from it
    (`store/pages.py`). Pages written with a checksum are verified on every read."""

    def __init__(self, source: pa.NativeFile, pre_buffer: bool, where: str | None = None):
        super().__init__(source, pre_buffer=pre_buffer, page_checksum_verification=True)
        self._offset_indexes: pages.OffsetIndexes | None = None
        # What robotempo reads itself (page indexes, single pages): through the store pool's deadline for a
        # file in an object store (`where`: its URL), where a stalled body otherwise waited out every retry.
        self.reads = source if where is None else _DeadlineReads(source, where)

    def offset_indexes(self) -> pages.OffsetIndexes:
        """Where each column chunk's OffsetIndex is, parsed from the footer on the first call. It lives as
        long as the handle, like pyarrow's own parse of the footer (this table is ~96 B per column chunk,
        about a tenth of that parse): in the heavy cache's byte-bounded index LRU the page plans pushed it
        out, and each page read parsed the footer again (1.5 s in Python for 5,000 row groups)."""
        if self._offset_indexes is None:
            self._offset_indexes = pages.offset_indexes(self.reads)
        return self._offset_indexes

    def close(self, force: bool = False) -> None:
        super().close(force=force)
        self.source.close()


class _DeadlineReads:
    """`read_at` and `size` of a store file, each read waited for `ROBOTEMPO_S3_DEADLINE_S` at most."""

    def __init__(self, source: pa.NativeFile, where: str):
        self._source, self._where = source, where

    def size(self) -> int:
        return self._source.size()

    def read_at(self, nbytes: int, offset: int) -> bytes:
        return within_deadline(lambda: self._source.read_at(nbytes, offset), self._where)


def within_footer(source: pa.NativeFile, make, where: str):
    """`make(source)` (a parquet reader, which reads the footer) on the store pool: within the deadline, and
    retried there like robotempo's own requests. `source` is not closed on failure: past the deadline the
    read may still be under way on the pool, and the handle goes with it."""
    return within_deadline(lambda: make(source), where)


# A store object this small is read whole, in one request, and parsed from memory: pyarrow's own footer read
# (the last 64 KiB) fetches all of it anyway, and then its column reads cost another round trip. v2.1's
# tabular episode files are mostly this small: opening a store dataset made 3 requests per file, now 2.
WHOLE_OBJECT_BYTES = 64 * 1024


def _whole_if_small(source: pa.NativeFile) -> pa.NativeFile:
    size = source.size()  # known from the open's HEAD request
    if size > WHOLE_OBJECT_BYTES:
        return source
    data = source.read_at(size, 0)
    source.close()
    return pa.BufferReader(data)


def open_parquet(path: FileRef | str | os.PathLike) -> DataFile:
    """Open one data file (reads its footer) outside any cache, with typed errors naming the file."""
    ref = as_file(path)
    root = ref.root
    try:
        if root.is_local:
            return DataFile(ref.open_input_file(), pre_buffer=False)
        # the footer is read by pyarrow in the constructor: within the store deadline (a stalled body waited
        # out every retry of the SDK, ~50 s at a 5 s deadline), a handle opened here and not in the pool
        # (open_input_file waits on the pool itself)
        where = str(ref.where)
        make = lambda s: DataFile(_whole_if_small(s), pre_buffer=True, where=where)  # noqa: E731
        return within_footer(ref.open_input_file(), make, where)
    except FileNotFoundError:
        raise root.missing_root_error(ref.rel) or MissingFileError(
            ref.where, "the data file", READ_FIX
        ) from None
    except (pa.ArrowInvalid, OSError) as e:
        bad = DatasetFormatError(ref.where, f"not a readable parquet file ({e})", READ_FIX)
        raise root.fault(e, ref.rel, bad) from None


def default_handles() -> int:
    """`DEFAULT_HANDLES`, or an eighth of the process's open-file limit when that is lower: under `ulimit -n
    64` the 64 handles of each worker left nothing for torch's shared-memory batches (EMFILE)."""
    soft = descriptor_limit()
    return DEFAULT_HANDLES if soft is None else max(2, min(DEFAULT_HANDLES, soft // 8))


class ParquetFiles:
    """Open `pq.ParquetFile`s by file, at most `max_open` at a time (LRU), never shared across a fork.

    A handle is reused only while the file is the one it opened (`DatasetRoot.identity`: inode, size and
    mtime of a local file): the cache outlives any one dataset, and a dataset rewritten in place must not be
    read through a stale handle.

    Args:
        max_open: files kept open; default `ROBOTEMPO_PARQUET_HANDLES`, else 64 (at most an eighth of the
            process's open-file limit).
    """

    def __init__(self, max_open: int | None = None):
        self.max_open = max_open or env_int(HANDLES_ENV, default_handles())
        self._open: ProcessLocal[OrderedDict[str, tuple[tuple, DataFile]]] = ProcessLocal(OrderedDict)

    def get(self, path: FileRef | str | os.PathLike) -> DataFile:
        return self.get_with_identity(path)[1]

    def get_with_identity(self, path: FileRef | str | os.PathLike) -> tuple[tuple, DataFile]:
        """(identity of the file, see `DatasetRoot.identity`; its open handle)."""
        ref = as_file(path)
        key = str(ref)
        open_ = self._open.get()
        identity = file_identity(ref)
        hit = open_.get(key)
        if hit is not None and hit[0] == identity:
            open_.move_to_end(key)
            return hit
        if hit is not None:
            del open_[key]
            hit[1].close()
        pf = open_parquet(ref)
        open_[key] = (identity, pf)
        if len(open_) > self.max_open:
            _, (_, old) = open_.popitem(last=False)
            old.close()
        return identity, pf

    def close(self) -> None:
        open_ = self._open.mine()
        if open_ is not None:
            for _, pf in open_.values():
                pf.close()
            open_.clear()

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
        with singleton_lock():
            if _default_files is None:
                _default_files = ParquetFiles()
    return _default_files


@contextmanager
def typed_reads(ref: FileRef, what: str = "its column chunks") -> Iterator[None]:
    """Around a read of `ref`'s data: a store fault is a `StorageError`, a page or chunk pyarrow cannot
    decode a `DatasetFormatError` naming the file (a damaged page header was a bare OSError, "Couldn't
    deserialize thrift", with no file and no fix)."""
    try:
        with ref.root.guard(ref.rel):
            yield
    except RobotempoError:
        raise
    except FileNotFoundError:
        raise MissingFileError(ref.where, "the data file", READ_FIX) from None
    except (pa.ArrowException, OSError) as e:
        text = " ".join(str(e).split())
        bad = DatasetFormatError(ref.where, f"{what} do not read ({text[:300]})", READ_FIX)
        raise ref.root.changed_error(ref.rel) or ref.root.fault(e, ref.rel, bad) from None


def read_groups(pf: DataFile, ref: FileRef, groups: list[int] | None, columns: list[str]) -> pa.Table:
    """Row groups `groups` (None: the whole file) of `columns`: pyarrow's read of a local file; from an
    object store, every chunk fetched beforehand in concurrent ranged requests."""
    with typed_reads(ref):
        if ref.root.is_local:
            if groups is None:
                return pf.read(columns=columns, use_threads=False)
            return pf.read_row_groups(groups, columns=columns, use_threads=False)
        every = range(pf.metadata.num_row_groups) if groups is None else groups
        return read_row_groups(pf, every, columns, ref.where, checksums=True)


# What a row may hold uncompressed beyond its declared features (columns the metadata does not declare,
# encoding overhead), and a row group beyond its rows: generous, a decompression bomb is gigabytes.
ROW_SLACK_BYTES = 1024
GROUP_SLACK_BYTES = 1 << 20
VALUES_FACTOR, VALUES_SLACK = 8, 1 << 20  # values of a list column beyond its declared ones


def max_row_bytes(features) -> int:
    """A generous bound on one row's uncompressed bytes in a data file, from the declared features (a
    `{name: FeatureSpec}`): numbers twice their size, an embedded image twice its pixels, a string 1 MB."""
    total = ROW_SLACK_BYTES
    for f in features.values():
        if f.is_video:
            continue
        if f.is_image:
            total += 2 * math.prod(f.shape) + 4096
        elif f.dtype == "string":
            total += 1 << 20
        else:
            total += 2 * math.prod(f.shape) * max(np.dtype(f.dtype).itemsize, 1) + 16
    return total


class RowBounds:
    """What one row of a data file may hold, from the declared features: uncompressed bytes (all columns)
    and, per list column, values. Checked against the footer before a read: pyarrow allocates what the pages
    expand to, and a 4.5 KB file can expand a row to 250 million floats (a run-length or zstd bomb)."""

    def __init__(self, row_bytes: int, values: tuple[tuple[str, int], ...]):
        self.row_bytes = row_bytes
        self.values = values  # (feature, values per row) of the vector features
        self._leaves: list[tuple[int, str, str, int]] = []  # (leaf, path, feature, per row) of the last file

    @classmethod
    def of(cls, features) -> RowBounds:
        vectors = tuple(
            (name, math.prod(f.shape))
            for name, f in features.items()
            if f.is_numeric and math.prod(f.shape) > 1
        )
        return cls(max_row_bytes(features), vectors)

    def leaves(self, group) -> list[tuple[int, str, str, int]]:
        """The vector features' leaf columns in a file (its row group `group`): the last file's when they
        sit at the same positions (one lookup each; finding them costs one per column)."""
        known = self._leaves
        n = group.num_columns
        if known and all(i < n and group.column(i).path_in_schema == path for i, path, _, _ in known):
            return known
        found = []
        for i in range(n):
            path = group.column(i).path_in_schema
            found += [(i, path, name, per) for name, per in self.values if path.startswith(name + ".")]
        self._leaves = found  # a list swapped whole: threads reading other files see one or the other
        return found


def oversized_group(pf: pq.ParquetFile, groups, bounds: RowBounds) -> DatasetFormatError | None:
    """The error of the first row group (of `groups`, None: all) the footer says holds more than `bounds`
    allows, else None (`where` is filled in by the caller)."""
    md = pf.metadata
    if md.num_row_groups == 0:
        return None
    leaves = bounds.leaves(md.row_group(0)) if bounds.values else []
    for g in range(md.num_row_groups) if groups is None else groups:
        rg = md.row_group(g)
        rows = rg.num_rows
        if rg.total_byte_size > rows * bounds.row_bytes + GROUP_SLACK_BYTES:
            return DatasetFormatError(
                "",
                f"row group {g} holds {rg.total_byte_size:,} bytes uncompressed for {rows} rows, more than "
                f"the features meta/info.json declares can (about {rows * bounds.row_bytes:,})",
                READ_FIX,
            )
        for i, _, name, per in leaves:  # far more than declared (a mere mismatch is the column check's)
            values = rg.column(i).num_values
            if values > rows * (per + 1) * VALUES_FACTOR + VALUES_SLACK:
                return FeatureMismatchError(
                    "",
                    f"row group {g} holds {values:,} values of {name!r} for {rows} rows; meta/info.json "
                    f"declares {per} per row",
                    READ_FIX,
                )
    return None


def check_group_sizes(pf: pq.ParquetFile, ref: FileRef, groups, bounds: RowBounds) -> None:
    error = oversized_group(pf, groups, bounds)
    if error is not None:
        raise type(error)(ref.where, error.problem, error.fix)


def row_group_offsets(pf: pq.ParquetFile) -> np.ndarray:
    """Start row of each row group, plus the total row count at the end."""
    md = pf.metadata
    return np.concatenate(
        [[0], np.cumsum([md.row_group(i).num_rows for i in range(md.num_row_groups)])]
    ).astype(np.int64)


def leaf_index(pf: pq.ParquetFile, column: str) -> int | None:
    """Position of a top-level primitive column among the file's leaf columns (as statistics index them).

    Read from the first row group's column paths, not `metadata.schema`: that object and its file metadata
    form a reference cycle, which keeps a parsed footer (tens of MB for thousands of row groups) alive
    until the next garbage collection.
    """
    md = pf.metadata
    if md.num_row_groups == 0:
        return None
    group = md.row_group(0)
    for i in range(md.num_columns):
        if group.column(i).path_in_schema == column:
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


@functools.cache
def _malloc_trim():
    try:
        return ctypes.CDLL(None).malloc_trim  # glibc; absent elsewhere (macOS, musl)
    except (OSError, AttributeError):
        return None


def release_freed_memory() -> None:
    """Return memory freed after an open to the OS: arrow's pool keeps freed pages, and glibc keeps the
    fragments left by parsed parquet footers (13 MB of heap for a 1 MB footer, half of it kept after free)."""
    pa.default_memory_pool().release_unused()
    trim = _malloc_trim()
    if trim is not None:
        trim(0)
