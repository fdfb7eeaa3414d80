"""Minimal reproduction: a PyAV `demux` generator that is started and then dropped without `close()` leaks
native memory (its AVPacket read buffer), and `container.decode()` drops its inner `demux` even when it is
closed itself. This was the DataLoader workers' linear growth on the VLA corpus (~20 KB per batch of 32 at
224x224 AV1): robotempo's `VideoReader` started a new `container.decode()` at every seek.

    .venv/bin/python benchmarks/repro_pyav_demux_leak.py                  # 64x64 H.264 and AV1 files, ~10 s
    .venv/bin/python benchmarks/repro_pyav_demux_leak.py --video a.mp4 --cycles 20000

Each cycle seeks to the start of the file, starts a generator, takes its first item, then lets it go in one
of four ways. Only PyAV is exercised (robotempo's encoder only writes the input files when no `--video` is
given). Memory per cycle: glibc's allocated bytes (`mallinfo2`: in-use chunks of every arena plus mmapped
chunks), and the process's anonymous memory (`/proc/self/smaps_rollup`), measured after `--warmup` cycles.
Prints a table and saves `benchmarks/results/<date>-pyav-demux-leak.json`.
"""

from __future__ import annotations

import argparse
import ctypes
import datetime as dt
import json
import sys
import tempfile
from pathlib import Path

import av
import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost".split()
    ]


_libc = ctypes.CDLL("libc.so.6")
_libc.mallinfo2.restype = _MallInfo2


def malloc_bytes() -> int:
    info = _libc.mallinfo2()
    return info.uordblks + info.hblkhd


def anonymous_bytes() -> int:
    for line in Path("/proc/self/smaps_rollup").read_text().splitlines():
        if line.startswith("Anonymous:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no Anonymous line in /proc/self/smaps_rollup")


def cycle(container, stream, mode: str) -> None:
    """Seek to the start, start a generator, take one item, let the generator go as `mode` says."""
    container.seek(0, stream=stream)
    if mode.startswith("decode"):
        gen = container.decode(stream)
    else:
        gen = container.demux(stream)
    next(gen)
    if mode.endswith("closed"):
        gen.close()
    del gen


MODES = ("decode, dropped", "decode, closed", "demux, dropped", "demux, closed")


def measure(path: Path, mode: str, warmup: int, cycles: int) -> dict:
    container = av.open(str(path))
    stream = container.streams.video[0]
    stream.codec_context.thread_count = 1
    try:
        for _ in range(warmup):
            cycle(container, stream, mode)
        malloc0, anon0 = malloc_bytes(), anonymous_bytes()
        for _ in range(cycles):
            cycle(container, stream, mode)
        return {
            "file": path.name,
            "codec": stream.codec_context.name,
            "mode": mode,
            "cycles": cycles,
            "malloc_bytes_per_cycle": (malloc_bytes() - malloc0) / cycles,
            "anonymous_bytes_per_cycle": (anonymous_bytes() - anon0) / cycles,
        }
    finally:
        container.close()


def write_inputs(folder: Path) -> list[Path]:
    """One 64x64, 60-frame file per codec robotempo's encoder has (H.264, AV1)."""
    from robotempo.video.encoder import VideoEncoder, available_codecs

    paths = []
    frames = np.random.default_rng(0).integers(0, 256, (60, 64, 64, 3), dtype=np.uint8)
    for codec in available_codecs():
        path = folder / f"noise_{codec}.mp4"
        encoder = VideoEncoder(path, 30, 64, 64, codec=codec)
        encoder.write(frames)
        encoder.close()
        paths.append(path)
    return paths


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--video", action="append", default=[], help="an MP4 to read (repeatable)")
    ap.add_argument("--cycles", type=int, default=5000)
    ap.add_argument("--warmup", type=int, default=500)
    ap.add_argument("--out", default="")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        paths = [Path(v) for v in args.video] or write_inputs(Path(tmp))
        rows = [measure(p, mode, args.warmup, args.cycles) for p in paths for mode in MODES]
    print(f"PyAV {av.__version__}, libavformat {av.library_versions['libavformat']}")
    print(f"{'file':<22} {'codec':<9} {'generator':<16} {'malloc B/cycle':>15} {'anonymous B/cycle':>18}")
    for r in rows:
        print(
            f"{r['file']:<22} {r['codec']:<9} {r['mode']:<16} {r['malloc_bytes_per_cycle']:>15.1f} "
            f"{r['anonymous_bytes_per_cycle']:>18.1f}"
        )
    result = {
        "date": dt.date.today().isoformat(),
        "pyav": av.__version__,
        "library_versions": {k: list(v) for k, v in av.library_versions.items()},
        "python": sys.version.split()[0],
        "rows": rows,
    }
    out = Path(args.out) if args.out else RESULTS / f"{result['date']}-pyav-demux-leak.json"
    out.write_text(json.dumps(result, indent=1))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
