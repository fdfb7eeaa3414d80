"""R1: many threads in several processes write and read one `meta/speed_percentiles.jsonl` at once.

Per process, half the threads write (through `load_or_compute_percentiles(recompute=True)`, or directly with a
per-writer signature in every row) and half read (polling `read_percentiles_file`, or `load_or_compute_...`),
parsing the whole file every time. Every round starts with the file deleted, so the absent path races too.
A reader fails the run if it ever sees a file that does not parse, has the wrong rows, or mixes two writers'
rows; afterwards no temp file may be left. Prints one JSON summary; exit status 1 on any failure.

    python speed_stress.py ROOT --processes 4 --threads 16 --rounds 25 [--writes 3]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing as mp
import os
import queue
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from speed_support import make_population, make_root, task_names_for, temp_files, view_of  # noqa: E402

from robotempo.errors import SpeedLabelError  # noqa: E402
from robotempo.speed import (  # noqa: E402
    SPEED_PERCENTILES_FILE,
    PercentileRow,
    Warner,
    compute_percentiles_by_task,
    label_episodes,
    load_or_compute_percentiles,
    read_percentiles_file,
    write_percentiles_file,
)

N_TASKS = 400  # about 100 kB of JSON lines: big enough that a non-atomic write would be caught torn


def _check(path: Path, expected: dict) -> str | None:
    """None if the file is complete and from one writer, else what is wrong."""
    try:
        parsed = read_percentiles_file(path)
    except FileNotFoundError:
        return None  # between a round's delete and its first write
    except SpeedLabelError as e:
        return f"unparseable: {e}"
    if parsed.by_task != expected:
        return f"wrong rows: {len(parsed.rows)} rows"
    writers = {r.extra.get("writer") for r in parsed.rows}
    if len(writers) != 1:
        return f"rows of {len(writers)} writers interleaved"
    return None


@dataclass(frozen=True)
class Storm:
    root: str
    cache: str
    threads: int  # per process: half write, half read
    rounds: int
    writes: int  # per writer thread and round
    timeout: float  # seconds before a stalled run is failed


def _process(proc: int, storm: Storm, barrier, out) -> None:
    root, cache, threads, timeout = storm.root, storm.cache, storm.threads, storm.timeout
    pop = make_population(N_TASKS, 12, seed=3)
    view, names = view_of(pop), task_names_for(N_TASKS)
    expected = compute_percentiles_by_task(pop.task_index, pop.length)
    labels = label_episodes(pop.task_index, pop.length, expected).tolist()
    base_rows = read_percentiles_file(Path(root) / SPEED_PERCENTILES_FILE).rows
    path = Path(root) / SPEED_PERCENTILES_FILE
    problems: list[str] = []
    counts = {"reads": 0, "writes": 0, "loads": 0}
    lock = threading.Lock()

    def writer(t: int, r: int, stop: threading.Event) -> None:
        for k in range(storm.writes):
            if (t + k) % 2:
                sp = load_or_compute_percentiles(
                    root,
                    names,
                    lambda: pop,
                    view,
                    recompute=True,
                    cache_dir=cache,
                    warner=Warner(enabled=False),
                )
                ok = sp.source == "computed"
            else:
                sig = f"{proc}-{t}-{r}-{k}"
                write_percentiles_file(
                    path,
                    [
                        PercentileRow(
                            x.task_index, x.task, x.n_episodes, x.percentiles, {**x.extra, "writer": sig}
                        )
                        for x in base_rows
                    ],
                )
                ok = True
            with lock:
                counts["writes"] += 1
                if not ok:
                    problems.append("recompute did not compute")

    def reader(t: int, r: int, stop: threading.Event) -> None:
        n = 0
        while not stop.is_set() or n < 3:
            n += 1
            if n % 4 == 0:
                sp = load_or_compute_percentiles(
                    root, names, lambda: pop, view, cache_dir=cache, warner=Warner(enabled=False)
                )
                problem = None if sp.labels(pop.task_index, pop.length).tolist() == labels else "wrong labels"
                key = "loads"
            else:
                problem, key = _check(path, expected), "reads"
            with lock:
                counts[key] += 1
                if problem:
                    problems.append(f"process {proc} thread {t} round {r}: {problem}")
            time.sleep(0.005)  # poll, but leave the writers (and a shared machine) some CPU

    def guarded(body, t: int, r: int, stop: threading.Event) -> None:
        try:
            body(t, r, stop)
        except Exception as e:  # a crashed thread is a failure, never a silently smaller sample
            with lock:
                problems.append(f"process {proc} thread {t} round {r}: {type(e).__name__}: {e}"[:300])

    for r in range(storm.rounds):
        barrier.wait(timeout=timeout)
        if proc == 0:
            path.unlink(missing_ok=True)
        barrier.wait(timeout=timeout)
        stop = threading.Event()
        writers = [threading.Thread(target=guarded, args=(writer, t, r, stop)) for t in range(threads // 2)]
        readers = [
            threading.Thread(target=guarded, args=(reader, t, r, stop)) for t in range(threads // 2, threads)
        ]
        for th in readers + writers:
            th.start()
        for th in writers:
            th.join()
        stop.set()
        for th in readers:
            th.join()
    out.put({"process": proc, "problems": problems[:20], "n_problems": len(problems), **counts})


def _ordinary_scheduling() -> None:
    """Leave a real-time scheduling class (`chrt -f`) inherited from the caller: the storm's 64 threads are
    CPU-hungry by design, and as SCHED_FIFO threads they could keep the CPUs from the very writer that holds
    the directory lock everyone waits for (a livelock of the machine, not a finding about the code)."""
    with contextlib.suppress(AttributeError, OSError):
        os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))


def run(root: Path, processes: int, threads: int, rounds: int, writes: int = 3, timeout: float = 600) -> dict:
    """Run the storm; a process that dies or hangs fails the run within `timeout` s instead of stalling it."""
    _ordinary_scheduling()
    pop = make_population(N_TASKS, 12, seed=3)
    names = task_names_for(N_TASKS)
    make_root(root, names)
    cache = root.parent / f"{root.name}-cache"
    load_or_compute_percentiles(root, names, lambda: pop, view_of(pop), cache_dir=cache)  # the base rows
    ctx = mp.get_context("fork")
    barrier, out = ctx.Barrier(processes), ctx.Queue()
    storm = Storm(str(root), str(cache), threads, rounds, writes, timeout)
    started = time.perf_counter()
    procs = [ctx.Process(target=_process, args=(p, storm, barrier, out)) for p in range(processes)]
    for p in procs:
        p.start()
    results, deadline = [], time.monotonic() + timeout
    try:
        for _ in procs:
            results.append(out.get(timeout=max(1.0, deadline - time.monotonic())))
    except queue.Empty:
        results.append(
            {"problems": [f"a process died or hung: no result within {timeout} s"], "n_problems": 1}
        )
    for p in procs:
        p.join(timeout=max(1.0, deadline - time.monotonic()))
        if p.is_alive():
            p.kill()
            p.join()
    final = _check(root / SPEED_PERCENTILES_FILE, compute_percentiles_by_task(pop.task_index, pop.length))
    summary = {
        "processes": processes,
        "threads": threads,
        "rounds": rounds,
        "writes_per_writer_and_round": writes,
        "seconds": round(time.perf_counter() - started, 2),
        **{key: sum(r.get(key, 0) for r in results) for key in ("writes", "reads", "loads")},
        "problems": [p for r in results for p in r["problems"]],
        "n_problems": sum(r["n_problems"] for r in results),
        "final_file_problem": final,
        "temp_files_left": [str(p) for p in temp_files(root) + temp_files(cache)],
        "exit_codes": [p.exitcode for p in procs],
    }
    summary["ok"] = (
        not summary["n_problems"]
        and final is None
        and not summary["temp_files_left"]
        and all(code == 0 for code in summary["exit_codes"])
    )
    return summary


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("root", type=Path)
    ap.add_argument("--processes", type=int, default=4)
    ap.add_argument("--threads", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=25)
    ap.add_argument("--writes", type=int, default=3, help="writes per writer thread and round")
    ap.add_argument("--timeout", type=float, default=600, help="seconds before a stalled run is failed")
    args = ap.parse_args(argv)
    summary = run(args.root, args.processes, args.threads, args.rounds, args.writes, args.timeout)
    print(json.dumps(summary))
    return 0 if summary["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
