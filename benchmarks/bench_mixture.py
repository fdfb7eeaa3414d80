"""P9: a Mixture of many datasets: open time, RSS after open, node PSS of a DataLoader pass vs its workers.

    .venv/bin/python benchmarks/bench_mixture.py            # 100 datasets x 50 episodes, 20 with a PNG camera
    .venv/bin/python benchmarks/bench_mixture.py --quick    # 10 datasets x 10 episodes, 2 with a PNG camera

Corpus (written once by `robotempo.synth` under DIR/p9-<scale>, reused): N datasets of E episodes (v3.0,
10 fps, state/action 14, ~60 frames per episode), every fifth with a 64x64 PNG camera; and ONE tabular
dataset of N x E episodes holding the same numeric frames (camera frames are never resident, so the one
dataset has none).

Figures, each in a fresh process (`--worker`):
- open: 100 `LeRobotDataset`s opened one after another (the sum of their open times) vs one `Mixture` of
  the same specs vs the one dataset. RSS after open is the growth over the process after imports; the
  target compares it with the numeric columns' bytes + one heavy-cache budget (`ROBOTEMPO_HEAVY_CACHE_MB`).
- pass: a shuffled DataLoader pass (batch 32, `delta_timestamps` state [-0.1, 0] + 50 actions) with 2 and
  4 workers under fork, spawn and forkserver; node PSS = main + workers from /proc/<pid>/smaps_rollup, the
  maximum over the pass. Compared: the Mixture; the same 100 datasets in a `ConcatDataset` with robotempo
  at commit `BEFORE` (per-dataset caches, columns pickled into each spawn worker), extracted with `git
  archive`; the one dataset; and an "empty" dataset of the same item shapes (the interpreter + torch cost of
  the workers, which no dataset can avoid). "dataset PSS" subtracts the empty run of the same start method
  and worker count.
- cache: random items of the camera datasets, no workers, `ROBOTEMPO_HEAVY_CACHE_MB=64`: bytes in the heavy
  (image row group) caches and RSS growth, Mixture (one process-wide budget) vs `BEFORE` (one per dataset).
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

import numpy as np
from harness import commit_src
from measure import FPS, RESULT_TAG, children, emit, pss_bytes, query, rss_bytes, settled_rss

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
BEFORE = "a8a131d"  # main before the Mixture work: one cache per dataset, columns pickled into workers
DIR = Path(os.environ.get("ROBOTEMPO_BENCH_DIR", "/tmp/robotempo-bench"))
PYTHON = Path(sys.executable)
CACHE_FIGURE_MB = 64  # heavy-cache budget of the cache figure: small enough that a short run fills it


# -- corpus -------------------------------------------------------------------------------------------------
def plan(quick: bool) -> dict:
    n, episodes = (10, 10) if quick else (100, 50)
    return {"n": n, "episodes": episodes, "length": 60.0, "dim": 14, "image": (64, 64), "camera_every": 5}


def _written(root: Path, fingerprint: str) -> bool:
    """`root` is complete and was written by this robotempo's synth and writer (else it is removed)."""
    import shutil

    done = root / "done"
    if done.exists() and done.read_text() == fingerprint:
        return True
    shutil.rmtree(root, ignore_errors=True)
    return False


def corpus(p: dict) -> tuple[list[Path], Path]:
    from corpora import synth_fingerprint

    from robotempo.synth import write_synthetic

    base = DIR / f"p9-{p['n']}x{p['episodes']}"
    fingerprint = synth_fingerprint()  # a new writer (e.g. its row groups) rewrites the corpus
    roots = []
    for i in range(p["n"]):
        root = base / f"ds{i:03d}"
        if not _written(root, fingerprint):
            camera = "image" if i % p["camera_every"] == 0 else None
            write_synthetic(
                root,
                version="v3.0",
                n_episodes=p["episodes"],
                n_tasks=3,
                camera=camera,
                image_size=p["image"],
                fps=FPS,
                seed=i,
                state_dim=p["dim"],
                action_dim=p["dim"],
                mean_length=p["length"],
            )
            open_once(root)
            (root / "done").write_text(fingerprint)
        roots.append(root)
    one = base / "one"
    if not _written(one, fingerprint):
        write_synthetic(
            one,
            version="v3.0",
            n_episodes=p["n"] * p["episodes"],
            n_tasks=3,
            camera=None,
            fps=FPS,
            seed=0,
            state_dim=p["dim"],
            action_dim=p["dim"],
            mean_length=p["length"],
        )
        open_once(one)
        (one / "done").write_text(fingerprint)
    return roots, one


