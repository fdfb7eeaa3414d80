"""R4 / R6 under real torchrun (gloo, 2 ranks, DataLoader with 2 workers): rank-disjoint epochs whose union
is the epoch, and elastic resume 2 -> 1 and 1 -> 2 ranks serving the rest of the epoch exactly."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections import Counter
from pathlib import Path

from robotempo import LeRobotDataset, Sampler
from robotempo.synth import write_synthetic

WORKER = Path(__file__).parent / "distributed" / "sampler_worker.py"
RANK_CHECK_WORKER = Path(__file__).parent / "distributed" / "rank_check_worker.py"
RANK_CHECK_SYNTH = {"version": "v3.0", "n_tasks": 2, "camera": None, "seed": 5, "mean_length": 10}
SEED, BATCH, HEAD_STEPS = 7, 4, 3


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _torchrun(*args: str) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr"]
    cmd += ["127.0.0.1", "--master_port", str(_port()), str(WORKER), *args]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]


def test_two_ranks_disjoint_union_and_elastic_resume(tmp_path):
    root = write_synthetic(tmp_path / "ds", version="v3.0", n_episodes=9, n_tasks=2, camera=None, seed=4)
    ds = LeRobotDataset("dist", root=root)
    n = len(ds)
    lone = Sampler(ds, seed=SEED, rank=0, world_size=1)
    lone.set_epoch(1)
    order = list(lone)
    # A lone process consumed 10 samples of epoch 1, then the job restarts on 2 ranks.
    lone = Sampler(ds, seed=SEED, rank=0, world_size=1)
    lone.set_epoch(1)
    it = iter(lone)
    head_alone = [next(it) for _ in range(10)]
    (tmp_path / "state1.json").write_text(json.dumps(lone.state_dict()))
    out = tmp_path / "out"
    out.mkdir()
    _torchrun(str(root), str(out), str(tmp_path / "state1.json"))
    ranks = [json.loads((out / f"rank{r}.json").read_text()) for r in range(2)]
    assert [(r["rank"], r["world_size"]) for r in ranks] == [(0, 2), (1, 2)]

    # 2 ranks: each serves its round-robin share; disjoint, union = the epoch (pad: n odd -> 1 repeat).
    served = [[i for b in r["batches"] for i in b] for r in ranks]
    for rank, indices in enumerate(served):
        assert indices == [order[p % n] for p in range(rank, 2 * len(indices), 2)]
    pad = 2 * -(-n // 2) - n
    assert Counter(served[0] + served[1]) == Counter(order + order[:pad])

    # 2 -> 1: the state saved after 3 batches on each rank continues on one process.
    state = ranks[0]["state"]
    assert state == {**ranks[1]["state"]} and state["position"] == 2 * HEAD_STEPS * BATCH
    alone = Sampler(ds, seed=SEED, rank=0, world_size=1)
    alone.load_state_dict(state)
    head = [i for r in ranks for b in r["batches"][:HEAD_STEPS] for i in b]
    assert Counter(head + list(alone)) == Counter(order)

    # 1 -> 2: the lone process's state continues on both ranks.
    rest = ranks[0]["rest"] + ranks[1]["rest"]
    pad = 2 * -(-(n - 10) // 2) - (n - 10)
    assert Counter(head_alone + rest) == Counter(order + order[:pad])


def test_ranks_that_opened_different_data_are_refused(tmp_path):
    """Rank 0 opened a dataset before 2 episodes were appended, rank 1 after: their orders covered 64 vs 90
    frames (duplicates, frames never served, unequal batch counts) and nothing said so. Rank 1 now gets a
    SamplerError naming the dataset and both lengths; a rank waiting for a Sampler that rank 0 never builds
    gets one after the wait."""
    root = write_synthetic(tmp_path / "ds", n_episodes=6, **RANK_CHECK_SYNTH)
    out = tmp_path / "out"
    out.mkdir()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr"]
    cmd += ["127.0.0.1", "--master_port", str(_port()), str(RANK_CHECK_WORKER), str(root), str(out)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    zero, one = (json.loads((out / f"rank{r}.json").read_text()) for r in range(2))
    assert zero["len"] < one["len"]  # the append landed between the two opens
    assert zero["first"] is None and zero["alone"] is None
    assert one["first"].startswith("SamplerError: rank 1's Sampler differs from rank 0's in dataset_lengths")
    assert "(lab/appended:6:" in one["first"]
    assert f"): rank 0 has {zero['len']}, this rank {one['len']}" in one["first"], one["first"]
    assert one["alone"].startswith("SamplerError: rank 1: rank 0 built no Sampler"), one["alone"]
