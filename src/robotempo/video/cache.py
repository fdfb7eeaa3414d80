"""A bounded, per-process, thread-safe cache of open video files (`VideoReader`s); LRU eviction."""

from __future__ import annotations

import contextlib
import logging
import math
import os
import threading
import weakref
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import NamedTuple

import numpy as np

from robotempo.arrays import distinct
from robotempo.env import descriptor_limit, env_int
from robotempo.forksafe import ProcessLocal
from robotempo.fs import FileRef, as_file
from robotempo.fs.blockfile import remote_bytes
from robotempo.video.reader import VideoReader

logger = logging.getLogger(__name__)

CACHE_SIZE_ENV = "ROBOTEMPO_VIDEO_CACHE_SIZE"
DEFAULT_CACHE_SIZE = 8
# What a default-sized cache may spend to keep every file of its datasets open, per process (a DataLoader
# worker is one): in a loader an open decoder holds ~1.5 MB at 224x224 (H.264), 3.5 MB (H.264) and 2.4 MB
# (AV1) at 480x640 (`benchmarks/bench_video_cache.py`); estimated as 1 MB + 8 bytes per pixel, plus the
# blocks files in an object store keep (`fs.blockfile.remote_bytes`: 16 MB each, at most 128 MB together
# beyond the file being read).
DECODER_BUDGET_BYTES = 1 << 30


def decoder_bytes(pixels: int) -> int:
    """Estimated memory of one open video file of frames of `pixels` pixels: its decoder's buffers, demuxer
    and index (a file of an object store also holds blocks: `open_bytes`)."""
    return (1 << 20) + 8 * max(int(pixels), 0)


def open_bytes(n: int, file_bytes: int, remote_share: float = 0.0) -> int:
    """Estimated memory of `n` open video files costing `file_bytes` each (`decoder_bytes`), `remote_share`
    of them in an object store (their blocks and prefetched ranges: `fs.blockfile.remote_bytes`)."""
    return n * file_bytes + remote_bytes(math.ceil(n * remote_share))


def fitted_size(cameras: int, files: int, file_bytes: int, remote: int = 0) -> int:
    """The default size for datasets of `cameras` video cameras (the most of any) reading `files` video files
    together (a dataset's own, a Mixture's all), each costing `file_bytes` open (`decoder_bytes`; a
    Mixture's average), `remote` of them in an object store: 8 files per camera (a random batch reads a file
    of each camera; sequential reads keep a few), or every file as far as they fit in `DECODER_BUDGET_BYTES`
    (`open_bytes`) and in a quarter of the process's open-file limit, if that covers at least 3/4 of the
    files. A smaller cover stays at 8 per camera: a random read hits an open file only about as often as the
    cache covers the files, less with LRU under a mixture's batches (measured: 64 of 120 files open ran as
    slowly as 4; a simulation: 20% hits at 64 of 120, 72% at 225 of 300)."""
    floor = DEFAULT_CACHE_SIZE * max(cameras, 1)
    if files <= floor:
        return floor
    share = min(max(remote, 0) / files, 1.0)
    per = max(file_bytes, 1 << 20)
    lo, hi = 0, min(files, _descriptor_cap())  # the most files that fit: open_bytes grows with n
    while lo < hi:
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if open_bytes(mid, per, share) <= DECODER_BUDGET_BYTES else (lo, mid - 1)
    return lo if 4 * lo >= 3 * files else floor


