"""One node of a 2-node torchrun job (1 rank each) reading the same s3:// dataset. No extra arguments.

    torchrun --nnodes 2 --node_rank N --nproc_per_node 1 ... s3_worker.py URL OUT

The store's endpoint and credentials come from the standard AWS environment only. Writes
`<OUT>/rank<R>.json`: the indices this rank read, its labels per episode, how many times it computed the
speed percentiles and where it wrote them.
"""

from __future__ import annotations

import json
import os
import sys
from datetime import timedelta

import torch
import torch.distributed as dist

import robotempo.speed.store as store
from robotempo import LeRobotDataset, Sampler, collate

RANK = int(os.environ["RANK"])


def main(url: str, out: str) -> None:
    dist.init_process_group("gloo", timeout=timedelta(seconds=60))
    computed, written = [], []
    real_compute, real_write = store.compute_percentiles_by_task, store.write_percentiles_file

    def compute(*args):
        computed.append(1)
        return real_compute(*args)

    def write(path, rows):
        written.append(str(path))
        real_write(path, rows)

    store.compute_percentiles_by_task, store.write_percentiles_file = compute, write
    ds = LeRobotDataset("dist", root=url, delta_timestamps={"observation.images.top": [-0.1, 0.0]})
    # An even number of positions: each rank serves exactly half, no wrapped position repeats.
    sampler = Sampler(ds, seed=5, num_samples=len(ds) - len(ds) % 2)
    loader = torch.utils.data.DataLoader(ds, batch_size=8, sampler=sampler, num_workers=1, collate_fn=collate)
    indices: list[int] = []
    labels: dict[int, int] = {}
    for batch in loader:
        indices += batch["index"].tolist()
        for ep, speed in zip(batch["episode_index"].tolist(), batch["speed"].tolist()):
            labels[ep] = speed
    dist.barrier()
    with open(os.path.join(out, f"rank{RANK}.json"), "w") as f:
        json.dump({"indices": indices, "labels": labels, "computed": len(computed), "written": written}, f)
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
