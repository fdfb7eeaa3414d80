"""P7 (sampler state and speed at 10^9 samples) and P11 (locality-aware shuffle vs full random).

    .venv/bin/python benchmarks/bench_sampler.py p7                  # ~1 min
    .venv/bin/python benchmarks/bench_sampler.py p11                 # corpora written once (~3 min), ~8 min
    .venv/bin/python benchmarks/bench_sampler.py p11 --quick         # smaller corpora, fewer batches

P7: `Sampler` over 10^9 samples (a sized stand-in: the sampler only reads lengths), for a plain dataset, a
3-dataset weighted mixture and a 1,000-dataset weighted mixture, `shuffle=True` and `"locality"`: the
state_dict's JSON bytes, the pickled sampler's bytes, the peak of Python + numpy allocations (tracemalloc)
while iterating, and indices/s through `for i in sampler` (median of 3 runs of 2,000,000 indices; per
wall second and per CPU second of the process, since the machine is shared).
Targets: state <= 1 MB, >= 1,000,000 indices/s.

P11: DataLoader (batch 64, 2 workers, `robotempo.collate`) over a PNG-in-parquet corpus (96x96, one row group
per episode) read through an image cache smaller than the corpus (`heavy_cache_mb`), and over an H.264 video
corpus (96x96), each with `Sampler(shuffle=True)` and with `shuffle="locality"` at a few (block, window)
settings. Every configuration runs in a fresh process, in rotated order per repetition; figures are medians.
Reported beside samples/s: distinct episodes per batch (shuffle quality; full random is close to 64).
Target: locality >= 2x full random's samples/s on the PNG corpus.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import pickle
import statistics
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np

BENCH = Path(__file__).resolve().parent
RESULTS = BENCH / "results"
DEFAULT_DIR = Path(os.environ.get("ROBOTEMPO_BENCH_DIR", "/tmp/robotempo-bench")) / "sampler"
BATCH = 64
LOCALITY = [(32, 2048), (32, 512), (64, 256)]  # (block_size, window) measured; (32, 512) is the default


# -- P7 ---------------------------------------------------------------------------------------------------
class Sized:
    def __init__(self, n: int):
        self.n = n

    def __len__(self) -> int:
        return self.n


class Sources(Sized):
    """The attributes a Sampler reads from a Mixture, for 10^9 samples without 10^9 frames on disk."""

    def __init__(self, lengths: list[int], weights: list[float]):
        super().__init__(sum(lengths))
        self.dataset_lengths = lengths
        self.offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        self.weights = np.asarray(weights, dtype=np.float64) / sum(weights)


def p7_cases() -> dict:
    rng = np.random.default_rng(0)
    many = rng.integers(500_000, 1_500_000, size=1000)
    many = (many * (10**9 / many.sum())).astype(np.int64)
    many[-1] += 10**9 - many.sum()
    return {
        "dataset": Sized(10**9),
        "mixture-3": Sources([2 * 10**8, 3 * 10**8, 5 * 10**8], [0.5, 0.3, 0.2]),
        "mixture-1000": Sources(many.tolist(), rng.uniform(0.1, 1.0, size=1000).tolist()),
    }


def p7_one(name: str, shuffle, n_indices: int) -> dict:
    from robotempo import Sampler

    source = p7_cases()[name]
    tracemalloc.start()
    sampler = Sampler(source, seed=0, shuffle=shuffle, rank=3, world_size=8)
    sampler.set_epoch(5)
    it = iter(sampler)
    for _ in range(100_000):
        next(it)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    rates, cpu_rates = [], []
    for rep in range(3):
        sampler.load_state_dict({**sampler.state_dict(), "position": 10**6 * rep})
        t0, c0 = time.perf_counter(), time.process_time()
        count = 0
        for _ in sampler:
            count += 1
            if count == n_indices:
                break
        rates.append(count / (time.perf_counter() - t0))
        cpu_rates.append(count / (time.process_time() - c0))
    sampler.dataset = Sized(0)  # the stand-in dataset is not the sampler's own state
    return {
        "case": name,
        "shuffle": shuffle,
        "samples": len(source),
        "state_json_bytes": len(json.dumps(sampler.state_dict())),
        "pickled_bytes": len(pickle.dumps(sampler)),
        "tracemalloc_peak_bytes": peak,
        "indices_per_s": statistics.median(rates),
        "indices_per_s_runs": rates,
        "indices_per_cpu_s": statistics.median(cpu_rates),
    }


def run_p7(args) -> dict:
    rows = []
    for name in p7_cases():
        for shuffle in (True, "locality"):
            out = _fresh(["p7-one", name, json.dumps(shuffle), str(args.indices)])
            rows.append(out)
            print(
                f"{name:13s} shuffle={str(shuffle):9s} state {out['state_json_bytes']:>6d} B  pickled "
                f"{out['pickled_bytes']:>6d} B  peak alloc {out['tracemalloc_peak_bytes'] / 1e6:5.2f} MB  "
                f"{out['indices_per_s'] / 1e6:5.2f} M indices/s "
                f"({out['indices_per_cpu_s'] / 1e6:5.2f} M per CPU s)"
            )
    return {"p7": rows}


# -- P11 --------------------------------------------------------------------------------------------------
def corpora(base: Path, quick: bool) -> dict[str, Path]:
    from robotempo import LeRobotDataset
    from robotempo.synth import write_synthetic

    episodes = 40 if quick else 200
    out = {}
    for name, camera in (("png", "image"), ("video", "video")):
        root = base / f"{name}-{episodes}"
        if not (root / ".done").exists():
            tmp = base / f".{name}-{episodes}.tmp"
            if tmp.exists():
                import shutil

                shutil.rmtree(tmp)
            write_synthetic(
                tmp,
                version="v3.0",
                n_episodes=episodes,
                n_tasks=8,
                camera=camera,
                image_size=(96, 96),
                seed=0,
            )
            LeRobotDataset("bench", root=tmp)  # speed percentile file written once, outside the timing
            tmp.rename(root)
            (root / ".done").write_text("ok")
        out[name] = root
    return out


def corpus_bytes(root: Path, suffix: str) -> int:
    return sum(p.stat().st_size for p in root.rglob(f"*{suffix}") if p.is_file() and "meta" not in p.parts)


def p11_one(root: str, shuffle, block: int, window: int, batches: int, cache_mb: float) -> dict:
    import torch

    from robotempo import LeRobotDataset, Sampler, collate

    ds = LeRobotDataset("bench", root=root, heavy_cache_mb=cache_mb)
    sampler = Sampler(ds, seed=0, shuffle=shuffle, rank=0, world_size=1, block_size=block, window=window)
    sampler.set_epoch(1)
    loader = torch.utils.data.DataLoader(
        ds,
        batch_size=BATCH,
        sampler=sampler,
        num_workers=2,
        collate_fn=collate,
        multiprocessing_context="fork",
    )
    warmup = 4
    it = iter(loader)
    distinct = []
    for b in range(warmup + batches):
        if b == warmup:
            t0, c0 = time.perf_counter(), _tree_cpu_s()
        batch = next(it)
        distinct.append(len(set(batch["episode_index"].tolist())))
    wall, cpu = time.perf_counter() - t0, _tree_cpu_s() - c0
    return {
        "samples_per_s": batches * BATCH / wall,
        "samples_per_cpu_s": batches * BATCH / cpu,
        "distinct_episodes_per_batch": float(np.mean(distinct)),
        "batches": batches,
        "wall_s": wall,
        "cpu_s": cpu,
    }


def _tree_cpu_s() -> float:
    """CPU seconds of this process and its live children (the DataLoader workers): robust to machine load."""
    import psutil

    me = psutil.Process()
    return sum(sum(p.cpu_times()[:2]) for p in [me, *me.children(recursive=True)])


def run_p11(args) -> dict:
    base = Path(args.dir)
    base.mkdir(parents=True, exist_ok=True)
    roots = corpora(base, args.quick)
    batches = 12 if args.quick else 40
    configs = [("full", True, 32, 0)] + [(f"locality b{b} w{w}", "locality", b, w) for b, w in LOCALITY]
    info = {
        "png_corpus_mb": corpus_bytes(roots["png"], ".parquet") / 1e6,
        "video_corpus_mb": corpus_bytes(roots["video"], ".mp4") / 1e6,
        "image_cache_mb": args.cache_mb,
    }
    print(f"corpora: {info}")
    runs: dict[tuple[str, str], list[dict]] = {}
    for rep in range(args.reps):
        order = configs[rep % len(configs) :] + configs[: rep % len(configs)]
        for corpus in args.corpora.split(","):
            for label, shuffle, block, window in order:
                cmd = ["p11-one", str(roots[corpus]), json.dumps(shuffle), str(block), str(window)]
                out = _fresh(cmd + [str(batches), str(args.cache_mb)])
                runs.setdefault((corpus, label), []).append(out)
                print(
                    f"rep {rep} {corpus:5s} {label:22s} {out['samples_per_s']:8.1f} samples/s "
                    f"{out['samples_per_cpu_s']:8.1f} per CPU s  "
                    f"{out['distinct_episodes_per_batch']:5.1f} episodes/batch"
                )
    rows = []
    for (corpus, label), outs in runs.items():
        full = statistics.median(r["samples_per_s"] for r in runs[(corpus, "full")])
        full_cpu = statistics.median(r["samples_per_cpu_s"] for r in runs[(corpus, "full")])
        rate = statistics.median(r["samples_per_s"] for r in outs)
        rate_cpu = statistics.median(r["samples_per_cpu_s"] for r in outs)
        rows.append(
            {
                "corpus": corpus,
                "config": label,
                "samples_per_s": rate,
                "samples_per_s_runs": [r["samples_per_s"] for r in outs],
                "vs_full_random": rate / full,
                "samples_per_cpu_s": rate_cpu,
                "vs_full_random_cpu": rate_cpu / full_cpu,
                "distinct_episodes_per_batch": statistics.median(
                    r["distinct_episodes_per_batch"] for r in outs
                ),
            }
        )
    print(
        "\n| corpus | order | samples/s | vs full random | samples/CPU-s | vs full random | "
        f"distinct episodes / batch of {BATCH} |"
    )
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['corpus']} | {r['config']} | {r['samples_per_s']:.0f} | {r['vs_full_random']:.2f}x | "
            f"{r['samples_per_cpu_s']:.0f} | {r['vs_full_random_cpu']:.2f}x | "
            f"{r['distinct_episodes_per_batch']:.1f} |"
        )
    return {"p11": rows, "p11_info": {**info, "batches": batches, "reps": args.reps, "quick": args.quick}}


# -- plumbing ---------------------------------------------------------------------------------------------
def _fresh(argv: list[str]) -> dict:
    """Run one measurement in a fresh interpreter; it prints one JSON line last."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, __file__, *argv], capture_output=True, text=True, env=env, timeout=1800
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{argv} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def save(result: dict, tag: str) -> Path:
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{dt.date.today().isoformat()}-sampler-{tag}.json"
    meta = {"date": dt.datetime.now().isoformat(timespec="seconds"), "loadavg": os.getloadavg()}
    path.write_text(json.dumps({**meta, **result}, indent=1))
    print(f"saved {path}")
    return path


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="cmd", required=True)
    p7 = sub.add_parser("p7")
    p7.add_argument("--indices", type=int, default=2_000_000)
    p11 = sub.add_parser("p11")
    p11.add_argument("--quick", action="store_true")
    p11.add_argument("--reps", type=int, default=3)
    p11.add_argument("--cache-mb", type=float, default=64.0, help="image cache per process (heavy_cache_mb)")
    p11.add_argument("--dir", default=str(DEFAULT_DIR))
    p11.add_argument("--corpora", default="png,video", help="comma-separated subset of png,video")
    one = sub.add_parser("p7-one")
    one.add_argument("argv", nargs=3)
    one11 = sub.add_parser("p11-one")
    one11.add_argument("argv", nargs=6)
    args = parser.parse_args()
    if args.cmd == "p7-one":
        name, shuffle, n = args.argv
        print(json.dumps(p7_one(name, json.loads(shuffle), int(n))))
    elif args.cmd == "p11-one":
        root, shuffle, block, window, batches, cache = args.argv
        print(
            json.dumps(
                p11_one(root, json.loads(shuffle), int(block), int(window), int(batches), float(cache))
            )
        )
    elif args.cmd == "p7":
        save(run_p7(args), "p7")
    else:
        subset = "" if args.corpora == "png,video" else "-" + args.corpora.replace(",", "-")
        save(run_p11(args), ("p11-quick" if args.quick else "p11") + subset)


if __name__ == "__main__":
    main()
