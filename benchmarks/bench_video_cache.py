"""What the video decoder cache's size costs and saves on a mixture of many multi-camera datasets.

    .venv/bin/python benchmarks/bench_video_cache.py          # 40 datasets, 480x640, H.264 and AV1
    .venv/bin/python benchmarks/bench_video_cache.py --quick  # 8 datasets, 224x224, H.264
    .venv/bin/python benchmarks/bench_video_cache.py --size 224x224 --codecs av1 --sizes default,64,8
    .venv/bin/python benchmarks/bench_video_cache.py --store s3 --latency-ms 10 --before 912458d \
        --codecs h264 --sizes default,120
    .venv/bin/python benchmarks/bench_video_cache.py --read concat --before 6a33bc2 --sizes default
    .venv/bin/python benchmarks/bench_video_cache.py --read both --store s3 --codecs h264 --sizes default
    PYTHONPATH=DIR_OF_PYAV15 .venv/bin/python benchmarks/bench_video_cache.py --store s3 --before 065ecaf \
        --codecs h264 --sizes default --rounds 1 --tag av15

Corpus (written once under DIR/video-cache/<version>-<size>-<codec>, reused): N datasets of 3 video cameras
at 30 fps (LeRobot's codec settings: GOP 2), 4 episodes of ~40 frames each: v3.0 puts them in one MP4 file
per camera per dataset (3N files), v2.1 in one per episode and camera (12N files). A shuffled mixture reads
them at random.

Each cache size runs in a fresh process: a `Mixture` of the N datasets (2 frames of history per camera,
state history, a 50-step action chunk; uint8 frames, as the decoders' cost is the question), a shuffled
`Sampler`, a DataLoader of 2 fork workers, batch 32; warm-up batches, then timed batches. Reported:
samples/s, and per worker the peak RSS and the unique memory (USS: what each further worker adds on a node)
sampled every 0.2 s over the pass. `default` leaves `ROBOTEMPO_VIDEO_CACHE_SIZE` unset (the size robotempo
picks: `max_size` in the table); a number sets it.

Per timed batch, also: the storages its worker took from its shared-memory pool (`shm takes`: one per camera
tensor and one for the packed numeric columns, plus any a dataset's part took) and how many of them were fresh
shared memory (`fresh`: new pages, each a fault and a clear, or storages the pool could not keep).

`--store s3` reads the datasets from an S3 server on 127.0.0.1 (moto, as the tests start it) through a relay
that holds each response back `--latency-ms` and counts requests; worker RSS then includes the blocks and
prefetched ranges the open files keep. `--before COMMIT` runs that commit's `src/` (git archive) beside this
checkout's, interleaved, for every cache size. `--read concat` reads the datasets side by side as a LeRobot
user combines them, a torch `ConcatDataset` with a `RandomSampler`, one item at a time, instead of a `Mixture`
(`--read both`: the two interleaved).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
from harness import commit_src
from measure import RESULT_TAG, children, emit, rss_bytes, unique_bytes

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
DIR = Path(os.environ.get("ROBOTEMPO_BENCH_DIR", "/tmp/robotempo-bench")) / "video-cache"
PYTHON = Path(sys.executable)
CAMERAS = ("observation.images.top", "observation.images.left", "observation.images.wrist")
FPS = 30
EPISODES = 4
BATCH = 32
WORKERS = 2


# -- corpus -------------------------------------------------------------------------------------------------
def corpus(n: int, size: tuple[int, int], codec: str, version: str, noise: float | None = None) -> list[Path]:
    from robotempo.synth import SynthSpec
    from robotempo.writer import DatasetWriter

    base = DIR / f"{version}-{size[0]}x{size[1]}-{codec}{f'-noise{noise:g}' if noise is not None else ''}"
    roots = []
    t = time.perf_counter()
    for i in range(n):
        root = base / f"ds{i:03d}"
        roots.append(root)
        if (root / "done").exists():
            continue
        if root.exists():
            import shutil

            shutil.rmtree(root)
        spec = SynthSpec(n_episodes=EPISODES, n_tasks=2, mean_length=40.0, camera="video", image_size=size,
                         fps=FPS, seed=100 + i)  # fmt: skip
        if noise is not None:
            spec = dataclasses.replace(spec, pixel_noise=noise)
        features = {k: v for k, v in spec.features().items() if k in ("observation.state", "action")}
        for key in CAMERAS:
            features[key] = {"dtype": "video", "shape": [*size, 3], "names": ["height", "width", "channels"]}
        with DatasetWriter(root, fps=FPS, features=features, version=version, robot_type="synthetic",
                           video_codec=codec) as w:  # fmt: skip
            for e in range(EPISODES):
                arrays, task = spec.episode(e)
                frames = arrays.pop("observation.images.top")
                arrays.update(dict(zip(CAMERAS, (frames, frames[:, :, ::-1], frames[:, ::-1]))))
                w.add_episode(arrays, task=task)
        (root / "done").write_text("")
        print(f"\r{base.name}: dataset {i + 1}/{n} ({time.perf_counter() - t:.0f} s)", end="", flush=True)
    print()
    return roots


# -- one run, in a fresh process -----------------------------------------------------------------------------
def _collate_counting(samples) -> dict:
    """`collate`, plus the worker's id and its shared-memory pool's counters (storages taken, fresh, unpooled)
    as the batch's `_pool`: how much fresh shared memory each batch costs."""
    import torch

    from robotempo import collate
    from robotempo.shm_pool import worker_pool_stats

    out = collate(samples)
    stats = worker_pool_stats() or {}
    worker = torch.utils.data.get_worker_info()
    out["_pool"] = torch.tensor(
        [worker.id if worker else -1, stats.get("takes", -1), stats.get("fresh", 0), stats.get("unpooled", 0)]
    )
    return out


