"""Numeric columns shared with child processes (DataLoader workers) instead of copied into each of them.

When a dataset is pickled for a process that multiprocessing starts (spawn or forkserver DataLoader
workers), its resident numeric columns are moved once into one anonymous shared-memory file
(`memfd_create`: RAM only, no name under /dev/shm, nothing on disk) and the parent's arrays become views of
it. The pickle carries the file descriptor (passed by multiprocessing to the child, like its own pipes) and
the layout; each child maps the same pages read-only. So a node holds one copy of the columns however many
workers read them. The file is owned by the `SharedArrays` object: the kernel frees it when the owner is
collected (or its process ends, even by SIGKILL) and the last child has unmapped it. Forked children need
none of this: they share the parent's pages already.

Plain pickling (to a file, `copy.deepcopy`) still copies the arrays: a descriptor means nothing outside a
child process that multiprocessing starts.
"""

from __future__ import annotations

import logging
import mmap
import os
import threading
import weakref
from multiprocessing import context, reduction

import numpy as np

logger = logging.getLogger(__name__)

MEMFD_NAME = "robotempo-columns"
_ALIGN = 64


def for_child_process() -> bool:
    """True while multiprocessing pickles the state of a process it is starting (spawn / forkserver)."""
    return hasattr(os, "memfd_create") and context.get_spawning_popen() is not None


