"""One rank of a torchrun job opening a Mixture through `robotempo.open_once` (or, to compare, on every rank).

    torchrun --nproc_per_node N open_once_worker.py SPEC_JSON OUT

SPEC_JSON: {"mode": (see main), "specs": [Mixture specs], "indices": [...], "go": path or null}.
A store's endpoint and credentials come from the standard AWS environment. After the open every rank waits
at a barrier; rank 0 then writes `<OUT>/opened` and, when `go` is set, every rank waits for that file (the
test reads the store's request count in between). Then each rank writes `<OUT>/rank<R>.pt`: its items at
`indices` and its mixture's length, or the typed error its open raised (class name and message).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from datetime import timedelta
from pathlib import Path

import torch
import torch.distributed as dist
from torch.utils.data import Subset

from robotempo import LeRobotDataset, Mixture, RobotempoError, Sampler, open_once

RANK = int(os.environ["RANK"])
CONFIG: dict = {}  # a module-level configuration, as a training script's


def from_config():
    """A helper reading the module's configuration: the factory's values are read here, not in the lambda."""
    return Mixture(CONFIG["data"]["mix"]["specs"])


def from_args(args):
    """A helper reading an argparse Namespace the factory passes on (the example's make_mixtures)."""
    return Mixture([{**one, "episodes": args.episodes} for one in args.specs])


def main(spec_json: str, out: str) -> None:
    spec = json.loads(spec_json)
    dist.init_process_group("gloo", timeout=timedelta(seconds=120))
    result: dict = {}
    try:
        if spec["mode"] == "each":
            mix = Mixture(spec["specs"])
        elif spec["mode"] == "apart":  # rank 1 opens under another key than the others
            mix = open_once(lambda: Mixture(spec["specs"]), key="b" if RANK == 1 else "a", timeout_s=60)
        elif spec["mode"] == "moved":  # what rank 0 opened is another file (a new inode) for the others

            def open_then_replace():
                opened = Mixture(spec["specs"])
                for path in Path(spec["specs"][0]["root"], "data").rglob("*.parquet"):
                    shutil.copy2(path, path.with_suffix(".tmp"))
                    os.replace(path.with_suffix(".tmp"), path)
                return opened

            mix = open_once(open_then_replace, timeout_s=60)
        elif spec["mode"] == "wrapped-moved":  # the same, the dataset inside a torch Subset

            def open_wrapped_then_replace():
                opened = Subset(LeRobotDataset("a", root=spec["specs"][0]["root"]), [0, 1])
                for path in Path(spec["specs"][0]["root"], "data").rglob("*.parquet"):
                    shutil.copy2(path, path.with_suffix(".tmp"))
                    os.replace(path.with_suffix(".tmp"), path)
                return opened

            mix = open_once(open_wrapped_then_replace, timeout_s=60)
        elif spec["mode"] == "loop":  # one line opens each dataset; rank 1 goes through them in another order
            specs = spec["specs"] if RANK != 1 else spec["specs"][::-1]
            for one in specs:
                mix = open_once(lambda: LeRobotDataset(one["repo_id"], root=one["root"]), timeout_s=60)  # noqa: B023
        elif spec["mode"] in ("config", "config-same"):  # rank 1's configuration selects other episodes
            other = spec["mode"] == "config" and RANK == 1
            CONFIG["data"] = {"mix": {"specs": [{**spec["specs"][0], "episodes": [1] if other else [0]}]}}
            mix = open_once(lambda: from_config(), timeout_s=60)
        elif spec["mode"] in ("args", "args-same"):
            other = spec["mode"] == "args" and RANK == 1
            # local_rank differs on every rank, but the factory never reads it: not compared
            episodes = [1] if other else [0]
            args = argparse.Namespace(specs=spec["specs"][:1], episodes=episodes, local_rank=RANK)
            mix = open_once(lambda: from_args(args), timeout_s=60)
        elif spec["mode"] == "sampler":  # a factory that builds the sampler too
            mix = open_once(lambda: (lambda m: (m, Sampler(m)))(Mixture(spec["specs"])), timeout_s=60)[0]
        elif spec["mode"] == "unpicklable":
            first = spec["specs"][0]
            mix = open_once(
                lambda: LeRobotDataset("a", root=first["root"], image_transforms=lambda x: x), timeout_s=60
            )
        else:
            mix = open_once(lambda: Mixture(spec["specs"]), timeout_s=60)
    except RobotempoError as error:
        result = {"error": type(error).__name__, "message": str(error)}
    dist.barrier()
    if RANK == 0:
        Path(out, "opened").write_text("")
    if spec["go"]:
        while not os.path.exists(spec["go"]):
            time.sleep(0.05)
    if not result:
        result = {"length": len(mix), "items": [mix[i] for i in spec["indices"]]}
    torch.save(result, os.path.join(out, f"rank{RANK}.pt"))
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