def _pool_per_batch(first: dict, last: dict, counted: dict) -> dict:
    """Storages each timed batch took from its worker's pool, and how many of them were fresh shared memory
    (new or unpooled), from the counters of each worker's first and last timed batch."""
    batches = sum(counted[w] - 1 for w in last)
    if batches <= 0:
        return {}
    fresh = sum(last[w][2] + last[w][3] - first[w][2] - first[w][3] for w in last)
    out = {"pool_fresh_per_batch": fresh / batches}
    if all(first[w][1] >= 0 for w in last):  # robotempo before 2026-12-02 did not count takes
        out["pool_takes_per_batch"] = sum(last[w][1] - first[w][1] for w in last) / batches
    return out


def worker(args) -> None:
    import torch

    from robotempo import Mixture, Sampler

    roots = args.roots.split(",")
    options = json.loads(args.options) if args.options else None
    step = 1 / FPS
    delta = {key: [-step, 0.0] for key in CAMERAS}
    delta["observation.state"] = [-step, 0.0]
    delta["action"] = [k * step for k in range(50)]
    extra = {"storage_options": options} if options else {}
    specs = [{"repo_id": r.rstrip("/").rsplit("/", 1)[-1], "root": r, "speed_labels": False,
              "return_uint8": True, **extra} for r in roots]  # fmt: skip
    if args.concat:  # side by side, as a LeRobot user combines datasets: one item at a time
        from robotempo import LeRobotDataset

        datasets = [LeRobotDataset(**spec, delta_timestamps=delta) for spec in specs]
        data = torch.utils.data.ConcatDataset(datasets)
        sampler = torch.utils.data.RandomSampler(data, generator=torch.Generator().manual_seed(0))
    else:
        data = Mixture(specs, delta_timestamps=delta)
        datasets = data.datasets
        sampler = Sampler(data, seed=0, rank=0, world_size=1)
    loader = torch.utils.data.DataLoader(
        data, batch_size=BATCH, sampler=sampler, num_workers=WORKERS, collate_fn=_collate_counting,
        multiprocessing_context="fork", prefetch_factor=2,
    )  # fmt: skip
    peaks: dict[int, dict] = {}
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(0.2):
            for pid in children(os.getpid()):
                try:
                    p = peaks.setdefault(pid, {"rss": 0, "uss": 0})
                    p["rss"], p["uss"] = max(p["rss"], rss_bytes(pid)), max(p["uss"], unique_bytes(pid))
                except (OSError, KeyError):  # a worker that just ended
                    pass

    sampler_thread = threading.Thread(target=sample, daemon=True)
    sampler_thread.start()
    it = iter(loader)
    for _ in range(args.warmup):
        next(it)
    t0 = time.perf_counter()
    first, last, counted = {}, {}, {}
    for _ in range(args.batches):
        batch = next(it)
        pool = batch.pop("_pool").tolist()
        first.setdefault(pool[0], pool)
        last[pool[0]] = pool
        counted[pool[0]] = counted.get(pool[0], 0) + 1
    seconds = time.perf_counter() - t0
    stop.set()
    sampler_thread.join()
    assert batch[CAMERAS[0]].shape[:2] == (BATCH, 2)
    workers = [p for p in peaks.values() if p["rss"] > 0]
    for ds in datasets:  # every dataset joins this process's cache, as each has in the workers
        ds._video()
    emit(
        {
            "cache_size": args.cache_size,
            "max_size": datasets[0]._video().cache.max_size,  # what each worker's cache grew to
            "samples_per_s": args.batches * BATCH / seconds,
            "worker_rss_mb": max(p["rss"] for p in workers) / 1e6,
            "worker_uss_mb": max(p["uss"] for p in workers) / 1e6,
            **_pool_per_batch(first, last, counted),
        }
    )
    del it


