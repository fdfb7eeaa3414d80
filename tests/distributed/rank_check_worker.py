"""One rank of a 2-rank torchrun job whose ranks open a dataset on either side of an append.

    torchrun --nproc_per_node 2 rank_check_worker.py ROOT OUT

Rank 0 opens ROOT; then rank 0 appends 2 episodes with robotempo's writer; then rank 1 opens ROOT. Both build
`Sampler(ds)` from the process group. Then rank 1 builds a second group Sampler that rank 0 never builds
(rank 0 builds one with explicit rank / world size), with a 2 s wait. Writes `<OUT>/rank<R>.json`: the type
and message of each construction's error (None when it built).
"""

from __future__ import annotations

import json
import sys
from datetime import timedelta

import torch.distributed as dist

from robotempo import LeRobotDataset, Sampler, sampling
from robotempo.synth import write_synthetic

SYNTH = {"version": "v3.0", "n_tasks": 2, "camera": None, "seed": 5, "mean_length": 10}


def build(ds, **kw) -> str | None:
    try:
        Sampler(ds, seed=3, **kw)
    except Exception as e:  # noqa: BLE001 - the test asserts the type
        return f"{type(e).__name__}: {e}"
    return None


def main(root: str, out: str) -> None:
    dist.init_process_group("gloo", timeout=timedelta(seconds=60))
    rank = dist.get_rank()
    if rank == 0:
        ds = LeRobotDataset("lab/appended", root=root)
    dist.barrier()
    if rank == 0:
        write_synthetic(root, n_episodes=8, resume=True, **SYNTH)
    dist.barrier()
    if rank == 1:
        ds = LeRobotDataset("lab/appended", root=root)
    report = {"rank": rank, "len": len(ds), "first": build(ds)}
    sampling.RANK_CHECK_TIMEOUT_S = 2.0
    report["alone"] = build(ds, rank=0, world_size=2) if rank == 0 else build(ds)
    with open(f"{out}/rank{rank}.json", "w") as f:
        json.dump(report, f)
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main(*sys.argv[1:3])
