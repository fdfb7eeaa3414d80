"""A video stream's sample index: FFmpeg's own (PyAV >= 17's `VideoStream.index_entries`), or the same entries
rebuilt from the packets of one demux pass for older PyAV (15 and 16: LeRobot 0.6.1 pins `av>=15,<16`).

The MP4 demuxer makes each packet from one entry of its index, in decode order: the packet's dts is the
entry's timestamp, its byte position and size are the entry's, and its key and discard flags are the entry's
keyframe and discard flags. So the packets of one pass over the file, without decoding, are the index
(tests/test_video_decoder.py compares the two entry by entry, and every lookup, on files with B-frames,
edit lists and several codecs). The pass reads the whole file once per open: what older PyAV costs.

`PacketIndex.search_timestamp` is FFmpeg's `av_index_search_timestamp` (libavformat/seek.c), the lookup
`index_entries.search_timestamp` calls: the last entry at or before a timestamp (`backward`) or the first at
or after it, skipping discarded entries in the search, then moved to a keyframe unless `any_frame`.
"""

from __future__ import annotations

from typing import NamedTuple

import av
import numpy as np


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


def reorder_depth(context) -> int:
    """Frames the decoder may hold back for reordering (FFmpeg's `has_b_frames`; PyAV >= 17 names it
    `reorder_depth`, older PyAV `has_b_frames`)."""
    depth = getattr(context, "reorder_depth", None)
    if depth is None:
        depth = getattr(context, "has_b_frames", 0)
    return max(int(depth or 0), 0)
