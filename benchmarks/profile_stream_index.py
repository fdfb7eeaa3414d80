"""What opening a video costs without FFmpeg's index: PyAV < 17 (LeRobot 0.6.1 pins av<16) has no
`VideoStream.index_entries`, and the reader rebuilds the index from one demux pass over the file
(`robotempo.video.stream_index.PacketIndex`), which reads the whole file once per open.

    .venv/bin/python benchmarks/profile_stream_index.py FILE.mp4 [FILE.mp4 ...]

Opens each file with `VideoReader` on FFmpeg's index and on the rebuilt one (when this PyAV has both),
alternating, best of `--rounds`; prints a table and saves `benchmarks/results/<date>-stream-index.json`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
import time
from pathlib import Path

import av

from robotempo.video import reader as reader_module

BENCH = Path(__file__).resolve().parent


def open_ms(path: str, ffmpeg_index: bool, rounds: int) -> float:
    reader_module.FFMPEG_INDEX = ffmpeg_index
    best = float("inf")
    for _ in range(rounds):
        t = time.perf_counter()
        reader = reader_module.VideoReader(path)
        best = min(best, time.perf_counter() - t)
        reader.close()
    return best * 1e3


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("files", nargs="+")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--out", default=str(BENCH / "results"))
    args = ap.parse_args(argv)
    has_index = hasattr(av.video.stream.VideoStream, "index_entries")
    rows = []
    print(f"PyAV {av.__version__} (FFmpeg {av.ffmpeg_version_info}), best of {args.rounds} opens")
    print(f"{'file':40} {'MB':>7} {'frames':>7} {'ffmpeg index':>13} {'rebuilt':>9} {'ms / MB':>8}")
    for path in args.files:
        with av.open(path) as c:
            frames = c.streams.video[0].frames
        mb = os.path.getsize(path) / 1e6
        ffmpeg = open_ms(path, True, args.rounds) if has_index else None
        rebuilt = open_ms(path, False, args.rounds)
        extra = (rebuilt - (ffmpeg or 0.0)) / mb
        shown = f"{ffmpeg:10.1f} ms" if ffmpeg is not None else f"{'-':>13}"
        name = "/".join(Path(path).parts[-6:-4])  # the dataset, not file-000.mp4
        print(f"{name[-40:]:40} {mb:7.1f} {frames:7d} {shown} {rebuilt:6.1f} ms {extra:8.2f}")
        rows.append({"file": path, "mb": mb, "frames": frames, "ffmpeg_index_ms": ffmpeg,
                     "rebuilt_ms": rebuilt})  # fmt: skip
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{dt.date.today()}-stream-index-av{av.__version__}.json"
    path.write_text(json.dumps({"av": av.__version__, "load": os.getloadavg(), "rows": rows}, indent=1))
    print(f"saved {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
