"""Heavy columns (embedded images, strings): read on demand through one byte-bounded LRU per process.

An embedded-image read takes the pages that hold the rows asked for when the file has a page index, they are
a small part of the row group's column (`PAGE_SHARE`) and the cache is full (while it has room, the whole
column is read and kept: a dataset that fits the cache is read once); otherwise, and for every layout the
page reader does not handle, the row group's whole column, as pyarrow reads it. Both paths give the same
bytes: pages are served only when they decode exactly (checksum when written, sizes, counts, no trailing
bytes); a page or page index that contradicts itself is a `DatasetFormatError` naming the file (pyarrow's
row-group read checks the page checksums too). Images come back as their encoded bytes (None for an empty
cell), other heavy columns as Python values.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from robotempo.arrays import take as take_rows
from robotempo.env import env_float
from robotempo.errors import DatasetFormatError
from robotempo.forksafe import ProcessLocal, singleton_lock
from robotempo.fs import FileRef
from robotempo.fs.parquet_ranges import read_row_groups
from robotempo.store.pages import (
    ChunkPages,
    PageCorrupt,
    PageUnsupported,
    chunk_pages,
    codec_of,
    decode_page,
)
from robotempo.store.parquet import GROUP_SLACK_BYTES, READ_FIX, DataFile, leaf_index

logger = logging.getLogger(__name__)
HEAVY_CACHE_ENV = "ROBOTEMPO_HEAVY_CACHE_MB"
DEFAULT_HEAVY_CACHE_MB = 256
# Pages are read one by one when they hold at most this share of the column chunk's bytes; past it, one read
# of the whole chunk costs less than many page reads and serves the rest of the row group from the cache.
PAGE_SHARE = 0.25


class _Lru:
    def __init__(self) -> None:
        self.items: OrderedDict[tuple, object] = OrderedDict()
        self.nbytes = 0


class HeavyCache:
    """Row-group columns and pages of heavy features, LRU-bounded by bytes (each value has an `nbytes`);
    dropped in a forked child, never pickled.

    Page layouts (`index=True`) have an LRU of their own, an eighth of the budget: they are small and needed
    for every page read, and must not be pushed out by the images they locate. (Where each chunk's page index
    is, a table per file, lives with the open file: `DataFile.offset_indexes`.)
    Keys name the file, so one cache serves any number of datasets (see `default_heavy_cache`). `budget` is
    what a lone process holds; `share(n)` holds a 1/n share of it, for one of n DataLoader workers.
    """

    def __init__(self, budget: int):
        self.budget = budget
        self.max_bytes = budget
        self._lru: ProcessLocal[_Lru] = ProcessLocal(_Lru)
        self._index: ProcessLocal[_Lru] = ProcessLocal(_Lru)

    def get(self, key: tuple, load: Callable[[], object], index: bool = False):
        hit = self.peek(key, index)
        if hit is not None:
            return hit
        value = load()
        self.put(key, value, index)
        return value

    def peek(self, key: tuple, index: bool = False):
        """The cached value, or None; a hit becomes the most recently used."""
        lru = (self._index if index else self._lru).get()
        hit = lru.items.get(key)
        if hit is not None:
            lru.items.move_to_end(key)
        return hit

    def put(self, key: tuple, value, index: bool = False) -> None:
        lru = (self._index if index else self._lru).get()
        limit = self.max_bytes // 8 if index else self.max_bytes - self.max_bytes // 8
        old = lru.items.pop(key, None)
        if old is not None:
            lru.nbytes -= old.nbytes
        lru.items[key] = value
        lru.nbytes += value.nbytes
        while lru.nbytes > limit and len(lru.items) > 1:
            _, old = lru.items.popitem(last=False)
            lru.nbytes -= old.nbytes

    def room(self) -> int:
        """Bytes the data LRU can still take without evicting anything."""
        return self.max_bytes - self.max_bytes // 8 - self._lru.get().nbytes

    @property
    def nbytes(self) -> int:
        return self._lru.get().nbytes + self._index.get().nbytes

    def share(self, processes: int) -> None:
        """Hold at most budget / processes from now on (idempotent): n workers together hold one budget."""
        self.max_bytes = max(1, self.budget // max(1, processes))

    def __reduce__(self):
        if self is _default_heavy_cache:
            return default_heavy_cache, ()  # the receiving process's own shared cache
        return HeavyCache, (self.budget,)


_default_heavy_cache: HeavyCache | None = None


def default_heavy_cache() -> HeavyCache:
    """The process's one heavy-column cache, shared by every dataset opened without `heavy_cache_mb`.

    Its budget is `ROBOTEMPO_HEAVY_CACHE_MB` (default 256 MB) for the whole process, however many datasets
    (or mixtures) read through it.
    """
    global _default_heavy_cache
    if _default_heavy_cache is None:
        with singleton_lock():
            if _default_heavy_cache is None:
                mb = env_float(HEAVY_CACHE_ENV, DEFAULT_HEAVY_CACHE_MB)
                _default_heavy_cache = HeavyCache(int(mb * 2**20))
    return _default_heavy_cache


def read_group_rows(
    cache: HeavyCache,
    file: tuple,
    pf: DataFile,
    ref: FileRef,
    group: int,
    key: str,
    rows: np.ndarray,
    image: bool,
    row_bytes: int | None = None,
) -> list:
    """Values of column `key` at `rows` (within row group `group`) of one data file; `file` names the file
    and its identity in cache keys. `image`: the column is an embedded image (its bytes are served)."""
    whole = (file, group, key)
    column = cache.peek(whole)
    if column is None and image:
        values = _from_pages(cache, file, pf, ref, group, key, rows, row_bytes)
        if values is not None:
            return values
    if column is None:
        column = cache.get(whole, lambda: _kept(_load(pf, ref, group, key, image)))
    return take_rows(column, rows).to_pylist()


# A kept column is copied out of arrow's default pool (mimalloc by default) into the system allocator's
# memory, and after each batch's reads the default pool's freed pages are handed back (`release_read_memory`,
# at most once per `RELEASE_EVERY_S`). mimalloc keeps the pages of a read's temporaries beside the buffers
# kept: a process reading P9's images held ~25 MB of them at a peak of 2 MB in use, and each DataLoader worker
# ~40 MB more than that (docs/benchmarks.md, P9). The copy costs a memcpy of the column (0.03 ms median on
# P9's row groups), a release 0.13 ms (0.4-1.3 ms when it frees much).
RELEASE_EVERY_S = 0.02
_last_release = 0.0


def _kept(column: pa.Array) -> pa.Array:
    return pa.concat_arrays([column], memory_pool=pa.system_memory_pool())


def release_read_memory() -> None:
    """Hand the default pool's freed pages back to the OS, at most once per `RELEASE_EVERY_S`."""
    global _last_release
    now = time.monotonic()
    if now - _last_release >= RELEASE_EVERY_S:
        _last_release = now
        pa.default_memory_pool().release_unused()


