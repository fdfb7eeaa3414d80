"""A bounded, per-process, thread-safe cache of open video files (`VideoReader`s); LRU eviction."""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections import OrderedDict
from collections.abc import Iterator
from pathlib import Path

from robotempo.video.reader import VideoReader

logger = logging.getLogger(__name__)

CACHE_SIZE_ENV = "ROBOTEMPO_VIDEO_CACHE_SIZE"
DEFAULT_CACHE_SIZE = 8

# Serializes the first use of a cache (or fetcher) in a new process, when several threads may notice the new
# pid at once. A lock inherited through fork may be held by a thread that does not exist in the child, so each
# child gets a new one.
_new_process_lock = threading.Lock()


def _reset_new_process_lock() -> None:
    global _new_process_lock
    _new_process_lock = threading.Lock()


os.register_at_fork(after_in_child=_reset_new_process_lock)


def new_process_lock() -> threading.Lock:
    """The lock to take while moving per-process state (open files, threads) over to a new process."""
    return _new_process_lock


def default_cache_size() -> int:
    """`ROBOTEMPO_VIDEO_CACHE_SIZE` if set, else 8."""
    raw = os.environ.get(CACHE_SIZE_ENV, "").strip()
    if not raw:
        return DEFAULT_CACHE_SIZE
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise ValueError(f"{CACHE_SIZE_ENV}={raw!r} is not a positive integer. Fix: set e.g. 8, or unset it")
    return value


class _Slot:
    """One cached file: its reader (None until opened), the lock of the thread using it, a user count."""

    __slots__ = ("key", "identity", "lock", "reader", "users", "evicted")

    def __init__(self, key: str, identity: tuple | None):
        self.key = key
        self.identity = identity  # the file this slot opens: a file replaced on disk gets a new slot
        self.lock = threading.Lock()
        self.reader: VideoReader | None = None
        self.users = 0  # threads holding or waiting for `lock`; guarded by the cache lock
        self.evicted = False  # out of the cache; the last user closes it


class VideoDecoderCache:
    """Keeps up to `max_size` video files open (default: `ROBOTEMPO_VIDEO_CACHE_SIZE`, or 8), closes the rest.

    Thread-safe: threads reading different files work in parallel; threads reading the same file take turns
    (one decoder position per file). A file in use when it is evicted is closed by its last user.

    Fork-safe: a child process never touches the containers its parent opened (they share file offsets with
    the parent): on the first use in a new process they are set aside untouched, neither used nor closed,
    and the cache starts empty. Pickling carries only `max_size`, so DataLoader workers started with `spawn`
    get an empty cache of the same size.
    """

    def __init__(self, max_size: int | None = None):
        if max_size is None:
            max_size = default_cache_size()
        if not isinstance(max_size, int) or max_size < 1:
            raise ValueError(f"VideoDecoderCache max_size must be a positive int, got {max_size!r}")
        self.max_size = max_size
        self._reset_for_this_process()

    def _reset_for_this_process(self) -> None:
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self._slots: OrderedDict[str, _Slot] = OrderedDict()

    def _check_process(self) -> None:
        if self._pid == os.getpid():
            return
        with new_process_lock():
            if self._pid != os.getpid():
                # Kept referenced so the parent's containers are never finalized (closed) from this process,
                # and their copy-on-write pages are left alone.
                self._inherited = [*getattr(self, "_inherited", []), self._slots]
                self._reset_for_this_process()

    def __getstate__(self) -> dict:
        return {"max_size": self.max_size}

    def __setstate__(self, state: dict) -> None:
        self.max_size = state["max_size"]
        self._reset_for_this_process()

    def __len__(self) -> int:
        """Number of files open in the cache (in this process)."""
        self._check_process()
        with self._lock:
            return sum(slot.reader is not None for slot in self._slots.values())

    def __contains__(self, path: object) -> bool:
        self._check_process()
        with self._lock:
            slot = self._slots.get(cache_key(path))  # type: ignore[arg-type]
            return slot is not None and slot.reader is not None

    @contextlib.contextmanager
    def reader(self, path: str | Path) -> Iterator[VideoReader]:
        """The open reader of `path`, held exclusively by this thread inside the `with` block."""
        self._check_process()
        key = cache_key(path)
        identity = _identity(key)
        with self._lock:
            slot = self._slots.get(key)
            to_close = []
            if slot is not None and slot.identity != identity:
                del self._slots[key]
                to_close = self._retire([slot])
                slot = None
            if slot is None:
                slot = self._slots[key] = _Slot(key, identity)
            else:
                self._slots.move_to_end(key)
            slot.users += 1
            to_close += self._evict()
        _close_all(to_close)
        try:
            with slot.lock:
                if slot.reader is None:
                    slot.reader = VideoReader(path)
                try:
                    yield slot.reader
                finally:
                    if slot.reader.broken:
                        _close_all([slot.reader])
                        slot.reader = None
        finally:
            to_close = []
            with self._lock:
                slot.users -= 1
                if slot.evicted and slot.users == 0 and slot.reader is not None:
                    to_close.append(slot.reader)
                    slot.reader = None
                elif slot.reader is None and slot.users == 0 and self._slots.get(key) is slot:
                    del self._slots[key]  # failed to open: keep no empty slot
            _close_all(to_close)

    def _evict(self) -> list[VideoReader]:
        """Drop least recently used slots beyond `max_size` (caller holds the lock); readers to close."""
        to_close = []
        while len(self._slots) > self.max_size:
            key = next((k for k, s in self._slots.items() if s.users == 0), None)
            if key is None:
                key = next(iter(self._slots))  # all in use: the least recently used closes when released
            slot = self._slots.pop(key)
            slot.evicted = True
            if slot.users == 0 and slot.reader is not None:
                to_close.append(slot.reader)
                slot.reader = None
        return to_close

    def clear(self) -> None:
        """Close every file not in use; files in use close when released."""
        self._check_process()
        with self._lock:
            slots, self._slots = list(self._slots.values()), OrderedDict()
            to_close = self._retire(slots)
        _close_all(to_close)

    @staticmethod
    def _retire(slots: list[_Slot]) -> list[VideoReader]:
        """Mark slots out of the cache (caller holds the lock); readers no thread uses, to close now."""
        to_close = []
        for slot in slots:
            slot.evicted = True
            if slot.users == 0 and slot.reader is not None:
                to_close.append(slot.reader)
                slot.reader = None
        return to_close

    close = clear


def cache_key(path: str | Path) -> str:
    """The absolute path naming a file in the cache."""
    key = os.fspath(path)
    return key if os.path.isabs(key) else os.path.abspath(key)


def _identity(path: str) -> tuple | None:
    """(inode, size, mtime) of a file, None when it cannot be read (the reader then raises a typed error)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns)


def _close_all(readers: list[VideoReader]) -> None:
    for reader in readers:
        try:
            reader.close()
        except Exception:  # closing must not mask the caller's result or error
            logger.warning("failed to close video %s", reader.path, exc_info=True)
