"""Shared-memory camera tensors that a DataLoader worker reuses from batch to batch.

A fresh shared-memory batch costs the kernel an allocation, a clear and a page fault per page in the worker,
and a release when the main process frees it: at 480x640 float32 that was two thirds of the workers' CPU.
The pool keeps each worker's camera storages and hands one out again only when provably no tensor in any
process still uses it:

- in the worker, nothing but the pool references the storage (C++ storage use count 1: every tensor, view,
  slice and numpy array over it holds a count);
- every time the storage was pickled for another process (our reducer wraps torch's for `UntypedStorage` and
  counts each send in the worker's `sent`), the receiving process rebuilt it through `_rebuild`, which keeps
  a `StorageWeakRef` (the C++ count again, not a Python weakref), and reports it released once that expired:
  a watcher thread of the receiving process checks its receipts every `_WATCH_S` while any is outstanding
  (and every receipt checks them too), and adds the expired ones to the slot's `released` counter in the
  worker's small shared flag array. The slot is free when `released == sent`. Receipts alone would report
  a training loop's batch only when the batch after the next one arrives (the loop variable still holds it
  while the next one is unpickled): one batch per worker more in flight than the run needs, and a peak in
  flight (so a pool size) that follows the main process's timing.

A lost or never-unpickled send leaves `released < sent`: the slot is never reused (memory is wasted, never
overwritten). What the counters cannot see makes the slot `retired` (dropped from the pool for good, its pages
left to whoever holds them): a receiving process that pickles a received storage on to another process, and
a process that forks while it holds one (the child inherits the mapping). A row of the flag array serves one
storage only (a late release must never land on another storage's counter): once a flag array's rows are
all used, the next storage starts a new array, so retirements never wear the pool out (a run that forks an
evaluation loader while it holds a batch retires a slot per fork). The pool is off under the
`file_system` sharing strategy (its handles can be rebuilt twice) and if torch's storage reducer is no longer
ours. Budget per worker: `ROBOTEMPO_SHM_POOL_MB` (0 turns the pool off); unset, the worker's fair share of
/dev/shm (`pool_budget_bytes`), so that 8 ranks x 8 workers on one node cannot pin more than half of it. No
fixed cap below that share: the pool never holds more than the worker's recent peak of batches in flight,
which the run needs anyway, and a budget below that peak turns the pool into a churn of fresh storages (at
480x640 float32, batch 32, a worker has ~2.8 GB in flight; a 2 GB cap left 14% of the steady state's CPU in
page clearing). A free storage idle for `_IDLE_TAKES` takes is freed: the pool follows the recent peak
of batches in flight, not the highest ever.
"""

from __future__ import annotations

import atexit
import logging
import math
import os
import sys
import threading
from collections.abc import Sequence
from multiprocessing.reduction import ForkingPickler

import torch
from torch.multiprocessing.reductions import StorageWeakRef, rebuild_storage_fd

from robotempo.env import env_int, node_sharers
from robotempo.errors import StorageError
from robotempo.forksafe import ProcessLocal

logger = logging.getLogger(__name__)

POOL_MB_NO_SHM = 2048  # the budget where there is no /dev/shm to take a share of (not Linux)
SHM_DIR = "/dev/shm"  # where torch's `file_descriptor` strategy creates its shared memory (shm_open)
_CAPACITY = 128  # live slots per worker (a few batches in flight x cameras), and rows per flag array
# A free storage not taken for this many takes (64 batches of 4 storages) held a peak of batches in flight
# that is over: its pages go back to the kernel, so the pool follows the recent peak, not the highest ever.
_IDLE_TAKES = 256
_RELEASED, _RETIRED = 0, 1  # columns of the flag array
_WATCH_S = 0.02  # how soon a dropped batch is reported released: small next to a batch's time, cheap to poll
_WATCHER = "robotempo-shm-release"  # the receiving process's thread that reports expired receipts

_install_lock = threading.Lock()
_torch_reduce = None  # torch's reducer for UntypedStorage, which ours calls


