"""Where frames lie in an MP4: byte ranges of frame windows, from the file's own sample table.

When FFmpeg opens an MP4 it parses the sample table of the video track (`stco`/`co64` chunk offsets, `stsc`,
`stsz` sizes, `stss` sync samples, `stts` durations) into its stream index: one entry per sample, in
decode order, with its byte offset, size, decode time and keyframe flag. That index is already in memory
for every open file (and the open files are bounded by `VideoDecoderCache`), so `FrameByteIndex` keeps no
copy: it looks a window up in it with FFmpeg's own binary search, O(log n) per window, the same for H.264
and AV1 and for v3.0 files that hold many episodes one after another.

A window of frames costs, in the file, the bytes from the keyframe a seek lands on to the last frame's
sample, plus a few samples more: a decoder with B-frames (H.264) needs up to `reorder depth` samples past a
frame to output it, and a frame's sample can sit that many places later in decode order than its time
suggests. A window that turns out short costs one more request, never a wrong frame: the bytes come from
the same object either way.
"""

from __future__ import annotations

import math

import av

from robotempo.video.stream_index import reorder_depth


class FrameByteIndex:
    """Byte ranges of frame windows of one open video stream (times in the stream's pts units)."""

    def __init__(self, stream: av.video.stream.VideoStream, index, index_shift: int):
        self._entries = index
        self._count = len(self._entries)
        self._shift = index_shift  # pts - dts of the first frame (the index holds decode times)
        depth = reorder_depth(stream.codec_context)
        self._margin = 2 * depth + 2  # samples past the last frame's own: reordering, then decoder delay

    @classmethod
    def of(cls, stream: av.video.stream.VideoStream, index, index_shift: int) -> FrameByteIndex | None:
        """The index of `stream`, or None when FFmpeg's index is not one entry per frame (a fragmented MP4
        indexes its fragments as it reads them): its windows would be guesses."""
        if not stream.frames or len(index) != stream.frames:
            return None
        return cls(stream, index, index_shift)

    def window(self, first: float, last: float, from_keyframe: bool) -> tuple[int, int] | None:
        """Bytes `[start, end)` that decoding the frames from `first` to `last` reads: from the keyframe at
        or before `first` (`from_keyframe`, a seek) or from the sample at `first` (decoding continues from
        there), to a margin past `last`. None when the index has no sample there."""
        entries = self._entries
        i = entries.search_timestamp(
            math.floor(first) - self._shift, backward=True, any_frame=not from_keyframe
        )
        j = entries.search_timestamp(math.floor(last) - self._shift, backward=True, any_frame=True)
        i, j = max(i, 0), min(max(j, i, 0) + self._margin, self._count - 1)
        if j < 0:
            return None
        start, stop = entries[i], entries[j]
        end = stop.pos + stop.size
        return (start.pos, end) if start.pos >= 0 and end > start.pos else None