def open_once(root: Path) -> None:
    """Open once so that the speed percentile file exists (its computation is P3's business, not P9's)."""
    from robotempo import LeRobotDataset

    LeRobotDataset(root.name, root=root)


def before_src(commit: str = BEFORE) -> Path:
    return commit_src(commit, DIR)


# -- worker side (fresh process per figure) ------------------------------------------------------------
class Empty:
    """A dataset of the benchmark's item shapes and no data: the workers' cost without any dataset."""

    def __init__(self, n: int, dim: int):
        self.n, self.dim = n, dim

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict:
        import torch

        return {
            "index": torch.tensor(i),
            "action": torch.zeros(50, self.dim),
            "state": torch.zeros(2, self.dim),
        }


def collate_common(items: list[dict]) -> dict:
    """torch's default collate over the keys every item has: a ConcatDataset of datasets with different
    cameras cannot collate otherwise (the Mixture's schema exists for this)."""
    import torch

    keys = set(items[0]).intersection(*items[1:])
    return torch.utils.data.default_collate([{k: it[k] for k in keys} for it in items])


def specs(roots: list[str]) -> list[dict]:
    return [{"repo_id": Path(r).name, "root": r} for r in roots]


def build(kind: str, a: dict):
    """The dataset of a figure, and its collate_fn."""
    import torch

    import robotempo

    if kind == "empty":
        return Empty(a["frames"], a["dim"]), None
    if kind == "one":
        return robotempo.LeRobotDataset("one", root=a["one"], delta_timestamps=query()), robotempo.collate
    if kind == "mixture":
        return robotempo.Mixture(specs(a["roots"]), delta_timestamps=query()), robotempo.collate
    datasets = [
        robotempo.LeRobotDataset(s["repo_id"], root=s["root"], delta_timestamps=query())
        for s in specs(a["roots"])
    ]
    return torch.utils.data.ConcatDataset(datasets), collate_common


def columns_bytes(ds) -> int:
    parts = getattr(ds, "datasets", [ds])
    return sum(int(x.frames.numeric_nbytes) for x in parts if hasattr(x, "frames"))


def worker_open(a: dict) -> dict:
    import torch  # noqa: F401  imports before the baseline, like a training script

    import robotempo

    base = settled_rss()
    t0 = time.perf_counter()
    opens = []
    if a["kind"] == "separate":
        datasets = []
        for s in specs(a["roots"]):
            t = time.perf_counter()
            datasets.append(robotempo.LeRobotDataset(s["repo_id"], root=s["root"], delta_timestamps=query()))
            opens.append(time.perf_counter() - t)

        class Holder:
            pass

        ds = Holder()
        ds.datasets = datasets
    else:
        ds, _ = build(a["kind"], a)
    wall = time.perf_counter() - t0
    return {
        "open_s": wall,
        "sum_single_opens_s": sum(opens) or wall,
        "rss_growth": settled_rss() - base,
        "columns_bytes": columns_bytes(ds),
        "robotempo": robotempo.__file__,
    }


def node_memory() -> dict:
    """PSS and RSS summed over this process and all its descendants: forkserver workers are children of the
    fork server, not of this process."""
    pids, todo = [], [os.getpid()]
    while todo:
        pid = todo.pop()
        pids.append(pid)
        try:
            todo += children(pid)
        except OSError:
            pass
    out = {"pss": 0, "rss": 0, "processes": len(pids)}
    for pid in pids:
        try:
            out["pss"] += pss_bytes(pid)
            out["rss"] += rss_bytes(pid)
        except (OSError, KeyError):
            pass
    return out


def worker_pass(a: dict) -> dict:
    import torch

    import robotempo

    ds, collate_fn = build(a["kind"], a)
    g = torch.Generator().manual_seed(0)
    loader = torch.utils.data.DataLoader(
        ds,
        batch_size=32,
        shuffle=True,
        generator=g,
        num_workers=a["workers"],
        multiprocessing_context=a["method"],
        collate_fn=collate_fn,
    )
    peak, samples = {"pss": 0, "rss": 0}, 0
    t0 = time.perf_counter()
    for b, batch in enumerate(loader):
        samples += len(batch["index"])
        if b % 5 == 4:
            m = node_memory()
            peak = {k: max(peak[k], m[k]) for k in peak} | {"processes": m["processes"]}
        if b + 1 >= a["batches"]:
            break
    wall = time.perf_counter() - t0
    return {
        **{f"{k}_max": v for k, v in peak.items()},
        "samples_per_s": samples / wall,
        "robotempo": robotempo.__file__,
    }


