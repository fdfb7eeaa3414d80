"""What handing a batch from a DataLoader worker to the main process costs, packed and unpacked.

    .venv/bin/python benchmarks/bench_handoff.py                 # ~2 min
    .venv/bin/python benchmarks/bench_handoff.py --reps 5 --batches 80

A tensor leaves a worker through torch's shared-memory reducer: one descriptor per storage, passed through
multiprocessing's resource sharer (a socket connection with an HMAC challenge on each side). robotempo's
`collate` packs a batch's numeric tensors into one shared storage in the worker
(`robotempo.shm_pool.pack_batch`); this compares it with the same batch handed over unpacked (a collate
returning the stacked tensors as they are, which is what `collate` did before packing).

Corpus: `Vtab` of `benchmarks/corpora.py` at `--scale` (v3.0 tabular, written once), the benchmark query
(state history + 50-step action chunk), DataLoader batch 32, 2 workers, `--warmup` then `--batches` timed;
each configuration in a fresh process, in alternating order, `--reps` times. CPU time of the main process
and of the workers over the timed window (from /proc), per batch. Saves
`benchmarks/results/<date>-handoff.json`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import statistics
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH / "peer_side"))
sys.path.insert(0, str(BENCH))

RESULTS = BENCH / "results"
MODES = ("unpacked", "packed")


def unpacked_collate(samples):
    """The stacked batch as `__getitems__` made it: one storage per tensor."""
    return samples.stacked


def child(args) -> dict:
    import os
    import time

    import torch
    from video_loader_peer import benchmark_query, read_info, tree_cpu

    from robotempo import LeRobotDataset, collate

    root = Path(args.root)
    ds = LeRobotDataset("bench/handoff", root=root, delta_timestamps=benchmark_query(read_info(root), False))
    loader = torch.utils.data.DataLoader(
        ds,
        batch_size=32,
        shuffle=True,
        generator=torch.Generator().manual_seed(0),
        num_workers=2,
        collate_fn=collate if args.mode == "packed" else unpacked_collate,
    )
    it = iter(loader)
    for _ in range(args.warmup):
        next(it)
    me = os.getpid()
    workers = [int(c) for c in Path(f"/proc/{me}/task/{me}/children").read_text().split()]
    before, t0 = tree_cpu([me, *workers]), time.perf_counter()
    storages = 0
    for _ in range(args.batches):
        batch = next(it)
        storages = len(
            {v.untyped_storage().data_ptr() for v in batch.values() if isinstance(v, torch.Tensor)}
        )
    wall = time.perf_counter() - t0
    after = tree_cpu([me, *workers])
    main = after[me] - before[me]
    work = sum(after[p] - before[p] for p in workers)
    return {
        "mode": args.mode,
        "main_ms": 1e3 * main / args.batches,
        "workers_ms": 1e3 * work / args.batches,
        "total_ms": 1e3 * (main + work) / args.batches,
        "wall_ms": 1e3 * wall / args.batches,
        "storages_per_batch": storages,
        "tensors_per_batch": sum(isinstance(v, torch.Tensor) for v in batch.values()),
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scale", type=float, default=0.05)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--batches", type=int, default=60)
    ap.add_argument("--mode", choices=MODES, help=argparse.SUPPRESS)
    ap.add_argument("--root", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.mode:
        print("RESULT", json.dumps(child(args)))
        return 0
    import corpora

    root = corpora.ensure("Vtab", args.scale)
    runs = []
    for rep in range(args.reps):
        for mode in MODES if rep % 2 == 0 else MODES[::-1]:
            cmd = [
                sys.executable,
                __file__,
                "--mode",
                mode,
                "--root",
                str(root),
                "--warmup",
                str(args.warmup),
                "--batches",
                str(args.batches),
            ]
            out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
            runs.append({"rep": rep, **json.loads(out.split("RESULT", 1)[1])})
            r = runs[-1]
            print(
                f"rep {rep} {mode:>8}: main {r['main_ms']:.2f} ms, workers {r['workers_ms']:.2f} ms per batch"
            )
    med = {
        m: {
            k: statistics.median(r[k] for r in runs if r["mode"] == m)
            for k in (
                "main_ms",
                "workers_ms",
                "total_ms",
                "wall_ms",
                "storages_per_batch",
                "tensors_per_batch",
            )
        }
        for m in MODES
    }
    print(
        f"\n{'collate':>9} {'tensors':>8} {'storages':>9} {'main ms':>8} {'workers ms':>11} {'total ms':>9} "
        f"{'wall ms':>8}   (per batch of 32, medians of {args.reps})"
    )
    for m in MODES:
        r = med[m]
        print(
            f"{m:>9} {r['tensors_per_batch']:>8.0f} {r['storages_per_batch']:>9.0f} {r['main_ms']:>8.2f} "
            f"{r['workers_ms']:>11.2f} {r['total_ms']:>9.2f} {r['wall_ms']:>8.2f}"
        )
    ratio = med["unpacked"]["total_ms"] / med["packed"]["total_ms"]
    print(f"packed: {ratio:.2f}x fewer CPU ms per batch (main + workers)")
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"{dt.date.today().isoformat()}-handoff.json"
    out.write_text(
        json.dumps(
            {
                "date": dt.date.today().isoformat(),
                "corpus": str(root),
                "args": vars(args),
                "runs": runs,
                "medians": med,
                "unpacked_over_packed_cpu": ratio,
            },
            indent=1,
        )
    )
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
