"""Long runs on the realistic VLA corpus (issue 11, item 5; P8 on this corpus): memory, open files and open
video decoders of the main process and of each DataLoader worker, over several epochs.

    .venv/bin/python benchmarks/bench_video_soak.py --corpus vla224_av1 --epochs 12
    .venv/bin/python benchmarks/bench_video_soak.py --corpus vla480_av1 --epochs 12 --return-uint8

The corpus is `bench_vla.py`'s (quick scale unless `--full`; written on first use): 3 cameras, the workload
of 2 frames of history per camera, state history and a 50-step action chunk. DataLoader with 2 persistent
fork workers (the same worker processes all run long), batch 32, a new shuffle every epoch. After every batch
each worker reports, from inside itself (in the collate function), its open file descriptors (not counting
torch's shared-memory files of the batches in flight), its open video decoders (`len(fetcher.cache)`) and
its shared-memory pool (`robotempo.shm_pool.worker_pool_stats`: bytes and slots held, storages fresh,
reused and trimmed); at `--marks` points of the run the main process reads PSS (`/proc/<pid>/smaps_rollup`)
and RSS of itself and of each worker, and each worker's anonymous memory; each worker's growth per batch
it makes, from 10% of the run on (a leak shows as a steady slope of its anonymous memory). Prints a table
per epoch and saves
`benchmarks/results/<date>-video-soak-<corpus>[-uint8].{json,png}`.

Targets: P8, PSS and RSS of main + workers at the end of the run <= 1.1x their value at 10% of it (medians of
the marks in [8%, 12%] and [96%, 100%]); open descriptors and decoders per worker flat from epoch to epoch,
decoders never above the workers' cache size (ROBOTEMPO_VIDEO_CACHE_SIZE, default 8 per camera); the pool's
growth (the batches at which a worker's pool took a new storage) tells whether it stops at the peak in flight
or keeps growing with the run.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH / "peer_side"))
sys.path.insert(0, str(BENCH))

import bench_vla  # noqa: E402
from measure import anonymous_bytes, children, pss_bytes, rss_bytes  # noqa: E402
from video_loader_peer import benchmark_query, read_info  # noqa: E402

RESULTS = BENCH / "results"
BATCH = 32
WORKERS = 2
POOL_KEYS = ("held_bytes", "slots", "fresh", "reused", "unpooled", "retired", "trimmed")
PROBE_KEYS = ("fds", "shm_fds", "sockets", "decoders", "cache_size", *POOL_KEYS)


def open_fds(pid: int | str = "self") -> dict[str, int]:
    """Open descriptors: `fds` leaves out torch's shared-memory files (`shm_fds`: the pool's storages and the
    batches in flight, whose number follows the loader's timing); `sockets` (among `fds`) are mostly
    multiprocessing's resource sharer handing descriptors to the main process, open for one hand-over."""
    targets = []
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            targets.append(os.readlink(f"/proc/{pid}/fd/{fd}"))
        except OSError:  # closed meanwhile
            pass
    shm = sum(t.startswith("/dev/shm/torch_") for t in targets)
    return {
        "fds": len(targets) - shm,
        "shm_fds": shm,
        "sockets": sum(t.startswith("socket:") for t in targets),
    }


def probing_collate(samples):
    """robotempo's collate, plus what this worker holds open: (pid, *PROBE_KEYS)."""
    import torch

    from robotempo import collate
    from robotempo.shm_pool import worker_pool_stats
    from robotempo.video.decoder import default_fetcher

    batch = collate(samples)
    pool = worker_pool_stats() or {}
    cache = default_fetcher().cache
    probe = {**open_fds(), "decoders": len(cache), "cache_size": cache.max_size, **pool}
    batch["_probe"] = torch.tensor([os.getpid(), *(probe.get(k, 0) for k in PROBE_KEYS)], dtype=torch.int64)
    return batch


def memory(pid: int) -> dict:
    try:
        return {
            "pid": pid,
            "pss": pss_bytes(pid),
            "rss": rss_bytes(pid),
            "anonymous": anonymous_bytes(pid),
            "fds": open_fds(pid)["fds"],
        }
    except (OSError, KeyError):
        return {}