def worker_cache(a: dict) -> dict:
    import torch  # noqa: F401

    import robotempo

    ds, _ = build(a["kind"], a)
    parts = ds.datasets
    camera = [i for i, x in enumerate(parts) if x.camera_keys]
    offsets = np.concatenate([[0], np.cumsum([len(x) for x in parts])])
    rng = np.random.default_rng(0)
    base = settled_rss()
    t0 = time.perf_counter()
    for _ in range(a["samples"]):
        d = int(rng.choice(camera))
        i = int(rng.integers(len(parts[d])))
        ds[int(offsets[d]) + i] if a["kind"] == "mixture" else parts[d][i]
    wall = time.perf_counter() - t0
    caches = {id(x.frames._heavy_cache): x.frames._heavy_cache.nbytes for x in parts}
    return {
        "heavy_cache_bytes": sum(caches.values()),
        "caches": len(caches),
        "rss_growth": settled_rss() - base,
        "items_per_s": a["samples"] / wall,
        "robotempo": robotempo.__file__,
    }


METHODS = ("fork", "spawn", "forkserver")
FIGURES = ["open", "pass", "cache"]
WORKERS = {"open": worker_open, "pass": worker_pass, "cache": worker_cache}


# -- driver ------------------------------------------------------------------------------------------
def run(figure: str, args: dict, before: bool | str = False, timeout: float = 1800) -> dict:
    """One figure in a fresh process; `before`: True for `BEFORE`'s code, a commit for that commit's."""
    commit = (BEFORE if before is True else before) or None
    env = dict(os.environ, PYTHONPATH=str(before_src(commit) if commit else REPO / "src"))
    if figure == "cache":
        env["ROBOTEMPO_HEAVY_CACHE_MB"] = str(CACHE_FIGURE_MB)
    cmd = [str(PYTHON), str(Path(__file__)), "--worker", figure, json.dumps(args)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout, cwd=str(BENCH))
    for line in proc.stdout.splitlines():
        if line.startswith(RESULT_TAG):
            result = json.loads(line[len(RESULT_TAG) :])
            expected = "robotempo-" + commit if commit else str(REPO / "src")
            assert expected in result["robotempo"], (expected, result["robotempo"])
            return result
    raise RuntimeError(f"{figure} {args.get('kind')} failed:\n{proc.stderr[-3000:]}")


def figure_open(res: dict, common: dict, budget: float, rounds: int) -> None:
    """Open figures, `rounds` interleaved rounds (fresh process each); medians."""
    kinds = ("separate", "mixture", "one")
    runs = {k: [] for k in kinds}
    for _ in range(rounds):
        for k in kinds:
            runs[k].append(run("open", {**common, "kind": k}))
    o = res["open"] = {}
    print(
        f"\n{'open':10} {'time s':>8} {'RSS growth MB':>14} {'columns MB':>11} {'RSS/(columns+budget)':>21}"
    )
    for k in kinds:
        r = {
            key: statistics.median(x[key] for x in runs[k])
            for key in ("open_s", "sum_single_opens_s", "rss_growth")
        }
        r |= {"columns_bytes": runs[k][0]["columns_bytes"], "rounds": runs[k]}
        r["ratio_to_columns_plus_budget"] = r["rss_growth"] / (r["columns_bytes"] + budget)
        r["ratio_to_columns"] = r["rss_growth"] / r["columns_bytes"]
        o[k] = r
        print(
            f"{k:10} {r['open_s']:8.2f} {mb(r['rss_growth']):>14} {mb(r['columns_bytes']):>11} "
            f"{r['ratio_to_columns_plus_budget']:21.2f}"
        )
    res["open_ratio"] = o["mixture"]["open_s"] / o["separate"]["sum_single_opens_s"]
    print(
        f"mixture open / sum of single opens (medians of {rounds}): {res['open_ratio']:.2f} (target <= 1.2)"
    )


