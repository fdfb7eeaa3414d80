"""The encoder child process: run as a script (`python encode_child.py`), never imported by the package.

It imports only PyAV and numpy, so it starts in a fraction of a second without torch. The protocol (all
integers little-endian) is spoken over stdin/stdout by `robotempo.video.encoder._ChildEncoder`:

* parent -> child: one JSON line `{"path", "fps", "width", "height", "encoder", "options"}`, then commands:
  `b"W" + u64 n + n*H*W*3 bytes` (encode n RGB frames) or `b"C"` (flush, close the file, exit).
* child -> parent: `b"R"` once the file is open, `b"P" + u64 frames + u64 bytes` after every frame encoded
  and every flushed packet (progress: the parent's stall watchdog is reset by it), `b"D"` once the file
  is closed, and on a Python error `b"E" + u32 n + n bytes` of UTF-8 text before exiting with status 1.
"""

from __future__ import annotations

import contextlib
import json
import struct
import sys
import traceback
from fractions import Fraction


def _read_exact(stream, n: int) -> bytes:
    data = stream.read(n)
    if data is None or len(data) != n:
        raise EOFError(f"the parent closed the pipe after {0 if not data else len(data)} of {n} bytes")
    return data


def main() -> int:
    import av
    import numpy as np

    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    cfg = json.loads(stdin.readline())
    width, height = int(cfg["width"]), int(cfg["height"])
    container = av.open(cfg["path"], mode="w", format="mp4")
    rate = Fraction(cfg["fps"]).limit_denominator(1000)
    stream = container.add_stream(cfg["encoder"], rate=rate, options=dict(cfg["options"]))
    stream.width, stream.height = width, height
    stream.pix_fmt = "yuv420p"
    stream.time_base = 1 / rate
    frames_written = bytes_written = 0
    stdout.write(b"R")  # ready: the parent's watchdog switches from the start-up allowance to the stall limit
    stdout.flush()

    def progress() -> None:
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
            stdout.write(b"D")
            stdout.flush()
            return 0
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
