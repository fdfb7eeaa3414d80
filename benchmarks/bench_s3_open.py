"""Opening datasets from an S3 server behind a round trip: requests, bytes and time, this code vs a commit.

    .venv/bin/python benchmarks/bench_s3_open.py --corpus lr5k=/tmp/h11data/lr_tabular_5k \\
        --mixture /tmp/robotempo-bench/p9-100x50 --mixture-n 20 --latency-ms 20 --before 266fb31

The server is moto in server mode on 127.0.0.1 (`tests/s3_server.py`); in front of it a relay (`Gate`)
counts requests and the bytes sent back, and holds each response back by `--latency-ms` (loopback has no
round trip; an object store in another rack or region has 5-50 ms of it). Each figure is a fresh process
(this checkout's `src`, or the `--before` commit's, extracted with `git archive`), systems interleaved per
round; medians of `--rounds`. Figures:

- `[k]` / `all`: `LeRobotDataset(url, episodes=[middle] / None)` of each `--corpus` (e.g. written by
  LeRobot 0.6.1's own writer: one row group per episode, `meta/episodes` in row groups of 10 episodes with
  ~80 statistics columns);
- `mixture`: `Mixture` of the first `--mixture-n` datasets of `--mixture` (P9's corpus: every fifth one with
  a PNG camera), as specs with `s3://` roots.

The moto server is a Python process on the same 2 cores: its CPU per request (~4 ms) bounds what
concurrency can gain here, so the request counts are the figures that carry to a real store.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(BENCH.parent / "tests"))

from harness import commit_src  # noqa: E402
from s3_server import Gate, S3Server  # noqa: E402

BUCKET = "bench-open"


def worker(args: argparse.Namespace) -> None:
    """In a fresh process: open once, print one JSON line (wall and CPU seconds)."""
    import torch  # noqa: F401  imported before the clock, like a training script

    import robotempo

    spec = json.loads(args.spec)
    options = spec["options"]
    t0, c0 = time.perf_counter(), time.process_time()
    if spec["figure"] == "mixture":
        ds = robotempo.Mixture(
            [{"repo_id": Path(u).name, "root": u, "storage_options": options} for u in spec["urls"]]
        )
        frames = len(ds)
    else:
        ds = robotempo.LeRobotDataset(
            "bench", root=spec["urls"][0], storage_options=options, episodes=spec.get("episodes")
        )
        frames = len(ds)
    print(
        json.dumps(
            {
                "wall_s": time.perf_counter() - t0,
                "cpu_s": time.process_time() - c0,
                "frames": frames,
                "robotempo": robotempo.__file__,
            }
        )
    )


def before_src(commit: str) -> Path:
    return commit_src(commit, Path(os.environ.get("TMPDIR", "/tmp")))


def measure(gate: Gate, src: Path, spec: dict) -> dict:
    gate.reset_counts()
    env = dict(os.environ, PYTHONPATH=str(src))
    done = subprocess.run(
        [sys.executable, __file__, "worker", "--spec", json.dumps(spec)],
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    requests, sent = gate.reset_counts()
    if done.returncode:
        raise RuntimeError(done.stderr[-3000:])
    return {**json.loads(done.stdout.strip().splitlines()[-1]), "requests": requests, "bytes": sent}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command")
    w = sub.add_parser("worker")
    w.add_argument("--spec", required=True)
    parser.add_argument("--corpus", action="append", default=[], help="name=local dataset folder")
    parser.add_argument("--mixture", help="folder of datasets (P9's corpus)")
    parser.add_argument("--mixture-n", type=int, default=20)
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument("--before", help="a commit to compare with (its src/ from git archive)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--tag", default="")
    args = parser.parse_args()
    if args.command == "worker":
        worker(args)
        return

    server = S3Server()
    fs_setup = time.perf_counter()
    specs: list[tuple[str, dict]] = []
    for item in args.corpus:
        name, folder = item.split("=", 1)
        url = server.upload(Path(folder), BUCKET, name)
        n = json.loads((Path(folder) / "meta" / "info.json").read_text())["total_episodes"]
        specs += [(f"{name} [k]", {"figure": "open", "urls": [url], "episodes": [n // 2]})]
        specs += [(f"{name} all", {"figure": "open", "urls": [url]})]
    if args.mixture:
        roots = sorted(p for p in Path(args.mixture).iterdir() if (p / "meta" / "info.json").exists())
        urls = [server.upload(r, BUCKET, f"mix/{r.name}") for r in roots[: args.mixture_n]]
        specs += [(f"mixture of {len(urls)}", {"figure": "mixture", "urls": urls})]
    print(f"uploaded in {time.perf_counter() - fs_setup:.1f} s", flush=True)
    gate = Gate(server.port, latency_s=args.latency_ms / 1000)
    options = {
        "endpoint_override": gate.endpoint,
        "access_key": server.access_key,
        "secret_key": server.secret_key,
        "region": "us-east-1",
    }
    systems = {"robotempo": REPO / "src"}
    if args.before:
        systems = {f"before ({args.before})": before_src(args.before), **systems}
    runs: dict = {}
    for r in range(args.rounds):
        for label, spec in specs:
            for system, src in systems.items():
                got = measure(gate, src, {**spec, "options": options})
                runs.setdefault(label, {}).setdefault(system, []).append(got)
                print(
                    f"round {r} {label:24s} {system:22s} {got['wall_s']:7.2f} s wall "
                    f"{got['cpu_s']:6.2f} CPU-s {got['requests']:6d} requests {got['bytes'] / 1e6:8.2f} MB",
                    flush=True,
                )
    print(f"\nlatency {args.latency_ms:g} ms per response, medians of {args.rounds} rounds")
    print("| figure | system | wall s | CPU s | requests | MB fetched |\n|---|---|---|---|---|---|")
    table = {}
    for label, by_system in runs.items():
        for system, got in by_system.items():
            row = {k: statistics.median(g[k] for g in got) for k in ("wall_s", "cpu_s", "requests", "bytes")}
            table.setdefault(label, {})[system] = row
            print(
                f"| {label} | {system} | {row['wall_s']:.2f} | {row['cpu_s']:.2f} | {row['requests']:.0f} | "
                f"{row['bytes'] / 1e6:.2f} |"
            )
    out = BENCH / "results" / f"{dt.date.today().isoformat()}-s3-open{args.tag}.json"
    out.write_text(
        json.dumps(
            {
                "latency_ms": args.latency_ms,
                "rounds": args.rounds,
                "medians": table,
                "runs": runs,
                "args": vars(args),
            },
            indent=1,
        )
    )
    print(f"saved {out}")
    server.stop()


if __name__ == "__main__":
    main()
