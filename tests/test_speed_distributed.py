"""R2: speed percentiles under real `torchrun` jobs (gloo, CPU), on every path a dataset can meet.

Each job runs every scenario (file absent, present and hand-edited, partial, stale, read-only, malformed, an
unknown task index, recompute) on its own prepared root, then the test reads what each rank recorded: the
labels, the writes (through an instrumented writer), the warnings (per-rank log files) and the errors.

Two nodes are simulated on loopback with two torchrun processes. Both disk layouts are covered: node-local
roots (each node has its own copy of the dataset, so each node's local rank 0 writes its own file) and one
shared root (both nodes' local rank 0 may write the same path; atomic replace keeps it whole).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent / "distributed"))

from speed_support import (  # noqa: E402
    checksums,
    make_population,
    make_root,
    read_only_dir,
    save_fixture,
    task_names_for,
    temp_files,
    view_of,
)

from robotempo.speed import (  # noqa: E402
    SPEED_PERCENTILES_FILE,
    SpeedPopulation,
    Warner,
    compute_percentiles_by_task,
    label_episodes,
    load_or_compute_percentiles,
)

pytestmark = pytest.mark.slow

WORKER = Path(__file__).parent / "distributed" / "speed_worker.py"
TORCHRUN = [sys.executable, "-m", "torch.distributed.run"]
N_TASKS = 4
TIMEOUT = 90

# scenario -> (successful writes per node, failed write attempts per node, warnings per job, population reads)
EXPECTED = {
    "absent": (1, 0, 0, 1),
    "present": (0, 0, 0, 0),
    "partial": (0, 0, 1, 1),
    "stale": (0, 0, 1, 0),
    "read_only": (1, 1, 1, 1),
    "malformed": (0, 0, 0, 0),
    "unknown_task": (1, 0, 2, 1),
    "recompute": (1, 0, 0, 1),
}


@pytest.fixture(autouse=True)
def _alone(monkeypatch):
    for name in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "ROBOTEMPO_CACHE", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)


def _labels(pop: SpeedPopulation, by_task=None) -> list[int]:
    by_task = by_task if by_task is not None else compute_percentiles_by_task(pop.task_index, pop.length)
    return label_episodes(pop.task_index, pop.length, by_task).tolist()


def _write_file(root: Path, pop: SpeedPopulation, names: dict[int, str]) -> Path:
    load_or_compute_percentiles(
        root, names, lambda: pop, view_of(pop), cache_dir=root.parent / "unused", warner=Warner(enabled=False)
    )
    return root / SPEED_PERCENTILES_FILE


def _edit_rows(path: Path, edit) -> None:
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    path.write_text("".join(json.dumps(r) + "\n" for r in edit(rows)))


class Job:
    """Prepared roots for every scenario, and what each should produce."""

    def __init__(self, tmp: Path, nodes: tuple[int, ...], shared: bool = False):
        self.tmp, self.nodes = tmp, nodes
        self.pop = make_population(N_TASKS, 40, seed=5)
        self.names = task_names_for(N_TASKS)
        self.fixture = save_fixture(tmp / "fixture", self.pop, view_of(self.pop), self.names)
        task = self.pop.task_index.copy()
        task[:5] = [90, 91, 90, 90, 91]  # frame data pointing at tasks the table lacks
        self.unknown_pop = SpeedPopulation(self.pop.episode_index, self.pop.length, task)
        self.unknown_fixture = save_fixture(
            tmp / "fixture-unknown", self.unknown_pop, view_of(self.pop), self.names
        )
        self.expected: dict[str, list[int]] = {}
        self.scenarios: list[dict] = []
        for name in EXPECTED:
            for node in nodes:
                self.expected[name] = self._prepare(name, self._root(name, node))
            fixture = self.unknown_fixture if name == "unknown_task" else self.fixture
            self.scenarios.append(
                {
                    "name": name,
                    "root": str(self._root(name, "{node}")),
                    "fixture": str(fixture),
                    "cache_dir": str(tmp / "cache" / name / "node{node}"),
                    "calls": 2 if name == "read_only" else 1,
                    "recompute": name == "recompute",
                }
            )
        if shared:
            make_root(tmp / "shared" / "root", self.names)
            self.expected["shared_absent"] = _labels(self.pop)
            self.scenarios.append(
                {
                    "name": "shared_absent",
                    "root": str(tmp / "shared" / "root"),
                    "fixture": str(self.fixture),
                    "cache_dir": str(tmp / "cache" / "shared"),
                }
            )

    def _root(self, name: str, node) -> Path:
        return self.tmp / name / f"node{node}" / "root"

    def _prepare(self, name: str, root: Path) -> list[int]:
        pop, names = self.pop, self.names
        make_root(root, names)
        if name in ("absent", "read_only"):
            return _labels(pop)
        if name == "unknown_task":
            known = np.isin(self.unknown_pop.task_index, list(names))
            u = self.unknown_pop
            return _labels(u, compute_percentiles_by_task(u.task_index[known], u.length[known]))
        if name == "stale":
            old = SpeedPopulation(pop.episode_index[:-5], pop.length[:-5], pop.task_index[:-5])
            _write_file(root, old, names)
            return _labels(pop, compute_percentiles_by_task(old.task_index, old.length))
        path = _write_file(root, pop, names)
        if name in ("present", "recompute"):  # hand-edited: task 0 all "slowest"
            _edit_rows(
                path,
                lambda rows: [{**r, "percentiles": [0.0] * 10} if r["task_index"] == 0 else r for r in rows],
            )
            by_task = compute_percentiles_by_task(pop.task_index, pop.length)
            return _labels(pop, by_task if name == "recompute" else {**by_task, 0: [0.0] * 10})
        if name == "partial":
            _edit_rows(path, lambda rows: rows[:-1])
            return _labels(pop)
        if name == "malformed":
            _edit_rows(path, lambda rows: rows[:2] + [{**rows[2], "percentiles": rows[2]["percentiles"][:9]}])
            return []
        raise AssertionError(name)

    @contextlib.contextmanager
    def read_only_roots(self):
        with contextlib.ExitStack() as stack:
            for node in self.nodes:
                why = stack.enter_context(read_only_dir(self._root("read_only", node) / "meta"))
                if why:
                    pytest.skip(why)
            yield

    def config(self, out: Path, process_group: str, raise_errors: bool = False) -> Path:
        out.mkdir(parents=True, exist_ok=True)
        path = out / "config.json"
        path.write_text(
            json.dumps(
                {
                    "out": str(out),
                    "process_group": process_group,
                    "raise_errors": raise_errors,
                    "scenarios": self.scenarios,
                }
            )
        )
        return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env() -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "ROBOTEMPO_CACHE")
    }
    env.update(OMP_NUM_THREADS="1", GLOO_SOCKET_IFNAME="lo", PYTHONUNBUFFERED="1")
    return env


def _launch(commands: list[list[str]], out: Path) -> list[int]:
    """Run the torchrun processes together; kill their process groups if they outlive TIMEOUT (a hang)."""
    started = time.monotonic()
    procs = [
        subprocess.Popen(
            cmd,
            stdout=open(out / f"torchrun{i}.txt", "w"),
            stderr=subprocess.STDOUT,
            env=_env(),
            start_new_session=True,
        )
        for i, cmd in enumerate(commands)
    ]
    codes = []
    for p in procs:
        try:
            codes.append(p.wait(timeout=max(1.0, TIMEOUT - (time.monotonic() - started))))
        except subprocess.TimeoutExpired:
            for q in procs:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(q.pid, signal.SIGKILL)
            logs = "\n".join(f.read_text()[-2000:] for f in sorted(out.glob("torchrun*.txt")))
            pytest.fail(f"torchrun did not finish within {TIMEOUT} s (a hang)\n{logs}")
    return codes


def _single_node(config: Path, nproc: int) -> list[str]:
    return [
        *TORCHRUN,
        "--standalone",
        "--nnodes",
        "1",
        "--nproc_per_node",
        str(nproc),
        str(WORKER),
        str(config),
    ]


def _multi_node(config: Path, nodes: int, nproc: int, port: int) -> list[list[str]]:
    return [
        [
            *TORCHRUN,
            "--nnodes",
            str(nodes),
            "--nproc_per_node",
            str(nproc),
            "--node_rank",
            str(i),
            "--master_addr",
            "127.0.0.1",
            "--master_port",
            str(port),
            str(WORKER),
            str(config),
        ]
        for i in range(nodes)
    ]


def _check(job: Job, out: Path, world: int, nodes: int) -> None:
    ranks = range(world)
    assert all((out / f"done_rank{r}").exists() for r in ranks)
    writes = [
        json.loads(line)
        for r in ranks
        if (out / f"writes_rank{r}.jsonl").exists()
        for line in (out / f"writes_rank{r}.jsonl").read_text().splitlines()
    ]
    logs = {r: (out / f"log_rank{r}.txt").read_text().splitlines() for r in ranks}
    assert all(not logs[r] for r in ranks if r != 0), "warnings must come from global rank 0 only"
    for scenario in job.scenarios:
        name = scenario["name"]
        ok_writes, failed_writes, warnings, reads = EXPECTED.get(name, (1, 0, 0, 1))
        results = [json.loads((out / f"result_{name}_rank{r}.json").read_text()) for r in ranks]
        mine = [w for w in writes if w["scenario"] == name]
        per_node = [sum(w["ok"] for w in mine if w["node"] == n) for n in range(nodes)]
        if name == "shared_absent":  # a node that finds the other node's file already written just reads it
            assert max(per_node) == 1 and min(per_node) <= 1, (name, mine)
        else:
            assert per_node == [ok_writes] * nodes, (name, mine)
        assert sum(not w["ok"] for w in mine) == failed_writes * nodes, (name, mine)
        assert sum(line.startswith(name + "\t") for line in logs[0]) == warnings, (name, logs[0])
        if name == "malformed":
            for result in results:
                [error] = result
                assert (
                    error["error"] == "SpeedLabelError" and f"{SPEED_PERCENTILES_FILE}:3:" in error["message"]
                )
            continue
        for result in results:
            assert result[0]["labels"] == job.expected[name], name  # the same labels on every rank
            assert result[0]["population_reads"] <= reads, (name, result[0])
        first_reads = [result[0]["population_reads"] for result in results]
        if name == "shared_absent":  # whichever node comes first computes; the other may read its file
            assert max(first_reads) == reads, (name, first_reads)
        else:
            assert first_reads[0] == reads, (name, first_reads)
        if name == "read_only":  # the second load on global rank 0 reads the cache copy
            assert results[0][1]["source"] == "cache" and results[0][1]["labels"] == job.expected[name]
    for scenario in job.scenarios:
        root = Path(scenario["root"].replace("{node}", "0")).parent.parent
        assert not temp_files(root), scenario["name"]


def test_two_ranks_one_node(tmp_path):
    job = Job(tmp_path, nodes=(0,))
    out = tmp_path / "out"
    config = job.config(out, "before")
    before = checksums(job._root("read_only", 0))
    with job.read_only_roots():
        codes = _launch([_single_node(config, 2)], out)
    assert codes == [0], (out / "torchrun0.txt").read_text()[-3000:]
    _check(job, out, world=2, nodes=1)
    assert checksums(job._root("read_only", 0)) == before


def test_two_ranks_before_init_process_group(tmp_path):
    """Only RANK / LOCAL_RANK are set while loading, as when a dataset is built before init_process_group."""
    job = Job(tmp_path, nodes=(0,))
    out = tmp_path / "out"
    with job.read_only_roots():
        codes = _launch([_single_node(job.config(out, "after"), 2)], out)
    assert codes == [0], (out / "torchrun0.txt").read_text()[-3000:]
    _check(job, out, world=2, nodes=1)


def test_two_nodes_one_rank_each(tmp_path):
    job = Job(tmp_path, nodes=(0, 1), shared=True)
    out = tmp_path / "out"
    config = job.config(out, "before")
    with job.read_only_roots():
        codes = _launch(_multi_node(config, nodes=2, nproc=1, port=_free_port()), out)
    assert codes == [0, 0], "\n".join(p.read_text()[-2000:] for p in sorted(out.glob("torchrun*.txt")))
    _check(job, out, world=2, nodes=2)
    shared = tmp_path / "shared" / "root" / SPEED_PERCENTILES_FILE
    assert len(shared.read_text().splitlines()) == N_TASKS


def test_malformed_file_raises_on_every_rank_without_hang(tmp_path):
    """The error propagates out of every rank's script: each rank raises on its own reading of the file, none
    is left waiting in a collective for a rank that already failed (torchrun would then only kill it)."""
    job = Job(tmp_path, nodes=(0,))
    job.scenarios = [s for s in job.scenarios if s["name"] == "malformed"]
    out = tmp_path / "out"
    codes = _launch([_single_node(job.config(out, "before", raise_errors=True), 2)], out)
    assert codes[0] != 0
    for r in range(2):
        [error] = json.loads((out / f"result_malformed_rank{r}.json").read_text())
        assert error["error"] == "SpeedLabelError"
    assert "SpeedLabelError" in (out / "torchrun0.txt").read_text()


def test_two_nodes_two_ranks_each(tmp_path):
    """Four ranks: local rank 1 of each node neither writes nor warns; labels agree across nodes."""
    job = Job(tmp_path, nodes=(0, 1), shared=True)
    out = tmp_path / "out"
    config = job.config(out, "before")
    with job.read_only_roots():
        codes = _launch(_multi_node(config, nodes=2, nproc=2, port=_free_port()), out)
    assert codes == [0, 0], "\n".join(p.read_text()[-2000:] for p in sorted(out.glob("torchrun*.txt")))
    _check(job, out, world=4, nodes=2)