def pool_budget_bytes() -> int:
    """The pool's budget per worker in bytes.

    `ROBOTEMPO_SHM_POOL_MB` when set (0 disables the pool). Unset: free space of /dev/shm /
    (2 x LOCAL_WORLD_SIZE x num_workers), with LOCAL_WORLD_SIZE the ranks on this node (torchrun's variable,
    1 when unset) and num_workers this DataLoader's (1 outside a worker): all pools of a node together hold at
    most half of /dev/shm, the rest is left to the batches torch allocates beyond the pools and to others."""
    if os.environ.get("ROBOTEMPO_SHM_POOL_MB", "").strip():
        unset = "the default share of /dev/shm (its size / (2 x LOCAL_WORLD_SIZE x num_workers))"
        return env_int("ROBOTEMPO_SHM_POOL_MB", POOL_MB_NO_SHM, minimum=0, unset=unset) * 2**20
    try:
        fs = os.statvfs(SHM_DIR)
    except OSError:  # no /dev/shm to share (not Linux)
        return POOL_MB_NO_SHM * 2**20
    # Its free space, not its size: on a node shared with other jobs, what they hold is not ours to share.
    return fs.f_bavail * fs.f_frsize // (2 * node_sharers())


def shared_tensor(shape: Sequence[int], dtype: torch.dtype) -> torch.Tensor:
    """An uninitialised contiguous tensor in shared memory, from this worker's pool when it can be reused."""
    nbytes = math.prod(shape) * dtype.itemsize
    pool = _pool.get()
    if pool is not None and nbytes and torch.multiprocessing.get_sharing_strategy() == "file_descriptor":
        return pool.tensor(tuple(shape), dtype, nbytes)
    storage = new_shared_storage(nbytes)
    return torch.empty(0, dtype=dtype).set_(storage, 0, tuple(shape))


def new_shared_storage(nbytes: int, pool: WorkerPool | None = None) -> torch.UntypedStorage:
    """`torch.UntypedStorage._new_shared`, with /dev/shm full made a `StorageError` naming its size and the
    fix (torch's bare RuntimeError named a torch_* file and no fix). A pool first gives its free storages
    back to the kernel and tries again."""
    try:
        return torch.UntypedStorage._new_shared(nbytes)
    except RuntimeError as e:
        if not _out_of_shm(e):
            raise
    if pool is not None and pool.free_all():
        try:
            return torch.UntypedStorage._new_shared(nbytes)
        except RuntimeError as e:
            if not _out_of_shm(e):
                raise
    raise _shm_full(nbytes) from None


def _out_of_shm(error: RuntimeError) -> bool:
    text = str(error)
    return "No space left on device" in text or "unable to allocate shared memory" in text


def _shm_full(nbytes: int) -> StorageError:
    try:
        fs = os.statvfs(SHM_DIR)
        room = (
            f"{fs.f_bavail * fs.f_frsize / 2**20:,.0f} MB free of {fs.f_blocks * fs.f_frsize / 2**20:,.0f} MB"
        )
    except OSError:
        room = "its size unknown"
    return StorageError(
        SHM_DIR,
        f"no room for a batch tensor of {nbytes / 2**20:,.1f} MB ({room}): DataLoader workers hand their "
        "batches over in shared memory, several batches per worker at once",
        "give the process more shared memory (docker run --shm-size=8g; Kubernetes: an emptyDir with medium "
        "Memory mounted at /dev/shm), or make the batches in flight smaller: return_uint8=True (a quarter "
        "of float32's camera bytes), a smaller batch_size, fewer workers or a lower prefetch_factor",
    )


class _Slot:
    __slots__ = ("storage", "nbytes", "sent", "taken", "flags", "row", "index")

    def __init__(
        self, storage: torch.UntypedStorage, nbytes: int, taken: int, flags: torch.Tensor, index: int
    ):
        self.storage = storage
        self.nbytes = nbytes
        self.flags = flags  # the shared flag array holding this storage's row, sent along to receivers
        self.row = flags.numpy()[index]  # [released, retired]: this storage's alone, never another's
        self.index = index
        self.sent = 0  # sends of the current lease, counted by `_reduce_storage`
        self.taken = taken  # the pool's take count at this storage's last lease


