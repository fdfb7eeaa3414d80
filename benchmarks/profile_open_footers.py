"""What an open of `episodes=[k]` costs that no parquet reader can skip: the footers (issue 11, item 6).

    .venv/bin/python benchmarks/profile_open_footers.py /tmp/h11data/lr_tabular_5k --rounds 3

A v3.0 open reads two footers whatever the selection: `meta/episodes` (which data file holds which episode)
and the data file holding episode k. LeRobot's writer makes one row group per episode in the data files and
~89 statistics columns per row group in `meta/episodes`, so at 5,000 episodes those footers are 4.6 and 6.3
MB. Each figure comes from a fresh process (the first allocations of a process fault in fresh pages, which
is part of what an open costs), median of `--rounds`:

  robotempo open [k]   `LeRobotDataset(root, episodes=[k])`, k the middle episode (CPU, minor page faults)
  parse <footer>       `pyarrow.parquet.ParquetFile(path)` alone, then its release
  parse both           meta/episodes' footer, released, then the data file's (the order of an open)
  floor                the same with every episode's catalog columns read from meta/episodes in between
                       (what an open that validates every episode's metadata reads; robotempo does)

One untimed open first writes the dataset's `meta/speed_percentiles.jsonl` if absent (as any first open
does), so the timed opens are warm ones; point it at a copy if the corpus must stay untouched. Prints a
table and writes benchmarks/results/<date>-open-footers.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from robotempo.format.v30 import REQUIRED

REQUIRED_COLUMNS = [*REQUIRED, "tasks"]
CHILD = r"""
import json, resource, sys, time
mode, root, k = sys.argv[1], sys.argv[2], int(sys.argv[3])
import numpy, pyarrow.parquet as pq, torch, robotempo
from robotempo import LeRobotDataset
files = {"meta": root + "/meta/episodes/chunk-000/file-000.parquet",
         "data": root + "/data/chunk-000/file-000.parquet"}
pq.ParquetFile(root + "/meta/tasks.parquet")  # the parquet reader's first use, paid by every mode
def now():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return time.process_time(), r.ru_minflt
out = {}
c0, f0 = now()
if mode == "open":
    LeRobotDataset("x", root=root, episodes=[k])
elif mode == "floor":  # both footers and the catalog's columns of every episode, as an open reads them
    from robotempo.format.v30 import REQUIRED
    a = now()
    pf = pq.ParquetFile(files["meta"])
    table = pf.read(columns=[*REQUIRED, "tasks"], use_threads=False)
    del table, pf
    b = now()
    pq.ParquetFile(files["data"]).close()
    out["catalog_cpu"], out["data_parse_cpu"] = b[0] - a[0], now()[0] - b[0]
else:
    for name in mode.split("+"):
        a = now()
        pf = pq.ParquetFile(files[name])
        b = now()
        out[name + "_bytes"] = pf.metadata.serialized_size
        del pf
        c = now()
        out[name + "_parse_cpu"], out[name + "_parse_faults"] = b[0] - a[0], b[1] - a[1]
        out[name + "_free_cpu"] = c[0] - b[0]
c1, f1 = now()
out.update(cpu=c1 - c0, faults=f1 - f0)
print(json.dumps(out))
"""

MODES = {"open": "robotempo open [k]", "meta": "parse meta/episodes", "data": "parse the data file",
         "meta+data": "parse both (meta, then data)",
         "floor": "both + every episode's catalog columns"}  # fmt: skip


def run(root: Path, k: int, mode: str) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", CHILD, mode, str(root), str(k)], capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("root", type=Path, help="a v3.0 dataset with one data file and one episode-metadata file")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--episode", type=int, default=None, help="k (default: the middle episode)")
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    a = ap.parse_args(argv)
    info = json.loads((a.root / "meta/info.json").read_text())
    k = a.episode if a.episode is not None else info["total_episodes"] // 2
    run(a.root, k, "open")  # writes the speed-percentile file once, like every first open
    runs: dict[str, list[dict]] = {m: [] for m in MODES}
    for _ in range(a.rounds):
        for mode in MODES:  # interleaved: every mode meets the same load
            runs[mode].append(run(a.root, k, mode))
    med = {m: {key: statistics.median(r[key] for r in rs) for key in rs[0]} for m, rs in runs.items()}
    print(f"{a.root} episodes=[{k}], medians of {a.rounds} fresh processes, load {os.getloadavg()[0]:.1f}")
    print(f"{'measurement':40} {'CPU ms':>8} {'minor faults':>13}   detail")
    for mode, label in MODES.items():
        m = med[mode]
        detail = ", ".join(
            f"{n}: {m[n + '_bytes'] / 2**20:.1f} MB footer, parse {1e3 * m[n + '_parse_cpu']:.0f} ms "
            f"({m[n + '_parse_faults']:.0f} faults), release {1e3 * m[n + '_free_cpu']:.0f} ms"
            for n in ("meta", "data")
            if n + "_bytes" in m
        )
        if "catalog_cpu" in m:
            detail = (
                f"meta footer + the catalog's {len(REQUIRED_COLUMNS)} columns of all row groups "
                f"{1e3 * m['catalog_cpu']:.0f} ms, data footer {1e3 * m['data_parse_cpu']:.0f} ms"
            )
        print(f"{label:40} {1e3 * m['cpu']:8.1f} {m['faults']:13.0f}   {detail}")
    a.out.mkdir(parents=True, exist_ok=True)
    path = a.out / f"{time.strftime('%Y-%m-%d')}-open-footers.json"
    path.write_text(json.dumps({"root": str(a.root), "episode": k, "runs": runs, "medians": med}, indent=1))
    print(f"saved {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