def _load(pf: DataFile, ref: FileRef, group: int, key: str, image: bool) -> pa.Array:
    """The whole column of one row group, as pyarrow reads it (images: the `bytes` field)."""
    try:
        with ref.root.guard(ref.rel):
            if ref.root.is_local:
                table = pf.read_row_group(group, columns=[key], use_threads=False)
            else:  # the chunk fetched by robotempo, within the store deadline (pyarrow's own read is not)
                table = read_row_groups(pf, [group], [key], ref.where, checksums=True)
            column = table.column(0).combine_chunks()
    except (pa.ArrowException, OSError) as e:
        what = f"row group {group} of column {key!r} does not read ({e})"
        bad = DatasetFormatError(ref.where, what, READ_FIX)
        raise ref.root.changed_error(ref.rel) or ref.root.fault(e, ref.rel, bad) from None
    expected = pf.metadata.row_group(group).num_rows
    if len(column) != expected:  # pyarrow skips a page whose header does not parse
        what = f"row group {group} of column {key!r} reads as {len(column)} rows; the footer says {expected}"
        raise DatasetFormatError(ref.where, what, READ_FIX)
    if image and pa.types.is_struct(column.type):
        return column.flatten()[column.type.get_field_index("bytes")]  # null where the struct is null
    return column


@dataclass(frozen=True)
class _Plan:
    """How one column chunk's images are read: its pages (None: the row group's whole column), codec and
    maximum definition level, and the chunk's bytes (what a row-group read costs)."""

    pages: ChunkPages | None
    compression: str = ""
    max_def: int = 0
    chunk_bytes: int = 0

    @property
    def nbytes(self) -> int:
        return 128 + (self.pages.nbytes if self.pages is not None else 0)


_WHOLE = _Plan(None)


class _PageValues(list):
    """One page's values (bytes or None), sized for the cache's byte budget."""

    @property
    def nbytes(self) -> int:
        return 64 + sum(40 + len(v) if v is not None else 8 for v in self)