class WorkerPool:
    """The storages of one worker process, their flag array and the counters of what they did."""

    def __init__(self, budget_bytes: int):
        self.budget = budget_bytes
        self._flags: torch.Tensor | None = None  # the flag array new slots take their rows from
        self._next_row = _CAPACITY
        self.slots: list[_Slot] = []  # live slots, oldest first (the first free one is taken first)
        self._index: dict[int, _Slot] = {}  # data_ptr -> slot
        self.lock = threading.Lock()
        self.held = 0
        self.foreign_reducer = False  # sticky: once a send may have gone uncounted, nothing is reused
        self.reused = self.fresh = self.unpooled = self.retired = self.trimmed = 0
        self.takes = 0

    def tensor(self, shape: tuple[int, ...], dtype: torch.dtype, nbytes: int) -> torch.Tensor:
        with self.lock:  # the tensor exists before the lock is released: its count marks the slot busy
            storage = self._take(nbytes)
            return torch.empty(0, dtype=dtype).set_(storage, 0, shape)

    def _take(self, nbytes: int) -> torch.UntypedStorage:
        _release_handed()  # the batches the feeder is done with: their storages may be free now
        self._drop_retired()
        self.takes += 1
        self._trim_idle()
        self.foreign_reducer = self.foreign_reducer or not _reducer_is_ours()
        if not self.foreign_reducer:
            storage = self._reuse(nbytes)
            if storage is not None:
                return storage
        storage = new_shared_storage(nbytes, self)
        if not self.foreign_reducer and self._make_room(nbytes):
            if self._next_row == _CAPACITY:  # every row of this array served a storage: a new array
                self._flags = torch.zeros((_CAPACITY, 2), dtype=torch.int64).share_memory_()
                self._next_row = 0
            slot = _Slot(storage, nbytes, self.takes, self._flags, self._next_row)
            self._next_row += 1
            self.slots.append(slot)
            self._index[storage.data_ptr()] = slot
            self.held += nbytes
            self.fresh += 1
        else:
            self.unpooled += 1
        return storage

    def _reuse(self, nbytes: int) -> torch.UntypedStorage | None:
        """A free storage of `nbytes`, leased again (a method of its own: a loop variable left in `_take`
        would keep the last slot it saw alive through `free_all`)."""
        for slot in self.slots:
            if slot.nbytes == nbytes and self._free(slot):
                slot.sent = 0
                slot.taken = self.takes
                slot.row[_RELEASED] = 0
                self.reused += 1
                return slot.storage
        return None

    def _free(self, slot: _Slot) -> bool:
        return (
            torch._C._storage_Use_Count(slot.storage._cdata) == 1
            and not slot.row[_RETIRED]
            and slot.row[_RELEASED] == slot.sent
        )

    def _make_room(self, nbytes: int) -> bool:
        """Evict free slots (any size) until `nbytes` more fit the budget and a live slot more is allowed."""
        for slot in list(self.slots):
            if self.held + nbytes <= self.budget and len(self.slots) < _CAPACITY:
                break
            if self._free(slot):
                self._forget(slot)
        return self.held + nbytes <= self.budget and len(self.slots) < _CAPACITY

    def free_all(self) -> bool:
        """Give every free storage back to the kernel (/dev/shm is full); whether any was."""
        freed = [slot for slot in self.slots if self._free(slot)]
        for slot in freed:
            self._forget(slot)
            self.trimmed += 1
        return bool(freed)

    def _trim_idle(self) -> None:
        """Free the storages no lease needed for `_IDLE_TAKES` takes (the first free slot is always taken
        first, so the steady state keeps reusing the same ones and a past peak's extra ones sit idle)."""
        for slot in list(self.slots):
            if self.takes - slot.taken > _IDLE_TAKES and self._free(slot):
                self._forget(slot)
                self.trimmed += 1

    def _forget(self, slot: _Slot) -> None:
        """Out of the pool; its flag row is never given to another storage."""
        del self._index[slot.storage.data_ptr()]
        self.held -= slot.nbytes
        self.slots.remove(slot)

    def _drop_retired(self) -> None:
        for slot in [s for s in self.slots if s.row[_RETIRED]]:
            self._forget(slot)
            self.retired += 1

    def sent(self, storage: torch.UntypedStorage, by_descriptor: bool) -> tuple[torch.Tensor, int] | None:
        """Count a send of `storage` if it is one of ours: (flag array, slot) for the receiver, else None.

        A send by file name (the `file_system` strategy, switched on after the storage was made) can be
        rebuilt more than once, which no count covers: that slot is retired."""
        with self.lock:
            slot = self._index.get(storage.data_ptr())
            if slot is None:
                return None
            if not by_descriptor:
                slot.row[_RETIRED] = 1
                return None
            slot.sent += 1
            return slot.flags, slot.index

    def retire_busy(self) -> None:
        """Before a fork: slots a tensor of this process may still use are retired (the child has them)."""
        with self.lock:
            for slot in list(self.slots):
                if torch._C._storage_Use_Count(slot.storage._cdata) > 1:
                    self._forget(slot)
                    self.retired += 1

    def stats(self) -> dict[str, int]:
        """Counters for benchmarks and tests: storages taken, reused, fresh and kept, fresh and not kept,
        retired, trimmed (freed after `_IDLE_TAKES` idle takes); slots and bytes held now, and the budget in
        bytes."""
        with self.lock:
            live = len(self.slots)
            return {"takes": self.takes, "reused": self.reused, "fresh": self.fresh,
                    "unpooled": self.unpooled, "retired": self.retired, "trimmed": self.trimmed,
                    "slots": live, "held_bytes": self.held, "budget_bytes": self.budget}  # fmt: skip


