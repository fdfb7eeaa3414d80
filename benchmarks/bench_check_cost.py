"""What the never-serve-wrong-data checks cost at open: P2 (RSS after open) and P3 (open `episodes=[k]`),
the same corpora opened by two source trees of robotempo (before / after the checks), in fresh processes.

    .venv/bin/python benchmarks/bench_check_cost.py --before /path/to/old/src [--after src] [--rounds 5]

Each measurement is a fresh process of this venv's python with PYTHONPATH set to the tree's `src`, so both
trees share every dependency; rounds interleave the two trees so they share the machine's load. Corpora come
from `benchmarks/corpora.py` (S, S3 at full scale: 20,000 episodes; T at `--t-scale`). Prints a table and
writes `<out>/<date>-check-cost.json`.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import corpora  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

CHILD = r"""
import gc, json, os, sys, time
def rss():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
import torch, robotempo.dataset
gc.collect()
before = rss()
root, episodes = sys.argv[1], json.loads(sys.argv[2])
t, c = time.perf_counter(), time.process_time()
ds = robotempo.dataset.LeRobotDataset("bench", root=root, episodes=episodes)
open_s, open_cpu_s = time.perf_counter() - t, time.process_time() - c
gc.collect()
print("RESULT", json.dumps({"open_s": open_s, "open_cpu_s": open_cpu_s, "rss_delta": rss() - before,
      "frames": len(ds), "src": os.path.dirname(os.path.dirname(robotempo.__file__))}))
"""


def measure(src: Path, root: Path, episodes) -> dict:
    env = {**os.environ, "PYTHONPATH": str(src), "OMP_NUM_THREADS": "1"}
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(root), json.dumps(episodes)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    result = json.loads(next(line for line in out.splitlines() if line.startswith("RESULT "))[7:])
    assert Path(result["src"]).resolve() == src.resolve(), (result["src"], src)
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--before", type=Path, required=True, help="src/ of the tree without the checks")
    ap.add_argument("--after", type=Path, default=Path(__file__).resolve().parents[1] / "src")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--t-scale", type=float, default=0.2, help="scale of the T corpus for P2 (full: 1)")
    ap.add_argument("--corpora", default="S,S3,T", help="which of S, S3 (P3) and T (P2) to measure")
    ap.add_argument("--dir", type=Path, default=corpora.DEFAULT_DIR)
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    args = ap.parse_args()
    cases = []
    wanted = args.corpora.split(",")
    for name in ("S", "S3"):
        if name in wanted:
            root = corpora.ensure(name, 1.0, args.dir)
            k = corpora.record(name, 1.0, args.dir)["episodes"] // 2
            cases.append((f"P3 open episodes=[{k}] on {name}", root, [k]))
    if "T" in wanted:
        root = corpora.ensure("T", args.t_scale, args.dir)
        cases.append((f"P2 open all of T (x{args.t_scale:g})", root, None))
    trees = {"before": args.before, "after": args.after}
    runs: dict = {(c[0], t): [] for c in cases for t in trees}
    for _ in range(args.rounds):
        for what, root, episodes in cases:
            for tree, src in trees.items():
                runs[(what, tree)].append(measure(src, root, episodes))
    table = Table(title="cost of the checks at open (median of fresh processes)", title_justify="left")
    for col in ("measurement", "tree", "open s (wall)", "open s (CPU)", "RSS after open", "frames"):
        table.add_column(col)
    record = {
        "date": date.today().isoformat(),
        "rounds": args.rounds,
        "trees": {k: str(v) for k, v in trees.items()},
        "load": os.getloadavg(),
        "rows": [],
    }
    for (what, tree), rs in runs.items():
        row = {
            "measurement": what,
            "tree": tree,
            **{k: statistics.median(r[k] for r in rs) for k in ("open_s", "open_cpu_s", "rss_delta")},
            "frames": rs[0]["frames"],
            "raw": rs,
        }
        record["rows"].append(row)
        table.add_row(
            what,
            tree,
            f"{row['open_s']:.4f}",
            f"{row['open_cpu_s']:.4f}",
            f"{row['rss_delta'] / 2**20:.1f} MB",
            f"{row['frames']:,}",
        )
    Console().print(table)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"{record['date']}-check-cost-{'-'.join(wanted)}.json"
    path.write_text(json.dumps(record, indent=1))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
