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


class SharedInts:
    """A small int64 array that the process and every child it starts (fork, spawn, forkserver DataLoader
    workers, persistent or not) read and write in place: what one worker records, later workers see.

    An anonymous shared mapping (no descriptor, no name under /dev/shm), inherited by forked children; the
    first time it is pickled for a child that multiprocessing starts it moves into a memfd (contents copied),
    whose descriptor the pickle carries. Children forked before that move keep the old mapping. A plain
    pickle (to a file, to another rank) carries a fresh zeroed array: what the cells hold is about this
    machine's files.
    """

    def __init__(self, shape: tuple[int, ...]):
        self.shape = tuple(int(n) for n in shape)
        self.size = max(8, int(np.prod(self.shape, dtype=np.int64)) * 8)
        self._fd: int | None = None
        self._map(mmap.mmap(-1, self.size))

    def _map(self, buffer: mmap.mmap) -> None:
        count = int(np.prod(self.shape, dtype=np.int64))
        self.array = np.frombuffer(buffer, dtype=np.int64, count=count).reshape(self.shape)

    def _to_memfd(self) -> None:
        fd = os.memfd_create("robotempo-cells", os.MFD_CLOEXEC)
        weakref.finalize(self, os.close, fd)
        os.ftruncate(fd, self.size)
        buffer = mmap.mmap(fd, self.size)
        old = self.array.copy()
        self._map(buffer)
        self.array[...] = old
        self._fd = fd

    def __reduce__(self):
        if not for_child_process():
            return SharedInts, (self.shape,)
        if self._fd is None:
            self._to_memfd()
        return _attach_ints, (reduction.DupFd(self._fd), self.size, self.shape)


def _attach_ints(dup_fd, size: int, shape: tuple[int, ...]) -> SharedInts:
    cells = SharedInts.__new__(SharedInts)
    cells.shape, cells.size = shape, size
    fd = dup_fd.detach()
    cells._fd = fd
    weakref.finalize(cells, os.close, fd)
    cells._map(mmap.mmap(fd, size))
    return cells
