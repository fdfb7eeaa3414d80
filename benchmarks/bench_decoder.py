"""Frames/s of robotempo.video.decode_frames against a naive seek-per-frame decoder and LeRobot 0.6.1.

Scenarios, on one 20-episode 96x96 file per codec (H.264 and AV1 as written by robotempo's encoder, GOP 2):
  random   one call per frame, random frames over the whole file
  batch    calls of 256 random timestamps (random order) spread over the file
  seq      one call per frame, frames in order (sequential reads)
  fetch2   FrameFetcher, two cameras x 64 random timestamps per call, 2 threads vs 1 (robotempo only)
LeRobot's `decode_video_frames` (pyav and torchcodec backends, `return_uint8=True`) runs in its own venv as a
subprocess on the same files and queries, when /tmp/peers/venv exists (see ../shared/tools/peers/README.md).
Every repeat runs all implementations one after the other, so all see the same machine load; figures are
medians over repeats and ratios are taken between those medians.

    .venv/bin/python benchmarks/bench_decoder.py --quick      # about a minute
    .venv/bin/python benchmarks/bench_decoder.py              # a few minutes
    .venv/bin/python benchmarks/bench_decoder.py --policy     # the measurements behind the seek policy

`--policy` times, per target frame, decoding forward across a gap of g frames against seeking (raw PyAV, CPU
time), on H.264 with GOPs 2, 30 and 250 and AV1 with GOP 2, and prints the measured break-even gap next to the
one robotempo's cost model (robotempo.video.seek_plan) predicts.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import av
import numpy as np

from robotempo.video.decoder import FrameFetcher, VideoDecoderCache, decode_frames
from robotempo.video.encoder import CODECS, VideoEncoder, available_codecs
from robotempo.video.seek_plan import seek_cost_frames

logger = logging.getLogger("bench_decoder")

FPS = 30
TOLERANCE_S = 1e-4
PEERS = Path("/tmp/peers")
RESULTS = Path(__file__).resolve().parent / "results"

PEER_SCRIPT = r"""
import json, sys, time
import numpy as np
from lerobot.datasets.video_utils import decode_video_frames

spec = json.load(open(sys.argv[1]))
queries = np.load(spec["queries"])
out = {}
for codec, path in spec["files"].items():
    for backend in ("pyav", "torchcodec"):
        for scenario in ("random", "batch", "seq"):
            calls = queries[f"{codec}_{scenario}"]
            decode_video_frames(path, [float(t) for t in calls[0]], spec["tolerance_s"], backend=backend,
                                return_uint8=True)  # warm-up (opens torchcodec's cached decoder)
            start = time.perf_counter()
            frames = [decode_video_frames(path, [float(t) for t in ts], spec["tolerance_s"], backend=backend,
                                          return_uint8=True) for ts in calls]
            seconds = time.perf_counter() - start
            out[f"{codec}/{scenario}/lerobot-{backend}"] = seconds
            if scenario == "batch":
                np.save(spec["check"].format(codec=codec, backend=backend), frames[0].numpy())
