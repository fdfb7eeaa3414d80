"""Write many small AV1 datasets and count hangs and encoder-child restarts (the libsvtav1 deadlock).

Each round runs in its own process under a watchdog (`--round-timeout`); a round that does not finish is a
hang. Restarts are the encoder watchdog's warnings (a child that stalled or died and was replaced). Run it
on a loaded machine: the deadlock shows under load. Prints a table and saves JSON to benchmarks/results/.

    .venv/bin/python benchmarks/bench_encoder_watchdog.py --rounds 20 --datasets 20
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

ROUND = """
import logging, sys, tempfile
import torch  # noqa: F401  (a training process has torch's threads running while it writes)
from robotempo.synth import write_synthetic
logging.basicConfig(level=logging.WARNING)
for i in range(int(sys.argv[1])):
    with tempfile.TemporaryDirectory() as d:
        write_synthetic(d + "/ds", version=("v2.1", "v3.0")[i % 2], n_episodes=7, n_tasks=2, camera="video",
                        image_size=(64, 64), fps=10, codec="av1", seed=11 + i,
                        video_files_size_in_mb=0.12, data_files_size_in_mb=0.05)
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--datasets", type=int, default=20, help="datasets written per round")
    parser.add_argument("--round-timeout", type=float, default=600)
    parser.add_argument("--label", default="child", help="names the results file")
    args = parser.parse_args()
    rows = []
    for n in range(args.rounds):
        start = time.monotonic()
        try:
            out = subprocess.run(
                [sys.executable, "-c", ROUND, str(args.datasets)],
                capture_output=True,
                text=True,
                timeout=args.round_timeout,
            )
            status = "ok" if out.returncode == 0 else f"exit {out.returncode}"
            restarts = out.stderr.count("restarting it")
        except subprocess.TimeoutExpired:
            status, restarts = "HANG", 0
        rows.append(
            {
                "round": n,
                "status": status,
                "restarts": restarts,
                "s": time.monotonic() - start,
                "load1": os.getloadavg()[0],
            }
        )
        print(
            f"round {n:3d}  {status:8s}  restarts {restarts}  {rows[-1]['s']:6.1f} s  "
            f"load {rows[-1]['load1']:.1f}",
            flush=True,
        )
    hangs = sum(r["status"] == "HANG" for r in rows)
    failed = sum(r["status"] not in ("ok", "HANG") for r in rows)
    summary = {
        "rounds": len(rows),
        "datasets_per_round": args.datasets,
        "hangs": hangs,
        "failed": failed,
        "restarts": sum(r["restarts"] for r in rows),
        "rows": rows,
    }
    print(
        f"\n{len(rows)} rounds x {args.datasets} datasets: {hangs} hung, {failed} failed, "
        f"{summary['restarts']} encoder restarts"
    )
    out_dir = Path(__file__).parent / "results"
    out_dir.mkdir(exist_ok=True)
    (out_dir / f"{date.today()}-encoder-watchdog-{args.label}.json").write_text(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
