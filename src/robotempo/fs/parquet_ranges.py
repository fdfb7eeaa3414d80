"""Reading row groups of a parquet file in an object store: the column chunks a read needs, planned from the
footer and fetched concurrently in a few ranged requests, before pyarrow decodes them.

pyarrow's `ParquetFile` (`pre_buffer=True`) coalesces the ranges of a read but fetches them lazily, one
after another as it decodes: a read of a few columns out of every row group of a file whose row groups are
far apart (LeRobot's `meta/episodes`, 7 of 89 columns in 500 row groups; a data file with a PNG camera,
whose numeric columns sit between the images of each episode) made one request per row group, each waiting
for the one before (502 requests to open `episodes=[k]` of a 5,000-episode LeRobot dataset). Here the
chunks are known from the footer before the read: ranges closer than 64 KB are joined, and so are ranges
whose gap is below `ROBOTEMPO_REMOTE_HOLE_KB` (default 1 MB) and below the bytes the joined request
already needs (a request never fetches much more than it uses: the images between numeric columns stay
unread); the requests run `ROBOTEMPO_REMOTE_CONCURRENCY` at a time (`fs/store.py`), then pyarrow decodes
from memory. A read outside the fetched ranges (none is expected) is fetched on its own, never wrong.
"""

from __future__ import annotations

import bisect
import functools
from collections.abc import Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from robotempo.env import env_int
from robotempo.fs.blockfile import DEFAULT_HOLE_KB, HOLE_KB_ENV, SeekableReader
from robotempo.fs.store import all_within_deadline, classify, within_deadline

SMALL_GAP = 64 * 1024  # always joined: a request's overhead is worth more than this many bytes
MAX_SPAN = 32 * 2**20  # one request fetches at most this much (unless one column chunk is larger)
# Bytes past a chunk's stated end that pyarrow may read (PARQUET-816: old writers' dictionary pages).
CHUNK_PAD = 100


class SourcedParquetFile(pq.ParquetFile):
    """A `ParquetFile` that keeps its input file, for reads planned outside pyarrow."""

    def __init__(self, source: pa.NativeFile, **kwargs):
        super().__init__(source, **kwargs)
        self.source = source


def column_leaves(md: pq.FileMetaData, columns: Sequence[str] | None) -> list[int]:
    """Leaf column indices of top-level `columns` (all leaves when None), from the first row group's paths.
    A leaf of another column whose name starts with a wanted one and a dot is included too: an extra range
    costs bytes, never correctness (pyarrow decodes what it is asked for)."""
    if md.num_row_groups == 0:
        return []
    if columns is None:
        return list(range(md.num_columns))
    group = md.row_group(0)
    prefixes = tuple(f"{c}." for c in columns)
    wanted = set(columns)
    leaves = []
    for i in range(md.num_columns):
        path = group.column(i).path_in_schema
        if path in wanted or path.startswith(prefixes):
            leaves.append(i)
    return leaves


def chunk_ranges(md: pq.FileMetaData, groups: Sequence[int], leaves: Sequence[int], size: int) -> list:
    """`[start, end)` of each (row group, leaf) column chunk, as pyarrow reads it (dictionary page first)."""
    out = []
    for g in groups:
        group = md.row_group(g)
        for i in leaves:
            c = group.column(i)
            start = c.data_page_offset
            if c.has_dictionary_page and 0 < c.dictionary_page_offset < start:
                start = c.dictionary_page_offset
            out.append((start, min(start + c.total_compressed_size + CHUNK_PAD, size)))
    return out


def plan(ranges: Sequence[tuple[int, int]], hole: int) -> list[tuple[int, int]]:
    """Requests covering `ranges`: sorted, overlapping ones joined, a gap joined when it is below
    `SMALL_GAP`, or below `hole` and below the bytes the request needs so far; at most `MAX_SPAN` each."""
    spans: list[list[int]] = []  # [start, end, needed bytes]
    for lo, hi in sorted(r for r in ranges if r[1] > r[0]):
        if spans:
            last = spans[-1]
            gap = lo - last[1]
            if gap <= 0:
                last[2] += max(hi - last[1], 0)
                last[1] = max(last[1], hi)
                continue
            fits = hi - last[0] <= MAX_SPAN
            if fits and (gap < SMALL_GAP or gap < min(hole, last[2])):
                last[1], last[2] = hi, last[2] + hi - lo
                continue
        spans.append([lo, hi, hi - lo])
    return [(lo, hi) for lo, hi, _ in spans]


def read_row_groups(
    pf: SourcedParquetFile,
    groups: Sequence[int],
    columns: Sequence[str] | None,
    where: Path | str,
    *,
    checksums: bool = False,
) -> pa.Table:
    """`pf.read_row_groups(groups, columns)` for a file in an object store, its chunks fetched beforehand."""
    md = pf.metadata
    source = pf.source
    size = source.size()
    hole = env_int(HOLE_KB_ENV, DEFAULT_HOLE_KB) * 1024
    spans = plan(chunk_ranges(md, groups, column_leaves(md, columns), size), hole)
    datas = all_within_deadline(
        [functools.partial(_read_at, source, lo, hi, where) for lo, hi in spans], where
    )
    held = _Held(source, size, [lo for lo, _ in spans], datas, where)
    reader = pq.ParquetFile(
        pa.PythonFile(held, mode="r"), metadata=md, pre_buffer=False, page_checksum_verification=checksums
    )
    try:
        return reader.read_row_groups(
            list(groups), columns=None if columns is None else list(columns), use_threads=False
        )
    finally:
        reader.close()


def _read_at(source: pa.NativeFile, lo: int, hi: int, where: Path | str) -> bytes:
    try:
        return source.read_at(hi - lo, lo)
    except OSError as e:
        raise classify(e, where) from None


class _Held(SeekableReader):
    """A read-only file over the fetched spans; a read outside them goes to the store (counted in
    `misses`)."""

    def __init__(self, source: pa.NativeFile, size: int, starts: list[int], datas: list[bytes], where):
        super().__init__()
        self._source, self._size, self._starts, self._datas, self._where = source, size, starts, datas, where
        self._pos = 0
        self.misses = 0

    def read(self, n: int = -1) -> bytes:
        end = self._size if n is None or n < 0 else min(self._size, self._pos + n)
        lo = self._pos
        if end <= lo:
            return b""
        i = bisect.bisect_right(self._starts, lo) - 1
        if i >= 0 and end <= self._starts[i] + len(self._datas[i]):
            at = lo - self._starts[i]
            out = self._datas[i][at : at + end - lo]
        else:
            self.misses += 1
            out = within_deadline(
                functools.partial(_read_at, self._source, lo, end, self._where), self._where
            )
        self._pos = end
        return out
