"""LeRobotDataset under real `torchrun` (gloo, 2 ranks): one speed-file write, same labels, one warning."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

from robotempo import LeRobotDataset
from robotempo.synth import write_synthetic

WORKER = Path(__file__).parent / "distributed" / "dataset_worker.py"


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(root: Path, out: Path) -> list[dict]:
    out.mkdir()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_addr",
        "127.0.0.1",
        "--master_port",
        str(_port()),
        str(WORKER),
        str(root),
        str(out),
    ]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return [json.loads((out / f"rank{r}.json").read_text()) for r in range(2)]


def test_torchrun_two_ranks_end_to_end(tmp_path):
    root = tmp_path / "ds"
    write_synthetic(root, version="v3.0", n_episodes=40, n_tasks=2, camera=None, fps=10, seed=9)
    first = _run(root, tmp_path / "absent")
    assert sum(len(r["writes"]) for r in first) == 1  # one writer per node, the file was absent
    assert (root / "meta" / "speed_percentiles.jsonl").is_file()
    assert not list((root / "meta").glob(".*tmp"))
    a, b = first[0]["labels"], first[1]["labels"]
    assert all(a[k] == b[k] for k in a.keys() & b.keys())
    alone = LeRobotDataset("dist", root=root)
    expected = {str(e): int(s) for e, s in zip(alone._selected.episode_index, alone._speed)}
    assert {**a, **b} == expected
    assert set(first[0]["indices"] + first[1]["indices"]) == set(range(len(alone)))  # (sampler pads by 1)

    # Present but stale (computed for an earlier, smaller dataset): no write, one warning in the whole job.
    stale = _stale_copy(root, tmp_path / "stale_root")
    second = _run(stale, tmp_path / "stale")
    assert sum(len(r["writes"]) for r in second) == 0
    warned = [m for r in second for m in r["warnings"] if "speed_percentiles.jsonl" in m]
    assert len(warned) == 1 and second[0]["warnings"] and not second[1]["warnings"]


def _stale_copy(root: Path, dst: Path) -> Path:
    """A copy whose percentile file was computed for an earlier, smaller version of the dataset."""
    import shutil

    small = dst.parent / "small"
    write_synthetic(small, version="v3.0", n_episodes=25, n_tasks=2, camera=None, fps=10, seed=9)
    LeRobotDataset("small", root=small)  # writes its own percentile file
    shutil.copytree(root, dst)
    shutil.copy(small / "meta" / "speed_percentiles.jsonl", dst / "meta" / "speed_percentiles.jsonl")
    return dst
