"""What the video decoder cache's size costs and saves on a mixture of many multi-camera datasets.

    .venv/bin/python benchmarks/bench_video_cache.py          # 40 datasets, 480x640, H.264 and AV1
    .venv/bin/python benchmarks/bench_video_cache.py --quick  # 8 datasets, 224x224, H.264
    .venv/bin/python benchmarks/bench_video_cache.py --size 224x224 --codecs av1 --sizes default,64,8

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
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
from measure import RESULT_TAG, children, emit, rss_bytes, unique_bytes

BENCH = Path(__file__).resolve().parent
DIR = Path(os.environ.get("ROBOTEMPO_BENCH_DIR", "/tmp/robotempo-bench")) / "video-cache"
PYTHON = Path(sys.executable)
CAMERAS = ("observation.images.top", "observation.images.left", "observation.images.wrist")
FPS = 30
EPISODES = 4
BATCH = 32
WORKERS = 2


# -- corpus -------------------------------------------------------------------------------------------------
def corpus(n: int, size: tuple[int, int], codec: str, version: str) -> list[Path]:
    from robotempo.synth import SynthSpec
    from robotempo.writer import DatasetWriter

    base = DIR / f"{version}-{size[0]}x{size[1]}-{codec}"
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
def worker(args) -> None:
    import torch

    from robotempo import Mixture, Sampler, collate

    roots = [Path(r) for r in args.roots.split(",")]
    step = 1 / FPS
    delta = {key: [-step, 0.0] for key in CAMERAS}
    delta["observation.state"] = [-step, 0.0]
    delta["action"] = [k * step for k in range(50)]
    specs = [{"repo_id": r.name, "root": r, "speed_labels": False, "return_uint8": True} for r in roots]
    mix = Mixture(specs, delta_timestamps=delta)
    sampler = Sampler(mix, seed=0, rank=0, world_size=1)
    loader = torch.utils.data.DataLoader(
        mix, batch_size=BATCH, sampler=sampler, num_workers=WORKERS, collate_fn=collate,
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
    for _ in range(args.batches):
        batch = next(it)
    seconds = time.perf_counter() - t0
    stop.set()
    sampler_thread.join()
    assert batch[CAMERAS[0]].shape[:2] == (BATCH, 2)
    workers = [p for p in peaks.values() if p["rss"] > 0]
    emit(
        {
            "cache_size": args.cache_size,
            "max_size": mix.datasets[0]._video().cache.max_size,  # what each worker's cache grew to
            "samples_per_s": args.batches * BATCH / seconds,
            "worker_rss_mb": max(p["rss"] for p in workers) / 1e6,
            "worker_uss_mb": max(p["uss"] for p in workers) / 1e6,
        }
    )
    del it


def run(roots: list[Path], cache_size: str, warmup: int, batches: int) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env.pop("ROBOTEMPO_VIDEO_CACHE_SIZE", None)
    if cache_size != "default":
        env["ROBOTEMPO_VIDEO_CACHE_SIZE"] = cache_size
    cmd = [str(PYTHON), __file__, "--worker", "--roots", ",".join(map(str, roots)),
           "--cache-size", cache_size, "--warmup", str(warmup), "--batches", str(batches)]  # fmt: skip
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1800)
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith(RESULT_TAG)]
    if out.returncode != 0 or not lines:
        raise SystemExit(f"run with cache size {cache_size} failed:\n{out.stderr[-3000:]}")
    return json.loads(lines[-1][len(RESULT_TAG) :])


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
    ap.add_argument("--out", default=str(BENCH / "results"))
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--roots", help=argparse.SUPPRESS)
    ap.add_argument("--cache-size", help=argparse.SUPPRESS)
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
    rows = []
    for codec in codecs:
        roots = corpus(n, (h, w), codec, args.version)
        runs: dict[str, list[dict]] = {s: [] for s in sizes}
        for r in range(args.rounds):
            for s in sizes:
                runs[s].append(run(roots, s, warmup, batches))
                print(
                    f"{codec} round {r + 1}: cache {s}: {runs[s][-1]['samples_per_s']:.1f} samples/s",
                    flush=True,
                )
        for s in sizes:
            med = {k: float(np.median([x[k] for x in runs[s]])) for k in runs[s][0] if k != "cache_size"}
            rows.append({"codec": codec, "cache_size": s, **med, "runs": runs[s]})
    print(f"\n{n} {args.version} datasets x 3 cameras at {h}x{w}, {WORKERS} fork workers, batch {BATCH}, "
          f"medians of {args.rounds}")  # fmt: skip
    print(f"{'codec':6} {'cache':>8} {'max_size':>8} {'samples/s':>10} {'vs default':>10} {'worker RSS':>11} "
          f"{'worker USS':>11}")  # fmt: skip
    for row in rows:
        base = next(x for x in rows if x["codec"] == row["codec"] and x["cache_size"] == sizes[0])
        print(f"{row['codec']:6} {row['cache_size']:>8} {row['max_size']:8.0f} {row['samples_per_s']:10.1f} "
              f"{row['samples_per_s'] / base['samples_per_s']:9.2f}x {row['worker_rss_mb']:8.0f} MB "
              f"{row['worker_uss_mb']:8.0f} MB")  # fmt: skip
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    quick = "-quick" if args.quick else ""
    path = out / f"{dt.date.today()}-video-cache-{args.version}-{h}x{w}-{n}ds{quick}.json"
    record = {"version": args.version, "datasets": n, "size": [h, w], "workers": WORKERS, "batch": BATCH,
              "load": os.getloadavg(), "rows": rows}  # fmt: skip
    path.write_text(json.dumps(record, indent=1))
    print(f"saved {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