def _new_pool() -> WorkerPool | None:
    if torch.utils.data.get_worker_info() is None:
        return None
    budget = pool_budget_bytes()
    if not budget:
        return None
    _install()
    return WorkerPool(budget)


_pool: ProcessLocal[WorkerPool | None] = ProcessLocal(_new_pool)


def worker_pool_stats() -> dict[str, int] | None:
    """This worker's pool counters (`WorkerPool.stats`), or None outside a worker or with the pool off."""
    pool = _pool.mine()
    return None if pool is None else pool.stats()


# -- the receiving side ------------------------------------------------------------------------------------
class _Receipt:
    __slots__ = ("ref", "flags", "index", "count")

    def __init__(self, storage: torch.UntypedStorage, flags: torch.Tensor, index: int):
        self.ref = StorageWeakRef(storage)
        self.flags = flags  # keeps the worker's flag array mapped here while a receipt is outstanding
        self.index = index
        self.count = 0


class _Received:
    """Pooled storages this process rebuilt and still uses, by address (an address is one live mapping), and
    the watcher thread that reports the expired ones (started at the first receipt; a forked child has its
    own `_Received` and starts its own)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.receipts: dict[int, _Receipt] = {}
        self._outstanding = threading.Event()
        self._stopping = threading.Event()
        self._watcher: threading.Thread | None = None

    def add(self, storage: torch.UntypedStorage, flags: torch.Tensor, index: int) -> None:
        with self.lock:
            self._release_expired()
            receipt = self.receipts.setdefault(storage.data_ptr(), _Receipt(storage, flags, index))
            receipt.count += 1
            if self._watcher is None and not self._stopping.is_set():
                self._watcher = threading.Thread(target=self._watch, name=_WATCHER, daemon=True)
                self._watcher.start()
                atexit.register(self.stop)
        self._outstanding.set()

    def _watch(self) -> None:
        while not self._stopping.is_set():
            self._outstanding.wait()
            self._stopping.wait(_WATCH_S)
            with self.lock:
                self._release_expired()
                if not self.receipts:
                    self._outstanding.clear()

    def stop(self) -> None:
        """At interpreter exit: the watcher ends and is joined before the interpreter finalizes. Left alive
        into finalization it made torchrun ranks abort at exit (`terminate called without an active
        exception`, SIGABRT): 3 of 26 runs of the two-node S3 test, none of 24 with this join."""
        self._stopping.set()
        self._outstanding.set()
        watcher = self._watcher
        if watcher is not None and watcher is not threading.current_thread():
            watcher.join()

    def _release_expired(self) -> None:
        for ptr, r in list(self.receipts.items()):
            if r.ref.expired():
                r.flags.numpy()[r.index, _RELEASED] += r.count
                del self.receipts[ptr]

    def retire(self, storage: torch.UntypedStorage) -> None:
        """`storage` is being pickled on to another process: its slot is never reused."""
        with self.lock:
            self._release_expired()
            r = self.receipts.pop(storage.data_ptr(), None)
            if r is not None:
                r.flags.numpy()[r.index, _RETIRED] = 1

    def retire_all(self) -> None:
        """Before a fork: the child inherits every live mapping, which no count here covers."""
        with self.lock:
            self._release_expired()
            for r in self.receipts.values():
                r.flags.numpy()[r.index, _RETIRED] = 1
            self.receipts.clear()


_received: ProcessLocal[_Received] = ProcessLocal(_Received)


def _rebuild(rebuild, args: tuple, flags: torch.Tensor, index: int) -> torch.UntypedStorage:
    """Runs in the receiving process: torch's rebuild, then the storage is watched until it expires."""
    _install()
    storage = rebuild(*args)
    _received.get().add(storage, flags, index)
    return storage


