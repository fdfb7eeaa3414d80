"""A realistic VLA workload (issue 11): three cameras, two frames of history each, state history and a 50-step
action chunk at 30 fps; robotempo's DataLoader against the decoders' limit and against the peers.

    .venv/bin/python benchmarks/bench_vla.py run --quick        # 6 short episodes per corpus: minutes
    .venv/bin/python benchmarks/bench_vla.py run                # ~100 episodes of ~10 s (writes ~1-2 h once)
    .venv/bin/python benchmarks/bench_vla.py limit --corpus vla224_av1 --quick   # the decoder limit alone

Corpora (robotempo.writer, 3 cameras `observation.images.{top,left,wrist}`, 30 fps, state/action 14):
  vla224_av1   v3.0, 224x224, AV1 (libsvtav1 crf 30, g=2, yuv420p: LeRobot's default settings)
  vla224_h264  v3.0, 224x224, H.264 (libx264 crf 23, g=2)
  vla480_av1   v3.0, 480x640, AV1 (a fifth of the episodes: encoding is the slow part of writing it)
  vla224_png   v2.1, 224x224, PNG in the parquet (the embedded-image layout)

Per corpus, in one run, each measurement a fresh process:
  limit      PyAV decoding exactly the frames the loader's first `batches` batches need, in 2 processes at
             once (the batches dealt round-robin, as to the loader's 2 workers: the machine's cores all busy,
             as the loader keeps them; `limit-alone`: one process, the other core idle), the best plan by
             hand: per batch and file, the needed frames sorted, one seek per group of pictures, decoded
             forward while the next needed frame is at most a gap of 1, 2 or 4 frames ahead (the best gap),
             files kept open from batch to batch, best of FFmpeg's own threads on (thread_type AUTO, gap 4)
             or off, RGB conversion included (one swscale context per file); for PNG, PIL
             decoding the needed cells (bytes read beforehand). Reported in frames per CPU-second and as
             samples per CPU-second (frames / 6 per sample). The same process then times robotempo's
             VideoReader alone on those frames (one thread, uint8 and float32 output into reused arrays):
             how much of the loader's distance to the limit is decoding and conversion, how much the rest.
  robotempo  LeRobotDataset + robotempo.collate, DataLoader, 2 workers, batch 32 (samples/s, samples/CPU-s);
             robotempo-uint8 the same with return_uint8=True (frames cross from the workers as uint8)
  lerobot    LeRobot 0.6.1, torchcodec and pyav backends (v3.0 corpora)
  opentau    OpenTau 0.14.0 on the PNG corpus (v2.1)
  baseline   with --baseline-python: another checkout's robotempo (e.g. main before a change) on the same
             corpus as that checkout's writer made it (under --baseline-dir), same indices, in the same run
robotempo's fraction of the limit is samples per CPU-second / the limit's samples per CPU-second: the
machine is shared, CPU time is what each system consumed whatever the others did. Each run times 64 batches
after a warm-up (32 quick, 40 full), and records how fast the machine hands out fresh memory
(`measure.fresh_page_rate`: on a VM that returns free memory to its host, a page's first use costs a host-side
fault, ~25x a reused page's, and a run that grows its shared-memory pools pays it). Writes
benchmarks/results/<date>-vla[-quick].json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import json
import os
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH / "peer_side"))
sys.path.insert(0, str(BENCH))

import bench_video_loader as p5  # noqa: E402
from measure import fresh_page_rate  # noqa: E402
from video_loader_peer import benchmark_query, emit, loadavg, read_info  # noqa: E402

CAMERAS = ("observation.images.top", "observation.images.left", "observation.images.wrist")
FPS = 30
CORPORA = {
    "vla224_av1": {"version": "v3.0", "camera": "video", "size": (224, 224), "codec": "av1", "share": 1.0},
    "vla224_h264": {"version": "v3.0", "camera": "video", "size": (224, 224), "codec": "h264", "share": 1.0},
    "vla480_av1": {"version": "v3.0", "camera": "video", "size": (480, 640), "codec": "av1", "share": 0.2},
    "vla224_png": {"version": "v2.1", "camera": "image", "size": (224, 224), "codec": "png", "share": 1.0},
}
SCALES = {"quick": {"episodes": 6, "mean_length": 60.0}, "full": {"episodes": 100, "mean_length": 300.0}}
BATCH = 32
# The limit decodes with as many processes at once as the loader has workers (2): "all threads" of the
# machine, as the loader uses it. Two processes at once get 4-14% fewer frames per CPU-second each than one
# alone on this VM (shared caches and memory bandwidth); `limit-alone` is the one-process figure.
LIMIT_PROCESSES = 2
SEEK_GAPS = (1, 2, 4)  # frames decoded forward rather than seek (the limit keeps the cheapest; g=2)
FRAMES_PER_SAMPLE = 2 * len(CAMERAS)


# -- corpora --------------------------------------------------------------------------------------------------
def corpus_root(name: str, scale: str) -> Path:
    return p5.BENCH_DIR / "vla" / scale / name


def write_corpus(name: str, scale: str) -> Path:
    """Three cameras from one synthetic scene: the second and third are its mirror images (same content
    statistics, different bitstreams)."""
    from robotempo.synth import SynthSpec
    from robotempo.writer import DatasetWriter

    c, s = CORPORA[name], SCALES[scale]
    root = corpus_root(name, scale)
    if (root / "meta" / "info.json").exists():
        return root
    n = max(2, round(s["episodes"] * c["share"]))
    spec = SynthSpec(n_episodes=n, n_tasks=3, mean_length=s["mean_length"], camera="video",
                     image_size=c["size"], fps=FPS, seed=11)  # fmt: skip
    features = {k: v for k, v in spec.features().items() if k in ("observation.state", "action")}
    for key in CAMERAS:
        features[key] = {
            "dtype": c["camera"],
            "shape": [*c["size"], 3],
            "names": ["height", "width", "channels"],
        }
    t = time.perf_counter()
    codec = c["codec"] if c["camera"] == "video" else "h264"
    with DatasetWriter(root, fps=FPS, features=features, version=c["version"], robot_type="synthetic",
                       video_codec=codec, commit_every=max(1, n // 4)) as w:  # fmt: skip
        for e in range(n):
            arrays, task = spec.episode(e)
            frames = arrays.pop("observation.images.top")
            arrays.update(dict(zip(CAMERAS, (frames, frames[:, :, ::-1], frames[:, ::-1]))))
            w.add_episode(arrays, task=task)
            print(f"\r{name}: episode {e + 1}/{n} ({time.perf_counter() - t:.0f} s)", end="", flush=True)
    print()
    return root


# -- the workload's frames ------------------------------------------------------------------------------------
def needed_frames(root: Path, indices: np.ndarray) -> list[dict[str, tuple[str, np.ndarray]]]:
    """Per batch: for every (camera, file) the frame numbers (video) or table rows (PNG) the batch needs."""
    from robotempo import LeRobotDataset
    from robotempo.temporal import query_rows

    ds = LeRobotDataset("bench/vla", root=root, delta_timestamps=benchmark_query(read_info(root), True),
                        speed_labels=False)  # fmt: skip
    out = []
    for start in range(0, len(indices), BATCH):
        rows = indices[start : start + BATCH]
        ep = ds.frames.episode_of(rows)
        where, _ = query_rows(rows, ds._deltas[CAMERAS[0]], ds.frames.ep_from[ep], ds.frames.ep_to[ep])
        where = where.reshape(-1)
        wep = ds.frames.episode_of(where)
        need = {}
        for key in ds.camera_keys:
            if key in ds.image_keys:
                codes = ds._selected.data_file[wep]
                for code in np.unique(codes):
                    need[(key, int(code))] = (str(root / ds._selected.data_files[int(code)]),
                                              ds.frames.row_from[wep[codes == code]]
                                              + where[codes == code] - ds.frames.ep_from[wep[codes == code]])  # fmt: skip
                continue
            loc = ds._selected.videos[key]
            times = ds._video_from[key][wep] + ds.frames.columns["timestamp"][where].astype(np.float64)
            files = loc.file[wep]
            for code in np.unique(files):
                frames = np.unique(np.round(times[files == code] * FPS).astype(np.int64))
                need[(key, int(code))] = (str(root / loc.files[int(code)]), frames)
        out.append(need)
    return out


def _decode_needed(path: str, frames: np.ndarray, files: dict, threads: str, gap: int) -> int:
    """Decode exactly `frames` (sorted frame numbers) of one file: a seek, then forward while the next
    needed frame is near (within `gap` frames), else a new seek. `files` keeps each file open (with its
    RGB converter) from batch to batch, as a hand-written loop would."""
    import av
    from av.video.reformatter import VideoReformatter

    if path not in files:
        c = av.open(path)
        if threads == "auto":
            c.streams.video[0].thread_type = "AUTO"
        else:
            c.streams.video[0].codec_context.thread_count = 1
        files[path] = (c, VideoReformatter())
    c, rgb = files[path]
    stream = c.streams.video[0]
    tb = float(stream.time_base)
    i = 0
    while i < len(frames):
        c.seek(int(round(frames[i] / FPS / tb)), stream=stream, backward=True)
        for frame in c.decode(stream):
            n = round(frame.pts * tb * FPS)
            if n > frames[i]:
                raise RuntimeError(f"{path}: a seek to frame {frames[i]} landed on frame {n}")
            if n == frames[i]:
                rgb.reformat(frame, format="rgb24", threads=1).to_ndarray()
                i += 1
                if i == len(frames) or frames[i] - n > gap:
                    break
    return len(frames)


def _png_needed(path: str, rows: np.ndarray, cells: dict, key: str) -> list[bytes]:
    import pyarrow.parquet as pq

    if (path, key) not in cells:
        cells[(path, key)] = pq.read_table(path, columns=[key]).column(0).combine_chunks()
    column = cells[(path, key)]
    return [column[int(r)].as_py()["bytes"] for r in rows]


def task_limit(root: Path, indices: np.ndarray, batches: int) -> dict:
    """The decoders' limit on the workload's frames, in frames per CPU-second of this process."""
    plan = needed_frames(root, indices[: batches * BATCH])
    cells = {}
    pngs = [[_png_needed(path, rows, cells, key) for (key, _), (path, rows) in need.items()]
            for need in plan] if read_info(root)["features"][CAMERAS[0]]["dtype"] == "image" else None  # fmt: skip
    if pngs is not None:
        modes = {"pil": lambda: _decode_pngs(pngs)}
    else:
        variants = [("auto", max(SEEK_GAPS)), *(("single", g) for g in SEEK_GAPS)]
        modes = {f"{t}-gap{g}": (lambda t=t, g=g: _decode_plan(plan, t, g)) for t, g in variants}
    out = {}
    for mode, decode in modes.items():
        c0, t0 = time.process_time(), time.perf_counter()
        frames = decode()
        cpu, wall = time.process_time() - c0, time.perf_counter() - t0
        samples = batches * BATCH
        out[mode] = {"frames": frames, "cpu_s": cpu, "wall_s": wall, "frames_per_cpu_s": frames / cpu,
                     "samples": samples, "frames_per_sample": frames / samples,
                     "samples_per_cpu_s": samples / cpu, "samples_per_s": samples / wall}  # fmt: skip
    best = max(out, key=lambda m: out[m]["samples_per_cpu_s"])
    reader = {} if pngs is not None else {dtype: _reader_alone(plan, dtype, batches * BATCH)
                                           for dtype in ("uint8", "float32")}  # fmt: skip
    return {**out[best], "mode": best, "modes": out, "reader": reader}


def _reader_alone(plan: list, dtype: str, samples: int) -> dict:
    """robotempo's `VideoReader.frames_into` alone on the same frames, one thread, files opened as the limit
    opens them, output arrays made and touched beforehand and reused (as the workers' pool reuses its pages):
    the loader's cost apart from its decoding and conversion."""
    from robotempo.video.reader import VideoReader

    requests = [(path, frames) for need in plan for path, frames in need.values()]
    shapes = {path: _frame_shape(path) for path in dict.fromkeys(p for p, _ in requests)}
    keys = dict.fromkeys((len(f), shapes[p]) for p, f in requests)
    buffers = {key: np.ones((key[0], *key[1]), np.dtype(dtype)) for key in keys}
    readers: dict = {}
    c0 = time.process_time()
    for path, frames in requests:
        if path not in readers:
            readers[path] = VideoReader(path)
        out = buffers[(len(frames), shapes[path])]
        readers[path].frames_into(frames / FPS, 1e-4, out, np.arange(len(frames)))
    cpu = time.process_time() - c0
    for r in readers.values():
        r.close()
    return {"cpu_s": cpu, "samples_per_cpu_s": samples / cpu}


def _frame_shape(path: str) -> tuple[int, int, int]:
    import av

    with av.open(path) as c:
        ctx = c.streams.video[0].codec_context
        return 3, ctx.height, ctx.width


def _decode_plan(plan: list, threads: str, gap: int) -> int:
    files: dict = {}  # each variant opens its own files: none profits from another's warm decoders
    return sum(
        _decode_needed(path, wanted, files, threads, gap) for need in plan for path, wanted in need.values()
    )


def _decode_pngs(pngs: list) -> int:
    from PIL import Image

    frames = 0
    for batch in pngs:
        for blobs in batch:
            for b in blobs:
                with Image.open(io.BytesIO(b)) as im:
                    np.asarray(im.convert("RGB"))
                frames += 1
    return frames


# -- the run --------------------------------------------------------------------------------------------------
def systems_for(name: str) -> list[str]:
    if CORPORA[name]["camera"] == "image":
        return ["limit", "limit-alone", "robotempo", "robotempo-uint8", "opentau-torchcodec"]
    return ["limit", "limit-alone", "robotempo", "robotempo-uint8", "lerobot-torchcodec", "lerobot-pyav"]


def run_system(system: str, root: Path, idx: Path, plan: dict, args) -> dict:
    if system in ("limit", "limit-alone"):
        return run_limit(root, idx, plan["warmup"] + plan["batches"], 1 if system == "limit-alone" else
                         LIMIT_PROCESSES, args.timeout)  # fmt: skip
    if system.startswith("baseline"):  # another checkout's robotempo on the corpus its own writer made
        root = Path(args.baseline_dir) / "vla" / root.parent.name / root.name
        cmd, _ = p5.command("robotempo", root, 1, idx, 2, plan, None)
        cmd[0] = args.baseline_python
    else:
        cmd, _ = p5.command(system.removesuffix("-uint8"), root, 1, idx, 2, plan, None)
    if system.endswith("-uint8"):
        cmd = [*cmd, "--return-uint8"]
    return p5.run_one([*cmd, "--batch-size", str(BATCH)] if cmd[0] != "bash" else
                      [*cmd[:-1], cmd[-1] + f" --batch-size {BATCH}"], timeout=args.timeout)  # fmt: skip


def run_limit(root: Path, idx: Path, batches: int, processes: int, timeout: float) -> dict:
    """The limit with `processes` decoding at once, batches dealt round-robin as a DataLoader deals them to
    its workers; frames and CPU seconds summed over the processes, per mode (and for the reader alone)."""
    dealt = np.load(idx)[: batches * BATCH].reshape(batches, BATCH)
    cmds = []
    for k in range(processes):
        part = idx.with_name(f"{idx.stem}-limit{k}of{processes}.npy")
        np.save(part, dealt[k::processes].reshape(-1))
        cmds.append([str(p5.ROBOTEMPO_PY), str(Path(__file__).resolve()), "limit-worker", "--root", str(root),
                     "--indices", str(part), "--batches", str(len(dealt[k::processes]))])  # fmt: skip
    with ThreadPoolExecutor(processes) as pool:
        parts = list(pool.map(lambda cmd: p5.run_one(cmd, timeout=timeout), cmds))
    errors = [r["error"] for r in parts if "error" in r]
    if errors:
        return {"error": errors[0], "processes": parts}

    modes = {}
    for mode in parts[0]["modes"]:
        samples = sum(r["modes"][mode]["samples"] for r in parts)
        frames = sum(r["modes"][mode]["frames"] for r in parts)
        cpu = sum(r["modes"][mode]["cpu_s"] for r in parts)
        wall = max(r["modes"][mode]["wall_s"] for r in parts)
        modes[mode] = {"frames": frames, "cpu_s": cpu, "wall_s": wall, "samples": samples,
                       "frames_per_cpu_s": frames / cpu, "samples_per_cpu_s": samples / cpu,
                       "samples_per_s": samples / wall}  # fmt: skip
    best = max(modes, key=lambda m: modes[m]["samples_per_cpu_s"])
    reader = {}
    for dtype in parts[0].get("reader", {}):
        samples = sum(r["samples"] for r in parts)
        cpu = sum(r["reader"][dtype]["cpu_s"] for r in parts)
        reader[dtype] = {"cpu_s": cpu, "samples_per_cpu_s": samples / cpu}
    return {**modes[best], "mode": best, "modes": modes, "reader": reader, "processes": len(parts),
            "per_process": parts}  # fmt: skip


def cmd_run(args) -> int:
    scale = "quick" if args.quick else "full"
    names = args.corpora.split(",") if args.corpora else list(CORPORA)
    # The warm-up covers the fill of the workers' shared-memory pools (up to ~40 batches at 480x640 float32:
    # a worker's peak of storages in flight is found over its first 20): what follows is a run's steady state.
    # 64 timed batches: at 224x224 a window of 16 lasted 0.5 s, and /proc's CPU ticks (10 ms per process) made
    # 2-3% of noise on their own.
    plan = {"warmup": 32, "batches": 64, "budget_s": 60.0} if args.quick else {
        "warmup": 40, "batches": 64, "budget_s": 120.0}  # fmt: skip
    if args.warmup is not None:
        plan["warmup"] = args.warmup
    if args.batches is not None:
        plan.update(batches=args.batches, budget_s=max(plan["budget_s"], 5.0 * args.batches))
    p5.SCRATCH.mkdir(parents=True, exist_ok=True)
    records, started = [], time.time()
    roots = {name: write_corpus(name, scale) for name in names}
    fresh_gb_s = fresh_page_rate()
    print(
        f"fresh memory: {fresh_gb_s:.2f} GB/s (a page's first use; see measure.fresh_page_rate)", flush=True
    )
    for rep in range(args.reps):
        for name, root in roots.items():
            n = (plan["warmup"] + plan["batches"]) * BATCH
            idx = p5.make_indices(root, n, args.seed)
            systems = [s for s in systems_for(name) if not args.systems or s in args.systems.split(",")]
            if args.baseline_python:
                base = read_info(Path(args.baseline_dir) / "vla" / scale / name)["total_frames"]
                if base != read_info(root)["total_frames"]:
                    raise SystemExit(
                        f"the baseline's {name} holds {base} frames, not {read_info(root)['total_frames']}"
                    )
                systems.insert(1, "baseline")
            k = rep % len(systems)
            for system in systems[k:] + systems[:k]:
                r = run_system(system, root, idx, plan, args)
                records.append({"rep": rep, "corpus": name, "system": system, **r})
                rate = (f"{r['samples_per_s']:7.1f} samples/s {r['samples_per_cpu_s']:7.1f} /CPU-s"
                        if "samples_per_s" in r else f"ERROR {str(r.get('error'))[:300]}")  # fmt: skip
                print(f"[{time.time() - started:6.0f}s] rep{rep} {name:12s} {system:19s} {rate}  "
                      f"load {loadavg()[0]:.1f}", flush=True)  # fmt: skip
    result = {"date": dt.date.today().isoformat(), "scale": scale, "batch_size": BATCH, "workers": 2,
              "reps": args.reps, "plan": plan, "query": benchmark_query(read_info(next(iter(roots.values()))), True),
              "corpora": {n: {"root": str(r), **CORPORA[n], "episodes": read_info(r)["total_episodes"],
                              "frames": read_info(r)["total_frames"]} for n, r in roots.items()},
              "machine": {"nproc": os.cpu_count(), "wall_s": time.time() - started, "fresh_page_gb_s": fresh_gb_s},
              "runs": records}  # fmt: skip
    result["summary"] = summarize(records)
    out = (
        Path(args.out)
        if args.out
        else p5.RESULTS / f"{result['date']}-vla{'-quick' if args.quick else ''}.json"
    )
    out.write_text(json.dumps(result, indent=1, default=str))
    print_summary(result["summary"])
    print(f"wrote {out}")
    return 0


def summarize(records: list[dict]) -> list[dict]:
    rows = []
    for name in dict.fromkeys(r["corpus"] for r in records):
        mine = [r for r in records if r["corpus"] == name]
        med = {}
        for system in dict.fromkeys(r["system"] for r in mine):
            ok = [r for r in mine if r["system"] == system and "samples_per_s" in r]
            med[system] = {k: statistics.median(r[k] for r in ok) if ok and all(k in r for r in ok) else None
                           for k in ("samples_per_s", "samples_per_cpu_s", "read_bytes_per_sample")}  # fmt: skip
            med[system]["errors"] = [
                str(r["error"])[:200] for r in mine if r["system"] == system and "error" in r
            ]
        peers = [s for s in med if s.startswith(("lerobot", "opentau")) and med[s]["samples_per_s"]]
        best = max(peers, key=lambda s: med[s]["samples_per_s"]) if peers else None
        lim = med.get("limit", {})

        def ratio(a, b):
            return a / b if a and b else None

        row = {"corpus": name, "systems": med, "peer_best": best}
        limits = [r for r in mine if r["system"] == "limit" and r.get("reader")]
        row["reader_alone"] = {
            dtype: ratio(statistics.median(r["reader"][dtype]["samples_per_cpu_s"] for r in limits),
                         lim.get("samples_per_cpu_s"))
            for dtype in ("uint8", "float32")
        } if limits else {}  # fmt: skip
        for mode in ("robotempo", "robotempo-uint8", "baseline"):
            rt = med.get(mode, {})
            row[mode] = {
                "vs_peer_best": ratio(rt.get("samples_per_s"), best and med[best]["samples_per_s"]),
                "vs_peer_best_cpu": ratio(
                    rt.get("samples_per_cpu_s"), best and med[best]["samples_per_cpu_s"]
                ),
                "fraction_of_limit_cpu": ratio(rt.get("samples_per_cpu_s"), lim.get("samples_per_cpu_s")),
                "fraction_of_limit_alone_cpu": ratio(
                    rt.get("samples_per_cpu_s"), med.get("limit-alone", {}).get("samples_per_cpu_s")
                ),
            }
        rows.append(row)
    return rows


def print_summary(rows: list[dict]) -> None:
    def f(x, fmt="{:.1f}"):
        return fmt.format(x) if x is not None else "-"

    print(f"{'corpus':12} {'system':19} {'samples/s':>10} {'/CPU-s':>8} {'KB read/sample':>15}")
    for row in rows:
        for system, m in row["systems"].items():
            err = f"  ERR {m['errors'][0][:100]}" if m["errors"] and m["samples_per_s"] is None else ""
            kb = m["read_bytes_per_sample"] / 1e3 if m.get("read_bytes_per_sample") is not None else None
            print(f"{row['corpus']:12} {system:19} {f(m['samples_per_s']):>10} {f(m['samples_per_cpu_s']):>8} "
                  f"{f(kb):>15}{err}")  # fmt: skip
        for mode in ("robotempo", "robotempo-uint8", "baseline"):
            r = row[mode]
            print(f"{row['corpus']:12} {mode} / {row['peer_best']}: {f(r['vs_peer_best'], '{:.2f}x')} (wall), "
                  f"{f(r['vs_peer_best_cpu'], '{:.2f}x')} (CPU); fraction of the decoder limit (CPU): "
                  f"{f(r['fraction_of_limit_cpu'], '{:.0%}')} (of the one-process limit: "
                  f"{f(r['fraction_of_limit_alone_cpu'], '{:.0%}')})")  # fmt: skip
        if row["reader_alone"]:
            alone = ", ".join(f"{d} {f(v, '{:.0%}')}" for d, v in row["reader_alone"].items())
            print(
                f"{row['corpus']:12} robotempo's VideoReader alone (one thread): {alone} of the limit (CPU)"
            )


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--quick", action="store_true")
    r.add_argument("--corpora", default="", help=f"comma list of {list(CORPORA)}")
    r.add_argument("--reps", type=int, default=3)
    r.add_argument("--warmup", type=int, default=None, help="warm-up batches (default: 32 quick, 40 full)")
    r.add_argument(
        "--batches",
        type=int,
        default=None,
        help="timed batches (default: 64)",
    )
    r.add_argument(
        "--systems", default="", help="comma list (default: all of limit, robotempo and the peers)"
    )
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--timeout", type=float, default=900.0)
    r.add_argument("--out", default="")
    r.add_argument(
        "--baseline-python",
        default="",
        help="python of another robotempo checkout, run as system 'baseline' (e.g. before a change)",
    )
    r.add_argument("--baseline-dir", default=str(p5.BENCH_DIR),
                   help="bench dir holding the corpora as the baseline's writer made them")  # fmt: skip
    w = sub.add_parser("write")
    w.add_argument("--quick", action="store_true")
    w.add_argument("--corpora", default="")
    lw = sub.add_parser("limit-worker")
    lw.add_argument("--root", required=True)
    lw.add_argument("--indices", required=True)
    lw.add_argument("--batches", type=int, required=True)
    a = ap.parse_args(argv)
    if a.cmd == "run":
        return cmd_run(a)
    if a.cmd == "write":
        for name in a.corpora.split(",") if a.corpora else CORPORA:
            print(write_corpus(name, "quick" if a.quick else "full"))
        return 0
    try:
        emit(task_limit(Path(a.root), np.load(a.indices), a.batches))
    except Exception as e:  # reported, never hidden
        import traceback

        emit({"error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc(limit=8)})
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
