"""examples/train_tiny_policy.py under real torchrun (2 ranks, gloo, a DataLoader worker each): R4 end to end.

An uninterrupted run; the same run SIGKILLed mid-epoch after step 10 (checkpoint at step 8, loader ahead
of the loop); the same command again, which resumes. The resumed run's steps 9.. see the same batches on
every rank and give bit-identical train and validation losses to the uninterrupted run's, and the first
steps of the killed run equal the uninterrupted run's (same seed twice).
"""

from __future__ import annotations

import importlib.util
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "train_tiny_policy.py"
ARGS = "--episodes 4 --steps 14 --batch-size 16 --save-every 4 --val-every 7 --workers 1".split()


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(data: Path, out: Path, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr"]
    cmd += ["127.0.0.1", "--master_port", str(_port()), str(EXAMPLE), "--data", str(data), "--out", str(out)]
    return subprocess.Popen(cmd + ARGS + ["--log-indices", *extra], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip


def _finish(proc: subprocess.Popen) -> tuple[int, str]:
    out, err = proc.communicate(timeout=300)
    return proc.returncode, out[-3000:] + err[-3000:]


def _log(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]


def test_killed_and_resumed_run_equals_the_uninterrupted_run(tmp_path):
    data = tmp_path / "data"
    example = importlib.util.spec_from_file_location("train_tiny_policy", EXAMPLE)
    module = importlib.util.module_from_spec(example)
    example.loader.exec_module(module)
    module.write_datasets(data, episodes=4, seed=0)  # what rank 0 of the first run would write
    full = _start(data, tmp_path / "full")  # the uninterrupted run and the crashing one, side by side
    killed = _start(data, tmp_path / "crash", "--kill-at-step", "10")
    code, output = _finish(full)
    assert code == 0, output
    assert _finish(killed)[0] != 0
    reference = _log(tmp_path / "full")
    assert [r["step"] for r in reference] == list(range(1, 15))
    assert {r["epoch"] for r in reference} == {0, 1}  # the run crosses an epoch boundary
    assert (tmp_path / "full" / "loss_curve.png").stat().st_size > 0
    assert _log(tmp_path / "crash") == reference[:10]  # same seed twice: identical batches and losses

    code, output = _finish(_start(data, tmp_path / "crash"))  # the same command again: resumes
    assert code == 0, output
    assert "resumed at step 8" in output
    assert _log(tmp_path / "crash") == reference  # steps 9..14 redone: same batches, same losses
