"""`BlockFile`: a seekable file object over a random-access store file, for FFmpeg (PyAV) to read."""

from __future__ import annotations

import bisect
import functools
import io
import os
import threading
import weakref
from collections import OrderedDict
from collections.abc import Iterable
from pathlib import Path

import pyarrow as pa

from robotempo.env import env_int
from robotempo.fs.store import all_within_deadline, classify, within_deadline

BLOCK_KB_ENV = "ROBOTEMPO_REMOTE_BLOCK_KB"
BLOCKS_ENV = "ROBOTEMPO_REMOTE_BLOCKS"
HOLE_KB_ENV = "ROBOTEMPO_REMOTE_HOLE_KB"
DEFAULT_BLOCK_KB = 64
# Prefetched ranges closer than this are fetched as one: a request's time to first byte buys about this many
# bytes (pyarrow's CacheOptions.from_network_metrics gives 1.5-2 MB for 20-30 ms and 50-100 MiB/s).
DEFAULT_HOLE_KB = 1024
DEFAULT_BLOCKS = 128
HEADERS_MB_ENV = "ROBOTEMPO_REMOTE_HEADERS_MB"
DEFAULT_HEADERS_MB = 16
CACHE_MB_ENV = "ROBOTEMPO_REMOTE_CACHE_MB"
# A process's open files of object stores hold at most this much together: a mixture of 100 datasets x 3
# cameras keeps every file open (the decoder cache's default, `video.cache.fitted_size`) without 16 MB each.
DEFAULT_CACHE_MB = 128


def held_bytes() -> int:
    """What one open `BlockFile` may hold, at most: its blocks and as many bytes of prefetched ranges (16 MB
    by default; reached by a long pass of random reads on a file larger than that)."""
    return 2 * env_int(BLOCK_KB_ENV, DEFAULT_BLOCK_KB) * 1024 * env_int(BLOCKS_ENV, DEFAULT_BLOCKS)


def process_budget() -> int:
    """What all the open `BlockFile`s of a process hold together, at most (`ROBOTEMPO_REMOTE_CACHE_MB`,
    default 128; 0 keeps only the reading file's), beyond the file being read, which keeps its own."""
    return env_int(CACHE_MB_ENV, DEFAULT_CACHE_MB, minimum=0) * 1024 * 1024


def remote_bytes(files: int) -> int:
    """What `files` open `BlockFile`s of a process may hold together, at most: 16 MB each, and at most the
    process's budget plus the file being read."""
    return min(files * held_bytes(), process_budget() + held_bytes()) if files > 0 else 0


class SeekableReader(io.RawIOBase):
    """A read-only, seekable file object of `_size` bytes at position `_pos`; subclasses define `read`."""

    _size: int
    _pos: int = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if whence == io.SEEK_SET:
            pos = offset
        elif whence == io.SEEK_CUR:
            pos = self._pos + offset
        elif whence == io.SEEK_END:
            pos = self._size + offset
        else:
            raise ValueError(f"unsupported whence {whence}")
        if pos < 0:
            raise ValueError(f"negative seek position {pos}")
        self._pos = pos
        return pos

    def readinto(self, buffer) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