def run(args) -> dict:
    import torch

    from robotempo import LeRobotDataset

    root = bench_vla.write_corpus(args.corpus, "full" if args.full else "quick")
    deltas = benchmark_query(read_info(root), True)
    ds = LeRobotDataset(
        f"bench/{args.corpus}",
        root=root,
        delta_timestamps=deltas,
        speed_labels=False,
        return_uint8=args.return_uint8,
    )
    loader = torch.utils.data.DataLoader(
        ds,
        batch_size=BATCH,
        shuffle=True,
        generator=torch.Generator().manual_seed(args.seed),
        num_workers=WORKERS,
        persistent_workers=True,
        multiprocessing_context="fork",
        collate_fn=probing_collate,
    )
    total = args.epochs * len(loader)
    marks = {max(1, round(total * (k + 1) / args.marks)) for k in range(args.marks)}
    me = os.getpid()
    trace, probes, log, done, samples, made = [], {}, [], 0, 0, {}
    t0 = time.perf_counter()
    for epoch in range(args.epochs):
        for batch in loader:
            pid, *values = (int(x) for x in batch["_probe"])
            probes[pid] = dict(zip(PROBE_KEYS, values))
            made[pid] = made.get(pid, 0) + 1
            log.append({"batch": done + 1, "epoch": epoch, "pid": pid, **probes[pid]})
            done += 1
            samples += len(batch["index"])
            if done in marks:
                procs = {"main": memory(me)}
                procs.update({f"worker{j}": memory(p) for j, p in enumerate(children(me))})
                trace.append(
                    {
                        "batch": done,
                        "epoch": epoch,
                        "fraction": done / total,
                        "samples": samples,
                        "wall_s": time.perf_counter() - t0,
                        "processes": procs,
                        "pss": sum(m.get("pss", 0) for m in procs.values()),
                        "rss": sum(m.get("rss", 0) for m in procs.values()),
                        "worker_probes": {str(k): dict(v) for k, v in probes.items()},
                        "worker_batches": {str(k): v for k, v in made.items()},
                    }
                )
    wall = time.perf_counter() - t0
    out = {
        "date": dt.date.today().isoformat(),
        "corpus": args.corpus,
        "root": str(root),
        "return_uint8": args.return_uint8,
        "epochs": args.epochs,
        "batches": total,
        "samples": samples,
        "epoch_samples": len(ds),
        "batch_size": BATCH,
        "workers": WORKERS,
        "wall_s": wall,
        "samples_per_s": samples / wall,
        "video_cache_size": max(p["cache_size"] for p in probes.values()),  # 8 per camera unless set
        "trace": trace,
        "changes": changes(log),
    }
    for key in ("pss", "rss"):
        at10, end = window(trace, key, 0.08, 0.12), window(trace, key, 0.96, 1.0)
        out[f"{key}_10"], out[f"{key}_end"], out[f"{key}_ratio"] = at10, end, end / at10
    out["per_epoch"] = per_epoch(trace, log)
    out["worker_growth"] = worker_growth(trace)
    return out


def worker_growth(trace: list[dict]) -> list[dict]:
    """Per worker, the slope of its PSS and of its anonymous memory (private: not the pool's shared memory,
    which PSS includes) against the number of batches it made, over the marks from 10% of the run on (past
    the pool's filling): bytes a worker keeps per batch it makes."""
    rows = []
    for name in sorted({k for m in trace for k in m["processes"] if k != "main"}):
        points = []
        for m in trace:
            proc = m["processes"].get(name, {})
            made = m.get("worker_batches", {}).get(str(proc.get("pid")))
            if m["fraction"] >= 0.1 and made is not None and "anonymous" in proc:
                points.append((made, proc["pss"], proc["anonymous"]))
        if len(points) < 3 or points[0][0] == points[-1][0]:
            continue
        made, pss, anonymous = zip(*points)
        rows.append(
            {
                "worker": name,
                "batches": made[-1] - made[0],
                "pss_bytes_per_batch": statistics.linear_regression(made, pss).slope,
                "anonymous_bytes_per_batch": statistics.linear_regression(made, anonymous).slope,
            }
        )
    return rows


