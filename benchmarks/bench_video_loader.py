"""P5: random-access training reads with one video camera (96x96, H.264 and AV1), DataLoader with 2 workers.

    .venv/bin/python benchmarks/bench_video_loader.py run                 # full: corpus V (x1) + peer-written
    .venv/bin/python benchmarks/bench_video_loader.py run --quick         # x0.05 V264/Vav1, 1 rep (~4 min)
    .venv/bin/python benchmarks/bench_video_loader.py profile --corpus V264 --cam-deltas 1   # where time goes
    .venv/bin/python benchmarks/bench_video_loader.py report benchmarks/results/<date>-p5-video-loader.json

Systems (every one a fresh process, all in the same run, interleaved: rep r runs every system once, in an order
rotated per rep, so the machine's load falls on all of them alike):

  robotempo          `robotempo.LeRobotDataset(..., speed_labels=False)`, collate_fn=`robotempo.collate`
  robotempo-default  the same, collate_fn=torch's `default_collate` (items split out of the batch, restacked)
  lerobot-torchcodec LeRobot 0.6.1 `LeRobotDataset(..., video_backend="torchcodec")`, default_collate
  lerobot-pyav       the same, `video_backend="pyav"`
  opentau-torchcodec OpenTau 0.14.0 (a hard-linked copy of the corpus: it writes its speed file), default_collate

Query: delta_timestamps {"observation.state": [-0.1, 0], "action": [i/10 for i in range(50)], camera: [-0.1, 0]}
("cam-deltas") and the same without the camera key (current frame only). Index order: the same for every system,
a seeded permutation of the dataset positions (repeated permutations when the dataset is shorter than the run),
saved as .npy and passed as the DataLoader's sampler; batch 64; `warmup` batches untimed (worker start-up, first
fills), then `batches` timed. Context: the same with num_workers=0 (one process).

Correctness, cheaply: every system saves its first 2 warm-up batches (index, camera, state, action) in rep 0;
robotempo's are compared with every peer's (max abs difference, same indices asserted).

Corpora: V264 / Vav1 (robotempo's writer, v3.0, 1000 episodes x ~150 frames, 10 fps, one MP4 per corpus) and
the LeRobot-written /tmp/peer_data/lr_video_h264 / lr_video (30 episodes, 30 fps, several MP4 files).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(BENCH / "peer_side"))
sys.path.insert(0, str(BENCH))

from video_loader_peer import (  # noqa: E402  (stdlib + numpy at import; torch inside functions)
    RESULT_TAG,
    benchmark_query,
    camera_keys,
    emit,
    loadavg,
    measure_loader,
    read_info,
    video_keys,
)

PEERS = Path(os.environ.get("ROBOTEMPO_PEERS", "/tmp/peers"))
BENCH_DIR = Path(os.environ.get("ROBOTEMPO_BENCH_DIR", "/tmp/robotempo-bench"))
SCRATCH = BENCH_DIR / "p5"
PEER_DATA = Path("/tmp/peer_data")
RESULTS = BENCH / "results"
ROBOTEMPO_PY = REPO / ".venv" / "bin" / "python"
SYSTEMS = ["robotempo", "robotempo-default", "lerobot-torchcodec", "lerobot-pyav", "opentau-torchcodec"]
LEROBOT = ["lerobot-torchcodec", "lerobot-pyav"]
TARGET = 1.5


# ------------------------------------------------------------------------------------------------------------
# robotempo's side (runs in .venv)
# ------------------------------------------------------------------------------------------------------------
def robotempo_worker(a) -> int:
    import traceback

    try:
        import torch

        if a.torch_threads:
            torch.set_num_threads(a.torch_threads)
        if a.sharing_strategy:  # profiling experiments only: how tensors cross from the workers
            torch.multiprocessing.set_sharing_strategy(a.sharing_strategy)
        from robotempo import LeRobotDataset, collate

        info = read_info(a.root)
        deltas = benchmark_query(info, bool(a.cam_deltas))
        t = time.perf_counter()
        ds = LeRobotDataset(
            f"bench/{Path(a.root).name}", root=a.root, delta_timestamps=deltas, speed_labels=False,
            return_uint8=a.return_uint8,  # profiling experiments only (not the P5 item contract)
        )  # fmt: skip
        open_s = time.perf_counter() - t
        indices = np.load(a.indices)
        if indices.max() >= len(ds):
            raise ValueError(f"index {indices.max()} out of range for len {len(ds)}")
        fn = collate if a.collate == "robotempo" else torch.utils.data.default_collate
        if a.cprofile:
            _install_worker_profiler(a.cprofile)
        r = measure_loader(
            ds, fn, indices, batch_size=a.batch_size, workers=a.workers, warmup=a.warmup, batches=a.batches,
            budget_s=a.budget_s, dump=a.dump, dump_keys=tuple(camera_keys(info)) + ("observation.state", "action"),
        )  # fmt: skip
        import robotempo

        emit({"lib": "robotempo", "collate": a.collate, "version": robotempo.__version__, "open_s": open_s,
              "len": len(ds), "torch_threads": torch.get_num_threads(), **r})  # fmt: skip
    except Exception as e:
        emit({"error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc(limit=8)})
        return 1
    return 0


def _install_worker_profiler(out_prefix: str) -> None:
    """cProfile every `__getitems__` call in each DataLoader worker; each worker dumps its stats on exit."""
    import cProfile

    from robotempo.dataset import LeRobotDataset

    original = LeRobotDataset.__getitems__
    state = {}

    def profiled(self, indices):
        pid = os.getpid()
        if pid not in state:
            prof = cProfile.Profile()
            state[pid] = prof
        prof = state[pid]
        prof.enable()
        try:
            return original(self, indices)
        finally:
            prof.disable()
            # DataLoader workers leave through os._exit (no atexit): dump every 5 calls instead
            prof.calls = getattr(prof, "calls", 0) + 1
            if prof.calls % 5 == 0:
                prof.dump_stats(f"{out_prefix}.{pid}.prof")

    LeRobotDataset.__getitems__ = profiled  # workers are forked: they see the patched class


# ------------------------------------------------------------------------------------------------------------
# the orchestrator (runs in .venv, starts every measurement as a fresh process)
# ------------------------------------------------------------------------------------------------------------
def corpora(quick: bool) -> dict[str, Path]:
    scale = "x0.05" if quick else "x1"
    out = {
        "V264": BENCH_DIR / scale / "V264",
        "Vav1": BENCH_DIR / scale / "Vav1",
        "lr_video_h264": PEER_DATA / "lr_video_h264",
        "lr_video": PEER_DATA / "lr_video",
    }
    for name in ("V264", "Vav1"):
        if not (out[name] / "meta" / "info.json").exists():
            print(f"{out[name]} missing: writing it (robotempo.synth, seed 0)", flush=True)
            cmd = [str(ROBOTEMPO_PY), str(BENCH / "corpora.py"), "--scale", scale[1:], "--only", name]
            subprocess.run(cmd, check=True)
    return out


def codec_of(root: Path) -> str:
    info = read_info(root)
    return info["features"][video_keys(info)[0]]["info"]["video.codec"]


def make_indices(root: Path, n_samples: int, seed: int) -> Path:
    n = int(read_info(root)["total_frames"])
    rng = np.random.default_rng(seed)
    parts, have = [], 0
    while have < n_samples:
        parts.append(rng.permutation(n))
        have += n
    path = SCRATCH / f"indices-{root.name}-n{n}-s{seed}-{n_samples}.npy"
    np.save(path, np.concatenate(parts)[:n_samples].astype(np.int64))
    return path


def opentau_copy(root: Path) -> Path:
    """A copy OpenTau may write into: meta/ copied, data and videos hard-linked (benchmarks/corpora.py)."""
    from corpora import copy_for_opening

    dst = SCRATCH / "opentau_copies" / root.parent.name / root.name
    if not (dst / "meta" / "info.json").exists() or read_info(dst) != read_info(root):
        dst.parent.mkdir(parents=True, exist_ok=True)
        copy_for_opening(root, dst)
    return dst


def command(system: str, root: Path, cam_deltas: int, idx: Path, workers: int, plan: dict, dump: Path | None):
    common = ["--root", str(root), "--cam-deltas", str(cam_deltas), "--indices", str(idx), "--workers",
              str(workers), "--warmup", str(plan["warmup"]), "--batches", str(plan["batches"]),
              "--budget-s", str(plan["budget_s"])]  # fmt: skip
    if workers == 0:
        # One process: torch's intra-op pool (2 threads) spin-waits against the machine's other load and made
        # the same run vary 7x (178-1247 samples/s); DataLoader workers run with 1 thread anyway.
        common += ["--torch-threads", "1"]
    if dump:
        common += ["--dump", str(dump)]
    if system.startswith("robotempo"):
        coll = "robotempo" if system == "robotempo" else "default"
        return [str(ROBOTEMPO_PY), str(Path(__file__).resolve()), "worker", "--collate", coll, *common], {}
    lib, backend = system.split("-")
    venv = "venv" if lib == "lerobot" else "venv_tau"
    env_script = PEERS / ("env_lerobot.sh" if lib == "lerobot" else "env_opentau.sh")
    hf_home = SCRATCH / f"hf_home_{lib}"  # kept between runs: the Arrow cache is built by the first open only
    if lib == "opentau":
        common[1] = str(opentau_copy(root))
    argv = [str(PEERS / venv / "bin/python"), str(BENCH / "peer_side/video_loader_peer.py"), "--lib", lib,
            "--backend", backend, *common]  # fmt: skip
    shell = f". {env_script}; export HF_HOME={hf_home}; exec " + " ".join(argv)
    return ["bash", "-c", shell], {}


def run_one(cmd: list[str], timeout: float) -> dict:
    t = time.perf_counter()
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timeout after {timeout} s"}
    lines = [line for line in p.stdout.splitlines() if line.startswith(RESULT_TAG)]
    if not lines:
        return {"error": f"no result (exit {p.returncode})", "stderr": p.stderr[-3000:]}
    r = json.loads(lines[-1][len(RESULT_TAG) :])
    r["process_s"] = time.perf_counter() - t
    return r


def plan_for(system: str, workers: int, quick: bool) -> dict:
    """Batches per run. OpenTau reopens (and scans) the MP4 on every item: it gets a time budget instead."""
    if quick:
        return {"warmup": 2, "batches": 10, "budget_s": 8.0}
    if system.startswith("opentau"):
        return {"warmup": 1, "batches": 60, "budget_s": 20.0 if workers else 12.0}
    if workers == 0:
        return {"warmup": 2, "batches": 20, "budget_s": 30.0}
    return {"warmup": 5, "batches": 60, "budget_s": 60.0}


def cmd_run(a) -> int:
    SCRATCH.mkdir(parents=True, exist_ok=True)
    roots = corpora(a.quick)
    wanted = a.corpora or ("V264,Vav1" if a.quick else "")
    if wanted:
        roots = {k: v for k, v in roots.items() if k in wanted.split(",")}
    systems = a.systems.split(",") if a.systems else SYSTEMS
    worker_counts = [int(w) for w in (a.workers or ("2" if a.quick else "2,0")).split(",")]
    reps = a.reps if a.reps else (1 if a.quick else 3)
    date = dt.date.today().isoformat()
    out_json = Path(a.out) if a.out else RESULTS / f"{date}-p5-video-loader{'-quick' if a.quick else ''}.json"
    dump_dir = SCRATCH / "dumps"
    shutil.rmtree(dump_dir, ignore_errors=True)
    dump_dir.mkdir(parents=True)
    max_samples = max((p["warmup"] + p["batches"]) * a.batch_size for s in systems for w in worker_counts
                      for p in [plan_for(s, w, a.quick)])  # fmt: skip
    idx = {name: make_indices(root, max_samples, a.seed) for name, root in roots.items()}
    jobs = []  # (rep, corpus, cam_deltas, workers, system)
    for rep in range(reps):
        for name in roots:
            for cam in (1, 0):
                for workers in worker_counts:
                    k = (rep + len(jobs)) % len(systems)
                    for system in systems[k:] + systems[:k]:  # rotate the order
                        jobs.append((rep, name, cam, workers, system))
    records = []
    started = time.time()
    print(f"{len(jobs)} runs; load {loadavg()}", flush=True)
    for j, (rep, name, cam, workers, system) in enumerate(jobs):
        root = roots[name]
        dump = dump_dir / f"{name}-cam{cam}-w{workers}-{system}.npz" if rep == 0 else None
        plan = plan_for(system, workers, a.quick)
        cmd, _ = command(system, root, cam, idx[name], workers, plan, dump)
        r = run_one(cmd, timeout=a.timeout)
        rec = {"rep": rep, "corpus": name, "codec": codec_of(root), "cam_deltas": cam, "workers": workers,
               "system": system, "plan": plan, **r}  # fmt: skip
        records.append(rec)
        rate = f"{r['samples_per_s']:8.1f} samples/s" if "samples_per_s" in r else f"ERROR {r.get('error')}"
        print(f"[{j + 1}/{len(jobs)} {time.time() - started:6.0f}s] rep{rep} {name:13s} cam{cam} w{workers} "
              f"{system:19s} {rate}  load {loadavg()[0]:.2f}", flush=True)  # fmt: skip
        if "error" in r and "traceback" in r:
            print(r["traceback"], flush=True)
        if "error" in r and "stderr" in r:
            print(r["stderr"][-1500:], flush=True)
    result = {
        "target": "P5", "date": date, "quick": a.quick, "batch_size": a.batch_size, "seed": a.seed,
        "reps": reps, "systems": systems, "workers": worker_counts,
        "corpora": {k: {"root": str(v), "codec": codec_of(v), "frames": read_info(v)["total_frames"],
                        "episodes": read_info(v)["total_episodes"], "fps": read_info(v)["fps"]}
                    for k, v in roots.items()},
        "machine": {"nproc": os.cpu_count(), "loadavg_start_end": [records[0].get("loadavg_start"), loadavg()],
                    "wall_s": time.time() - started},
        "query": {"cam_deltas=1": benchmark_query(read_info(next(iter(roots.values()))), True),
                  "cam_deltas=0": benchmark_query(read_info(next(iter(roots.values()))), False)},
        "runs": records,
        "correctness": compare_dumps(dump_dir, roots),
    }  # fmt: skip
    result["summary"] = summarize(records)
    out_json.parent.mkdir(parents=True, exist_ok=True)
    out_json.write_text(json.dumps(result, indent=1))
    print(f"wrote {out_json}")
    report(result, out_json)
    return 0


# ------------------------------------------------------------------------------------------------------------
# correctness: robotempo's warm-up batches against every peer's, same indices
# ------------------------------------------------------------------------------------------------------------
def compare_dumps(dump_dir: Path, roots: dict[str, Path]) -> list[dict]:
    out = []
    for name, root in roots.items():
        cam_key = video_keys(read_info(root))[0]
        for ref_file in sorted(dump_dir.glob(f"{name}-cam*-w*-robotempo.npz")):
            ref = np.load(ref_file)
            stem = ref_file.name[: -len("robotempo.npz")]
            for other in sorted(dump_dir.glob(f"{stem}*.npz")):
                if other == ref_file:
                    continue
                o = np.load(other)
                rec = {"corpus": name, "file": stem.rstrip("-"), "vs": other.stem[len(stem) :]}
                n = min(len(ref["index"]), len(o["index"]))
                rec["items"] = int(n)
                rec["same_indices"] = bool(np.array_equal(ref["index"][:n], o["index"][:n]))
                for key in (cam_key, "observation.state", "action"):
                    if key in ref and key in o:
                        x, y = ref[key][:n].astype(np.float64), o[key][:n].astype(np.float64)
                        if x.shape != y.shape:
                            rec[f"{key}_shape"] = [list(x.shape), list(y.shape)]
                            continue
                        d = np.abs(x - y)
                        rec[f"{key}_max_abs"] = float(d.max())
                        rec[f"{key}_mean_abs"] = float(d.mean())
                rec["camera_key"] = cam_key
                out.append(rec)
    return out


# ------------------------------------------------------------------------------------------------------------
# summary, table, chart
# ------------------------------------------------------------------------------------------------------------
def summarize(records: list[dict]) -> list[dict]:
    groups: dict[tuple, list[dict]] = {}
    for r in records:
        groups.setdefault((r["corpus"], r["cam_deltas"], r["workers"], r["system"]), []).append(r)
    rows = []
    for (corpus, cam, workers, system), rs in groups.items():
        ok = [r for r in rs if "samples_per_s" in r]
        rates = [r["samples_per_s"] for r in ok]
        rows.append({
            "corpus": corpus, "codec": rs[0]["codec"], "cam_deltas": cam, "workers": workers, "system": system,
            "runs": len(rs), "ok": len(ok), "errors": [r["error"] for r in rs if "error" in r][:1],
            "samples_per_s": statistics.median(rates) if rates else None,
            "samples_per_s_all": rates,
            "samples_per_cpu_s": statistics.median([r["samples_per_cpu_s"] for r in ok]) if ok else None,
            "own_busy_cores": statistics.median([r["own_busy_cores"] for r in ok]) if ok else None,
            "machine_busy_cores": statistics.median([r["machine_busy_cores"] for r in ok]) if ok else None,
            "loadavg_1m": statistics.median([r["loadavg_start"][0] for r in ok]) if ok else None,
            "batches": statistics.median([r["batches"] for r in ok]) if ok else None,
        })  # fmt: skip
    by = {(r["corpus"], r["cam_deltas"], r["workers"], r["system"]): r for r in rows}
    for r in rows:
        peers = [by.get((r["corpus"], r["cam_deltas"], r["workers"], s)) for s in LEROBOT]
        peers = [p for p in peers if p and p["samples_per_s"]]
        if peers and r["samples_per_s"]:
            best = max(peers, key=lambda p: p["samples_per_s"])
            r["lerobot_best"] = best["system"]
            r["vs_lerobot_best"] = r["samples_per_s"] / best["samples_per_s"]
            # ratio per rep (same rep = adjacent in time): the spread of the ratio itself
            per_rep = []
            for rep in sorted({x["rep"] for x in records}):
                mine = [x for x in records if x["rep"] == rep and x["corpus"] == r["corpus"]
                        and x["cam_deltas"] == r["cam_deltas"] and x["workers"] == r["workers"]
                        and x["system"] == r["system"] and "samples_per_s" in x]  # fmt: skip
                theirs = [x["samples_per_s"] for x in records if x["rep"] == rep and x["corpus"] == r["corpus"]
                          and x["cam_deltas"] == r["cam_deltas"] and x["workers"] == r["workers"]
                          and x["system"] in LEROBOT and "samples_per_s" in x]  # fmt: skip
                if mine and theirs:
                    per_rep.append(mine[0]["samples_per_s"] / max(theirs))
            r["vs_lerobot_best_per_rep"] = per_rep
            r["pass"] = r["vs_lerobot_best"] >= TARGET if r["system"].startswith("robotempo") else None
    order = {s: i for i, s in enumerate(SYSTEMS)}
    rows.sort(key=lambda r: (r["workers"] == 0, r["corpus"], -r["cam_deltas"], order.get(r["system"], 99)))
    return rows


def report(result: dict, out_json: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=200)
    rows = result["summary"]
    for workers in result["workers"]:
        t = Table(title=f"P5 random-access DataLoader reads, batch {result['batch_size']}, num_workers={workers} "
                  f"(median of {result['reps']}; ratio = samples/s / LeRobot's best backend; target >= {TARGET}x)")  # fmt: skip
        for c in ("corpus", "codec", "camera deltas", "system", "samples/s", "runs (samples/s)",
                  "vs LeRobot best", "ratio per rep", "samples/CPU-s", "P5"):  # fmt: skip
            t.add_column(c, justify="right" if c not in ("corpus", "system", "codec") else "left")
        last = None
        for r in rows:
            if r["workers"] != workers:
                continue
            key = (r["corpus"], r["cam_deltas"])
            if last is not None and key != last:
                t.add_section()
            last = key
            ratio = r.get("vs_lerobot_best")
            verdict = "" if r.get("pass") is None else ("[green]PASS" if r["pass"] else "[red]FAIL")
            t.add_row(
                r["corpus"], r["codec"], "[-0.1, 0]" if r["cam_deltas"] else "current only", r["system"],
                f"{r['samples_per_s']:.0f}" if r["samples_per_s"] else f"[red]{(r['errors'] or ['?'])[0][:60]}",
                " ".join(f"{x:.0f}" for x in r["samples_per_s_all"]),
                f"{ratio:.2f}x" if ratio else "", " ".join(f"{x:.2f}" for x in r.get("vs_lerobot_best_per_rep", [])),
                f"{r['samples_per_cpu_s']:.0f}" if r["samples_per_cpu_s"] else "", verdict,
            )  # fmt: skip
        console.print(t)
    corr = result.get("correctness") or []
    if corr:
        t = Table(title="Correctness: robotempo's first 2 batches vs the peers' (same indices)")
        for c in ("corpus / query", "vs", "items", "same indices", "camera max abs", "state max abs",
                  "action max abs"):  # fmt: skip
            t.add_column(c)
        for c in corr:
            cam = c["camera_key"]
            t.add_row(c["file"], c["vs"], str(c["items"]), str(c["same_indices"]),
                      _fmt(c.get(f"{cam}_max_abs", c.get(f"{cam}_shape"))),
                      _fmt(c.get("observation.state_max_abs")), _fmt(c.get("action_max_abs")))  # fmt: skip
        console.print(t)
    runs = [r for r in result["runs"] if "loadavg_start" in r]
    if runs:
        la = sorted(r["loadavg_start"][0] for r in runs)
        others = sorted(max(r["machine_busy_cores"] - r["own_busy_cores"], 0) for r in runs)
        console.print(f"load: 1-min load average at the start of each run median {la[len(la) // 2]:.2f} "
                      f"(range {la[0]:.2f}-{la[-1]:.2f}); cores busy with other processes during the timed "
                      f"window median {others[len(others) // 2]:.2f} (max {others[-1]:.2f}) of 2")  # fmt: skip
    m = result["machine"]
    console.print(f"machine: {m['nproc']} cores; load average at start/end {m['loadavg_start_end']}; "
                  f"run took {m['wall_s'] / 60:.1f} min")  # fmt: skip
    chart(result, out_json.with_suffix(".png"))


def _fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.3g}"
    return str(v)


def chart(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in result["summary"] if r["workers"] == max(result["workers"])]
    groups = sorted({(r["corpus"], r["cam_deltas"]) for r in rows}, key=lambda g: (g[0], -g[1]))
    systems = [s for s in SYSTEMS if any(r["system"] == s for r in rows)]
    colors = {"robotempo": "#1f77b4", "robotempo-default": "#6baed6", "lerobot-torchcodec": "#d62728",
              "lerobot-pyav": "#ff9896", "opentau-torchcodec": "#7f7f7f"}  # fmt: skip
    fig, ax = plt.subplots(figsize=(max(8, 2.2 * len(groups)), 5))
    width = 0.8 / len(systems)
    for i, s in enumerate(systems):
        ys, errs_lo, errs_hi = [], [], []
        for g in groups:
            r = next((r for r in rows if (r["corpus"], r["cam_deltas"]) == g and r["system"] == s), None)
            y = r["samples_per_s"] if r and r["samples_per_s"] else 0
            allv = r["samples_per_s_all"] if r and r["samples_per_s_all"] else [0]
            ys.append(y)
            errs_lo.append(y - min(allv))
            errs_hi.append(max(allv) - y)
        xs = np.arange(len(groups)) + (i - (len(systems) - 1) / 2) * width
        bars = ax.bar(xs, ys, width, label=s, color=colors.get(s), yerr=[errs_lo, errs_hi], capsize=2)
        if s == "robotempo":
            for b, g in zip(bars, groups):
                r = next((r for r in rows if (r["corpus"], r["cam_deltas"]) == g and r["system"] == s), None)
                if r and r.get("vs_lerobot_best"):
                    ax.annotate(
                        f"{r['vs_lerobot_best']:.2f}x",
                        (b.get_x() + b.get_width() / 2, b.get_height()),
                        ha="center",
                        va="bottom",
                        fontsize=8,
                        xytext=(0, 3),
                        textcoords="offset points",
                    )
    ax.set_xticks(np.arange(len(groups)))
    ax.set_xticklabels([f"{c}\n{'cam [-0.1,0]' if d else 'cam current'}" for c, d in groups], fontsize=8)
    ax.set_ylabel("samples/s (median)")
    ax.set_title(f"P5: DataLoader random reads, batch {result['batch_size']}, {max(result['workers'])} workers "
                 f"(labels: robotempo / LeRobot's best; target {TARGET}x)", fontsize=9)  # fmt: skip
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    print(f"wrote {path}")


def cmd_report(a) -> int:
    path = Path(a.json)
    result = json.loads(path.read_text())
    report(result, path)
    return 0


# ------------------------------------------------------------------------------------------------------------
# profiling robotempo's workers
# ------------------------------------------------------------------------------------------------------------
def cmd_profile(a) -> int:
    """Where robotempo's time goes, two ways (each a fresh process, the `run` query and index order):

    1. py-spy (if installed, e.g. `pip install --target /tmp/pyspy py-spy`; `--py-spy` names the binary):
       the DataLoader run with `--workers` workers, every process sampled; shares of the workers' and the main
       process's on-CPU samples by function (inclusive and self). Without py-spy: cProfile of `__getitems__`
       in each worker.
    2. in-process breakdown: `__getitems__` + `collate` on one thread, with timers around the decoder's
       `_next_frame` (demux + decode) and `_restart` (seek), and decodes / seeks per returned frame (the
       conversion into the batch tensor runs in the decoder's threads and is in "the rest").
    """
    SCRATCH.mkdir(parents=True, exist_ok=True)
    root = corpora(a.quick)[a.corpus]
    plan = {"warmup": 5, "batches": a.batches}
    idx = make_indices(root, (plan["warmup"] + plan["batches"]) * 64, a.seed)
    worker = [str(ROBOTEMPO_PY), str(Path(__file__).resolve()), "worker", "--collate", a.collate, "--root",
              str(root), "--cam-deltas", str(a.cam_deltas), "--indices", str(idx), "--workers", str(a.workers),
              "--warmup", str(plan["warmup"]), "--batches", str(plan["batches"]), "--budget-s", "300"]  # fmt: skip
    if a.workers == 0:
        worker += ["--torch-threads", "1"]
    spy = shutil.which(a.py_spy) or (a.py_spy if Path(a.py_spy).exists() else None)
    tag = f"{a.corpus}-cam{a.cam_deltas}-w{a.workers}-{a.collate}"
    if spy:
        raw = SCRATCH / f"pyspy-{tag}.txt"
        cmd = [spy, "record", "-r", "250", "--format", "raw", "-o", str(raw), "--subprocesses", "--", *worker]
        r = run_one(cmd, timeout=900)
        print(f"py-spy run: {r.get('samples_per_s', 0):.0f} samples/s (sampling slows it), {raw}")
        print_pyspy(raw)
    else:
        import pstats

        prefix = SCRATCH / f"prof-{tag}"
        for old in SCRATCH.glob(prefix.name + ".*.prof"):
            old.unlink()
        r = run_one([*worker, "--cprofile", str(prefix)], timeout=900)
        files = sorted(SCRATCH.glob(prefix.name + ".*.prof"))
        if files:
            pstats.Stats(*map(str, files)).sort_stats("cumulative").print_stats(30)
    breakdown(root, a.cam_deltas, idx)
    return 0


def print_pyspy(raw: Path, top: int = 30) -> None:
    """Shares of on-CPU samples by function: DataLoader workers (inclusive, self) and the main process (self)."""
    import collections
    import re

    incl, self_, main_self, per = collections.Counter(), collections.Counter(), collections.Counter(), {}
    noise = ("bench_video_loader.py", "video_loader_peer.py", "multiprocessing/process.py", "popen_fork.py",
             "multiprocessing/context.py", "DataLoader.__iter__", "_get_iterator", "DataLoaderIter.__init__",
             "(threading.py)")  # fmt: skip
    for line in raw.read_text().splitlines():
        stack, n = line.rsplit(" ", 1)
        frames = stack.split(";")
        role = "worker" if sum(f.startswith("process ") for f in frames) > 1 else "main"
        frames = [re.sub(r":\d+\)", ")", f) for f in frames if not f.startswith("process ")] or ["?"]
        per[role] = per.get(role, 0) + int(n)
        if role == "main":
            main_self[frames[-1]] += int(n)
            continue
        self_[frames[-1]] += int(n)
        for f in set(frames):
            if not any(x in f for x in noise):
                incl[f] += int(n)
    total = sum(per.values())
    print(
        f"on-CPU samples: {total}; workers {per.get('worker', 0) / total:.0%}, main {per.get('main', 0) / total:.0%}"
    )
    w = max(per.get("worker", 0), 1)
    print("-- workers, inclusive share of the workers' samples")
    for k, v in incl.most_common(top):
        print(f"{v / w:6.1%}  {k}")
    print("-- workers, self")
    for k, v in self_.most_common(15):
        print(f"{v / w:6.1%}  {k}")
    print("-- main process, self")
    m = max(per.get("main", 0), 1)
    for k, v in main_self.most_common(8):
        print(f"{v / m:6.1%}  {k}")


def breakdown(root: Path, cam_deltas: int, idx_path: Path, batches: int = 60) -> None:
    """One thread: `__getitems__` + `collate` with timers on decode and seek."""
    import torch

    from robotempo import LeRobotDataset, collate
    from robotempo.video import reader as rv

    torch.set_num_threads(1)
    spent: dict[str, float] = {}
    count: dict[str, int] = {}

    def timed(owner, name: str, label: str) -> None:
        original = getattr(owner, name)

        def wrapper(*args, **kw):
            t = time.perf_counter()
            try:
                return original(*args, **kw)
            finally:
                spent[label] = spent.get(label, 0.0) + time.perf_counter() - t
                count[label] = count.get(label, 0) + 1

        setattr(owner, name, wrapper)

    timed(rv.VideoReader, "_next_frame", "decode: VideoReader._next_frame (demux + FFmpeg decode)")
    timed(rv.VideoReader, "_restart", "seek: VideoReader._restart (container.seek)")
    info = read_info(root)
    ds = LeRobotDataset("bench/p5", root=root, delta_timestamps=benchmark_query(info, bool(cam_deltas)),
                        speed_labels=False)  # fmt: skip
    idx = np.load(idx_path)
    collate(ds.__getitems__(idx[:64]))  # opens the file
    spent.clear()
    count.clear()
    t = time.perf_counter()
    for b in range(1, batches + 1):
        collate(ds.__getitems__(idx[b * 64 : (b + 1) * 64]))
    wall = time.perf_counter() - t
    n = batches * 64
    frames = n * (2 if cam_deltas else 1)
    print(f"-- in-process breakdown, {root.name} cam_deltas={cam_deltas}: {n / wall:.0f} samples/s on one thread, "
          f"{wall / n * 1e6:.0f} us/sample")  # fmt: skip
    for label, s in spent.items():
        print(f"{s / wall:6.1%}  {label}  ({count[label] / frames:.2f} calls per returned frame)")
    print(
        f"{1 - sum(spent.values()) / wall:6.1%}  the rest (RGB conversion, frame bookkeeping, tabular, collate)"
    )


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    w = sub.add_parser("worker", help="one robotempo measurement (internal)")
    w.add_argument("--collate", choices=["robotempo", "default"], default="robotempo")
    w.add_argument("--root", required=True)
    w.add_argument("--cam-deltas", type=int, choices=[0, 1], required=True)
    w.add_argument("--indices", required=True)
    w.add_argument("--batch-size", type=int, default=64)
    w.add_argument("--workers", type=int, default=2)
    w.add_argument("--warmup", type=int, default=5)
    w.add_argument("--batches", type=int, default=60)
    w.add_argument("--budget-s", type=float, default=120.0)
    w.add_argument("--dump", default=None)
    w.add_argument("--cprofile", default=None)
    w.add_argument(
        "--torch-threads", type=int, default=0, help="torch.set_num_threads in this process (0: keep)"
    )
    w.add_argument(
        "--sharing-strategy", default="", help="experiment: torch.multiprocessing sharing strategy"
    )
    w.add_argument(
        "--return-uint8", action="store_true", help="experiment: uint8 frames (4x smaller batches)"
    )
    r = sub.add_parser("run", help="the whole comparison")
    r.add_argument(
        "--quick", action="store_true", help="x0.05 V264 and Vav1, 2 workers only, 1 rep, 10 batches"
    )
    r.add_argument("--reps", type=int, default=0)
    r.add_argument("--corpora", default="", help="comma list: V264,Vav1,lr_video_h264,lr_video")
    r.add_argument("--systems", default="", help=f"comma list of {SYSTEMS}")
    r.add_argument("--workers", default="", help="comma list of num_workers settings (default 2,0; quick: 2)")
    r.add_argument("--batch-size", type=int, default=64)
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--timeout", type=float, default=600.0)
    r.add_argument("--out", default="")
    pr = sub.add_parser("profile", help="cProfile robotempo's DataLoader workers")
    pr.add_argument("--corpus", default="V264")
    pr.add_argument("--cam-deltas", type=int, default=1)
    pr.add_argument("--collate", choices=["robotempo", "default"], default="robotempo")
    pr.add_argument("--workers", type=int, default=2)
    pr.add_argument("--batches", type=int, default=40)
    pr.add_argument("--seed", type=int, default=0)
    pr.add_argument("--quick", action="store_true")
    pr.add_argument("--py-spy", default="/tmp/pyspy/bin/py-spy", help="py-spy binary (cProfile when absent)")
    rp = sub.add_parser("report", help="table and chart from a saved JSON")
    rp.add_argument("json")
    a = p.parse_args(argv)
    return {"worker": robotempo_worker, "run": cmd_run, "profile": cmd_profile, "report": cmd_report}[a.cmd](
        a
    )


if __name__ == "__main__":
    sys.exit(main())
