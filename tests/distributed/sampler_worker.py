"""One rank of a torchrun job serving an epoch through `robotempo.Sampler` (rank and world from the group).

    torchrun --nproc_per_node 2 sampler_worker.py ROOT OUT STATE_1RANK

Writes `<OUT>/rank<R>.json`: the batches of epoch 1 (DataLoader, 2 workers), the state saved after
`HEAD_STEPS` consumed batches, and the indices served when resuming from STATE_1RANK (a state saved by a lone
process) on this world size.
"""

from __future__ import annotations

import json
import sys
from datetime import timedelta

import torch
import torch.distributed as dist

from robotempo import LeRobotDataset, Sampler, collate

HEAD_STEPS, BATCH, SEED = 3, 4, 7


def loader(ds, sampler):
    return torch.utils.data.DataLoader(
        ds, batch_size=BATCH, sampler=sampler, num_workers=2, collate_fn=collate
    )


def main(root: str, out: str, resume_from: str) -> None:
    dist.init_process_group("gloo", timeout=timedelta(seconds=60))
    ds = LeRobotDataset("dist", root=root)
    sampler = Sampler(ds, seed=SEED)  # rank and world size from the process group
    sampler.set_epoch(1)
    batches, state = [], None
    for batch in loader(ds, sampler):
        batches.append(batch["index"].tolist())
        if len(batches) == HEAD_STEPS:
            state = sampler.state_dict(consumed=HEAD_STEPS * BATCH)
    resumed = Sampler(ds, seed=SEED)
    with open(resume_from) as f:
        resumed.load_state_dict(json.load(f))
    rest = [i for batch in loader(ds, resumed) for i in batch["index"].tolist()]
    report = {
        "rank": sampler.rank,
        "world_size": sampler.world_size,
        "batches": batches,
        "state": state,
        "rest": rest,
    }
    with open(f"{out}/rank{dist.get_rank()}.json", "w") as f:
        json.dump(report, f)
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main(*sys.argv[1:4])