def changes(log: list[dict]) -> list[dict]:
    """The probes at which a worker's descriptors (other than sockets and shared memory) or pool bytes
    changed, its first probe included."""
    out, last = [], {}
    for p in log:
        key = (p["fds"] - p["sockets"], p["held_bytes"])
        if last.get(p["pid"]) != key:
            out.append(p)
        last[p["pid"]] = key
    return out


def window(trace: list[dict], key: str, lo: float, hi: float) -> float:
    inside = [m[key] for m in trace if lo <= m["fraction"] <= hi]
    return statistics.median(inside or [min(trace, key=lambda m: abs(m["fraction"] - hi))[key]])


def per_epoch(trace: list[dict], log: list[dict]) -> list[dict]:
    """The last mark of each epoch: tree PSS/RSS, and per worker its descriptors, decoders and pool; and the
    range of each worker's descriptors over every batch of the epoch."""
    rows = []
    for epoch in sorted({m["epoch"] for m in trace}):
        last = [m for m in trace if m["epoch"] == epoch][-1]
        workers = sorted(last["worker_probes"].items())
        seen = {pid: [p for p in log if p["epoch"] == epoch and str(p["pid"]) == pid] for pid, _ in workers}
        rows.append(
            {
                "epoch": epoch,
                "samples": last["samples"],
                "pss": last["pss"],
                "rss": last["rss"],
                "main_fds": last["processes"]["main"].get("fds"),
                "worker_fds": [w["fds"] for _, w in workers],
                "worker_fds_range": [_span(p["fds"] - p["sockets"] for p in seen[pid]) for pid, _ in workers],
                "worker_sockets_max": [max(p["sockets"] for p in seen[pid]) for pid, _ in workers],
                "worker_shm_fds_range": [_span(p["shm_fds"] for p in seen[pid]) for pid, _ in workers],
                "worker_decoders": [w["decoders"] for _, w in workers],
                **{f"worker_pool_{k}": [w.get(k, 0) for _, w in workers] for k in POOL_KEYS},
                "worker_pss": [m.get("pss") for k, m in sorted(last["processes"].items()) if k != "main"],
            }
        )
    return rows


def _span(values) -> str:
    values = list(values)
    lo, hi = min(values), max(values)
    return f"{lo}" if lo == hi else f"{lo}-{hi}"


def report(result: dict) -> None:
    mb = 1 / 2**20
    print(
        f"{result['corpus']} return_uint8={result['return_uint8']}: {result['samples']} samples in "
        f"{result['epochs']} epochs of {result['epoch_samples']}, {result['samples_per_s']:.0f} samples/s, "
        f"video cache size {result['video_cache_size']}"
    )
    print(
        f"{'epoch':>5} {'samples':>8} {'PSS MB':>8} {'RSS MB':>8} {'main fds':>8} {'worker fds':>12} "
        f"{'sockets':>8} {'shm fds':>10} {'decoders':>9} {'worker PSS MB':>14} {'pool MB':>10} {'slots':>7} "
        f"{'fresh':>7} {'reused':>10} {'trimmed':>8}"
    )
    for r in result["per_epoch"]:
        wpss = "/".join(f"{p * mb:.0f}" for p in r["worker_pss"] if p)
        pool_mb = "/".join(f"{p * mb:.0f}" for p in r["worker_pool_held_bytes"])
        print(
            f"{r['epoch']:>5} {r['samples']:>8} {r['pss'] * mb:>8.0f} {r['rss'] * mb:>8.0f} "
            f"{r['main_fds']:>8} {_per_worker(r, 'fds_range'):>12} {_per_worker(r, 'sockets_max'):>8} "
            f"{_per_worker(r, 'shm_fds_range'):>10} {_per_worker(r, 'decoders'):>9} {wpss:>14} {pool_mb:>10} "
            f"{_per_worker(r, 'pool_slots'):>7} {_per_worker(r, 'pool_fresh'):>7} "
            f"{_per_worker(r, 'pool_reused'):>10} {_per_worker(r, 'pool_trimmed'):>8}"
        )
    print(
        "worker fds: range over the epoch's batches, without sockets and shared memory; sockets: the most "
        "open at once; shm fds: torch's shared-memory files (pool + batches in flight)"
    )
    for key in ("pss", "rss"):
        ratio = result[f"{key}_ratio"]
        print(
            f"P8 {key.upper()}: {result[f'{key}_10'] * mb:.0f} MB at 10% -> "
            f"{result[f'{key}_end'] * mb:.0f} MB "
            f"at the end: {ratio:.3f}x ({'PASS' if ratio <= 1.1 else 'FAIL'}, target <= 1.1)"
        )
    for g in result.get("worker_growth", []):
        print(
            f"{g['worker']} from the 10% mark on ({g['batches']} batches; least squares over the marks): "
            f"anonymous {g['anonymous_bytes_per_batch'] / 1024:+.2f} KB, PSS (pool included) "
            f"{g['pss_bytes_per_batch'] / 1024:+.2f} KB per batch it made"
        )
    fds = [tuple(r["worker_fds_range"]) for r in result["per_epoch"][1:]]
    dec = [max(r["worker_decoders"]) for r in result["per_epoch"]]
    print(
        f"worker descriptors from epoch 1 on: {'flat' if len(set(fds)) <= 1 else 'CHANGED'} "
        f"({sorted(set(fds))}); decoders at most {max(dec)} (cache size {result['video_cache_size']})"
    )
    for pid in sorted({c["pid"] for c in result["changes"]}):
        grew = [c for c in result["changes"] if c["pid"] == pid]
        steps = ", ".join(
            f"{c['batch']}:{c['held_bytes'] * mb:.0f}MB/{c['slots']}slots/{c['fds'] - c['sockets']}fds"
            for c in grew
        )
        print(f"worker {pid}: pool or descriptors changed at batch (of {result['batches']}) {steps}")


