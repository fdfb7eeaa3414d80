"""What opening a video costs without FFmpeg's index: PyAV < 17 (LeRobot 0.6.1 pins av<16) has no
`VideoStream.index_entries`, and the reader rebuilds the index from one demux pass over the file
(`robotempo.video.stream_index.rebuilt_index`; since 2026-12-02 evening it reads no sample, before it read the
whole file once per open). Run it with another checkout's `src` first on PYTHONPATH to compare the two.

    .venv/bin/python benchmarks/profile_stream_index.py FILE.mp4 [FILE.mp4 ...]
    .venv/bin/python benchmarks/profile_stream_index.py --s3 10 FILE.mp4 [FILE.mp4 ...]

Opens each file with `VideoReader` on FFmpeg's index and on the rebuilt one (when this PyAV has both),
alternating, best of `--rounds`; prints a table and saves `benchmarks/results/<date>-stream-index.json`.
`--s3 MS`: each file from an S3 server on 127.0.0.1 (moto, as the tests start it) behind a relay holding
each response back MS milliseconds; the table adds each open's requests and bytes fetched (the median open;
no blocks kept from an earlier open of the file: `ROBOTEMPO_REMOTE_HEADERS_MB=0`).
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


def open_ms(path, ffmpeg_index: bool, rounds: int, gate=None) -> tuple[float, int, int]:
    """Best open time (ms) of `rounds`, and the median open's requests and bytes through `gate` (if any)."""
    reader_module.FFMPEG_INDEX = ffmpeg_index
    best, fetched = float("inf"), []
    for _ in range(rounds):
        if gate is not None:
            gate.reset_counts()
        t = time.perf_counter()
        reader = reader_module.VideoReader(path)
        best = min(best, time.perf_counter() - t)
        reader.close()
        if gate is not None:
            fetched.append(gate.reset_counts())
    requests, sent = sorted(fetched)[len(fetched) // 2] if fetched else (0, 0)
    return best * 1e3, requests, sent


def _in_s3(files: list[str], latency_ms: float):
    """The files in an S3 server on 127.0.0.1 behind a counting, delaying relay: (refs, gate, stop)."""
    sys.path.insert(0, str(BENCH.parent / "tests"))
    from s3_server import REGION, Gate, S3Server

    from robotempo.fs import DatasetRoot, FileRef

    os.environ["ROBOTEMPO_REMOTE_HEADERS_MB"] = "0"  # every open from the store, as a first open is
    store = S3Server()
    gate = Gate(store.port, latency_s=latency_ms / 1000)
    options = {"endpoint_override": gate.endpoint, "access_key": store.access_key,
               "secret_key": store.secret_key, "region": REGION}  # fmt: skip
    refs = []
    for i, path in enumerate(files):
        url = store.upload(Path(path).parent, "profile", f"f{i}")
        refs.append(FileRef(DatasetRoot(url, options), Path(path).name))

    def stop() -> None:
        gate.close()
        store.stop()

    return refs, gate, stop


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("files", nargs="+")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--s3", type=float, metavar="MS", help="from a local S3 server, MS ms per response")
    ap.add_argument("--out", default=str(BENCH / "results"))
    args = ap.parse_args(argv)
    has_index = hasattr(av.video.stream.VideoStream, "index_entries")
    rows = []
    where = f", from S3 on 127.0.0.1 at {args.s3:g} ms per response" if args.s3 is not None else ""
    print(f"PyAV {av.__version__} (FFmpeg {av.ffmpeg_version_info}), best of {args.rounds} opens{where}")
    fetched = f" {'requests':>9} {'KB fetched':>11}" if args.s3 is not None else ""
    print(f"{'file':40} {'MB':>7} {'frames':>7} {'ffmpeg index':>13} {'rebuilt':>9} {'ms / MB':>8}"
          f"{fetched and ' ffmpeg / rebuilt:'}{fetched}")  # fmt: skip
    refs, gate, stop = _in_s3(args.files, args.s3) if args.s3 is not None else (args.files, None, None)
    try:
        _table(args, has_index, refs, gate, rows)
    finally:
        if stop is not None:
            stop()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    s3 = f"-s3-{args.s3:g}ms" if args.s3 is not None else ""
    path = out / f"{dt.date.today()}-stream-index-av{av.__version__}{s3}.json"
    record = {"av": av.__version__, "s3_latency_ms": args.s3, "load": os.getloadavg(), "rows": rows}
    path.write_text(json.dumps(record, indent=1))
    print(f"saved {path}")
    return 0


def _table(args, has_index: bool, refs: list, gate, rows: list) -> None:
    for path, ref in zip(args.files, refs):
        with av.open(path) as c:
            frames = c.streams.video[0].frames
        mb = os.path.getsize(path) / 1e6
        ffmpeg, f_requests, f_sent = open_ms(ref, True, args.rounds, gate) if has_index else (None, 0, 0)
        rebuilt, r_requests, r_sent = open_ms(ref, False, args.rounds, gate)
        extra = (rebuilt - (ffmpeg or 0.0)) / mb
        shown = f"{ffmpeg:10.1f} ms" if ffmpeg is not None else f"{'-':>13}"
        name = "/".join(Path(path).parts[-6:-4])  # the dataset, not file-000.mp4
        fetched = ""
        if gate is not None:
            f_shown = f"{f_requests:d} / " if ffmpeg is not None else "- / "
            kb_shown = f"{f_sent / 1e3:.0f} / " if ffmpeg is not None else "- / "
            fetched = f" {f_shown + str(r_requests):>18} {kb_shown + f'{r_sent / 1e3:.0f}':>20}"
        print(f"{name[-40:]:40} {mb:7.1f} {frames:7d} {shown} {rebuilt:6.1f} ms {extra:8.2f}{fetched}")
        rows.append({"file": path, "mb": mb, "frames": frames, "ffmpeg_index_ms": ffmpeg,
                     "rebuilt_ms": rebuilt, "ffmpeg_index_requests": f_requests, "ffmpeg_index_bytes": f_sent,
                     "rebuilt_requests": r_requests, "rebuilt_bytes": r_sent})  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
