"""Rank, local rank, world size and barrier. Works with no process group at all (the process is alone).

Ranks come from `torch.distributed` when a process group is initialised; otherwise from the launcher's
environment variables (torchrun and accelerate both set RANK / LOCAL_RANK / WORLD_SIZE), which is what a
dataset built *before* `init_process_group` sees. Without a process group there is no barrier to reach.
"""

from __future__ import annotations

import datetime
import hashlib
import os
import pickle
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from robotempo.errors import ConfigError, DistributedError

T = TypeVar("T")


def _env_int(name: str, default: int) -> int:
    """A launcher's integer variable; one that is set but not an integer is a `ConfigError` (taking it for
    the default made a rank "1.0" draw rank 0's samples)."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(
            f"environment variable {name}={raw!r} is not an integer. Fix: set it to an integer (as torchrun "
            f"and SLURM do, e.g. 0), or unset it in a lone process"
        ) from None


def _group():
    try:
        import torch.distributed as dist
    except ImportError:  # pragma: no cover - torch is a dependency
        return None
    if dist.is_available() and dist.is_initialized():
        return dist
    return None


@dataclass(frozen=True)
class ProcessInfo:
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @property
    def is_global_main(self) -> bool:
        return self.rank == 0

    @property
    def is_local_main(self) -> bool:
        return self.local_rank == 0


def process_info() -> ProcessInfo:
    dist = _group()
    if dist is not None:
        rank, world = dist.get_rank(), dist.get_world_size()
        local = _env_int("LOCAL_RANK", rank if world == _env_int("LOCAL_WORLD_SIZE", world) else 0)
        return ProcessInfo(rank=rank, local_rank=local, world_size=world)
    # torchrun / accelerate set RANK, LOCAL_RANK, WORLD_SIZE; a bare `srun` sets only the SLURM_* ones.
    return ProcessInfo(
        rank=_env_int("RANK", _env_int("SLURM_PROCID", 0)),
        local_rank=_env_int("LOCAL_RANK", _env_int("SLURM_LOCALID", 0)),
        world_size=_env_int("WORLD_SIZE", _env_int("SLURM_NTASKS", 1)),
    )


def has_process_group() -> bool:
    return _group() is not None


def barrier() -> None:
    """Wait for every rank when a process group exists; a no-op otherwise."""
    dist = _group()
    if dist is not None and dist.get_world_size() > 1:
        dist.barrier()


def default_store():
    """The default process group's key-value store (the one torchrun's rendezvous made), or None without a
    process group or on a torch that does not expose it. Used for small one-time exchanges that must not
    depend on the backend's device (NCCL collectives need a CUDA device set per rank)."""
    if _group() is None:
        return None
    try:
        from torch.distributed.distributed_c10d import _get_default_store

        return _get_default_store()
    except (ImportError, AttributeError, RuntimeError, ValueError):  # pragma: no cover - torch internals
        return None


# -- one open for every rank -------------------------------------------------------------------------------

_OK, _FAILED = 0, 1
_PART = 1 << 30
_handover_groups: dict[float, object] = {}  # timeout_s -> the gloo group `open_once` hands over in
_calls: dict[str, int] = {}  # how often this process called `open_once` per key: ranks must agree on it


