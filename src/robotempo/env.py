"""Environment knobs, parsed strictly: a bad value is a typed error naming the variable, never ignored."""

from __future__ import annotations

import math
import os

from robotempo.errors import ConfigError


def _raw(name: str) -> str | None:
    raw = os.environ.get(name)
    return None if raw is None or not raw.strip() else raw.strip()


def env_int(name: str, default: int, minimum: int = 1, unset: str | None = None) -> int:
    """`int($name)`, or `default` when unset or blank; a value that is not an integer >= `minimum` raises.
    `unset` says what an unset variable means when that is not simply `default`."""
    raw = _raw(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = None
    if value is None or value < minimum:
        raise ConfigError(
            f"environment variable {name}={raw!r} is not an integer >= {minimum}. "
            f"Fix: set it to e.g. {default}, or unset it to use {unset or f'the default {default}'}"
        )
    return value


def env_float(name: str, default: float, minimum: float = 0.0) -> float:
    """`float($name)`, or `default` when unset or blank; not a finite number >= `minimum` raises."""
    raw = _raw(name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < minimum:
        raise ConfigError(
            f"environment variable {name}={raw!r} is not a number >= {minimum:g}. "
            f"Fix: set it to e.g. {default:g}, or unset it to use the default {default:g}"
        )
    return value


def descriptor_limit() -> int | None:
    """The soft open-file limit of this process, None when unlimited or unknown (caches size by it)."""
    try:
        import resource

        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    except (ImportError, OSError, ValueError):
        return None
    return None if soft == resource.RLIM_INFINITY or soft <= 0 else soft


def process_cores() -> int:
    """CPUs this process may run on (its affinity mask where the OS has one)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def node_sharers() -> int:
    """Processes of this kind that share the node: `LOCAL_WORLD_SIZE` ranks (torchrun's variable, 1 when
    unset) times, in a DataLoader worker, the loader's `num_workers`."""
    import torch.utils.data  # here: the video encoder's child process imports robotempo and never needs torch

    sharers = env_int("LOCAL_WORLD_SIZE", 1)
    worker = torch.utils.data.get_worker_info()
    return sharers * worker.num_workers if worker is not None else sharers
