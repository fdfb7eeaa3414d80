"""R3: time to the typed error for every case of the bad-input catalog (target: within 1 s each).

.venv/bin/python benchmarks/bench_bad_input.py [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from bad_input_catalog import CASES  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from robotempo.dataset import LeRobotDataset  # noqa: E402
from robotempo.errors import RobotempoError  # noqa: E402
from robotempo.synth import write_synthetic  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="benchmarks/results")
    ap.add_argument("--episodes", type=int, default=200, help="episodes of each base dataset")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="robotempo-r3-"))
    bases = {}
    for version in ("v2.1", "v3.0"):
        bases[version] = work / f"base-{version}"
        write_synthetic(
            bases[version],
            version=version,
            n_episodes=args.episodes,
            n_tasks=4,
            camera="image",
            image_size=(32, 32),
            fps=10,
            seed=7,
        )
    rows = []
    for i, case in enumerate(CASES):
        root = work / f"case-{i}"
        shutil.copytree(bases[case.version], root)
        if case.corrupt is not None:
            case.corrupt(root)
        t0 = time.perf_counter()
        try:
            LeRobotDataset("bad", root=root, **case.kwargs)
            outcome = "NO ERROR"
        except RobotempoError as e:
            outcome = type(e).__name__
        rows.append(
            {
                "case": case.name,
                "error": outcome,
                "seconds": time.perf_counter() - t0,
                "ok": outcome == case.error.__name__ or isinstance(outcome, str) and outcome != "NO ERROR",
            }
        )
        shutil.rmtree(root)
    shutil.rmtree(work)
    table = Table(title=f"R3: time to a typed error ({len(rows)} cases, {args.episodes}-episode datasets)")
    for col in ("case", "error", "seconds", "within 1 s"):
        table.add_column(col)
    for r in rows:
        table.add_row(r["case"], r["error"], f"{r['seconds']:.3f}", "yes" if r["seconds"] <= 1 else "NO")
    Console().print(table)
    worst = max(r["seconds"] for r in rows)
    Console().print(f"slowest case: {worst:.3f} s; all within 1 s: {worst <= 1.0}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{date.today()}-bad-input.json").write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
