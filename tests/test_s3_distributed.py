"""Two nodes (two torchrun launches, 1 rank each, loopback) training from the same s3:// bucket."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from robotempo import LeRobotDataset
from robotempo.synth import write_synthetic

sys.path.insert(0, str(Path(__file__).parent))
from s3_server import CLEAN_ENV, Store, free_port  # noqa: E402

WORKER = Path(__file__).parent / "distributed" / "s3_worker.py"


@pytest.fixture(scope="module")
def store():
    s = Store("robotempo-dist")
    yield s
    s.close()


def _launch(node: int, port: int, url: str, out: Path, cache: Path, env_extra: dict) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k not in CLEAN_ENV}
    env.update(env_extra, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1", ROBOTEMPO_CACHE=str(cache))
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--node_rank", str(node),
        "--nproc_per_node", "1", "--master_addr", "127.0.0.1", "--master_port", str(port),
        str(WORKER), url, str(out),
    ]  # fmt: skip
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_two_nodes_read_disjoint_samples_compute_labels_once_each_and_write_nothing(store, tmp_path):
    root = write_synthetic(
        tmp_path / "ds", version="v3.0", n_episodes=12, n_tasks=2, camera="video", image_size=(32, 32),
        seed=11, fps=10, state_dim=3, action_dim=3, mean_length=14.0,
    )  # fmt: skip
    url = store.upload(root, "dist")
    before = store.keys()
    out = tmp_path / "out"
    out.mkdir()
    port = free_port()
    nodes = [_launch(n, port, url, out, tmp_path / f"node{n}-cache", store.aws_environment()) for n in (0, 1)]
    for proc in nodes:
        log, _ = proc.communicate(timeout=240)
        assert proc.returncode == 0, log[-4000:]
    ranks = [json.loads((out / f"rank{r}.json").read_text()) for r in (0, 1)]
    a, b = (set(r["indices"]) for r in ranks)
    assert a and b and not a & b  # disjoint shards
    n = len(LeRobotDataset("local", root=root, speed_labels=False))
    assert len(a) + len(b) == len(a | b) == n - n % 2  # robotempo.Sampler, num_samples even
    assert [r["computed"] for r in ranks] == [
        1,
        1,
    ]  # one computation per node (no shared cache between nodes)
    for node, r in enumerate(ranks):
        assert len(r["written"]) == 1 and r["written"][0].startswith(str(tmp_path / f"node{node}-cache"))
    assert {**ranks[0]["labels"], **ranks[1]["labels"]} == {str(e): int(s) for e, s in zip(*_labels(root))}
    assert store.keys() == before  # nothing written to the bucket


def _labels(root: Path):
    ds = LeRobotDataset("local", root=root)
    return ds._selected.episode_index.tolist(), ds._speed.tolist()
