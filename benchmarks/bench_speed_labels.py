"""P6: per-task speed labels for 1,000,000 episodes over 1,000 tasks (target <= 1 s), and R1 at full size.

    python benchmarks/bench_speed_labels.py                 # P6, median of 5 runs
    python benchmarks/bench_speed_labels.py --quick         # 100,000 episodes, for a smoke run
    python benchmarks/bench_speed_labels.py --r1            # also R1: 16 threads x 4 processes x 25 rounds

Rows: the two vectorised steps and their sum (the P6 figure); opening with the file present (parse 1,000 rows
+ per-task staleness fingerprints over the whole metadata view); and, side by side in the same run, the scalar
rule applied per task and per episode (what a straightforward implementation does), timed once.
Results go to benchmarks/results/speed_labels.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from robotempo.speed import (
    MetadataView,
    SpeedPopulation,
    Warner,
    bucket_episode_length,
    compute_percentiles_by_task,
    compute_task_percentiles,
    label_episodes,
    load_or_compute_percentiles,
)

HERE = Path(__file__).resolve().parent
STRESS = HERE.parent / "tests" / "distributed" / "speed_stress.py"


def population(n_episodes: int, n_tasks: int, seed: int = 0) -> SpeedPopulation:
    """Tasks with their own pace; lengths 20..3,000 frames; episodes in random task order."""
    rng = np.random.default_rng(seed)
    task = rng.integers(0, n_tasks, n_episodes)
    pace = rng.uniform(50, 1500, n_tasks)
    length = np.clip(rng.normal(pace[task], pace[task] * 0.25), 20, 3000).astype(np.int64)
    return SpeedPopulation(np.arange(n_episodes), length, task)


def median_time(fn: Callable[[], object], runs: int) -> tuple[float, list[float]]:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), times


def scalar_labels(pop: SpeedPopulation) -> np.ndarray:
    by_task = {
        int(t): compute_task_percentiles(pop.length[pop.task_index == t]) for t in np.unique(pop.task_index)
    }
    return np.array(
        [bucket_episode_length(int(n), by_task[int(t)]) for t, n in zip(pop.task_index, pop.length)]
    )


def run_p6(n_episodes: int, n_tasks: int, runs: int, scalar: bool) -> dict:
    pop = population(n_episodes, n_tasks)
    rows: dict[str, dict] = {}
    holder: dict = {}

    def percentiles():
        holder["p"] = compute_percentiles_by_task(pop.task_index, pop.length)

    def labels():
        holder["labels"] = label_episodes(pop.task_index, pop.length, holder["p"])

    def both():
        labels_of = label_episodes(
            pop.task_index, pop.length, compute_percentiles_by_task(pop.task_index, pop.length)
        )
        holder["both"] = labels_of

    for name, fn in (
        ("percentiles by task", percentiles),
        ("labels of all episodes", labels),
        ("P6 total", both),
    ):
        med, times = median_time(fn, runs)
        rows[name] = {"median_s": med, "runs_s": times}

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "root"
        (root / "meta").mkdir(parents=True)
        view = MetadataView(pop.episode_index, pop.length, pop.task_index)
        names = {t: f"task {t}" for t in range(n_tasks)}
        load_or_compute_percentiles(
            root, names, lambda: pop, view, cache_dir=Path(tmp) / "c", warner=Warner(enabled=False)
        )

        def open_present():
            sp = load_or_compute_percentiles(
                root, names, lambda: pop, view, cache_dir=Path(tmp) / "c", warner=Warner(enabled=False)
            )
            assert sp.source == "file"

        med, times = median_time(open_present, runs)
        rows["open with file present (parse + staleness)"] = {"median_s": med, "runs_s": times}

    if scalar:
        start = time.perf_counter()
        reference = scalar_labels(pop)
        rows["scalar rule, per task and per episode (1 run)"] = {
            "median_s": time.perf_counter() - start,
            "runs_s": [time.perf_counter() - start],
        }
        assert np.array_equal(reference, holder["both"]), "vectorised labels differ from the scalar rule"
    return {"episodes": n_episodes, "tasks": n_tasks, "runs": runs, "rows": rows}


def run_r1(rounds: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        done = subprocess.run(
            [
                sys.executable,
                str(STRESS),
                str(Path(tmp) / "root"),
                "--processes",
                "4",
                "--threads",
                "16",
                "--rounds",
                str(rounds),
            ],
            capture_output=True,
            text=True,
            check=False,
        )
    if done.returncode not in (0, 1):
        raise RuntimeError(done.stderr[-3000:])
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="P6 speed-label timing (and R1 stress with --r1)")
    ap.add_argument("--episodes", type=int, default=1_000_000)
    ap.add_argument("--tasks", type=int, default=1_000)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--quick", action="store_true", help="100,000 episodes")
    ap.add_argument("--no-scalar", action="store_true", help="skip the one slow scalar-rule run")
    ap.add_argument("--r1", action="store_true", help="also run R1: 16 threads x 4 processes x --r1-rounds")
    ap.add_argument("--r1-rounds", type=int, default=25)
    ap.add_argument("--out", type=Path, default=HERE / "results" / "speed_labels.json")
    args = ap.parse_args(argv)
    episodes = 100_000 if args.quick else args.episodes

    result = {
        "machine": platform.platform(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "p6": run_p6(episodes, args.tasks, args.runs, not args.no_scalar),
    }
    p6 = result["p6"]
    total = p6["rows"]["P6 total"]["median_s"]
    result["p6"]["target_s"] = 1.0
    result["p6"]["meets_target"] = total <= 1.0
    print(f"P6: {episodes:,} episodes over {args.tasks:,} tasks, median of {args.runs} runs")
    print(f"{'step':<50} {'median s':>10}")
    for name, row in p6["rows"].items():
        print(f"{name:<50} {row['median_s']:>10.3f}")
    scalar = p6["rows"].get("scalar rule, per task and per episode (1 run)")
    if scalar:
        print(f"{'vectorised speed-up over the scalar rule':<50} {scalar['median_s'] / total:>9.0f}x")
    print(f"target <= 1 s: {'met' if total <= 1.0 else 'NOT met'}")

    if args.r1:
        r1 = run_r1(args.r1_rounds)
        result["r1"] = r1
        print(
            f"R1: {r1['processes']} processes x {r1['threads']} threads x {r1['rounds']} rounds in "
            f"{r1['seconds']} s: {r1['writes']} writes, {r1['reads']} parses, {r1['loads']} loads; "
            f"problems {r1['n_problems']}, temp files left {len(r1['temp_files_left'])}: "
            f"{'ok' if r1['ok'] else 'FAILED'}"
        )

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"results: {args.out}")
    return 0 if result["p6"]["meets_target"] and result.get("r1", {"ok": True})["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
