"""The encoder child process: run as a script (`python encode_child.py`), never imported by the package.

It imports only PyAV and numpy, so it starts in a fraction of a second without torch. The protocol (all
integers little-endian) is spoken over stdin/stdout by `robotempo.video.encoder._ChildEncoder`:

* parent -> child, per file: one JSON line `{"path", "fps", "width", "height", "encoder", "options"}`, then
  commands `b"W" + u64 n + n*H*W*3 bytes` (encode n RGB frames) and finally `b"C"` (flush, close the file).
  The child then waits for the next file's JSON line; it exits when stdin closes.
* child -> parent: `b"R"` once the file is open, `b"P" + u64 frames + u64 bytes` (progress, resetting
  the parent's stall watchdog) at most every REPORT_EVERY_S while encoding and at the end of each command,
  `b"D"` once the file is closed, and on a Python error `b"E" + u32 n + n bytes` of UTF-8 text before
  exiting with status 1.
"""

from __future__ import annotations

import contextlib
import json
import struct
import sys
import time
import traceback
from fractions import Fraction

REPORT_EVERY_S = 0.25
# The stream's frame rate as a fraction of denominator up to this: exact for 30000/1001 and 7.0001 (at 1000,
# 30000/1001 became 19001/634 and 7.0001 became 7, and the frames drifted from start / fps until readers
# found none within tolerance, after ~50 s at 7.0001 fps).
RATE_DENOMINATOR = 1_000_000


def _read_exact(stream, n: int) -> bytes:
    data = stream.read(n)
    if data is None or len(data) != n:
        raise EOFError(f"the parent closed the pipe after {0 if not data else len(data)} of {n} bytes")
    return data


def encode_file(cfg: dict, stdin, stdout) -> None:
    """Encode one file: `cfg` was read; frames and the close command follow on `stdin`."""
    import av
    import numpy as np

    width, height = int(cfg["width"]), int(cfg["height"])
    container = av.open(cfg["path"], mode="w", format="mp4")
    rate = Fraction(cfg["fps"]).limit_denominator(RATE_DENOMINATOR)
    stream = container.add_stream(cfg["encoder"], rate=rate, options=dict(cfg["options"]))
    stream.width, stream.height = width, height
    stream.pix_fmt = "yuv420p"
    stream.time_base = 1 / rate
    frames_written = bytes_written = 0
    stdout.write(b"R")  # ready: the parent's watchdog switches from the start-up allowance to the stall limit
    stdout.flush()

    last_report = time.monotonic()

    def progress(force: bool = False) -> None:
        # Every frame would wake the parent per frame (a context switch each on a busy machine); a few
        # reports per second are plenty for a watchdog that waits a minute.
        nonlocal last_report
        now = time.monotonic()
        if force or now - last_report >= REPORT_EVERY_S:
            last_report = now
            stdout.write(b"P" + struct.pack("<QQ", frames_written, bytes_written))
            stdout.flush()

    def mux(packets) -> None:
        nonlocal bytes_written
        for packet in packets:
            bytes_written += packet.size
            container.mux(packet)

    frame_bytes = width * height * 3
    while True:
        command = _read_exact(stdin, 1)
        if command == b"C":
            for packet in stream.encode():
                mux([packet])
                progress()
            container.close()
            progress(force=True)
            stdout.write(b"D")
            stdout.flush()
            return
        if command != b"W":
            raise ValueError(f"unknown command {command!r}")
        (n,) = struct.unpack("<Q", _read_exact(stdin, 8))
        for _ in range(n):
            img = np.frombuffer(_read_exact(stdin, frame_bytes), np.uint8).reshape(height, width, 3)
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts = frames_written
            mux(stream.encode(frame))
            frames_written += 1
            progress()
        progress(force=True)  # the batch is done: the parent is waiting for exactly this


def main() -> int:
    """Encode file after file (the parent keeps idle children for its next files) until stdin closes."""
    import av  # noqa: F401  (imported before the first file, so a new child's start-up is paid once)

    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    while True:
        line = stdin.readline()
        if not line:
            return 0
        encode_file(json.loads(line), stdin, stdout)


if __name__ == "__main__":
    try:
        status = main()
    except BaseException:  # report any failure to the parent, which raises it as a WriterError
        text = traceback.format_exc().encode("utf-8", "replace")
        with contextlib.suppress(OSError):
            sys.stdout.buffer.write(b"E" + struct.pack("<I", len(text)) + text)
            sys.stdout.buffer.flush()
        status = 1
    sys.exit(status)
