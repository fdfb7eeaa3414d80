"""The figures behind the video decoder cache's default (`robotempo.video.cache.fitted_size`).

    .venv/bin/python benchmarks/profile_decoder_cache.py simulate
    .venv/bin/python benchmarks/profile_decoder_cache.py memory $CORPUS/v3.0-480x640-h264
    .venv/bin/python benchmarks/profile_decoder_cache.py reopen $CORPUS/v3.0-480x640-av1

CORPUS=/tmp/robotempo-bench/video-cache: the corpora `bench_video_cache.py` writes.

- simulate: LRU hit rates of a cache of C files over F files (3 cameras per dataset) under a mixture's
  batches: 32 random samples, whose datasets are read in order, each reading a file of every camera.
- memory: every file of the corpus opened through one cache and read at 2-frame windows 5, then 14 times; the
  RSS growth per open file (what `decoder_bytes` estimates).
- reopen: CPU time of opening a file and reading one random frame vs reading one from a file already open, and
  of PyAV's open alone (FFmpeg's probe), on the corpus's first file.
"""

from __future__ import annotations

import argparse
import gc
import glob
import random
import sys
import time
from collections import OrderedDict

import numpy as np


def simulate(
    files: int, size: int, batches: int = 600, batch: int = 32, cameras: int = 3, seed: int = 0
) -> float:
    rng = random.Random(seed)
    open_files: OrderedDict[int, None] = OrderedDict()
    hits = reads = 0
    for _ in range(batches):
        for d in sorted({rng.randrange(files // cameras) for _ in range(batch)}):
            for k in range(cameras):
                f, reads = d * cameras + k, reads + 1
                if f in open_files:
                    hits += 1
                    open_files.move_to_end(f)
                    continue
                if len(open_files) >= size:
                    open_files.popitem(last=False)
                open_files[f] = None
    return hits / reads


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


def _files(corpus: str) -> list[str]:
    return sorted(glob.glob(f"{corpus}/ds*/videos/*/chunk-000/file-000.mp4"))


def memory(corpus: str) -> None:
    from robotempo.video.cache import VideoDecoderCache

    files = _files(corpus)
    cache = VideoDecoderCache(len(files))
    rng = np.random.default_rng(0)

    def read(path: str, n: int) -> None:
        with cache.reader(path) as reader:
            for _ in range(n):
                t = rng.integers(1, 100) / 30.0
                reader.frames_at(np.array([t - 1 / 30, t]), 1e-3)

    read(files[0], 5)
    gc.collect()
    base = _rss()
    for path in files[1:]:
        read(path, 5)
    after5 = (_rss() - base) / (len(files) - 1)
    for _ in range(3):
        for path in files[1:]:
            read(path, 3)
    after14 = (_rss() - base) / (len(files) - 1)
    n = len(files) - 1
    print(f"{n} files: {after5 / 1e6:.2f} MB per open file after 5 reads, {after14 / 1e6:.2f} after 14")


def reopen(corpus: str, n: int = 30) -> None:
    import av

    from robotempo.video.reader import DEMUXER, VideoReader

    path = _files(corpus)[0]
    rng = np.random.default_rng(0)

    def cpu_ms(fn) -> float:
        t = time.process_time()
        for _ in range(n):
            fn()
        return (time.process_time() - t) / n * 1e3

    def one_frame(reader: VideoReader) -> None:
        reader.frames_at(np.array([rng.integers(0, 140) / 30.0]), 1e-3)

    def fresh() -> None:
        reader = VideoReader(path)
        one_frame(reader)
        reader.close()

    kept = VideoReader(path)
    print(f"{path}: PyAV open {cpu_ms(lambda: av.open(path, format=DEMUXER).close()):.2f} ms, "
          f"open + one random frame {cpu_ms(fresh):.2f} ms, one random frame of an open file "
          f"{cpu_ms(lambda: one_frame(kept)):.2f} ms (CPU)")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("figure", choices=("simulate", "memory", "reopen"))
    ap.add_argument("corpus", nargs="?", help="a corpus folder of bench_video_cache.py (memory, reopen)")
    args = ap.parse_args(argv)
    if args.figure == "simulate":
        for files, size in [(120, 4), (120, 64), (120, 100), (300, 200), (300, 225), (300, 256), (480, 240)]:
            print(f"{size} of {files} files open: {simulate(files, size):.0%} of reads hit an open file")
    elif args.corpus is None:
        ap.error(f"{args.figure} needs a corpus folder")
    else:
        (memory if args.figure == "memory" else reopen)(args.corpus)
    return 0


if __name__ == "__main__":
    sys.exit(main())