json.dump(out, open(sys.argv[2], "w"))
"""


def make_frames(rng: np.random.Generator, n: int, size: int, episode: int) -> np.ndarray:
    """Camera-like frames: a smooth random scene drifting over time, light sensor noise, a moving square."""
    coarse = rng.integers(0, 256, (size // 8 + 2, size // 8 + 2, 3)).astype(np.float32)
    scene = np.kron(coarse, np.ones((16, 16, 1), np.float32))  # blocky scene, 2x the frame size
    scene = (scene + np.roll(scene, 8, 0) + np.roll(scene, 8, 1) + np.roll(scene, (8, 8), (0, 1))) / 4
    frames = np.empty((n, size, size, 3), dtype=np.uint8)
    for i in range(n):
        dx, dy = (i + episode) % size, (i // 2 + 3 * episode) % size
        frame = scene[dy : dy + size, dx : dx + size] + rng.normal(0, 3, (size, size, 3))
        x = (i * 3) % (size - 16)
        frame[20:36, x : x + 16] = 255
        frames[i] = np.clip(frame, 0, 255)
    return frames


def write_file(path: Path, codec: str, episodes: int, length: int, size: int) -> int:
    rng = np.random.default_rng(0)
    enc = VideoEncoder(path, FPS, size, size, codec=codec)
    for e in range(episodes):
        enc.write(make_frames(rng, length, size, e))
    enc.close()
    return episodes * length


def make_queries(total: int, n_random: int, n_batches: int, n_seq: int) -> dict[str, list[np.ndarray]]:
    rng = np.random.default_rng(1)
    return {
        "random": [np.array([i / FPS]) for i in rng.integers(0, total, n_random)],
        "batch": [rng.integers(0, total, 256) / FPS for _ in range(n_batches)],
        "seq": [np.array([i / FPS]) for i in range(n_seq)],
    }


def naive_decoder(path: Path):
    """Baseline: one persistent container, a seek to the keyframe before every frame, then decode up to it."""
    container = av.open(str(path))
    stream = container.streams.video[0]
    stream.codec_context.thread_count = 1
    time_base = float(stream.time_base)

    def decode(timestamps: np.ndarray) -> np.ndarray:
        out = []
        for t in timestamps:
            target = round(t / time_base)
            container.seek(target, stream=stream, backward=True)
            for frame in container.decode(stream):
                if frame.pts >= target - 1:
                    out.append(frame.to_ndarray(format="rgb24"))
                    break
        return np.stack(out)

    return decode, container


def time_calls(decode, calls: list[np.ndarray]) -> float:
    decode(calls[0])  # warm-up: open the file, first seek
    start = time.perf_counter()
    for ts in calls:
        decode(ts)
    return time.perf_counter() - start


def run_ours(files: dict[str, Path], queries: dict[str, dict], results: dict) -> None:
    for codec, path in files.items():
        for scenario, calls in queries[codec].items():
            cache = VideoDecoderCache()
            seconds = time_calls(lambda ts, c=cache, p=path: decode_frames(p, ts, TOLERANCE_S, c), calls)
            results.setdefault(f"{codec}/{scenario}/robotempo", []).append(seconds)
            cache.clear()
            decode, container = naive_decoder(path)
            results.setdefault(f"{codec}/{scenario}/naive-seek", []).append(time_calls(decode, calls))
            container.close()


def run_fetcher(files: dict[str, Path], second: dict[str, Path], results: dict, n_calls: int) -> None:
    for codec, path in files.items():
        rng = np.random.default_rng(2)
        calls = [rng.integers(0, 600, 64) / FPS for _ in range(n_calls)]  # both files hold >= 600 frames
        for workers in (1, 2):
            with FrameFetcher(max_workers=workers) as fetcher:

                def fetch(ts, f=fetcher, p=path, q=second[codec]):
                    return f.fetch([(p, ts), (q, ts)], TOLERANCE_S)

                seconds = time_calls(fetch, calls)
            results.setdefault(f"{codec}/fetch2/robotempo-{workers}thread", []).append(seconds)


def run_peers(spec_path: Path, out_path: Path, results: dict) -> bool:
    script = spec_path.with_name("peer.py")
    script.write_text(PEER_SCRIPT)
    command = f". {PEERS}/env_lerobot.sh && {PEERS}/venv/bin/python {script} {spec_path} {out_path}"
    proc = subprocess.run(["bash", "-c", command], capture_output=True, text=True)
    if proc.returncode != 0:
        logger.warning("LeRobot subprocess failed:\n%s", proc.stderr[-3000:])
        return False
    for key, seconds in json.loads(out_path.read_text()).items():
        results.setdefault(key, []).append(seconds)
    return True


def frames_per_call(queries: dict[str, dict], key: str) -> int:
    codec, scenario = key.split("/")[:2]
    if scenario == "fetch2":
        return 0
    return sum(len(ts) for ts in queries[codec][scenario])


def summarize(results: dict, queries: dict, fetch_calls: int) -> dict:
    summary = {}
    for key, seconds in results.items():
        scenario = key.split("/")[1]
        frames = 2 * 64 * fetch_calls if scenario == "fetch2" else frames_per_call(queries, key)
        rates = [frames / s for s in seconds]
        summary[key] = {
            "frames": frames,
            "seconds": seconds,
            "frames_per_s": rates,
            "median": float(np.median(rates)),
        }
    return summary


def print_table(summary: dict, codecs: list[str]) -> None:
    impls = ["robotempo", "naive-seek", "lerobot-pyav", "lerobot-torchcodec"]
    header = f"{'codec/scenario':<16}" + "".join(f"{i:>20}" for i in impls)
    header += "".join(f"{'x ' + i:>22}" for i in impls[1:])
    print(header)
    for codec in codecs:
        for scenario in ("random", "batch", "seq"):
            row = {i: summary.get(f"{codec}/{scenario}/{i}", {}).get("median") for i in impls}
            line = f"{codec + '/' + scenario:<16}"
            line += "".join(f"{v:>20,.0f}" if v else f"{'-':>20}" for v in row.values())
            ours = row["robotempo"]
            line += "".join(f"{ours / row[i]:>22.2f}" if row[i] else f"{'-':>22}" for i in impls[1:])
            print(line)
    print("(frames/s, median over repeats; 'x impl' = robotempo's rate / impl's rate)")
    for codec in codecs:
        one = summary.get(f"{codec}/fetch2/robotempo-1thread", {}).get("median")
        two = summary.get(f"{codec}/fetch2/robotempo-2thread", {}).get("median")
        if one and two:
            print(
                f"FrameFetcher {codec}, 2 cameras x 64 frames: 1 thread {one:,.0f} f/s, "
                f"2 threads {two:,.0f} f/s ({two / one:.2f}x)"
            )


def write_with_gop(path: Path, codec: str, gop: int, frames: np.ndarray) -> None:
    """Like VideoEncoder, with the encoder's GOP length overridden."""
    name, options = CODECS[codec]
    with av.open(str(path), "w", format="mp4") as container:
        stream = container.add_stream(name, rate=FPS, options={**options, "g": str(gop)})
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        for i, image in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts = i
            container.mux(stream.encode(frame))
        container.mux(stream.encode())


