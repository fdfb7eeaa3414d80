"""A video stream's sample index: FFmpeg's own (PyAV >= 17's `VideoStream.index_entries`), or the same entries
rebuilt from the packets of one demux pass for older PyAV (15 and 16: LeRobot 0.6.1 pins `av>=15,<16`).

The MP4 demuxer makes each packet from one entry of its index, in decode order: the packet's dts is the
entry's timestamp, its byte position and size are the entry's, and its key and discard flags are the entry's
keyframe and discard flags. So the packets of one pass over the file, without decoding, are the index
(tests/test_video_decoder.py compares the two entry by entry, and every lookup, on files with B-frames,
edit lists, fragments and several codecs).

The pass never reads the samples (`rebuilt_index`): the file is read through `SamplesUnread`, which serves the
payload of every top-level `mdat` box as zeros and the rest (`ftyp`, `moov`, `moof`...) as it is, and the
demuxer runs without its parsers (`fflags=+noparse+nofillin`), so the packets are the index's entries as
they are: with a parser, H.264's and AV1's packets take their key flag from the payload, which zeros do not
have. From an object store the pass costs the bytes of the file's boxes outside `mdat`, which the container's
own open has already fetched (the sample data read whole made each open download the file).

`PacketIndex.search_timestamp` is FFmpeg's `av_index_search_timestamp` (libavformat/seek.c), the lookup
`index_entries.search_timestamp` calls: the last entry at or before a timestamp (`backward`) or the first at
or after it, skipping discarded entries in the search, then moved to a keyframe unless `any_frame`.
"""

from __future__ import annotations

import io
import struct
from typing import BinaryIO, NamedTuple

import av
import numpy as np

from robotempo.fs.blockfile import SeekableReader

# FFmpeg's mov/mp4 demuxer only: LeRobot's videos are MP4 (fragmented ones included), and a probed format
# follows the file's own references (an HLS playlist named .mp4 made FFmpeg read video outside the folder)
DEMUXER = "mp4"
_ZEROS = bytes(1 << 16)


class IndexEntry(NamedTuple):
    timestamp: int  # decode time, in the stream's time base
    pos: int  # byte offset of the sample in the file (-1: unknown)
    size: int
    is_keyframe: bool
    is_discard: bool


class PacketIndex:
    """The index of one video stream, from a demux pass over `container` (which it leaves at the end: give
    it a container of its own). Kept as numpy columns, 22 bytes per sample."""

    def __init__(self, container: av.container.InputContainer, stream_index: int = 0):
        stream = container.streams.video[stream_index]
        rows = []
        for packet in container.demux(stream):
            if packet.dts is None and packet.size == 0:  # the demuxer's final empty packet
                continue
            when = packet.dts if packet.dts is not None else packet.pts
            rows.append((when, -1 if packet.pos is None else packet.pos, packet.size,
                         packet.is_keyframe, packet.is_discard))  # fmt: skip
        columns = list(zip(*rows)) or [(), (), (), (), ()]
        self._timestamp = np.array(columns[0], dtype=np.int64)
        self._pos = np.array(columns[1], dtype=np.int64)
        self._size = np.array(columns[2], dtype=np.int32)
        self._keyframe = np.array(columns[3], dtype=bool)
        self._discard = np.array(columns[4], dtype=bool)

    def __len__(self) -> int:
        return len(self._timestamp)

    def __getitem__(self, i: int) -> IndexEntry:
        if not -len(self) <= i < len(self):
            raise IndexError(f"index entry {i} out of range for {len(self)} entries")
        return IndexEntry(int(self._timestamp[i]), int(self._pos[i]), int(self._size[i]),
                          bool(self._keyframe[i]), bool(self._discard[i]))  # fmt: skip

    def search_timestamp(self, timestamp: int, *, backward: bool = True, any_frame: bool = False) -> int:
        """The entry for `timestamp` as FFmpeg finds it (module docstring); -1 when there is none."""
        stamps, discard, n = self._timestamp, self._discard, len(self._timestamp)
        a, b = -1, n
        if n and stamps[n - 1] < timestamp:
            a = n - 1
        while b - a > 1:
            m = (a + b) >> 1
            while discard[m] and m < b and m < n - 1:  # the next entry shown
                m += 1
                if m == b and stamps[m] >= timestamp:
                    m = b - 1
                    break
            t = stamps[m]
            if t >= timestamp:
                b = m
            if t <= timestamp:
                a = m
        m = a if backward else b
        if not any_frame:
            step = -1 if backward else 1
            while 0 <= m < n and not self._keyframe[m]:
                m += step
        return -1 if m == n else int(m)


