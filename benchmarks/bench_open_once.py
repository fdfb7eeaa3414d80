"""A Mixture opened from a bucket by every rank of a torchrun job, or once by rank 0 (`open_once`).

    .venv/bin/python benchmarks/bench_open_once.py --mixture /tmp/robotempo-bench/p9-100x50 --mixture-n 100 \\
        --ranks 8 --latency-ms 20 --rounds 2

The server is moto in server mode on 127.0.0.1 (`tests/s3_server.py`), behind a relay (`Gate`) that counts
requests and bytes and holds each response back by `--latency-ms`. Each run is a fresh `torchrun
--nproc_per_node R` (gloo) whose ranks meet at a barrier, open the first `--mixture-n` datasets of
`--mixture` (P9's corpus: every fifth with a PNG camera) as one `Mixture` of `s3://` specs (`each`: every
rank opens; `once`: `open_once`, rank 0 opens and hands it over), and meet again. Figures per run: requests
and bytes the store served, each rank's open time (median and slowest), the hand-over's size, peak RSS of
rank 0 and of the others. The machine has 2 cores: R ranks and the moto server share them, so the request
counts carry to a real store and the times here are an upper bound.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import pickle
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(BENCH.parent / "tests"))

from s3_server import Gate, S3Server, free_port  # noqa: E402

BUCKET = "bench-open-once"


def worker(spec: dict) -> None:
    """One rank: open, then rank 0 prints one JSON line with every rank's figures."""
    import torch
    import torch.distributed as dist

    import robotempo

    dist.init_process_group("gloo", timeout=dt.timedelta(seconds=1800))
    specs = [{"repo_id": Path(u).name, "root": u, "storage_options": spec["options"]} for u in spec["urls"]]
    dist.barrier()
    t0 = time.perf_counter()
    if spec["mode"] == "once":
        mix = robotempo.open_once(lambda: robotempo.Mixture(specs))
    else:
        mix = robotempo.Mixture(specs)
    open_s = time.perf_counter() - t0
    size = len(pickle.dumps(mix, protocol=pickle.HIGHEST_PROTOCOL)) if dist.get_rank() == 0 else 0
    mine = torch.tensor([open_s, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, size, len(mix)])
    every = [torch.empty_like(mine) for _ in range(dist.get_world_size())]
    dist.all_gather(every, mine)
    if dist.get_rank() == 0:
        rows = [t.tolist() for t in every]
        print(json.dumps({"open_s": [r[0] for r in rows], "maxrss_mb": [r[1] for r in rows],
                          "handover_bytes": rows[0][2], "frames": rows[0][3]}))  # fmt: skip
    dist.barrier()
    dist.destroy_process_group()


def run(gate: Gate, ranks: int, spec: dict) -> dict:
    gate.reset_counts()
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(ranks), "--master_addr",
        "127.0.0.1", "--master_port", str(free_port()), __file__, "worker", "--spec", json.dumps(spec),
    ]  # fmt: skip
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"), OMP_NUM_THREADS="1")
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=3600)
    requests, sent = gate.reset_counts()
    if done.returncode:
        raise RuntimeError(done.stdout[-3000:] + done.stderr[-3000:])
    line = [x for x in done.stdout.splitlines() if x.startswith("{")][-1]
    return {**json.loads(line), "requests": requests, "bytes": sent}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command")
    w = sub.add_parser("worker")
    w.add_argument("--spec", required=True)
    parser.add_argument("--mixture", default="/tmp/robotempo-bench/p9-100x50", help="folder of datasets")
    parser.add_argument("--mixture-n", type=int, default=100)
    parser.add_argument("--ranks", type=int, default=8)
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--tag", default="")
    args = parser.parse_args()
    if args.command == "worker":
        worker(json.loads(args.spec))
        return

    server = S3Server()
    roots = sorted(p for p in Path(args.mixture).iterdir() if (p / "meta" / "info.json").exists())
    t = time.perf_counter()
    urls = [server.upload(r, BUCKET, f"mix/{r.name}") for r in roots[: args.mixture_n]]
    print(f"uploaded {len(urls)} datasets in {time.perf_counter() - t:.1f} s", flush=True)
    gate = Gate(server.port, latency_s=args.latency_ms / 1000)
    options = {
        "endpoint_override": gate.endpoint,
        "access_key": server.access_key,
        "secret_key": server.secret_key,
        "region": "us-east-1",
    }
    runs: dict = {}
    for r in range(args.rounds):
        for mode in ("each", "once"):
            got = run(gate, args.ranks, {"mode": mode, "urls": urls, "options": options})
            runs.setdefault(mode, []).append(got)
            print(
                f"round {r} {mode:5s} {got['requests']:7d} requests {got['bytes'] / 1e6:8.1f} MB, open "
                f"median {statistics.median(got['open_s']):6.2f} s, slowest {max(got['open_s']):6.2f} s, "
                f"hand-over {got['handover_bytes'] / 1e6:.1f} MB, peak RSS rank 0 {got['maxrss_mb'][0]:.0f} "
                f"MB, others max {max(got['maxrss_mb'][1:]):.0f} MB",
                flush=True,
            )
    print(f"\n{args.ranks} ranks, {len(urls)} datasets, latency {args.latency_ms:g} ms, {args.rounds} rounds")
    print(
        "| mode | requests | MB served | open s, median rank | slowest rank | peak RSS rank 0 / others MB |"
    )
    print("|---|---|---|---|---|---|")
    table = {}
    for mode, got in runs.items():
        row = {
            "requests": statistics.median(g["requests"] for g in got),
            "mb": statistics.median(g["bytes"] for g in got) / 1e6,
            "open_median_s": statistics.median(statistics.median(g["open_s"]) for g in got),
            "open_slowest_s": statistics.median(max(g["open_s"]) for g in got),
            "rss0_mb": statistics.median(g["maxrss_mb"][0] for g in got),
            "rss_others_mb": statistics.median(max(g["maxrss_mb"][1:]) for g in got),
        }
        table[mode] = row
        print(
            f"| {mode} | {row['requests']:.0f} | {row['mb']:.1f} | {row['open_median_s']:.2f} | "
            f"{row['open_slowest_s']:.2f} | {row['rss0_mb']:.0f} / {row['rss_others_mb']:.0f} |"
        )
    out = BENCH / "results" / f"{dt.date.today().isoformat()}-open-once{args.tag}.json"
    out.write_text(json.dumps({"medians": table, "runs": runs, "args": vars(args)}, indent=1))
    print(f"saved {out}")
    gate.close()
    server.stop()


if __name__ == "__main__":
    main()