def _descriptor_cap() -> int:
    limit = descriptor_limit()
    return 1 << 18 if limit is None else max(DEFAULT_CACHE_SIZE, limit // 4)


_noted: set[tuple] = set()  # what this process has logged: ("warn", ...) and ("note", ...) keys


def note_cover(cameras: int, files: int, file_bytes: int, remote: int = 0, size: int | None = None) -> None:
    """Log once per process, where the datasets are opened, when the default cache cannot keep every one of
    `files` video files open, and the size that would; and warn when an explicit size (`size`, a dataset's
    `video_cache_size`, or `ROBOTEMPO_VIDEO_CACHE_SIZE`) may keep more files open than half the open-file
    limit (torch's "Too many open files" would say nothing of it)."""
    if files <= 0:
        return
    limit = descriptor_limit()
    if size is None and os.environ.get(CACHE_SIZE_ENV, "").strip():
        size = default_cache_size(cameras)
    if size is not None:
        reachable = min(size, files)
        if limit is not None and reachable > limit // 2 and ("warn", reachable, limit) not in _noted:
            _noted.add(("warn", reachable, limit))
            logger.warning(
                "a video decoder cache of %d keeps up to %d of %d video files open in each process, each a "
                "file descriptor, and the open-file limit is %d: raise the limit (ulimit -n) or lower the "
                "size (%s or video_cache_size=)",
                size, reachable, files, limit, CACHE_SIZE_ENV,
            )  # fmt: skip
        return
    fitted = fitted_size(cameras, files, file_bytes, remote)
    if fitted >= files or ("note", cameras, files, file_bytes, remote) in _noted:
        return
    _noted.add(("note", cameras, files, file_bytes, remote))
    first = (
        ""
        if limit is None or files <= limit // 2
        else f"raise the open-file limit ({limit}: ulimit -n), then "
    )
    memory = open_bytes(files, file_bytes, remote / files) / 1e6
    logger.info(
        "%d video files are read through one decoder cache of %d per process: a random read often reopens "
        "its file. To keep them all open, %sset %s=%d (up to %.0f MB per process, each DataLoader worker is "
        "one, and %d open files)",
        files, fitted, first, CACHE_SIZE_ENV, files, memory, files,
    )  # fmt: skip


class VideoFiles(NamedTuple):
    """The video files one dataset selects for one camera: `group` names the folder and camera (the same
    group in two datasets is the same files), `codes` the files' numbers in it, `file_bytes` what one costs
    open (`decoder_bytes`), `remote` whether they are in an object store."""

    group: str
    codes: np.ndarray
    file_bytes: int
    remote: bool


def video_union(parts: Iterable[VideoFiles]) -> tuple[int, int, int]:
    """The distinct video files of `parts` (a file two datasets select counts once), what one costs open on
    average (one 1080p dataset must not charge its cost to 400 small files), and how many of them are in an
    object store: the arguments of `fitted_size`."""
    groups: dict[str, list[VideoFiles]] = {}
    for part in parts:
        groups.setdefault(part.group, []).append(part)
    files = total = remote = 0
    for members in groups.values():
        n, cost, in_store = _group_files(members)
        files, total, remote = files + n, total + cost, remote + in_store
    return files, total // max(files, 1), remote


def _group_files(members: list[VideoFiles]) -> tuple[int, int, int]:
    """One group's distinct files, their cost open, and how many are in a store."""
    n = len(distinct(np.concatenate([m.codes for m in members])))  # not np.unique: it imports numpy.ma
    return n, n * max(m.file_bytes for m in members), n if any(m.remote for m in members) else 0


# Guards every cache's registry of the datasets reading through it (`VideoDecoderCache.join`); a lock held
# at a fork by a thread the child does not have would never be released there: each child gets a new one.
_users_lock = threading.Lock()


def _new_users_lock() -> None:
    global _users_lock
    _users_lock = threading.Lock()


os.register_at_fork(after_in_child=_new_users_lock)


class _Users:
    """The datasets reading through one default-sized cache in this process, and the files they select
    together, kept up to date group by group as datasets join and leave (a training process may hold a
    thousand datasets: their union is never recounted whole)."""

    def __init__(self) -> None:
        self.cameras: dict[int, int] = {}  # token -> the dataset's video cameras
        self.joined: dict[int, set[str]] = {}  # token -> the groups of its files
        self.groups: dict[str, dict[int, VideoFiles]] = {}  # group -> token -> that dataset's part
        self.counted: dict[str, tuple[int, int, int]] = {}  # group -> `_group_files`
        self.totals = [0, 0, 0]  # files, their cost open, files in stores
        self.gone: list[int] = []  # tokens of datasets freed since (appended by their finalizers)
        self.next_token = 0

    def add(self, cameras: int, parts: list[VideoFiles]) -> int:
        token, self.next_token = self.next_token, self.next_token + 1
        self.cameras[token] = cameras
        for part in parts:
            self.groups.setdefault(part.group, {})[token] = part
        self.joined[token] = {part.group for part in parts}
        self._recount(self.joined[token])
        return token

    def drop_gone(self) -> None:
        touched: set[str] = set()
        while self.gone:
            token = self.gone.pop()
            self.cameras.pop(token, None)
            for group in self.joined.pop(token, ()):
                self.groups.get(group, {}).pop(token, None)
                touched.add(group)
        self._recount(touched)

    def _recount(self, groups: set[str]) -> None:
        for group in groups:
            members = self.groups.get(group)
            old = self.counted.pop(group, (0, 0, 0))
            new = _group_files(list(members.values())) if members else (0, 0, 0)
            if not members:
                self.groups.pop(group, None)
            else:
                self.counted[group] = new
            self.totals = [t - o + n for t, o, n in zip(self.totals, old, new)]

    def cover(self) -> tuple[int, int, int, int]:
        """`fitted_size`'s arguments for every dataset still alive: cameras (the most), files, the average
        cost of one open, files in stores."""
        files, total, remote = self.totals
        return max(self.cameras.values(), default=1), files, total // max(files, 1), remote


def default_cache_size(cameras: int = 1) -> int:
    """`ROBOTEMPO_VIDEO_CACHE_SIZE` if set, else 8 per video camera (a random batch reads every camera)."""
    unset = "robotempo's size for the datasets (8 per video camera, or every file when they fit: fitted_size)"
    return env_int(CACHE_SIZE_ENV, DEFAULT_CACHE_SIZE * max(cameras, 1), unset=unset)


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


class _State:
    """The cache's per-process part: its lock and its slots."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.slots: OrderedDict[str, _Slot] = OrderedDict()


class VideoDecoderCache:
    """Keeps up to `max_size` video files open (default: `ROBOTEMPO_VIDEO_CACHE_SIZE`, or as `fit` grows it
    for the datasets using it), closes the rest.

    Thread-safe: threads reading different files work in parallel; threads reading the same file take turns
    (one decoder position per file). A file in use when it is evicted is closed by its last user.

    Fork-safe: a child process never touches the containers its parent opened (they share file offsets with
    the parent): on the first use in a new process they are set aside untouched, neither used nor closed,
    and the cache starts empty. Pickling carries only `max_size`, so DataLoader workers started with `spawn`
    get an empty cache of the same size.
    """

    def __init__(self, max_size: int | None = None):
        # ROBOTEMPO_VIDEO_CACHE_SIZE is an explicit size as much as the argument: `fit` keeps it
        self.sized_by_default = max_size is None and not os.environ.get(CACHE_SIZE_ENV, "").strip()
        if max_size is None:
            max_size = default_cache_size()
        if not isinstance(max_size, int) or max_size < 1:
            raise ValueError(f"VideoDecoderCache max_size must be a positive int, got {max_size!r}")
        self.max_size = max_size
        self._fitted = max_size  # the most `fit` asked for
        # The datasets reading through this cache (`join`): inherited by a forked child, whose datasets are
        # the same objects (and do not join again); not pickled: a spawned process's datasets join anew.
        self._users = _Users()
        self._state: ProcessLocal[_State] = ProcessLocal(_State)

    def fit(self, cameras: int, files: int = 0, file_bytes: int = 0, remote: int = 0) -> None:
        """Grow a cache sized by default to at least `fitted_size` of these arguments; an explicit size
        (argument or `ROBOTEMPO_VIDEO_CACHE_SIZE`) is kept."""
        if self.sized_by_default:
            with _users_lock:
                self._fitted = max(self._fitted, fitted_size(cameras, files, file_bytes, remote))
                self._resize()

    def join(self, user: object, cameras: int, parts: list[VideoFiles]) -> None:
        """Size a cache sized by default for every dataset reading through it in this process: `user`'s
        video files (`parts`, `cameras` video cameras) join those of the others still alive, and the size is
        `fitted_size` of them all together (datasets side by side, e.g. in a torch `ConcatDataset`, each
        sized alone, kept 24 of 120 files open and reopened files on most reads). A freed `user` leaves at
        the next join. An explicit size is kept."""
        if not self.sized_by_default:
            return
        with _users_lock:
            users = self._users
            token = users.add(cameras, parts)
            leave = weakref.finalize(user, users.gone.append, token)  # list.append: safe anywhere, any time
            leave.atexit = False
            users.drop_gone()
            self._resize()

    def _resize(self) -> None:
        """The size for `fit`'s requests and the datasets joined (the caller holds `_users_lock`)."""
        cameras, files, file_bytes, remote = self._users.cover()
        joined = fitted_size(cameras, files, file_bytes, remote) if self._users.cameras else 0
        self.max_size = max(self._fitted, joined)

    def __getstate__(self) -> dict:
        return {"max_size": self.max_size}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["max_size"])  # type: ignore[misc]

    def __len__(self) -> int:
        """Number of files open in the cache (in this process)."""
        state = self._state.get()
        with state.lock:
            return sum(slot.reader is not None for slot in state.slots.values())

    def __contains__(self, path: object) -> bool:
        state = self._state.get()
        with state.lock:
            slot = state.slots.get(cache_key(path))  # type: ignore[arg-type]
            return slot is not None and slot.reader is not None

    @contextlib.contextmanager
    def reader(self, path: str | Path | FileRef) -> Iterator[VideoReader]:
        """The open reader of `path`, held exclusively by this thread inside the `with` block."""
        state = self._state.get()
        ref = as_file(path)
        key = str(ref)
        identity = video_identity(ref)
        with state.lock:
            slot = state.slots.get(key)
            to_close = []
            if slot is not None and slot.identity != identity:
                del state.slots[key]
                to_close = self._retire([slot])
                slot = None
            if slot is None:
                slot = state.slots[key] = _Slot(key, identity)
            else:
                state.slots.move_to_end(key)
            slot.users += 1
            to_close += self._evict(state.slots)
        _close_all(to_close)
        try:
            with slot.lock:
                if slot.reader is None:
                    slot.reader = VideoReader(ref)
                try:
                    yield slot.reader
                except BaseException as e:
                    # An interrupt (Ctrl-C, a signal handler's exception) can stop the decoder's generator
                    # half way: its next call would read as the end of the file. Never reuse such a reader.
                    if not isinstance(e, Exception) or isinstance(e, MemoryError):
                        slot.reader.broken = True
                    raise
                finally:
                    if slot.reader.broken:
                        _close_all([slot.reader])
                        slot.reader = None
        finally:
            to_close = []
            with state.lock:
                slot.users -= 1
                if slot.evicted and slot.users == 0 and slot.reader is not None:
                    to_close.append(slot.reader)
                    slot.reader = None
                elif slot.reader is None and slot.users == 0 and state.slots.get(key) is slot:
                    del state.slots[key]  # failed to open: keep no empty slot
            _close_all(to_close)

    def _evict(self, slots: OrderedDict[str, _Slot]) -> list[VideoReader]:
        """Drop least recently used slots beyond `max_size` (caller holds the lock); readers to close."""
        to_close = []
        while len(slots) > self.max_size:
            key = next((k for k, s in slots.items() if s.users == 0), None)
            if key is None:
                key = next(iter(slots))  # all in use: the least recently used closes when released
            slot = slots.pop(key)
            slot.evicted = True
            if slot.users == 0 and slot.reader is not None:
                to_close.append(slot.reader)
                slot.reader = None
        return to_close

    def clear(self) -> None:
        """Close every file not in use; files in use close when released."""
        state = self._state.get()
        with state.lock:
            slots, state.slots = list(state.slots.values()), OrderedDict()
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


def cache_key(path: str | Path | FileRef) -> str:
    """The absolute path (or URL) naming a file in the cache."""
    return str(as_file(path))


def video_identity(ref: FileRef) -> tuple | None:
    """The file's identity (`DatasetRoot.identity`), None when it cannot be read (the reader then raises)."""
    try:
        return ref.root.identity(ref.rel)
    except OSError:
        return None


def _close_all(readers: list[VideoReader]) -> None:
    for reader in readers:
        try:
            reader.close()
        except Exception:  # closing must not mask the caller's result or error
            logger.warning("failed to close video %s", reader.path, exc_info=True)