def rebuilt_index(f: BinaryIO) -> PacketIndex:
    """The index of an MP4 file's first video stream from one demux pass that reads no sample (module
    docstring). `f`: a seekable binary file object, left at the position it had (it may be a file another
    container is reading: each read here seeks, reads and seeks back)."""
    with av.open(SamplesUnread(f), format=DEMUXER, options={"fflags": "+noparse+nofillin"}) as container:
        return PacketIndex(container)


class SamplesUnread(SeekableReader):
    """A read-only view of an MP4 file object in which every top-level `mdat` box's payload reads as zeros
    (its header, and every other box, as it is). Reads never move `f`'s own position."""

    def __init__(self, f: BinaryIO):
        super().__init__()
        self._f = f
        here = f.tell()
        try:
            self._size = f.seek(0, io.SEEK_END)
        finally:
            f.seek(here)
        self._pos = 0
        self.read_bytes = 0  # bytes read from `f` (for tests and benchmarks)
        self.holes = self._mdat_payloads()

    def _mdat_payloads(self) -> list[tuple[int, int]]:
        """[start, end) of the payload of each top-level `mdat` box (ISO/IEC 14496-12 box headers: a 32-bit
        size and a type; size 1: a 64-bit size follows; size 0: to the end of the file). A header that does
        not parse ends the walk: the rest of the file is read as it is."""
        holes, pos = [], 0
        while pos + 8 <= self._size:
            size, kind = struct.unpack(">I4s", self._read_at(pos, 8))
            start = pos + 8
            if size == 1 and pos + 16 <= self._size:
                size, start = struct.unpack(">Q", self._read_at(pos + 8, 8))[0], pos + 16
            elif size == 0:
                size = self._size - pos
            if size < start - pos:
                break
            if kind == b"mdat":
                holes.append((start, min(pos + size, self._size)))
            pos += size
        return holes

    def _read_at(self, pos: int, n: int) -> bytes:
        here = self._f.tell()
        try:
            self._f.seek(pos)
            parts, want = [], n
            while want > 0:  # a block-cached file may return short reads
                chunk = self._f.read(want)
                if not chunk:
                    break
                parts.append(chunk)
                want -= len(chunk)
        finally:
            self._f.seek(here)
        data = b"".join(parts)
        self.read_bytes += len(data)
        return data

    def read(self, n: int = -1) -> bytes:
        end = self._size if n is None or n < 0 else min(self._size, self._pos + n)
        if end <= self._pos:
            return b""
        pos = self._pos
        for start, stop in self.holes:  # a short read: up to the next change between zeros and bytes
            if start <= pos < stop:
                end = min(end, stop, pos + len(_ZEROS))
                self._pos = end
                return _ZEROS[: end - pos]
            if pos < start:
                end = min(end, start)
                break
        data = self._read_at(pos, end - pos)
        self._pos += len(data)
        return data


def reorder_depth(context) -> int:
    """Frames the decoder may hold back for reordering (FFmpeg's `has_b_frames`; PyAV >= 17 names it
    `reorder_depth`, older PyAV `has_b_frames`)."""
    depth = getattr(context, "reorder_depth", None)
    if depth is None:
        depth = getattr(context, "has_b_frames", 0)
    return max(int(depth or 0), 0)