def mb(x: float) -> str:
    return f"{x / 2**20:,.1f}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="10 datasets x 10 episodes (about 10 minutes)")
    ap.add_argument("--batches", type=int, default=60, help="batches per DataLoader pass")
    ap.add_argument("--figures", type=lambda x: x.split(","), default=list(FIGURES), help="open,pass,cache")
    ap.add_argument(
        "--methods", type=lambda x: tuple(x.split(",")), default=METHODS, help="fork,spawn,forkserver"
    )
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds of the open figure (median)")
    ap.add_argument("--against", help="pass figure: also run the mixture with this commit's code (A/B)")
    ap.add_argument("--tag", default="", help="appended to the results file's name")
    ap.add_argument("--worker", nargs=2, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.worker:
        emit(WORKERS[a.worker[0]](json.loads(a.worker[1])))
        return 0
    p = plan(a.quick)
    t0 = time.perf_counter()
    roots, one = corpus(p)
    print(f"corpus ready in {time.perf_counter() - t0:.0f} s: {len(roots)} datasets + one of the same frames")
    common = {"roots": [str(r) for r in roots], "one": str(one), "dim": p["dim"]}
    budget = float(os.environ.get("ROBOTEMPO_HEAVY_CACHE_MB", 256)) * 2**20
    res: dict = {"plan": p, "date": dt.date.today().isoformat(), "before": BEFORE, "cache_budget": budget}

    if "open" in a.figures:
        figure_open(res, common, budget, a.rounds)
    if "pass" in a.figures:
        n_frames = int(p["n"] * p["episodes"] * p["length"])
        res["pass"] = []
        for method in a.methods:
            for workers in (2, 4):
                for kind, before in (
                    ("empty", False),
                    ("mixture", False),
                    *([("mixture", a.against)] if a.against else []),
                    ("separate", True),
                    ("one", False),
                ):
                    r = run(
                        "pass",
                        {
                            **common,
                            "kind": kind,
                            "method": method,
                            "workers": workers,
                            "batches": a.batches,
                            "frames": n_frames,
                        },
                    )
                    label = f"{kind}@{BEFORE if before is True else before}" if before else kind
                    r.update(kind=label, method=method, workers=workers)
                    res["pass"].append(r)
                    print(
                        f"pass {method:5} {workers} workers {r['kind']:17} node PSS {mb(r['pss_max']):>9} MB "
                        f"({r['samples_per_s']:.0f} samples/s)"
                    )
        print(
            f"\n{'node PSS (MB)':24} "
            + " ".join(f"{m + ' 2w':>12} {m + ' 4w':>12} {'4w/2w':>6}" for m in a.methods)
        )
        table = {(r["kind"], r["method"], r["workers"]): r["pss_max"] for r in res["pass"]}
        res["pss_ratios"] = {}
        mixtures = ["mixture"] + ([f"mixture@{a.against}"] if a.against else [])
        for kind in (*mixtures, "separate@" + BEFORE, "one", "empty"):
            cells, ratios = [], {}
            for method in a.methods:
                two, four = table[(kind, method, 2)], table[(kind, method, 4)]
                e2, e4 = table[("empty", method, 2)], table[("empty", method, 4)]
                ratios[method] = {"node": four / two, "dataset": (four - e4) / max(two - e2, 1)}
                cells += [mb(two), mb(four), f"{four / two:.2f}"]
            res["pss_ratios"][kind] = ratios
            print(
                f"{kind:24} " + " ".join(f"{c:>12}" if i % 3 != 2 else f"{c:>6}" for i, c in enumerate(cells))
            )
        print(
            "dataset PSS (node minus the empty run) 4w/2w: "
            + ", ".join(
                f"{k} " + " ".join(f"{m} {v[m]['dataset']:.2f}" for m in a.methods)
                for k, v in res["pss_ratios"].items()
                if k != "empty"
            )
        )

    if "cache" in a.figures:
        samples = 300 if a.quick else 3000
        res["cache"] = {
            "mixture": run("cache", {**common, "kind": "mixture", "samples": samples}),
            "separate@" + BEFORE: run(
                "cache", {**common, "kind": "separate", "samples": samples}, before=True
            ),
        }
        for k, r in res["cache"].items():
            print(
                f"cache {k:17} {r['caches']:3} caches hold {mb(r['heavy_cache_bytes']):>8} MB, "
                f"RSS +{mb(r['rss_growth'])} MB, {r['items_per_s']:.0f} items/s"
            )

    tag = ("quick" if a.quick else "full") + ("" if a.figures == FIGURES else "-" + "-".join(a.figures))
    tag += "" if a.methods == METHODS else "-" + "-".join(a.methods)
    tag += "-" + a.tag if a.tag else ""
    out = BENCH / "results" / f"{res['date']}-P9-{tag}.json"
    out.write_text(json.dumps(res, indent=1))
    print(f"\nsaved {out.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