def forward_or_seek_us(path: Path, gap: int, seek: bool, n: int = 100) -> float:
    """CPU microseconds per target, targets `gap` frames apart, reached by seeking or by decoding forward."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.codec_context.thread_count = 1
        step = round(1 / (FPS * stream.time_base))
        container.seek(0)
        frames = container.decode(stream)
        start = time.process_time()
        for j in range(n):
            target = (10 + j * gap) * step
            if seek or j == 0:
                container.seek(target, stream=stream, backward=True)
                frames = container.decode(stream)
            for frame in frames:
                if frame.pts >= target:
                    break
        return (time.process_time() - start) / n * 1e6


def threads_us(path: Path, threaded: bool) -> tuple[float, float]:
    """Wall microseconds per frame of a full decode and per random seek + decode, FFmpeg threads on or off."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        if threaded:
            stream.codec_context.thread_type = "AUTO"  # frame + slice threads, one per core
        else:
            stream.codec_context.thread_count = 1
        start, n = time.perf_counter(), 0
        for _ in container.decode(stream):
            n += 1
        full = (time.perf_counter() - start) / n * 1e6
        step = round(1 / (FPS * stream.time_base))
        targets = np.random.default_rng(3).integers(0, n, 200) * step
        start = time.perf_counter()
        for target in targets.tolist():
            container.seek(target, stream=stream, backward=True)
            for frame in container.decode(stream):
                if frame.pts >= target:
                    break
        return full, (time.perf_counter() - start) / len(targets) * 1e6