def run(roots: list[str], cache_size: str, warmup: int, batches: int, src: Path | None = None,
        options: dict | None = None, gate=None, concat: bool = False) -> dict:  # fmt: skip
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env.pop("ROBOTEMPO_VIDEO_CACHE_SIZE", None)
    if src is not None:  # first on the path; what the caller's PYTHONPATH adds (another PyAV) stays behind it
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(src), os.environ.get("PYTHONPATH")) if p)
    if cache_size != "default":
        env["ROBOTEMPO_VIDEO_CACHE_SIZE"] = cache_size
    cmd = [str(PYTHON), __file__, "--worker", "--roots", ",".join(map(str, roots)),
           "--cache-size", cache_size, "--warmup", str(warmup), "--batches", str(batches)]  # fmt: skip
    if concat:
        cmd.append("--concat")
    if options:
        cmd += ["--options", json.dumps(options)]
    if gate is not None:
        gate.reset_counts()
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1800)
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith(RESULT_TAG)]
    if out.returncode != 0 or not lines:
        raise SystemExit(f"run with cache size {cache_size} failed:\n{out.stderr[-3000:]}")
    got = json.loads(lines[-1][len(RESULT_TAG) :])
    if gate is not None:  # the whole run's (open, warm-up and timed batches), per timed sample
        requests, sent = gate.reset_counts()
        got["requests"], got["mb_fetched"] = requests, sent / 1e6
    return got


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="8 datasets, 224x224, H.264, fewer batches")
    ap.add_argument(
        "--datasets", type=int, default=None, help="datasets in the mixture (default 40; quick 8)"
    )
    ap.add_argument("--size", default=None, help="HxW of every camera (default 480x640; quick 224x224)")
    ap.add_argument("--codecs", default=None, help="comma list of h264, av1 (default both; quick h264)")
    ap.add_argument("--version", default="v3.0", choices=("v3.0", "v2.1"), help="the corpus's format")
    ap.add_argument("--sizes", default="default,64,16,4", help="cache sizes: 'default' or a number")
    ap.add_argument("--rounds", type=int, default=2, help="interleaved rounds (median)")
    ap.add_argument("--warmup", type=int, default=None, help="warm-up batches (default 20; quick 8)")
    ap.add_argument("--batches", type=int, default=None, help="timed batches (default 60; quick 20)")
    ap.add_argument("--noise", type=float, help="sensor noise (default 1.5; 12: files ~10x larger, as real)")
    ap.add_argument("--store", default="local", choices=("local", "s3"), help="where the datasets are read")
    ap.add_argument("--latency-ms", type=float, default=10.0, help="with --store s3: per response")
    ap.add_argument("--before", help="also run this commit's src/ (git archive), interleaved")
    ap.add_argument(
        "--read",
        default="mixture",
        choices=("mixture", "concat", "both"),
        help="a Mixture, or a torch ConcatDataset with a RandomSampler, or both interleaved",
    )
    ap.add_argument("--out", default=str(BENCH / "results"))
    ap.add_argument("--tag", default="", help="appended to the results file's name (-TAG)")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--options", help=argparse.SUPPRESS)
    ap.add_argument("--roots", help=argparse.SUPPRESS)
    ap.add_argument("--cache-size", help=argparse.SUPPRESS)
    ap.add_argument("--concat", action="store_true", help=argparse.SUPPRESS)  # the worker's read
    args = ap.parse_args(argv)
    if args.worker:
        worker(args)
        return 0
    n = args.datasets or (8 if args.quick else 40)
    h, w = map(int, (args.size or ("224x224" if args.quick else "480x640")).split("x"))
    codecs = (args.codecs or ("h264" if args.quick else "h264,av1")).split(",")
    warmup = args.warmup if args.warmup is not None else (8 if args.quick else 20)
    batches = args.batches or (20 if args.quick else 60)
    sizes = args.sizes.split(",")
    codes: dict[str, Path | None] = {"this": None}
    if args.before:
        codes = {f"before {args.before}": commit_src(args.before, Path(os.environ.get("TMPDIR", "/tmp"))),
                 **codes}  # fmt: skip
    reads = ("mixture", "concat") if args.read == "both" else (args.read,)
    systems: dict[str, tuple[Path | None, bool]] = {
        f"{code}{f' {read}' if len(reads) > 1 else ''}": (src, read == "concat")
        for code, src in codes.items() for read in reads
    }  # fmt: skip
    store = gate = options = None
    if args.store == "s3":
        sys.path.insert(0, str(REPO / "tests"))
        from s3_server import REGION, Gate, S3Server

        store = S3Server()
        gate = Gate(store.port, latency_s=args.latency_ms / 1000)
        options = {"endpoint_override": gate.endpoint, "access_key": store.access_key,
                   "secret_key": store.secret_key, "region": REGION}  # fmt: skip
    rows = []
    try:
        for codec in codecs:
            roots: list = corpus(n, (h, w), codec, args.version, args.noise)
            if store is not None:
                roots = [store.upload(r, "bench", f"{r.parent.name}/{r.name}") for r in roots]
            runs: dict[tuple, list[dict]] = {(sy, s): [] for sy in systems for s in sizes}
            for r in range(args.rounds):
                for s in sizes:
                    for sy, (src, concat) in systems.items():
                        got = run(roots, s, warmup, batches, src, options, gate, concat)
                        runs[sy, s].append(got)
                        print(f"{codec} round {r + 1}: {sy}: cache {s}: {got['samples_per_s']:.1f} samples/s",
                              flush=True)  # fmt: skip
            for (sy, s), got in runs.items():
                med = {k: float(np.median([x[k] for x in got])) for k in got[0] if k != "cache_size"}
                med.setdefault("pool_takes_per_batch", float("nan"))
                med.setdefault("pool_fresh_per_batch", float("nan"))
                rows.append({"codec": codec, "system": sy, "cache_size": s, **med, "runs": got})
    finally:
        if gate is not None:
            gate.close()
        if store is not None:
            store.stop()
    where = f"in S3 on 127.0.0.1 ({args.latency_ms:g} ms per response)" if store is not None else "local"
    how = {"mixture": "a Mixture of", "concat": "a ConcatDataset of", "both": "a Mixture / ConcatDataset of"}
    how = how[args.read]
    print(f"\n{how} {n} {args.version} datasets x 3 cameras at {h}x{w}, {where}, {WORKERS} fork workers, "
          f"batch {BATCH}, medians of {args.rounds}")  # fmt: skip
    fetched = f" {'requests':>9} {'KB/sample':>10}" if store is not None else ""
    print(f"{'codec':6} {'system':>24} {'cache':>8} {'max_size':>8} {'samples/s':>10} {'vs first':>9} "
          f"{'worker RSS':>11} {'worker USS':>11} {'shm takes':>9} {'fresh':>6}{fetched}")  # fmt: skip
    first = next(iter(systems))
    for row in rows:
        base = next(x for x in rows if x["codec"] == row["codec"] and x["cache_size"] == sizes[0]
                    and x["system"] == first)  # fmt: skip
        extra = ""
        if store is not None:
            per = row["mb_fetched"] * 1e3 / ((warmup + batches) * BATCH)
            extra = f" {row['requests']:9.0f} {per:10.1f}"
        print(f"{row['codec']:6} {row['system'][-24:]:>24} {row['cache_size']:>8} {row['max_size']:8.0f} "
              f"{row['samples_per_s']:10.1f} {row['samples_per_s'] / base['samples_per_s']:8.2f}x "
              f"{row['worker_rss_mb']:8.0f} MB {row['worker_uss_mb']:8.0f} MB "
              f"{row['pool_takes_per_batch']:9.1f} {row['pool_fresh_per_batch']:6.2f}{extra}")  # fmt: skip
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    quick = "-quick" if args.quick else ""
    s3 = f"-s3-{args.latency_ms:g}ms" if store is not None else ""
    s3 += f"-noise{args.noise:g}" if args.noise is not None else ""
    s3 += f"-{args.read}" if args.read != "mixture" else ""
    s3 += f"-{args.tag}" if args.tag else ""
    path = out / f"{dt.date.today()}-video-cache-{args.version}-{h}x{w}-{n}ds{s3}{quick}.json"
    record = {"version": args.version, "datasets": n, "size": [h, w], "workers": WORKERS, "batch": BATCH,
              "noise": args.noise, "store": args.store, "read": args.read,
              "latency_ms": args.latency_ms if store is not None else None,
              "load": os.getloadavg(), "rows": rows}  # fmt: skip
    path.write_text(json.dumps(record, indent=1))
    print(f"saved {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
