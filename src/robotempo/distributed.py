"""Rank, local rank, world size and barrier. Works with no process group at all (the process is alone).

Ranks come from `torch.distributed` when a process group is initialised; otherwise from the launcher's
environment variables (torchrun and accelerate both set RANK / LOCAL_RANK / WORLD_SIZE), which is what a
dataset built *before* `init_process_group` sees. Without a process group there is no barrier to reach.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from robotempo.errors import ConfigError


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