class SharedArrays:
    """Named arrays packed into one memfd-backed shared mapping; `arrays` are read-only views of it.

    Pickled (only while starting a child process) as the descriptor and the layout; unpickled in the child
    as a dict of read-only arrays over the same pages.
    """

    def __init__(self, arrays: dict[str, np.ndarray]):
        layout, size = {}, 0
        for name, array in arrays.items():
            layout[name] = (size, array.dtype.str, array.shape)
            size += -(-array.nbytes // _ALIGN) * _ALIGN
        self.size = max(size, 1)
        self.layout = layout
        self.fd = os.memfd_create(MEMFD_NAME, os.MFD_CLOEXEC)
        self._closer = weakref.finalize(self, os.close, self.fd)
        os.ftruncate(self.fd, self.size)
        buffer = mmap.mmap(self.fd, self.size)
        self.arrays = _views(buffer, layout)
        for name, array in arrays.items():
            self.arrays[name].setflags(write=True)
            self.arrays[name][...] = array
            self.arrays[name].setflags(write=False)
        self.nbytes = size

    def __reduce__(self):
        return _attach, (reduction.DupFd(self.fd), self.size, self.layout)


def _views(buffer: mmap.mmap, layout: dict) -> dict[str, np.ndarray]:
    out = {}
    for name, (offset, dtype, shape) in layout.items():
        count = int(np.prod(shape, dtype=np.int64))
        view = np.frombuffer(buffer, dtype=np.dtype(dtype), count=count, offset=offset).reshape(shape)
        view.setflags(write=False)
        out[name] = view
    return out


def _attach(dup_fd, size: int, layout: dict) -> dict[str, np.ndarray]:
    fd = dup_fd.detach()
    try:
        buffer = mmap.mmap(fd, size, prot=mmap.PROT_READ)
    finally:
        os.close(fd)  # the mapping keeps the pages; the descriptor is not needed any more
    return _views(buffer, layout)


def share_tables(tables: list) -> None:
    """Move the columns of every `FrameTable` not yet shared into one new `SharedArrays` (one descriptor)."""
    todo = [t for t in tables if t.shared is None and t.columns]
    if not todo:
        return
    arrays = {f"{i}/{name}": column for i, t in enumerate(todo) for name, column in t.columns.items()}
    segment = SharedArrays(arrays)
    for i, t in enumerate(todo):
        t.use_shared(segment, f"{i}/")
    logger.debug("shared %d tables' columns (%d bytes) with child processes", len(todo), segment.nbytes)


# SharedInts cells live in chunks of this size (a table larger than a chunk gets one of its own).
_CHUNK_BYTES = 1 << 20


class _Chunk:
    """A shared mapping that many `SharedInts` tables are cut from: one memfd (RAM only, no name under
    /dev/shm) where the platform has memfd_create, else an anonymous shared mapping. Both are inherited by
    forked children; the memfd's descriptor also travels to children that multiprocessing starts. The
    descriptor closes when the last table cut from the chunk (and the chunk's own process-wide reference)
    is gone."""

    def __init__(self, size: int, fd: int | None = None):
        self.size = size
        self.used = 0
        if fd is None and hasattr(os, "memfd_create"):
            fd = os.memfd_create("robotempo-cells", os.MFD_CLOEXEC)
            os.ftruncate(fd, size)
        self.fd = fd
        self.buffer = mmap.mmap(-1 if fd is None else fd, size)
        if fd is not None:
            weakref.finalize(self, os.close, fd)


_chunk_lock = threading.Lock()
_current: _Chunk | None = None  # where this process cuts its next tables
_attached: weakref.WeakValueDictionary = weakref.WeakValueDictionary()  # (st_dev, st_ino) -> chunk


def _after_fork_in_child() -> None:
    """A forked child shares its parent's chunks (their tables are the same cells), but must not cut new
    tables from them: the two processes' cursors would hand out the same cells twice."""
    global _chunk_lock, _current
    _chunk_lock = threading.Lock()
    _current = None


os.register_at_fork(after_in_child=_after_fork_in_child)


def _cut(nbytes: int) -> tuple[_Chunk, int]:
    global _current
    nbytes = -(-nbytes // 8) * 8
    with _chunk_lock:
        if nbytes > _CHUNK_BYTES:  # a chunk of its own; the current one stays current
            chunk = _Chunk(nbytes)
            chunk.used = nbytes
            return chunk, 0
        chunk = _current
        if chunk is None or chunk.used + nbytes > chunk.size:
            chunk = _Chunk(_CHUNK_BYTES)
            _current = chunk
        offset = chunk.used
        chunk.used += nbytes
        return chunk, offset


class SharedInts:
    """A small int64 array that the process and every child it starts (fork, spawn, forkserver DataLoader
    workers, persistent or not) read and write in place: what one worker records, later workers see.

    Cut from a per-process chunk of shared memory (`_Chunk`: one memfd for many tables, so a mixture of 500
    datasets holds two descriptors, not a thousand, in the trainer and in each spawned worker). A pickle for
    a child that multiprocessing starts carries the chunk's descriptor and the table's place in it; the child
    maps each chunk once however many tables it receives from it. A plain pickle (to a file, to another rank)
    carries a fresh zeroed array: what the cells hold is about this machine's files.
    """

    def __init__(self, shape: tuple[int, ...]):
        self.shape = tuple(int(n) for n in shape)
        count = int(np.prod(self.shape, dtype=np.int64))
        self._chunk, self._offset = _cut(max(1, count) * 8)
        self._map()

    def _map(self) -> None:
        count = int(np.prod(self.shape, dtype=np.int64))
        self.array = np.frombuffer(self._chunk.buffer, dtype=np.int64, count=count, offset=self._offset)
        self.array = self.array.reshape(self.shape)

    def __reduce__(self):
        if not for_child_process() or self._chunk.fd is None:
            return SharedInts, (self.shape,)
        return _attach_ints, (_dup_once(self._chunk.fd), self._chunk.size, self._offset, self.shape)


# The descriptors already handed to each child being started: spawn refuses a descriptor listed twice
# ('bad value(s) in fds_to_keep'), and the tables of one chunk all carry the chunk's.
_handed: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _dup_once(fd: int):
    popen = context.get_spawning_popen()
    with _chunk_lock:
        handed = _handed.setdefault(popen, {})
        if fd not in handed:
            handed[fd] = reduction.DupFd(fd)
        return handed[fd]


def _attach_ints(dup_fd, size: int, offset: int, shape: tuple[int, ...]) -> SharedInts:
    """A table of a chunk in the process that pickled it. Each table brings a descriptor (spawn passes the
    same number for all of one chunk's tables, forkserver a new one each): the first maps the chunk, the
    others are closed."""
    fd = dup_fd.detach()
    stat = os.fstat(fd)
    key = (stat.st_dev, stat.st_ino)
    with _chunk_lock:
        chunk = _attached.get(key)
        if chunk is None:
            chunk = _Chunk(size, fd)
            chunk.used = size  # not this process's to cut from
            _attached[key] = chunk
        elif fd != chunk.fd:
            os.close(fd)
    cells = SharedInts.__new__(SharedInts)
    cells.shape, cells._chunk, cells._offset = shape, chunk, offset
    cells._map()
    return cells
