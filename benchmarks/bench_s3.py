"""S3: training reads from an S3 server on loopback vs the same files on local disk; requests and bytes.

    .venv/bin/python benchmarks/bench_s3.py run --quick     # Vtab/V264 at x0.05, open counts at 1k vs 20k
    .venv/bin/python benchmarks/bench_s3.py run             # Vtab/V264 at x0.2, 3 reps
    .venv/bin/python benchmarks/bench_s3.py run --no-open --corpora V264 --reps 1   # the video corpus only
    .venv/bin/python benchmarks/bench_s3.py run --quick --no-open --corpora V21v   # v2.1, MP4 per episode
    .venv/bin/python benchmarks/bench_s3.py report benchmarks/results/<date>-s3.json

The server is moto in server mode (its own process on 127.0.0.1, the tests' `tests/s3_server.py`), holding
the corpora uploaded by pyarrow's S3 client. Loopback has no network latency, so the figures measure the
client path (HTTP, ranged reads, block cache, retries machinery) and the server's CPU, which on this 2-core
machine competes with the loader for the same cores.

1. Samples/s: `DataLoader(batch_size=64, num_workers=2, collate_fn=robotempo.collate)` over a seeded
   permutation, P5's query (`observation.state` [-0.1, 0], `action` 50 steps; V264: camera [-0.1, 0]),
   `warmup` batches untimed then `batches` timed, a fresh process per measurement, local and s3 interleaved
   (order alternating per rep). Target: s3 >= 0.7x local.
2. Requests and bytes per sample: one more s3 pass per corpus through a counting TCP relay (`Gate`).
3. Open of `episodes=[k]` (speed file present): requests and bytes at 1,000 vs 20,000 episodes (corpora
   S1k/S of v2.1, one file per episode, and S3_1k/S3 of v3.0), through the relay.
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
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(BENCH.parent / "tests"))

import corpora  # noqa: E402
from s3_server import ACCESS_KEY, REGION, SECRET_KEY, Gate, S3Server  # noqa: E402

BUCKET = "bench"
CAMERA = "observation.images.top"
OPEN_CORPORA = ("S1k", "S", "S3_1k", "S3")


def _deltas(video: bool) -> dict:
    d = {"observation.state": [-0.1, 0.0], "action": [i / 10 for i in range(50)]}
    if video:
        d[CAMERA] = [-0.1, 0.0]
    return d


def _options(endpoint: str) -> dict:
    return {
        "endpoint_override": endpoint,
        "access_key": ACCESS_KEY,
        "secret_key": SECRET_KEY,
        "region": REGION,
    }


# -- worker: one measurement in a fresh process -----------------------------------------------------------
def worker(args: argparse.Namespace) -> None:
    import numpy as np
    import torch

    from robotempo import LeRobotDataset, collate

    torch.set_num_threads(1)
    options = json.loads(args.options) if args.options else None
    if args.task == "open":
        t = time.perf_counter()
        ds = LeRobotDataset("bench", root=args.root, storage_options=options, episodes=[args.episode])
        print(json.dumps({"open_s": time.perf_counter() - t, "frames": len(ds)}))
        return
    ds = LeRobotDataset(
        "bench",
        root=args.root,
        storage_options=options,
        delta_timestamps=_deltas(args.video),
        speed_labels=False,
    )
    n = (args.warmup + args.batches) * args.batch_size
    order = np.concatenate(
        [np.random.default_rng(args.seed + r).permutation(len(ds)) for r in range(n // len(ds) + 1)]
    )
    loader = torch.utils.data.DataLoader(
        ds,
        batch_size=args.batch_size,
        sampler=order[:n].tolist(),
        num_workers=args.workers,
        collate_fn=collate,
    )
    it = iter(loader)
    for _ in range(args.warmup):
        next(it)
    t, cpu = time.perf_counter(), _cpu_s()
    samples = 0
    for batch in it:
        samples += len(batch["index"])
    wall = time.perf_counter() - t
    del it  # the workers exit and are waited for: their CPU time lands in RUSAGE_CHILDREN
    cpu = _cpu_s() - cpu
    print(json.dumps({"samples": samples, "wall_s": wall, "samples_per_s": samples / wall, "cpu_s": cpu}))


def _cpu_s() -> float:
    """CPU seconds of this process and its finished children (the loader's workers)."""
    import resource

    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def _measure(root: str, options: dict | None, **kw) -> dict:
    cmd = [sys.executable, __file__, "worker", "--root", root, "--options", json.dumps(options or {})]
    for key, value in kw.items():
        if isinstance(value, bool):
            if value:
                cmd.append(f"--{key.replace('_', '-')}")
        else:
            cmd += [f"--{key.replace('_', '-')}", str(value)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "AWS_EC2_METADATA_DISABLED": "true"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1800, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"worker failed: {' '.join(cmd)}\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# -- driver -----------------------------------------------------------------------------------------------
def run(args: argparse.Namespace) -> dict:
    scale = 0.05 if args.quick else 0.2
    reps = args.reps or (2 if args.quick else 3)
    loader_kw = {"batch_size": 64, "workers": 2, "warmup": 5, "batches": 30 if args.quick else 80}
    base = Path(args.dir)
    names = args.corpora.split(",")
    roots = {} if args.no_loader else {name: corpora.ensure(name, scale, base) for name in names}
    open_roots = {name: corpora.ensure(name, 1.0, base) for name in OPEN_CORPORA} if not args.no_open else {}
    server = S3Server()
    gate = Gate(server.port)
    try:
        t = time.perf_counter()
        urls = {name: server.upload(root, BUCKET, f"x{scale:g}/{name}") for name, root in roots.items()}
        urls.update({name: server.upload(root, BUCKET, f"x1/{name}") for name, root in open_roots.items()})
        print(f"uploaded {len(urls)} corpora in {time.perf_counter() - t:.0f} s", flush=True)
        direct, relayed = _options(f"http://127.0.0.1:{server.port}"), _options(gate.endpoint)
        record: dict = {
            "date": dt.date.today().isoformat(),
            "command": " ".join(["benchmarks/bench_s3.py", *sys.argv[1:]]),
            "scale": scale,
            "loader": loader_kw,
            "corpora": {n: corpora.describe(r) for n, r in roots.items()},
            "throughput": {},
            "per_cpu_s": {},
            "traffic": {},
            "open": {},
        }
        for name, root in roots.items():
            runs: dict[str, list[float]] = {"local": [], "s3": []}
            cpu_runs: dict[str, list[float]] = {"local": [], "s3": []}
            for rep in range(reps):
                order = ["local", "s3"] if rep % 2 == 0 else ["s3", "local"]
                for where in order:
                    res = _measure(
                        str(root) if where == "local" else urls[name],
                        None if where == "local" else direct,
                        video=corpora.SPECS[name].camera == "video",
                        seed=rep,
                        **loader_kw,
                    )
                    runs[where].append(res["samples_per_s"])
                    cpu_runs[where].append(res["samples"] / res["cpu_s"])
                    print(f"{name} rep {rep} {where}: {res['samples_per_s']:.0f} samples/s", flush=True)
            record["throughput"][name] = runs
            record["per_cpu_s"][name] = cpu_runs
            gate.reset_counts()
            video = corpora.SPECS[name].camera == "video"
            res = _measure(urls[name], relayed, video=video, seed=99, **loader_kw)
            requests, sent = gate.reset_counts()
            samples = (loader_kw["warmup"] + loader_kw["batches"]) * loader_kw["batch_size"]
            record["traffic"][name] = {"samples": samples, "requests": requests, "bytes": sent}
        for name in open_roots:
            frames = corpora.describe(open_roots[name])
            k = frames["episodes"] // 2
            gate.reset_counts()
            res = _measure(urls[name], relayed, task="open", episode=k)
            requests, sent = gate.reset_counts()
            record["open"][name] = {
                "episodes": frames["episodes"], "version": frames["version"], "episode": k,
                "requests": requests, "bytes": sent, "open_s": res["open_s"],
            }  # fmt: skip
            print(f"open {name} episodes=[{k}]: {requests} requests, {sent} bytes", flush=True)
    finally:
        gate.close()
        server.stop()
    return record


def report(record: dict) -> str:
    lines = [f"S3 loopback vs local disk, {record['date']}: `{record['command']}`", ""]
    lines += [
        "| corpus | local samples/s | s3 samples/s | s3 / local | target >= 0.7x |",
        "|---|---|---|---|---|",
    ]
    for name, runs in record["throughput"].items():
        local, s3 = statistics.median(runs["local"]), statistics.median(runs["s3"])
        verdict = "PASS" if s3 >= 0.7 * local else "FAIL"
        lines.append(f"| {name} | {local:,.0f} | {s3:,.0f} | {s3 / local:.2f}x | {verdict} |")
    lines += [
        "",
        "Per CPU-second of the loader (main process + workers; the server's CPU not counted):",
        "",
        "| corpus | local samples/CPU-s | s3 samples/CPU-s | s3 / local |",
        "|---|---|---|---|",
    ]
    for name, runs in record.get("per_cpu_s", {}).items():
        local, s3 = statistics.median(runs["local"]), statistics.median(runs["s3"])
        lines.append(f"| {name} | {local:,.0f} | {s3:,.0f} | {s3 / local:.2f}x |")
    lines += [
        "",
        "| corpus | samples | requests | requests/sample | bytes/sample | dataset bytes |",
        "|---|---|---|---|---|---|",
    ]
    for name, t in record["traffic"].items():
        c = record["corpora"][name]
        lines.append(
            f"| {name} | {t['samples']:,} | {t['requests']:,} | {t['requests'] / t['samples']:.3f} | "
            f"{t['bytes'] / t['samples']:,.0f} | {c['parquet_bytes'] + c['video_bytes']:,} |"
        )
    if record["open"]:
        lines += [
            "",
            "| open episodes=[k] | format | episodes | requests | bytes | open s |",
            "|---|---|---|---|---|---|",
        ]
        for name, o in record["open"].items():
            lines.append(
                f"| {name} | {o['version']} | {o['episodes']:,} | {o['requests']} | {o['bytes']:,} | "
                f"{o['open_s']:.3f} |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--quick", action="store_true")
    r.add_argument("--reps", type=int, default=0)
    r.add_argument("--no-open", action="store_true", help="skip the 1k vs 20k open counts")
    r.add_argument("--no-loader", action="store_true", help="only the open counts")
    r.add_argument("--corpora", default="Vtab,V264", help="loader corpora, comma-separated")
    r.add_argument("--dir", default=str(corpora.DEFAULT_DIR))
    r.add_argument("--out", default=str(BENCH / "results"))
    r.add_argument("--tag", default="", help="suffix of the results file name (e.g. -before)")
    w = sub.add_parser("worker")
    w.add_argument("--task", default="loader", choices=["loader", "open"])
    w.add_argument("--root", required=True)
    w.add_argument("--options", default="")
    w.add_argument("--video", action="store_true")
    w.add_argument("--episode", type=int, default=0)
    w.add_argument("--seed", type=int, default=0)
    w.add_argument("--batch-size", type=int, default=64)
    w.add_argument("--workers", type=int, default=2)
    w.add_argument("--warmup", type=int, default=5)
    w.add_argument("--batches", type=int, default=30)
    rp = sub.add_parser("report")
    rp.add_argument("json")
    args = p.parse_args(argv)
    if args.cmd == "worker":
        worker(args)
        return 0
    if args.cmd == "report":
        print(report(json.loads(Path(args.json).read_text())))
        return 0
    record = run(args)
    part = "-open" if args.no_loader else ("-loader" if args.no_open else "")
    tag = "" if args.corpora == "Vtab,V264" else "-" + args.corpora.replace(",", "-")
    out = Path(args.out) / f"{record['date']}-s3{'-quick' if args.quick else ''}{part}{tag}{args.tag}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=1))
    print(report(record))
    print(f"saved {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