def measure_policy(tmp: Path, size: int, repeats: int) -> dict:
    gaps = [1, 2, 3, 4, 5, 6, 8, 12, 16, 24, 32, 48]
    variants = [("h264", 2), ("h264", 30), ("h264", 250), ("av1", 2)]
    frames = make_frames(np.random.default_rng(0), 10 + 100 * max(gaps), size, 0)
    report = {}
    for codec, gop in variants:
        if codec not in available_codecs():
            continue
        path = tmp / f"policy_{codec}_gop{gop}.mp4"
        write_with_gop(path, codec, gop, frames[: 10 + 100 * max(gaps) // (1 if gop > 2 else 4)])
        name = f"{codec}-gop{gop}"
        rows = {}
        for gap in gaps if gop > 2 else gaps[:7]:
            fwd = np.median([forward_or_seek_us(path, gap, False) for _ in range(repeats)])
            sk = np.median([forward_or_seek_us(path, gap, True) for _ in range(repeats)])
            rows[gap] = {"forward_us": float(fwd), "seek_us": float(sk)}
        measured = next((g for g, r in rows.items() if r["seek_us"] < r["forward_us"]), None)
        with av.open(str(path)) as container:
            cost = seek_cost_frames(container.streams.video[0].codec_context.name)
        predicted = cost + (gop + 1) / 2  # seek if seek_cost + (distance to keyframe + 1) < gap, on average
        report[name] = {"per_gap": rows, "measured_break_even": measured, "model_break_even": predicted}
        cells = " ".join(f"g{g}:{r['forward_us']:.0f}/{r['seek_us']:.0f}" for g, r in rows.items())
        print(f"{name:<12} forward/seek us per target: {cells}")
        print(f"{'':<12} seeking pays from gap {measured} (measured); model: above gap ~{predicted:.1f}")
        if gop == 2:
            single, threaded = ([threads_us(path, t) for _ in range(repeats)] for t in (False, True))
            one, auto = np.median(single, axis=0), np.median(threaded, axis=0)
            report[name]["threads_us"] = {"single": one.tolist(), "auto": auto.tolist()}
            print(
                f"{'':<12} wall us per frame, full decode / random seek+decode: 1 thread {one[0]:.0f} / "
                f"{one[1]:.0f}, FFmpeg threads {auto[0]:.0f} / {auto[1]:.0f}"
            )
    return report


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="fewer queries and repeats (about a minute)")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--episodes", type=int, default=20)
    parser.add_argument("--episode-length", type=int, default=150)
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--codecs", default=",".join(available_codecs()))
    parser.add_argument("--no-peers", action="store_true", help="skip LeRobot even if installed")
    parser.add_argument("--out", type=Path, default=None, help="JSON output (default benchmarks/results/...)")
    parser.add_argument("--policy", action="store_true", help="measure forward decoding against seeking")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    repeats = args.repeats or (3 if args.quick else 5)
    if args.policy:
        with tempfile.TemporaryDirectory(prefix="bench_decoder_") as tmp:
            report = measure_policy(Path(tmp), args.size, repeats)
        stamp = time.strftime("%Y%m%d-%H%M%S")
        save(args.out or RESULTS / f"bench_decoder_policy_{stamp}.json", args, report)
        return
    n_random, n_batches, n_seq, fetch_calls = (200, 3, 300, 10) if args.quick else (500, 8, 900, 30)
    codecs = [c for c in args.codecs.split(",") if c]
    peers = not args.no_peers and (PEERS / "venv/bin/python").exists()

    with tempfile.TemporaryDirectory(prefix="bench_decoder_") as tmp:
        tmp = Path(tmp)
        files, second, queries = {}, {}, {}
        for codec in codecs:
            files[codec] = tmp / f"{codec}.mp4"
            total = write_file(files[codec], codec, args.episodes, args.episode_length, args.size)
            second[codec] = tmp / f"{codec}_cam2.mp4"
            write_file(second[codec], codec, 4, args.episode_length, args.size)
            queries[codec] = make_queries(total, n_random, n_batches, n_seq)
        logger.info("files: %s", {c: f"{p.stat().st_size / 1e6:.2f} MB" for c, p in files.items()})
        arrays = {f"{c}_{s}": np.stack(v) for c, q in queries.items() for s, v in q.items()}
        np.savez(tmp / "queries.npz", **arrays)
        spec = {
            "files": {c: str(p) for c, p in files.items()},
            "queries": str(tmp / "queries.npz"),
            "tolerance_s": TOLERANCE_S,
            "check": str(tmp / "check_{codec}_{backend}.npy"),
        }
        (tmp / "spec.json").write_text(json.dumps(spec))

        results: dict[str, list[float]] = {}
        for r in range(repeats):
            logger.info("repeat %d/%d", r + 1, repeats)
            run_ours(files, queries, results)
            run_fetcher(files, second, results, fetch_calls)
            if peers:
                peers = run_peers(tmp / "spec.json", tmp / "peer_out.json", results)
        checks = {}
        for codec in codecs:
            ours = decode_frames(files[codec], queries[codec]["batch"][0])
            for backend in ("pyav", "torchcodec"):
                check = tmp / f"check_{codec}_{backend}.npy"
                if check.exists():
                    theirs = np.load(check).transpose(0, 2, 3, 1)
                    checks[f"{codec}/{backend}"] = int(np.abs(theirs.astype(int) - ours).max())
        if checks:
            logger.info("max |robotempo - lerobot| pixel difference on one batch: %s", checks)

    summary = summarize(results, queries, fetch_calls)
    print_table(summary, codecs)
    queries_config = {"random_calls": n_random, "batch_calls": n_batches, "seq_calls": n_seq}
    report = {"queries": queries_config, "fetch2_calls": fetch_calls, "repeats": repeats}
    report.update({"pixel_max_abs_diff_vs_lerobot": checks, "results": summary})
    save(args.out or RESULTS / f"bench_decoder_{time.strftime('%Y%m%d-%H%M%S')}.json", args, report)


def save(out: Path, args: argparse.Namespace, report: dict) -> None:
    environment = {
        "python": platform.python_version(),
        "av": av.__version__,
        "ffmpeg": av.ffmpeg_version_info,
        "cpus": os.cpu_count(),
        "loadavg": os.getloadavg(),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    document = {"args": vars(args), "environment": environment, **report}
    out.write_text(json.dumps(document, indent=2, default=str))
    logger.info("saved %s", out)


if __name__ == "__main__":
    sys.exit(main())