class BlockFile(SeekableReader):
    """A read-only, seekable file object over a random-access store file, fetched in aligned blocks.

    FFmpeg reads in small pieces (32 KB) and seeks back and forth around keyframes. A read starting in a
    held block returns the held blocks from there on (a short read, which FFmpeg's reader accepts: it may
    need only those bytes); one starting in a missing block fetches it and the blocks after it in one
    ranged request; reads that continue where the previous one ended (the MP4 index
    at open, a long forward decode) double a read-ahead up to half the cache, so a sequential stretch costs
    a logarithmic number of requests, while a random seek fetches one small block. The last
    `ROBOTEMPO_REMOTE_BLOCKS` blocks (default 128 of `ROBOTEMPO_REMOTE_BLOCK_KB`, default 64 KB: 8 MB per open
    file) are kept.

    The blocks a file's open read (its head and its index: `mark_opened`) are kept by the process after the
    file is closed, keyed by the object's URL and version (size, ETag), and a later `BlockFile` of the same
    version starts with them: reopening a file the video cache evicted costs its open's HEAD, not the index
    again (a v2.1 dataset, one MP4 per episode and camera, reopens files all through a random pass).
    `ROBOTEMPO_REMOTE_HEADERS_MB` (default 16) bounds them per process; the least recently used go first.

    `prefetch` fetches byte ranges the caller knows it will read (a batch's frame windows) before FFmpeg asks
    for them, concurrently; a read that starts inside a prefetched range is served from it (a short read up
    to the range's end, which FFmpeg's reader accepts) without a request. Ranges less than `hole` bytes apart
    (`ROBOTEMPO_REMOTE_HOLE_KB`, default 1024) are fetched as one. Prefetched ranges have their own budget of
    the same size as the block cache; the oldest are dropped first.

    All open files of a process hold at most `ROBOTEMPO_REMOTE_CACHE_MB` (default 128) of blocks and ranges
    together, beyond the file being read: past it, the least recently read files give up their oldest bytes
    first. Keeping the 300 files of a mixture open then costs their decoders, not 300 x 16 MB.
    """

    def __init__(
        self,
        source: pa.NativeFile,
        name: Path | str,
        block_size: int | None = None,
        blocks: int | None = None,
        hole: int | None = None,
        version: tuple | None = None,
    ):
        super().__init__()
        self._source = source
        self.name = str(name)
        self._size = source.size()
        self._block = block_size or env_int(BLOCK_KB_ENV, DEFAULT_BLOCK_KB) * 1024
        self._max_blocks = blocks or env_int(BLOCKS_ENV, DEFAULT_BLOCKS)
        self._blocks: OrderedDict[int, bytes] = OrderedDict()
        self._block_bytes = 0  # the bytes in `_blocks`
        # Kept header blocks are reused only for a known version of the object (`version`: what tells it
        # from a rewrite, e.g. the store, size and ETag; a rewrite is another key).
        known = bool(version) and None not in version
        self._header_key = (self.name, version, self._block) if known else None
        if self._header_key is not None:
            self._blocks.update(_headers.get(self._header_key))
            self._block_bytes = sum(map(len, self._blocks.values()))
        self._ranges = _Ranges(self._block * self._max_blocks)
        with _shared.lock:
            _shared.touch(self)
        self.hole = hole or env_int(HOLE_KB_ENV, DEFAULT_HOLE_KB) * 1024
        self._pos = 0
        self._last_end = -1  # where the previous read ended
        self._ahead = 1  # blocks a missing read fetches from its first block on
        # The store failure of a read FFmpeg asked for, kept: PyAV drops an exception raised in its read
        # callback and FFmpeg reads again, so each later read raises it at once instead of waiting out
        # another deadline (a stalled body took 4 deadlines), and the reader raises it instead of FFmpeg's.
        self.failure: BaseException | None = None

    def mark_opened(self) -> None:
        """The container is open: keep the blocks read so far (the file's head and index) for this process's
        next `BlockFile` of the same object version."""
        if self._header_key is not None and self.failure is None:
            with _shared.lock:
                blocks = dict(self._blocks)
            _headers.put(self._header_key, blocks)

    @property
    def prefetch_budget(self) -> int:
        """Bytes of prefetched ranges kept at once: one `prefetch` call should ask for no more."""
        return self._ranges.budget

    def read(self, n: int = -1) -> bytes:
        end = self._size if n is None or n < 0 else min(self._size, self._pos + n)
        if end <= self._pos:
            return b""
        with _shared.lock:
            _shared.touch(self)
            out = self._ranges.read(self._pos, end)
            if out is None:
                first, last = self._pos // self._block, (end - 1) // self._block
                sequential = self._pos == self._last_end
                self._ahead = min(self._ahead * 2, max(1, self._max_blocks // 2)) if sequential else 1
                # the held blocks from `first` on: a short read, FFmpeg may need no more
                if first in self._blocks:
                    last = next((b - 1 for b in range(first + 1, last + 1) if b not in self._blocks), last)
                    out = self._take_blocks(first, last, end)
        if out is None:
            stop = min(max(last, first + self._ahead - 1), (self._size - 1) // self._block)
            data = self._fetch(first, stop)
            with _shared.lock:
                _shared.touch(self)
                for b in range(first, stop + 1):
                    old = self._blocks.pop(b, None)
                    block = self._blocks[b] = data[(b - first) * self._block : (b - first + 1) * self._block]
                    self._block_bytes += len(block) - (len(old) if old is not None else 0)
                out = self._take_blocks(first, last, end)
                _shared.charge(self)
        self._pos += len(out)
        self._last_end = self._pos
        return out

    def _take_blocks(self, first: int, last: int, end: int) -> bytes:
        """Bytes from `_pos` to `end` out of held blocks `first..last`, marked recently used; then the oldest
        past this file's budget dropped (the caller holds the process's lock)."""
        parts = []
        for b in range(first, last + 1):
            data = self._blocks[b]
            self._blocks.move_to_end(b)
            lo = max(self._pos - b * self._block, 0)
            hi = min(end - b * self._block, len(data))
            parts.append(data[lo:hi])
        while len(self._blocks) > max(self._max_blocks, last - first + 1):
            self._block_bytes -= len(self._blocks.popitem(last=False)[1])
        _shared.settle(self)
        return b"".join(parts) if len(parts) > 1 else parts[0]

    def _bytes(self) -> int:
        """The bytes this file holds: blocks and prefetched ranges."""
        return self._block_bytes + self._ranges.held

    def _shed(self, excess: int) -> None:
        """Drop this file's oldest prefetched ranges, then its oldest blocks, until `excess` bytes are gone or
        none are left (the caller holds the process's lock)."""
        floor = self._bytes() - excess
        while self._bytes() > floor and self._ranges.held:
            self._ranges.drop_oldest()
        while self._bytes() > floor and self._blocks:
            self._block_bytes -= len(self._blocks.popitem(last=False)[1])

    def prefetch(self, ranges: Iterable[tuple[int, int]]) -> int:
        """Fetch the byte ranges `[start, end)` not held yet, concurrently; returns the requests made.

        Ranges less than `hole` bytes apart are merged into one request (a round trip costs more than the
        bytes between them); at most `ROBOTEMPO_REMOTE_CONCURRENCY` requests (default 8) are under way at
        once in this process, all waited for `ROBOTEMPO_S3_DEADLINE_S` at most. Ask for at most
        `prefetch_budget` bytes per call: older ranges make room.
        """
        wanted = _merge(((max(lo, 0), min(hi, self._size)) for lo, hi in ranges), 0)
        with _shared.lock:
            _shared.touch(self)
            gaps = [g for lo, hi in wanted if not self._cached(lo, hi) for g in self._ranges.missing(lo, hi)]
        spans = _merge(gaps, self.hole)
        if not spans:
            return 0
        datas = all_within_deadline([functools.partial(self._read_at, lo, hi) for lo, hi in spans], self.name)
        with _shared.lock:
            _shared.touch(self)
            for (lo, _), data in zip(spans, datas):
                self._ranges.add(lo, data)
            _shared.charge(self)
        return len(spans)

    def _cached(self, lo: int, hi: int) -> bool:
        """Whether blocks already held cover `[lo, hi)` (the caller holds the process's lock)."""
        return all(b in self._blocks for b in range(lo // self._block, (hi - 1) // self._block + 1))

    def _read_at(self, lo: int, hi: int) -> bytes:
        try:
            return self._source.read_at(hi - lo, lo)
        except OSError as e:
            raise classify(e, self.name) from None

    def _fetch(self, first: int, last: int) -> bytes:
        """The bytes of blocks `first..last`, in one ranged read (a round trip costs more than re-reading a
        few cached blocks among them)."""
        if self.failure is not None:
            raise self.failure
        lo = first * self._block
        hi = min((last + 1) * self._block, self._size)
        try:
            return within_deadline(lambda: self._read_at(lo, hi), self.name)
        except OSError as e:  # StorageError is one
            self.failure = e
            raise

    def close(self) -> None:
        if not self.closed:
            with _shared.lock:
                _shared.forget(self)
                self._blocks.clear()
                self._block_bytes = 0
                self._ranges.clear()
            self._source.close()
        super().close()


class _Entry:
    """A file's place in `_Shared`: the bytes counted for it, kept apart from the file so that a file the
    garbage collector frees without a close (its weak reference already cleared) still leaves the count."""

    __slots__ = ("key", "ref", "bytes")

    def __init__(self, f: BlockFile):
        self.key, self.ref, self.bytes = id(f), weakref.ref(f), 0


class _Shared:
    """The open `BlockFile`s of this process and the bytes they hold together; past `process_budget()` the
    least recently read give up their oldest bytes. One lock guards every file's blocks and ranges (each
    read's work under it is a few dictionary operations; requests are made outside it)."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.files: dict[int, _Entry] = {}  # every open file's entry
        self.order: OrderedDict[int, _Entry] = OrderedDict()  # those holding bytes, least recently read first
        self.held = 0

    def touch(self, f: BlockFile) -> None:
        """`f` is being read: the most recently used (the caller holds the lock)."""
        entry = self.files.get(id(f))
        if entry is None or entry.ref() is not f:
            if entry is not None:  # a freed file's, whose id `f` reuses
                self.remove(entry)
            entry = self.files[id(f)] = _Entry(f)  # new, or opened before a fork
            weakref.finalize(f, _gone, entry).atexit = False
        self.order[entry.key] = entry
        self.order.move_to_end(entry.key)
        self.settle(f)

    def settle(self, f: BlockFile) -> None:
        """Count what `f` holds now (the caller holds the lock)."""
        entry = self.files.get(id(f))
        if entry is not None and entry.ref() is f:
            now = f._bytes()
            self.held += now - entry.bytes
            entry.bytes = now

    def remove(self, entry: _Entry) -> None:
        """Take a file's entry and its bytes out of the count, if still in it (the caller holds the lock)."""
        if self.files.get(entry.key) is entry:
            del self.files[entry.key]
            self.order.pop(entry.key, None)
            self.held -= entry.bytes

    def forget(self, f: BlockFile) -> None:
        entry = self.files.get(id(f))
        if entry is not None and entry.ref() is f:
            self.remove(entry)

    def charge(self, f: BlockFile) -> None:
        """`f` (being read, the most recent) may have grown: count it; past the budget, other files give up
        their oldest bytes, the least recently read first (the caller holds the lock). An emptied file leaves
        the order until it is read again, so each charge walks only files that hold bytes."""
        self.settle(f)
        budget = process_budget()
        while self.held > budget and self.order:
            entry = next(iter(self.order.values()))
            victim = entry.ref()
            if victim is f:  # the only file left holding bytes: it keeps its own
                return
            if victim is None:  # freed, its finalizer not run yet
                self.remove(entry)
                continue
            victim._shed(self.held - budget)
            self.settle(victim)
            if entry.bytes == 0:
                self.order.pop(entry.key, None)

    def after_fork(self) -> None:  # a fork while another thread held the lock would leave it held
        self.lock = threading.RLock()
        self.files = {}
        self.order = OrderedDict()
        self.held = 0


def _gone(entry: _Entry) -> None:
    """A file freed, closed or not (the garbage collector clears a cycle's weak references before its
    finalizers run, so the file's own close cannot find its entry)."""
    with _shared.lock:
        _shared.remove(entry)


class _HeaderBlocks:
    """The process's kept header blocks: (URL, version, block size) -> {block number: bytes}, least recently
    used first, at most `ROBOTEMPO_REMOTE_HEADERS_MB` in all (0: none kept)."""

    def __init__(self) -> None:
        self._files: OrderedDict[tuple, dict[int, bytes]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, key: tuple) -> dict[int, bytes]:
        with self._lock:
            blocks = self._files.get(key)
            if blocks is None:
                return {}
            self._files.move_to_end(key)
            return dict(blocks)

    def put(self, key: tuple, blocks: dict[int, bytes]) -> None:
        budget = env_int(HEADERS_MB_ENV, DEFAULT_HEADERS_MB, minimum=0) * 1024 * 1024
        size = sum(len(b) for b in blocks.values())
        with self._lock:
            old = self._files.pop(key, None)
            self._bytes -= sum(len(b) for b in old.values()) if old else 0
            if not blocks or size > budget // 4:  # one file may not crowd out the others
                return
            self._files[key] = blocks
            self._bytes += size
            while self._bytes > budget:
                _, dropped = self._files.popitem(last=False)
                self._bytes -= sum(len(b) for b in dropped.values())

    def after_fork(self) -> None:  # a fork while another thread held the lock would leave the child's held
        self._lock = threading.Lock()


_headers = _HeaderBlocks()
os.register_at_fork(after_in_child=_headers.after_fork)
_shared = _Shared()
os.register_at_fork(after_in_child=_shared.after_fork)


def _merge(ranges: Iterable[tuple[int, int]], gap: int) -> list[tuple[int, int]]:
    """Non-empty `[start, end)` ranges sorted, those less than `gap` bytes apart (or overlapping) joined."""
    out: list[tuple[int, int]] = []
    for lo, hi in sorted(r for r in ranges if r[1] > r[0]):
        if out and lo - out[-1][1] < max(gap, 1):
            out[-1] = (out[-1][0], max(out[-1][1], hi))
        else:
            out.append((lo, hi))
    return out


class _Ranges:
    """Prefetched byte ranges of one file: non-overlapping, the oldest dropped first past `budget` bytes."""

    def __init__(self, budget: int):
        self.budget = budget
        self._starts: list[int] = []  # sorted
        self._data: dict[int, bytes] = {}  # start -> bytes, oldest first
        self.held = 0

    def read(self, pos: int, end: int) -> bytes | None:
        """Bytes from `pos` to `end` or to the end of the range holding `pos`; None if no range holds it."""
        i = bisect.bisect_right(self._starts, pos) - 1
        if i < 0:
            return None
        start = self._starts[i]
        data = self._data[start]
        if pos >= start + len(data):
            return None
        return data[pos - start : min(end, start + len(data)) - start]

    def missing(self, lo: int, hi: int) -> list[tuple[int, int]]:
        """The parts of `[lo, hi)` no range holds."""
        out = []
        i = max(bisect.bisect_right(self._starts, lo) - 1, 0)
        while lo < hi and i < len(self._starts):
            start = self._starts[i]
            end = start + len(self._data[start])
            if start >= hi:
                break
            if end > lo:
                if start > lo:
                    out.append((lo, start))
                lo = end
            i += 1
        if lo < hi:
            out.append((lo, hi))
        return out

    def add(self, start: int, data: bytes) -> None:
        """Hold `data` at `start`, replacing the ranges it overlaps; drop the oldest past the budget."""
        end = start + len(data)
        i = max(bisect.bisect_right(self._starts, start) - 1, 0)
        while i < len(self._starts) and self._starts[i] < end:
            other = self._starts[i]
            if other + len(self._data[other]) > start:
                self._drop(other)
            else:
                i += 1
        bisect.insort(self._starts, start)
        self._data[start] = data
        self.held += len(data)
        while self.held > self.budget and len(self._data) > 1:
            self.drop_oldest()

    def drop_oldest(self) -> None:
        self._drop(next(iter(self._data)))

    def _drop(self, start: int) -> None:
        self.held -= len(self._data.pop(start))
        self._starts.pop(bisect.bisect_left(self._starts, start))

    def clear(self) -> None:
        self._starts, self._data, self.held = [], {}, 0
