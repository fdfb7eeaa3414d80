"""Encode uint8 RGB frames into MP4 with PyAV. Used by the writer; appends episode after episode to one file.

The file is written under a unique temp name and renamed into place by `close()`, so a reader never sees a
half-written MP4. Frame `i` of the file has pts `i` in time base `1/fps`, i.e. presentation time `i / fps`.
Encoders listed in `ISOLATED` run in a child process with a stall watchdog (see `encode_process`); the
others run in this process.
"""

from __future__ import annotations

import contextlib
import os
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from robotempo.errors import WriterError
from robotempo.io import temp_path_for
from robotempo.video.encode_child import RATE_DENOMINATOR
from robotempo.video.encode_process import ChildEncoder

# (encoder name, options) per codec; the LeRobot default is AV1 (libsvtav1) with a GOP of 2.
CODECS = {
    "h264": ("libx264", {"crf": "23", "preset": "veryfast", "g": "2"}),
    "av1": ("libsvtav1", {"crf": "30", "g": "2", "preset": "11"}),
}
# libsvtav1 can deadlock while holding the GIL (see encode_process); libx264 has not been seen to.
ISOLATED = frozenset({"libsvtav1"})


def available_codecs() -> list[str]:
    return [name for name, (enc, _) in CODECS.items() if enc in av.codecs_available]


class VideoEncoder:
    def __init__(self, path: str | Path, fps: int | float, width: int, height: int, codec: str = "h264"):
        if codec not in CODECS:
            raise WriterError(f"video codec {codec!r} is not supported; use one of {sorted(CODECS)}")
        encoder, options = CODECS[codec]
        if encoder not in av.codecs_available:
            raise WriterError(
                f"the FFmpeg bundled with PyAV has no {encoder} encoder for {codec!r}; "
                f"use one of {available_codecs()}"
            )
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._tmp = temp_path_for(self.path)
        self.width, self.height, self.codec = width, height, codec
        self._frames_written = 0
        self._bytes_written = (
            0  # bytes of the packets muxed so far (the MP4 muxer buffers before the file grows)
        )
        self._child: ChildEncoder | None = None
        if encoder in ISOLATED:
            self._child = ChildEncoder(self._tmp, self.path, fps, width, height, encoder, dict(options))
            return
        self._container = av.open(str(self._tmp), mode="w", format="mp4")
        rate = Fraction(fps).limit_denominator(RATE_DENOMINATOR)
        self._stream = self._container.add_stream(encoder, rate=rate, options=dict(options))
        self._stream.width, self._stream.height = width, height
        self._stream.pix_fmt = "yuv420p"
        self._stream.time_base = 1 / rate

    @property
    def frames_written(self) -> int:
        return self._child.frames_written if self._child else self._frames_written

    @property
    def bytes_written(self) -> int:
        """Bytes of the packets muxed so far (the MP4 muxer buffers before the file grows)."""
        return self._child.bytes_written if self._child else self._bytes_written

    def write(self, frames: np.ndarray) -> None:
        """Append frames `(T, H, W, 3)` uint8."""
        if frames.ndim != 4 or frames.shape[1:] != (self.height, self.width, 3) or frames.dtype != np.uint8:
            raise WriterError(
                f"{self.path}: video frames must be uint8 (T, {self.height}, {self.width}, 3), "
                f"got {frames.dtype} {frames.shape}"
            )
        if self._child:
            self._child.write(frames)
            return
        for img in frames:
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")
            frame.pts = self._frames_written
            self._mux(self._stream.encode(frame))
            self._frames_written += 1

    def _mux(self, packets) -> None:
        for packet in packets:
            self._bytes_written += packet.size
            self._container.mux(packet)

    def close(self) -> None:
        """Flush, finish the file and move it into place atomically."""
        try:
            if self._child:
                self._child.close()
            else:
                self._mux(self._stream.encode())
                self._container.close()
            os.replace(self._tmp, self.path)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._tmp)

    def abort(self) -> None:
        if self._child:
            self._child.abort()
        else:
            with contextlib.suppress(Exception):
                self._container.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._tmp)


def encode_video(path: str | Path, frames: np.ndarray, fps: int | float, codec: str = "h264") -> None:
    enc = VideoEncoder(path, fps, width=frames.shape[2], height=frames.shape[1], codec=codec)
    try:
        enc.write(frames)
    except BaseException:
        enc.abort()
        raise
    enc.close()
