"""One rank of a torchrun job that opens a LeRobotDataset and reads its shard (no extra arguments).

    torchrun --nproc_per_node 2 dataset_worker.py ROOT OUT

Writes `<OUT>/rank<R>.json`: the labels this rank saw per episode, the indices of its shard, how many times it
wrote the speed file, and every robotempo warning it logged.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from datetime import timedelta

import torch
import torch.distributed as dist

import robotempo.speed.store as store
from robotempo import LeRobotDataset, collate

RANK = int(os.environ["RANK"])


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def main(root: str, out: str) -> None:
    dist.init_process_group("gloo", timeout=timedelta(seconds=60))
    writes = []
    real = store.write_percentiles_file

    def counted(path, rows):
        writes.append(str(path))
        real(path, rows)

    store.write_percentiles_file = counted
    handler = _Collect()
    logging.getLogger("robotempo").addHandler(handler)
    ds = LeRobotDataset("dist", root=root, delta_timestamps={"action": [0.0, 0.1]})
    sampler = torch.utils.data.DistributedSampler(ds, shuffle=True, seed=3)
    loader = torch.utils.data.DataLoader(ds, batch_size=8, sampler=sampler, collate_fn=collate)
    labels: dict[int, int] = {}
    indices: list[int] = []
    for batch in loader:
        for ep, speed in zip(batch["episode_index"].tolist(), batch["speed"].tolist()):
            assert labels.setdefault(ep, speed) == speed
        indices += batch["index"].tolist()
    dist.barrier()
    with open(os.path.join(out, f"rank{RANK}.json"), "w") as f:
        json.dump({"labels": labels, "indices": indices, "writes": writes, "warnings": handler.messages}, f)
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
