"""Decoded frames to RGB pixels: packed (H, W, 3) arrays, or written in place channels first into a caller's
array as uint8 or float32 in [0, 1].

Writing in place is what keeps a DataLoader worker cheap at large frame sizes: every fresh page a worker
writes costs a kernel page fault and a page clear (at 480x640 that cost more CPU than decoding, see
docs/benchmarks.md), so a frame goes straight from FFmpeg's conversion buffer into the batch's final
tensor, in its final dtype and layout, with no intermediate array.

Channels first comes straight from swscale's planar `gbrp` output (three plane copies) for 8-bit YUV sources
whose width is a multiple of 16 and height even, where it is bit-identical to packed `rgb24` (tested over
every even width to 130 and every multiple of 16 to 1296); any other source goes through `rgb24` and a
transposing copy. Other even widths are not safe: for yuv420p at widths 18-24, 34-40, 50-56, ... (84 among
them, a common camera size) swscale left the last columns of the gbrp planes unwritten, and those frames
were served with a dark band on the right, silently.
"""

from __future__ import annotations

import av
import numpy as np
from av.video.reformatter import VideoReformatter

# 8-bit YUV layouts whose planar RGB conversion equals the packed one exactly (odd sizes and 10-bit sources
# differ: swscale rounds their chroma edges and dithers differently per output format).
PLANAR_EXACT = frozenset({"yuv420p", "yuvj420p", "yuv422p", "yuvj422p", "yuv444p", "yuvj444p"})
PLANAR_WIDTH_STEP = 16  # the planar path only for widths that are multiples of this (module docstring)
_SCALE = np.float32(255)
GRAY12 = "gray12le"  # LeRobot's depth pixel format (12-bit codes in little-endian uint16)
_THREADS_ARG = True  # whether this PyAV's `reformat` takes `threads=` (found at the first call)


class PixelWriter:
    """RGB conversion for one video stream; keeps its swscale context (one swscale thread: its thread pool's
    hand-offs cost more than the conversion). Not thread-safe, like its reader."""

    def __init__(self) -> None:
        self._reformatter = VideoReformatter()

    def _reformat(self, frame: av.VideoFrame, pixel_format: str) -> av.VideoFrame:
        global _THREADS_ARG
        if _THREADS_ARG:
            try:
                return self._reformatter.reformat(frame, format=pixel_format, threads=1)
            except TypeError:  # an older PyAV: no `threads` (its swscale converts in one thread)
                _THREADS_ARG = False
        return self._reformatter.reformat(frame, format=pixel_format)

    def rgb(self, frame: av.VideoFrame) -> np.ndarray:
        """uint8 (H, W, 3) RGB."""
        return self._reformat(frame, "rgb24").to_ndarray()

    def write_chw(self, frame: av.VideoFrame, out: np.ndarray) -> None:
        """Write `frame` as RGB into `out`, a (3, H, W) uint8 or float32 array (float32: value / 255); a
        (1, H, W) float32 `out` takes the frame's 12-bit gray plane instead (`write_gray12`)."""
        if out.shape[0] == 1:
            self.write_gray12(frame, out)
            return
        if frame.format.name in PLANAR_EXACT and not (frame.width % PLANAR_WIDTH_STEP or frame.height % 2):
            planar = self._reformat(frame, "gbrp")
            g, b, r = (_plane(p, frame.height, frame.width) for p in planar.planes)
            for channel, plane in zip(out, (r, g, b)):
                store(channel, plane)
        else:
            store(out, self.rgb(frame).transpose(2, 0, 1))

    def write_gray12(self, frame: av.VideoFrame, out: np.ndarray) -> None:
        """Write the frame's `gray12le` plane (a depth camera's 12-bit codes, LeRobot's
        `frame.to_ndarray(format="gray12le")`) into `out`, a (1, H, W) float32 array, as exact float32 codes.
        A gray12le frame is read in place; any other format is converted by PyAV as LeRobot converts it."""
        if frame.format.name == GRAY12:
            plane = frame.planes[0]
            stride = plane.line_size // 2
            codes = np.frombuffer(plane, np.uint16, count=stride * frame.height)
            codes = codes.reshape(frame.height, stride)[:, : frame.width]
        else:
            codes = frame.to_ndarray(format=GRAY12)
        np.copyto(out[0], codes, casting="unsafe")


def store(out: np.ndarray, pixels: np.ndarray) -> None:
    """`out[...] = pixels` for uint8 `out`; `pixels / 255` in float32 for float32 `out` (the same values as
    torch's `pixels.to(torch.float32) / 255`, tested for all 256 levels)."""
    if out.dtype == np.uint8:
        np.copyto(out, pixels)
    else:
        np.divide(pixels, _SCALE, out=out, dtype=np.float32)


def _plane(plane, height: int, width: int) -> np.ndarray:
    """A view of one plane's pixels (its rows may be padded to `line_size`)."""
    stride = plane.line_size
    return np.frombuffer(plane, np.uint8, count=stride * height).reshape(height, stride)[:, :width]