def _per_worker(row: dict, key: str) -> str:
    return "/".join(map(str, row[f"worker_{key}"]))


def chart(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    trace = result["trace"]
    x = [m["samples"] for m in trace]
    fig, axes = plt.subplots(1, 4, figsize=(20, 4))
    axes[0].plot(x, [m["pss"] / 2**20 for m in trace], label="PSS (main + workers)")
    axes[0].plot(x, [m["rss"] / 2**20 for m in trace], label="RSS (main + workers)")
    axes[0].set_ylabel("MB")
    names = sorted({k for m in trace for k in m["processes"]})
    for name in names:
        axes[1].plot(x, [m["processes"].get(name, {}).get("fds") for m in trace], label=name)
    axes[1].set_ylabel("open file descriptors")
    pids = sorted({k for m in trace for k in m["worker_probes"]})
    for j, pid in enumerate(pids):
        axes[2].plot(x, [m["worker_probes"].get(pid, {}).get("decoders") for m in trace], label=f"worker {j}")
    axes[2].axhline(result["video_cache_size"], color="grey", linestyle=":", label="cache size")
    axes[2].set_ylabel("open video decoders")
    for j, pid in enumerate(pids):
        held = [m["worker_probes"].get(pid, {}).get("held_bytes") for m in trace]
        axes[3].plot(x, [h / 2**20 if h is not None else None for h in held], label=f"worker {j}")
    axes[3].set_ylabel("shared-memory pool held, MB")
    for ax in axes:
        ax.set_xlabel("samples")
        ax.set_ylim(bottom=0)
        ax.legend(fontsize=8)
    mode = "uint8" if result["return_uint8"] else "float32"
    fig.suptitle(f"{result['corpus']} ({mode}), {result['epochs']} epochs, 2 persistent workers")
    fig.tight_layout()
    fig.savefig(path, dpi=90)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--corpus",
        default="vla224_av1",
        choices=[n for n, c in bench_vla.CORPORA.items() if c["camera"] == "video"],
    )
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--marks", type=int, default=60)
    ap.add_argument("--return-uint8", action="store_true")
    ap.add_argument("--full", action="store_true", help="the full-scale corpus (written on first use: long)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="")
    args = ap.parse_args(argv)
    result = run(args)
    tag = f"{result['date']}-video-soak-{args.corpus}{'-uint8' if args.return_uint8 else ''}"
    out = Path(args.out) if args.out else RESULTS / f"{tag}.json"
    out.write_text(json.dumps(result, indent=1))
    chart(result, out.with_suffix(".png"))
    report(result)
    print(f"wrote {out} and {out.with_suffix('.png')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
