"""R1: concurrent writers and readers of one `meta/speed_percentiles.jsonl` (threads, processes, real files).

The full target (16 threads x 4 processes x 25 rounds) runs with
`python benchmarks/bench_speed_labels.py --r1`; here the same harness runs fewer rounds, to stay quick.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent / "distributed"))

from speed_support import make_population, make_root, task_names_for, temp_files, view_of  # noqa: E402

from robotempo.speed import (  # noqa: E402
    SPEED_PERCENTILES_FILE,
    Warner,
    load_or_compute_percentiles,
    read_percentiles_file,
)

STRESS = Path(__file__).parent / "distributed" / "speed_stress.py"
ROUNDS = int(os.environ.get("ROBOTEMPO_R1_ROUNDS", "3"))


def test_threads_racing_on_an_absent_file(tmp_path):
    pop = make_population(50, 20)
    names = task_names_for(50)
    root = make_root(tmp_path / "root", names)
    results, errors = [], []
    start = threading.Barrier(16)

    def load():
        try:
            start.wait()
            sp = load_or_compute_percentiles(
                root, names, lambda: pop, view_of(pop), cache_dir=tmp_path / "c", warner=Warner(enabled=False)
            )
            results.append(sp.labels(pop.task_index, pop.length))
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=load) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert all(np.array_equal(r, results[0]) for r in results)
    assert len(read_percentiles_file(root / SPEED_PERCENTILES_FILE).rows) == 50
    assert not temp_files(tmp_path)


@pytest.mark.slow
def test_threads_and_processes_never_see_a_torn_file(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "LOCAL_RANK", "WORLD_SIZE")}
    args = [
        "--processes",
        "4",
        "--threads",
        "16",
        "--rounds",
        str(ROUNDS),
        "--writes",
        "2",
        "--timeout",
        "240",
    ]
    done = subprocess.run(
        [sys.executable, str(STRESS), str(tmp_path / "root"), *args],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["ok"] and summary["n_problems"] == 0 and not summary["temp_files_left"]
    assert summary["reads"] > 50 and summary["writes"] == 4 * 8 * 2 * ROUNDS
