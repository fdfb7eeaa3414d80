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

from robotempo.errors import ConfigError, DistributedError, RobotempoError

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
# (the default group, timeout_s) -> the gloo group `open_once` hands over in; dropped after a failure in it
_handover_groups: dict[tuple[int, float], tuple] = {}
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
    backend: the hand-over runs in a gloo group of its own (CPU tensors), made by the first call. Calls are
    matched across ranks by their place (the caller's file and line), how many times this process made it,
    and the plain values the factory uses: those it closes over or reads from module globals, the attributes
    of objects it reads (`args.episodes` of an argparse Namespace or a config object), and the same in the
    Python functions it calls (`lambda: make_mixtures(args)`); plain values are strings, numbers, paths,
    numpy arrays and lists or dicts of them, nested to any depth. Ranks whose calls do not match raise
    `DistributedError` instead of handing rank 0's data to another rank's call. `key=` names a call
    instead, and replaces that comparison: pass one when the factory reads a value that differs by rank on
    purpose (its rank number, say), or one derived from your configuration (a hash of it).

    Every rank must see the same files (a shared file system or a bucket): when a rank finds another file at
    a path rank 0 opened, every rank raises `DistributedError` (with a copy of the data on each node, open on
    every rank instead). A sampler in the result holds rank 0's place in the job: a `DistributedError`
    (build it after). `timeout_s` bounds how long the other ranks wait for rank 0's open; a rank that fails
    or goes away before the hand-over makes the others raise `DistributedError` (or torchrun ends them
    first).

    Cost: rank 0 pickles and sends what it opened (about the resident numeric columns' size: 46 MB for 100
    datasets of 300k frames in all, 0.09 s to pickle) to every rank; the others wait for rank 0's open.
    """
    if not callable(factory):
        raise ConfigError(
            f"open_once takes a factory, a function of no arguments, got {type(factory).__name__}. Fix: "
            "open_once(lambda: LeRobotDataset(...))"
        )
    if isinstance(timeout_s, bool) or not isinstance(timeout_s, (int, float)) or not 0 < timeout_s < 1e7:
        raise ConfigError(
            f"open_once: timeout_s={timeout_s!r} is not a number of seconds. Fix: pass a positive number "
            "(default 1800: how long the other ranks wait for rank 0's open)"
        )
    dist = _group()
    if dist is None or dist.get_world_size() == 1:
        return factory()
    import torch

    named = key is not None
    if key is None:
        caller = sys._getframe(1)
        key = f"{caller.f_code.co_filename}:{caller.f_lineno}"
    _calls[key] = _calls.get(key, 0) + 1
    call = f"{key} (call {_calls[key]})"
    digest = hashlib.blake2b(f"{key}#{_calls[key]}#".encode(), digest_size=7)
    if not named:  # a key the caller names replaces the comparison of values (see the docstring)
        digest.update(_closed_over(factory).encode())
    tag = int.from_bytes(digest.digest(), "little")
    rank = dist.get_rank()
    opened, payload, status, failure = None, b"", _OK, None
    if rank == 0:
        try:
            opened = factory()
        except Exception as error:  # handed to every rank, then raised here too
            failure = error
        else:
            try:
                _no_samplers(opened, torch)
                payload = pickle.dumps(opened, protocol=pickle.HIGHEST_PROTOCOL)
            except DistributedError as error:
                failure = error
            except Exception as error:  # noqa: BLE001 - what does not pickle cannot be handed over
                failure = DistributedError(
                    "open_once: what the factory returned does not pickle "
                    f"({type(error).__name__}: {error}); open_once hands rank 0's object to the other "
                    "ranks as a pickle. Fix: give the dataset picklable arguments (a module-level function "
                    "instead of a lambda for image_transforms, say), or open it on every rank instead"
                )
        if failure is not None:
            status, payload = _FAILED, _pickled_error(failure)
    with _waiting(rank, "rank 0's open" if rank else "the other ranks", dist, timeout_s):
        group = _gloo_group(dist, timeout_s)
        mine = torch.tensor([status, len(payload), tag], dtype=torch.int64)
        headers = [torch.empty_like(mine) for _ in range(dist.get_world_size())]
        dist.all_gather(headers, mine, group=group)
    apart = sorted(r for r, header in enumerate(headers) if int(header[2]) != tag)
    if apart:  # every rank sees the same headers, so every rank raises this
        raise DistributedError(
            f"rank {rank} called open_once at {call!r} but ranks {apart[:8]} called it from another place, "
            "in another order, or with a factory of other values (another configuration?). Fix: call "
            "open_once at the same places, in the same order and with the same configuration on every rank; "
            "if a value the factory reads differs by rank on purpose, pass key= naming the call"
        )
    status, size = int(headers[0][0]), int(headers[0][1])
    received, problem = opened, None
    with _waiting(rank, "the hand-over", dist, timeout_s):
        body = torch.empty(size, dtype=torch.uint8) if rank else None
        if size:
            with warnings.catch_warnings():  # only read: broadcast does not write its source
                warnings.simplefilter("ignore", UserWarning)
                _broadcast(dist, torch.frombuffer(payload, dtype=torch.uint8) if rank == 0 else body, group)
    if status == _FAILED:  # every rank raises it (no collective follows)
        raise failure if rank == 0 else _unpickled_error(body.numpy().data)
    if rank:
        try:
            received = pickle.loads(body.numpy().data)
        except Exception as error:  # noqa: BLE001 - every rank must hear of it, not wait for it
            problem = f"what rank 0 opened does not unpickle here ({type(error).__name__}: {error})"
        else:
            problem = _other_files(received)
    with _waiting(rank, "the other ranks' checks", dist, timeout_s):
        # Every rank learns whether one found a problem, so all raise together instead of one alone.
        flags = torch.tensor([0 if problem is None else 1], dtype=torch.int64)
        every = [torch.empty_like(flags) for _ in range(dist.get_world_size())]
        dist.all_gather(every, flags, group=group)
    apart = [r for r, flag in enumerate(every) if int(flag[0])]
    if apart:
        where = problem or f"ranks {apart[:8]} could not take what rank 0 opened (see their errors)"
        raise DistributedError(
            f"rank {rank}: {where}. Fix: open_once needs the same files and the same code on every rank (a "
            "shared file system or a bucket); with a copy of the data on each node, open on every rank"
        )
    return received


class _waiting:
    """Collectives of the hand-over: a gloo timeout or a rank that went away is a `DistributedError` naming
    what this rank waited for, and the group is not used again (a timed-out gloo group fails at once)."""

    def __init__(self, rank: int, what: str, dist, timeout_s: float):
        self.rank, self.what, self.dist, self.timeout_s = rank, what, dist, timeout_s

    def __enter__(self):
        return self

    def __exit__(self, kind, error, tb) -> bool:
        if kind is None or isinstance(error, RobotempoError) or not isinstance(error, Exception):
            return False
        _handover_groups.pop(_group_key(self.dist, self.timeout_s), None)
        raise DistributedError(
            f"rank {self.rank}: open_once waited for {self.what} and gave up ({type(error).__name__}: "
            f"{error}). Fix: read the other ranks' logs (one may have failed, been slow or started late); "
            "pass open_once(..., timeout_s=) to wait longer"
        ) from None


def _group_key(dist, timeout_s: float) -> tuple[int, float]:
    return id(dist.distributed_c10d._get_default_group()), float(timeout_s)


def _gloo_group(dist, timeout_s: float):
    """A gloo group for the hand-over (CPU tensors whatever the default backend, and `timeout_s` as its
    wait), made once per default group and timeout, collectively: every rank's first call makes it. The
    entry keeps its default group alive, so a new one (after destroy_process_group and a new
    init_process_group) never takes its id: a destroyed group's hand-over group is unusable."""
    default = dist.distributed_c10d._get_default_group()
    key = _group_key(dist, timeout_s)
    entry = _handover_groups.get(key)
    if entry is None or entry[0] is not default:
        _handover_groups.clear()
        group = dist.new_group(backend="gloo", timeout=datetime.timedelta(seconds=timeout_s))
        entry = _handover_groups[key] = (default, group)
    return entry[1]


_VALUES_BUDGET = 1_000_000  # plain values compared per call, at most (a long episode list is one value each)
_DEPTH = 8  # containers and objects nested deeper are not compared


def _closed_over(factory) -> str:
    """The plain values a factory closes over, reads or is given (a closure's cells, the module globals its
    code names, defaults, a partial's arguments), and the same of the Python functions it calls (three
    levels down: `lambda: make_mixtures(args)`); of other objects (an argparse Namespace, a config object),
    the instance attributes any of that code names (`args.episodes`), never properties. Plain values are
    strings, numbers, paths, and lists, tuples, sets and dicts of them at any depth, up to a budget of
    values; other objects' text is left out (it may hold addresses or this rank's own settings)."""
    codes, sources = [], []
    _gather(factory, codes, sources, set(), 0)
    names = {name for code in codes for name in code.co_names}
    budget = [_VALUES_BUDGET]
    return repr([_plain(v, names, budget) for v in sources])


def _gather(fn, codes: list, sources: list, seen: set, level: int) -> None:
    """`fn`'s code objects (nested ones too: comprehensions) into `codes`, the values it reads into
    `sources`; then the same for the Python functions among its globals, to `level` 3."""
    if id(fn) in seen or level > 3:
        return
    seen.add(id(fn))
    code, names = getattr(fn, "__code__", None), getattr(fn, "__globals__", None) or {}
    mine = list(_codes(code)) if code is not None else []
    codes += mine
    read = [names[n] for c in mine for n in c.co_names if n in names]
    sources += [c.cell_contents for c in (getattr(fn, "__closure__", None) or ()) if _filled(c)]
    sources += [v for v in read if not _is_function(v)]  # a module-level loop's variable
    if getattr(fn, "__self__", None) is not None and not isinstance(fn.__self__, type(sys)):
        sources.append(fn.__self__)  # a bound method: the attributes of its object it reads
    sources += list(getattr(fn, "__defaults__", None) or ())
    sources += list((getattr(fn, "__kwdefaults__", None) or {}).items())
    if hasattr(fn, "func"):  # functools.partial
        sources += list(getattr(fn, "args", ())) + sorted((getattr(fn, "keywords", None) or {}).items())
        _gather(fn.func, codes, sources, seen, level + 1)
    for value in read + [c.cell_contents for c in (getattr(fn, "__closure__", None) or ()) if _filled(c)]:
        if _is_function(value):
            _gather(value, codes, sources, seen, level + 1)


def _codes(code):
    yield code
    for const in code.co_consts:
        if hasattr(const, "co_names"):
            yield from _codes(const)


def _is_function(value) -> bool:
    import types

    return isinstance(value, (types.FunctionType, types.MethodType)) or (
        hasattr(value, "func") and callable(value)
    )


def _filled(cell) -> bool:
    try:
        cell.cell_contents  # noqa: B018 - an empty cell raises
    except ValueError:
        return False
    return True


def _plain(value, names: set, budget: list, depth: int = 0):
    """`value` as plain data to compare across ranks (see `_closed_over`); `budget[0]` counts values left."""
    import pathlib
    from collections.abc import Mapping

    budget[0] -= 1
    if budget[0] < 0:
        return "..."
    if value is None or isinstance(value, (bool, int, float, str, bytes)):
        return value
    if isinstance(value, pathlib.PurePath):
        return str(value)
    import numpy as np

    if isinstance(value, (np.ndarray, np.generic)) and value.size <= budget[0]:
        return _plain(value.tolist(), names, budget, depth)  # numpy arrays and scalars (episode lists)
    if depth >= _DEPTH:
        return "..."
    if isinstance(value, (list, tuple)):
        return [_plain(v, names, budget, depth + 1) for v in value]
    if isinstance(value, (set, frozenset)):
        return sorted(repr(_plain(v, names, budget, depth + 1)) for v in value)
    if isinstance(value, Mapping):
        return sorted((repr(k), repr(_plain(v, names, budget, depth + 1))) for k, v in list(value.items()))
    attributes = getattr(value, "__dict__", None)
    if isinstance(attributes, dict) and not callable(value) and not isinstance(value, type):
        read = sorted(n for n in names if n in attributes)
        return [(n, _plain(attributes[n], names, budget, depth + 1)) for n in read] or "?"
    return "?"


def _broadcast(dist, body, group) -> None:
    """`body` from rank 0 to every rank, in parts of at most 1 GiB (a gloo message counts in 32 bits)."""
    for start in range(0, body.numel(), _PART):
        dist.broadcast(body[start : start + _PART], src=0, group=group)


def _parts(opened, depth: int = 0, seen: set | None = None):
    """Every object inside what a factory returned: lists, tuples, dicts, and wrappers' `dataset` /
    `datasets` (a `Subset`, a `ConcatDataset`, a `Mixture`)."""
    seen = set() if seen is None else seen
    if id(opened) in seen or depth > 6:
        return
    seen.add(id(opened))
    yield opened
    if isinstance(opened, (list, tuple, set, frozenset)):
        children = list(opened)
    elif isinstance(opened, dict):
        children = list(opened.values())
    else:
        children = [getattr(opened, "dataset", None)]
        inner = getattr(opened, "datasets", None)
        children += list(inner) if isinstance(inner, (list, tuple)) else []
    for child in children:
        if child is not None:
            yield from _parts(child, depth + 1, seen)


def _other_files(opened) -> str | None:
    """What is wrong when a local data file rank 0 opened is another file here (per-node copies at one path:
    other inodes, maybe other bytes), before any item mixes rank 0's columns with these files; else None."""
    for part in _parts(opened):
        frames = getattr(part, "frames", None)
        changed = frames.first_changed_file() if hasattr(frames, "first_changed_file") else None
        if changed is not None:
            where, theirs, mine = changed
            here = mine or "absent"
            return f"{where} is not the file rank 0 opened (inode, size, mtime {theirs} there, {here} here)"
    return None


def _no_samplers(opened, torch) -> None:
    """A sampler holds the rank that built it: handed over, every rank would draw rank 0's samples."""
    for part in _parts(opened):
        if isinstance(part, torch.utils.data.Sampler):
            raise DistributedError(
                f"open_once: the factory returned a sampler ({type(part).__name__}), which holds rank 0's "
                "place in the job: every rank would draw rank 0's samples. Fix: return the dataset only, "
                "and build the sampler after open_once on every rank"
            )


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
    if hasattr(error, "add_note"):  # Python 3.11+; 3.10 raises the error without the note
        error.add_note("(raised by rank 0's open, which open_once handed to every rank)")
    return error