def _column_bytes(pf: DataFile, group: int, key: str) -> int:
    """Stored bytes of column `key` (all its leaves) in one row group: what a row-group read loads."""
    md = pf.metadata.row_group(group)
    prefix = key + "."
    return sum(
        c.total_compressed_size
        for c in (md.column(i) for i in range(md.num_columns))
        if c.path_in_schema == key or c.path_in_schema.startswith(prefix)
    )


def _image_leaf(pf: DataFile, key: str) -> tuple[int, int] | None:
    """(leaf column, max definition level) of an image column's bytes, when the page reader can decode it:
    a flat BYTE_ARRAY leaf, no repetition levels."""
    leaf = leaf_index(pf, f"{key}.bytes")
    if leaf is None:
        leaf = leaf_index(pf, key)
    if leaf is None:
        return None
    column = pf.metadata.schema.column(leaf)
    if column.physical_type != "BYTE_ARRAY" or column.max_repetition_level:
        return None
    return leaf, column.max_definition_level


def _plan(cache: HeavyCache, file: tuple, pf: DataFile, group: int, key: str) -> _Plan:
    """The page plan of one chunk from the file's page index (the footer is parsed once per handle), checked
    against the chunk's footer entry; `_WHOLE` when the chunk has no page index or a layout the page reader
    does not handle (a dictionary page, a codec `pa.Codec` does not decode)."""
    found = _image_leaf(pf, key)
    if found is None:
        return _WHOLE
    leaf, max_def = found
    chunk = pf.metadata.row_group(group).column(leaf)
    if not chunk.has_offset_index or chunk.has_dictionary_page:
        return _WHOLE
    compression = codec_of(chunk.compression)  # PageUnsupported: the caller reads the row group
    location = pf.offset_indexes().locations.get((group, leaf))
    if location is None:
        return _WHOLE
    span = (chunk.data_page_offset, chunk.data_page_offset + chunk.total_compressed_size)
    pages = chunk_pages(pf.reads, location, pf.metadata.row_group(group).num_rows, span)
    return _Plan(pages, compression, max_def, chunk.total_compressed_size)


def _from_pages(
    cache: HeavyCache, file: tuple, pf: DataFile, ref: FileRef, group: int, key: str, rows, row_bytes=None
):
    """The rows' values read page by page, or None when the whole column is the better read (room in the
    cache to keep it, no page index, an unhandled layout, or most of the chunk needed)."""
    try:
        with ref.root.guard(ref.rel):
            plan = cache.peek((file, group, key, "plan"), index=True)
            if plan is None:
                if _column_bytes(pf, group, key) <= cache.room():
                    return None  # a dataset that fits the cache never parses a page index
                plan = _plan(cache, file, pf, group, key)
                cache.put((file, group, key, "plan"), plan, index=True)
            if plan.pages is None or plan.chunk_bytes <= cache.room():
                return None
            pages = plan.pages
            page_of = pages.pages_of(rows)
            wanted = np.unique(page_of)
            if pages.sizes[wanted].sum() > PAGE_SHARE * plan.chunk_bytes:
                return None
            out: list = [None] * len(rows)
            for p in wanted.tolist():
                values = cache.get((file, group, key, p), lambda p=p: _page(pf, plan, p, row_bytes))
                first = int(pages.first_rows[p])
                for i in np.flatnonzero(page_of == p).tolist():
                    out[i] = values[int(rows[i]) - first]
            return out
    except PageUnsupported as e:
        logger.debug("%s: row group %d of %r read whole (%s)", ref.where, group, key, e)
        cache.put((file, group, key, "plan"), _WHOLE, index=True)
        return None
    except PageCorrupt as e:
        # pyarrow does not check page headers (a checksum covers the body only) and would serve whatever
        # a damaged header makes of the pages: a file that contradicts its own page index is not read.
        what = f"row group {group} of image column {key!r}: {e}"
        raise ref.root.changed_error(ref.rel) or DatasetFormatError(ref.where, what, READ_FIX) from None


def _page(pf: DataFile, plan: _Plan, page: int, row_bytes: int | None = None) -> _PageValues:
    pages = plan.pages
    raw = pf.reads.read_at(int(pages.sizes[page]), int(pages.offsets[page]))
    rows = int(pages.first_rows[page + 1] - pages.first_rows[page])
    limit = None if row_bytes is None else rows * row_bytes + GROUP_SLACK_BYTES
    return _PageValues(decode_page(raw, plan.compression, plan.max_def, rows, limit))