def _reduce_storage(storage):
    reduced = _torch_reduce(storage)
    pool = _pool.mine()
    token = pool.sent(storage, reduced[0] is rebuild_storage_fd) if pool is not None else None
    if token is None:
        received = _received.mine()
        if received is not None:
            received.retire(storage)
        return reduced
    return (_rebuild, (reduced[0], reduced[1], *token))


def _reducer_is_ours() -> bool:
    return ForkingPickler._extra_reducers.get(torch.UntypedStorage) is _reduce_storage


def _before_fork() -> None:
    pool = _pool.mine()
    if pool is not None:
        pool.retire_busy()
    received = _received.mine()
    if received is not None:
        received.retire_all()


def _install() -> None:
    """Wrap torch's storage reducer (once per process) and watch forks."""
    global _torch_reduce
    if _torch_reduce is not None:
        return
    with _install_lock:
        if _torch_reduce is None:
            _torch_reduce = ForkingPickler._extra_reducers[torch.UntypedStorage]
            ForkingPickler.register(torch.UntypedStorage, _reduce_storage)
            os.register_at_fork(before=_before_fork)
            logger.debug("shared-memory pool: storage reducer installed in process %d", os.getpid())


# -- a batch's small tensors in one storage ----------------------------------------------------------------
_ALIGN = 64  # bytes: every packed tensor starts on a cache line, so any dtype view of it is aligned


def pack_batch(batch: dict) -> dict:
    """In a DataLoader worker: the batch's tensors not yet in shared memory, copied into views of one shared
    storage (from this worker's pool); elsewhere `batch` itself.

    Handing a batch to the main process costs a descriptor pass per storage (a socket round trip through
    multiprocessing's resource sharer on each side): ~0.5 ms of CPU a storage, 7.4 ms a tabular batch of 11
    small columns, 2.0 ms once packed (`benchmarks/bench_handoff.py`, docs/benchmarks.md).
    The values, dtypes, shapes and key order are unchanged; what
    changes is that the packed tensors are views of a shared storage (a few hundred KB per batch), so
    `torch.save` of one of them writes that whole storage, as for any view in torch.
    """
    if torch.utils.data.get_worker_info() is None:
        return batch
    out = _pack(batch)
    _hold(out)
    return out


def _pack(batch: dict) -> dict:
    keys = [k for k, v in batch.items() if _packable(v)]
    if len(keys) < 2:
        return batch
    starts, total = [], 0
    for k in keys:
        starts.append(total)
        total += -(-batch[k].nbytes // _ALIGN) * _ALIGN
    packed = shared_tensor((total,), torch.uint8)
    out = dict(batch)
    for k, start in zip(keys, starts):
        t = batch[k]
        view = packed[start : start + t.nbytes].view(t.dtype).view(t.shape)
        view.copy_(t)
        out[k] = view
    return out


# -- a batch's last reference stays with the worker's main thread -----------------------------------------
# torch's worker puts each batch on a multiprocessing queue, whose feeder thread pickles it and then drops it.
# Dropping a tensor's last reference releases the GIL inside torch's C++ deallocator; in a spawned worker
# that shuts down while its feeder still sends (a loop left early), the interpreter is finalizing by then,
# the feeder cannot take the GIL back and exits from inside C++: SIGABRT ("terminate called without an
# active exception"), which the training process sees as "DataLoader worker ... killed by signal: Aborted".
# The worker keeps a reference to every tensor it hands over until the feeder has dropped its own, so the
# last one is always dropped here, by the worker's main thread, at its next batch.
_handed: dict[int, torch.Tensor] = {}  # id -> tensor: a tensor handed in many batches is held once


def _hold(batch: dict) -> None:
    _release_handed()
    for v in batch.values():
        if isinstance(v, torch.Tensor):
            _handed[id(v)] = v


def _release_handed() -> None:
    """Drop the held tensors nothing else references any more (the dict, the item tuple, the loop variable
    and getrefcount's argument are 4 references)."""
    for key, t in list(_handed.items()):
        if sys.getrefcount(t) <= 4:
            del _handed[key]


def _packable(v) -> bool:
    return (
        isinstance(v, torch.Tensor)
        and v.layout == torch.strided
        and v.device.type == "cpu"
        and not v.requires_grad
        and v.numel() > 0
        and not v.is_shared()
    )