def open_once(factory: Callable[[], T], *, key: str | None = None, timeout_s: float = 1800.0) -> T:
    """`factory()` (a `LeRobotDataset`, a `Mixture`, ...) run on rank 0 only, and handed to every other rank.

    Every rank calls it, at the same point, with the same factory: rank 0 opens, pickles what it opened
    (metadata and resident numeric columns; no file handle, decoder or cache crosses) and broadcasts it over
    gloo; the other ranks unpickle it and read their samples from the same files. So a job of N ranks reads
    the metadata once instead of N times (from a bucket: N times fewer requests at start-up), and every rank
    serves exactly the data rank 0 opened (no rank can open a dataset appended to since another's open).
    An error of rank 0's open is raised on every rank, as the same typed error.

    Without a process group, or alone in it, this is `factory()`. Call it after `init_process_group`, with any
    backend: the hand-over runs in a gloo group of its own (CPU tensors), made by the first call. `key`
    tells calls apart when one place of the code opens several datasets in a different order on different
    ranks; by default it is the caller's file and line. Ranks that disagree on it raise `DistributedError`
    instead of handing one dataset to another's call. Every rank must see the same files (a shared file
    system or a bucket): when a rank finds another file at a path rank 0 opened, every rank raises
    `DistributedError` (with a copy of the data on each node, open on every rank instead). `timeout_s`
    bounds how long the other ranks wait for rank 0's open; a rank that fails or goes away before the
    hand-over makes the others raise `DistributedError` (or torchrun ends them first).
    """
    dist = _group()
    if dist is None or dist.get_world_size() == 1:
        return factory()
    import torch

    if key is None:
        caller = sys._getframe(1)
        key = f"{caller.f_code.co_filename}:{caller.f_lineno}"
    _calls[key] = _calls.get(key, 0) + 1
    tag = int.from_bytes(hashlib.blake2b(f"{key}#{_calls[key]}".encode(), digest_size=7).digest(), "little")
    group = _gloo_group(dist, timeout_s)
    rank = dist.get_rank()
    opened, payload, status = None, b"", _OK
    if rank == 0:
        try:
            opened = factory()
            payload = pickle.dumps(opened, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception as error:  # handed to every rank, then raised here too
            status, payload = _FAILED, _pickled_error(error)
            failure = error
    mine = torch.tensor([status, len(payload), tag], dtype=torch.int64)
    headers = [torch.empty_like(mine) for _ in range(dist.get_world_size())]
    try:
        dist.all_gather(headers, mine, group=group)
    except RuntimeError as error:  # a gloo timeout, or a rank that went away
        waited = "rank 0's open" if rank else "the other ranks"
        raise DistributedError(
            f"rank {rank}: open_once waited for {waited} and gave up ({error}). Fix: read the other ranks' "
            f"logs (one may have failed, or be slow to open); pass open_once(..., timeout_s=) to wait longer"
        ) from None
    apart = sorted(r for r, header in enumerate(headers) if int(header[2]) != tag)
    if apart:  # every rank sees the same headers, so every rank raises this
        raise DistributedError(
            f"rank {rank} called open_once at {key!r} (call {_calls[key]}) but ranks {apart[:8]} called it "
            f"from another place or in another order. Fix: call open_once at the same places, in the same "
            f"order, on every rank, or pass the same key= for the same dataset on every rank"
        )
    status, size = int(headers[0][0]), int(headers[0][1])
    if rank == 0:
        if size:
            with warnings.catch_warnings():  # only read: broadcast does not write its source
                warnings.simplefilter("ignore", UserWarning)
                _broadcast(dist, torch.frombuffer(payload, dtype=torch.uint8), group)
        if status == _FAILED:
            raise failure
        received, problem = opened, None
    else:
        body = torch.empty(size, dtype=torch.uint8)
        if size:
            _broadcast(dist, body, group)
        if status == _FAILED:
            raise _unpickled_error(body.numpy().data)
        received = pickle.loads(body.numpy().data)
        problem = _other_files(received)
    # Every rank learns whether one found other files, so all raise together instead of one alone.
    flags = torch.tensor([0 if problem is None else 1], dtype=torch.int64)
    every = [torch.empty_like(flags) for _ in range(dist.get_world_size())]
    dist.all_gather(every, flags, group=group)
    apart = [r for r, flag in enumerate(every) if int(flag[0])]
    if apart:
        where = problem or f"ranks {apart[:8]} found other files than rank 0 opened (see their errors)"
        raise DistributedError(
            f"rank {rank}: {where}. Fix: open_once needs the same files on every rank (a shared file system "
            "or a bucket); with a copy of the data on each node, open on every rank instead"
        )
    return received


def _other_files(opened) -> str | None:
    """What is wrong when a local data file rank 0 opened is another file here (per-node copies at one path:
    other inodes, maybe other bytes), before any item mixes rank 0's columns with these files; else None."""
    if isinstance(opened, (list, tuple, dict)):
        parts = opened.values() if isinstance(opened, dict) else opened
        return next((p for p in map(_other_files, parts) if p is not None), None)
    for dataset in getattr(opened, "datasets", None) or [opened]:
        frames = getattr(dataset, "frames", None)
        changed = frames.first_changed_file() if hasattr(frames, "first_changed_file") else None
        if changed is not None:
            where, theirs, mine = changed
            here = mine or "absent"
            return f"{where} is not the file rank 0 opened (inode, size, mtime {theirs} there, {here} here)"
    return None


def _broadcast(dist, body, group) -> None:
    """`body` from rank 0 to every rank, in parts of at most 1 GiB (a gloo message counts in 32 bits)."""
    for start in range(0, body.numel(), _PART):
        dist.broadcast(body[start : start + _PART], src=0, group=group)


def _gloo_group(dist, timeout_s: float):
    """A gloo group for the hand-over (CPU tensors whatever the default backend, and `timeout_s` as its
    wait), made once per timeout, collectively: every rank's first call makes it."""
    if timeout_s not in _handover_groups:
        _handover_groups[timeout_s] = dist.new_group(
            backend="gloo", timeout=datetime.timedelta(seconds=timeout_s)
        )
    return _handover_groups[timeout_s]


def _pickled_error(error: Exception) -> bytes:
    """`error` for the other ranks: its text, and the error itself pickled (robotempo's typed errors pickle
    whole) when it pickles."""
    text = f"rank 0 failed to open the dataset: {type(error).__name__}: {error}"
    try:
        whole = pickle.dumps(error)
    except Exception:  # noqa: BLE001 - any error of rank 0 must reach the others as something
        whole = None
    return pickle.dumps((text, whole))


def _unpickled_error(data) -> Exception:
    """Rank 0's error as rank 0 raised it; a `DistributedError` of its text when it does not unpickle here."""
    text, whole = pickle.loads(data)
    try:
        error = pickle.loads(whole) if whole is not None else DistributedError(text)
    except Exception:  # noqa: BLE001 - the text still says what failed
        error = DistributedError(text)
    error.add_note("(raised by rank 0's open, which open_once handed to every rank)")
    return error
