"""One open video file and its decoder position: the frames nearest to query times, read in forward passes.

Choices, measured on 96x96 files on a 2-core machine (`benchmarks/bench_decoder.py --policy`):
- Decoding is single-threaded (`thread_count = 1`). FFmpeg's threads (`thread_type = "AUTO"`) cost wall time
  even in a lone process: H.264 71 -> 98 us per frame decoded in sequence, 269 -> 494 us per random seek and
  decode; AV1 (libdav1d) 106 -> 130 and 202 -> 405 us. Parallelism comes from FrameFetcher threads and
  DataLoader workers instead.
- RGB conversion goes through one `PixelWriter` per file (`robotempo.video.pixels`), which keeps its swscale
  context, with one swscale thread: ~8 us of CPU per 96x96 frame, against ~28 us with swscale's default
  thread pool (its hand-offs cost more than the conversion) and 85-350 us when each frame builds its own
  context (`frame.to_ndarray(format="rgb24")`). Only the frames returned are converted, and `frames_into`
  writes them straight into the caller's array.
- The decoder position is kept between calls: a call whose frames lie a little ahead of the last one decoded
  (sequential reads) continues forward without seeking.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from pathlib import Path

import av
import numpy as np

from robotempo.errors import (
    FrameTimestampError,
    MissingVideoError,
    StorageError,
    VideoDecodeError,
    VideoMismatchError,
)
from robotempo.fs import BlockFile, FileRef, as_file
from robotempo.video.byte_ranges import FrameByteIndex
from robotempo.video.pixels import PixelWriter
from robotempo.video.seek_plan import plan_seeks, seek_cost_frames
from robotempo.video.stream import StreamInfo
from robotempo.video.stream_index import DEMUXER, rebuilt_index

logger = logging.getLogger(__name__)

# FFmpeg's reader (avio_seek) reads forward instead of seeking to a position at most this far past where its
# last read ended (SHORT_SEEK_THRESHOLD): those skipped bytes are read from the file too.
_FORWARD_READ = 32768
_OUT_DTYPES = (np.dtype(np.uint8), np.dtype(np.float32))
# PyAV >= 17 exposes FFmpeg's per-stream sample index; older PyAV gets it rebuilt (`stream_index`)
FFMPEG_INDEX = hasattr(av.video.stream.VideoStream, "index_entries")
_FIX_CORRUPT = "the file is damaged or not a video: re-encode or re-download it"
_FIX_SHORT = (
    "the video is shorter than its episode: re-encode the episode's video, or check the episode's "
    "from_timestamp/to_timestamp and length in the metadata"
)


class VideoReader:
    """An open video stream and its decoding state. Not thread-safe: one thread at a time (see the cache)."""

    def __init__(self, path: str | Path | FileRef):
        ref = as_file(path)
        self.path = ref.where
        self._ref = ref
        source = None
        try:
            source = ref.open_video()
            # The MP4 demuxer only: a probed format follows the file's own references (an HLS playlist
            # named .mp4 made FFmpeg read video from outside the dataset folder).
            self._container = av.open(source, format=DEMUXER)
        except FileNotFoundError:
            raise ref.root.missing_root_error(ref.rel) or MissingVideoError(
                self.path, "the video file", "check the dataset's video_path and its files"
            ) from None
        except StorageError:
            raise
        except (av.FFmpegError, OSError, UnicodeDecodeError) as e:
            bad = VideoDecodeError(self.path, f"FFmpeg cannot open it ({e})", _FIX_CORRUPT)
            raise getattr(source, "failure", None) or ref.root.fault(e, ref.rel, bad) from None
        # An object-store file: each batch's frame windows are fetched before decoding (`_plan_fetches`).
        self._blocks = source if isinstance(source, BlockFile) else None
        try:
            self._init_stream()
        except BaseException as e:
            self._container.close()
            failure = self._store_failure()
            if failure is not None and failure is not e:
                raise failure from None
            raise
        self._pixels = PixelWriter()
        self._byte_index = None
        if self._blocks is not None:
            self._byte_index = FrameByteIndex.of(self._stream, self._index, self._index_shift)
            self._blocks.mark_opened()
        # Decoder state: a live decode generator (None after a decode error), the last two frames it produced
        # (`_prev`, `_cur`: consecutive in presentation order), whether it reached the end, and whether it
        # sits at the start of the file with nothing decoded yet.
        self._gen = None
        self._prev: av.VideoFrame | None = None
        self._cur: av.VideoFrame | None = None
        self._eof = False
        self._fresh = False
        self._new_generator()
        self.broken = False  # set when FFmpeg failed mid-read; the owner should close this reader
        self.closed = False
        self._seeks_unsafe = False  # its keyframes do not refresh the decoder: see `_seek`

    def _init_stream(self) -> None:
        if not self._container.streams.video:
            raise VideoDecodeError(self.path, "the file has no video stream", _FIX_CORRUPT)
        stream = self._container.streams.video[0]
        context = stream.codec_context
        if context is None:
            raise VideoDecodeError(
                self.path,
                "its video codec cannot be decoded by the FFmpeg bundled with PyAV",
                "re-encode the video in a codec this FFmpeg decodes (h264, av1), or use a PyAV build with it",
            )
        context.thread_count = 1
        self._stream = stream
        self.time_base = float(stream.time_base)
        # FFmpeg's guess first: the average rate counts the last frame's duration, which a muxer may stretch
        # (a 30-frame clip whose last frame lasts 6 frames averages 26.5 fps).
        rate = stream.guessed_rate or stream.average_rate or stream.base_rate
        if not rate and stream.frames and stream.duration:
            rate = stream.frames / (stream.duration * stream.time_base)
        if not rate:
            raise VideoDecodeError(self.path, "its frame rate is unknown", _FIX_CORRUPT)
        self.step = 1.0 / (float(rate) * self.time_base)  # frame spacing, in pts units
        self.start_pts = int(stream.start_time) if stream.start_time is not None else 0
        self._index = index = self._index_of(stream)
        self._index_is_per_frame = bool(stream.frames) and len(index) == stream.frames
        # Samples an edit list hides (a clip cut by stream copy keeps the frames from the keyframe before
        # its start) are in the index and in stream.frames, but never presented.
        self._hidden_before = _discarded_run(index, range(len(index)))
        hidden_after = _discarded_run(index, range(len(index) - 1, self._hidden_before - 1, -1))
        first_shown = min(self._hidden_before, len(index) - 1)
        # MP4 indexes hold decode times, which run ahead of presentation times by the B-frame delay.
        self._index_shift = self.start_pts - index[first_shown].timestamp if len(index) else 0
        frames = max(int(stream.frames or 0) - self._hidden_before - hidden_after, 0)
        self.end_pts = self.start_pts + stream.duration if stream.duration else None  # end of the last frame
        if self._index_is_per_frame and frames:  # the last frame shown + one frame, when that is earlier:
            # a muxer may stretch the last frame's duration (a recorder stamping its stop time)
            shown_end = index[len(index) - 1 - hidden_after].timestamp + self._index_shift + self.step
            self.end_pts = shown_end if self.end_pts is None else min(self.end_pts, shown_end)
        self.width, self.height = context.width, context.height
        self.info = StreamInfo(
            fps=float(rate),
            frames=frames,
            start_s=self.start_pts * self.time_base,
            end_s=None if self.end_pts is None else self.end_pts * self.time_base,
            width=self.width,
            height=self.height,
        )
        self._seek_cost = seek_cost_frames(context.name)

    def _index_of(self, stream) -> object:
        """FFmpeg's sample index of the stream (PyAV >= 17), or the same entries from a demux pass that reads
        the file's boxes but not its samples (older PyAV: `stream_index.rebuilt_index`), through the
        container's own block-cached file from an object store (its open fetched those boxes already)."""
        if FFMPEG_INDEX:
            return stream.index_entries
        try:
            if self._blocks is not None:
                return rebuilt_index(self._blocks)
            with open(self._ref.open_video(), "rb") as f:
                return rebuilt_index(f)
        except (av.FFmpegError, OSError) as e:
            bad = VideoDecodeError(self.path, f"FFmpeg cannot index it ({e})", _FIX_CORRUPT)
            raise self._store_failure() or self._ref.root.fault(e, self._ref.rel, bad) from None

    def close(self) -> None:
        self._drop_generator()
        self._prev = self._cur = None
        self._container.close()
        if self._blocks is not None:  # its blocks leave the process's budget now, not when collected
            self._blocks.close()
        self.closed = True

    # --- public --------------------------------------------------------------------------------------------

    def frames_at(self, timestamps: np.ndarray, tolerance_s: float) -> np.ndarray:
        """uint8 (N, H, W, 3) RGB frames nearest to `timestamps` (seconds), in the order given."""
        query = np.asarray(timestamps, dtype=np.float64).reshape(-1)
        if query.size == 0:
            return np.empty((0, self.height, self.width, 3), dtype=np.uint8)
        out: np.ndarray | None = None
        last_pts, rgb = None, None
        for frame, where in self._walk(query, tolerance_s):
            if frame.pts != last_pts:
                rgb = self._pixels.rgb(frame)
                last_pts = frame.pts
            if out is None:
                out = np.empty((query.size, *rgb.shape), dtype=np.uint8)
            out[where] = rgb
        assert out is not None
        return out

    def frames_into(
        self, timestamps: np.ndarray, tolerance_s: float, out: np.ndarray, rows: np.ndarray
    ) -> None:
        """Write the frame nearest to `timestamps[i]` (seconds) into `out[rows[i]]`, RGB channels first.

        out: (M, 3, H, W) uint8 (pixels as decoded) or float32 (pixels / 255, the values `frames_at` gives
            divided by 255 in float32); the same frames `frames_at` returns, in another layout and dtype.
            (M, 1, H, W) float32: a depth camera's 12-bit `gray12le` codes, as float32 (`write_gray12`).
        rows: one row of `out` per timestamp.
        """
        query = np.asarray(timestamps, dtype=np.float64).reshape(-1)
        rows = np.asarray(rows, dtype=np.int64).reshape(-1)
        depth = out.ndim == 4 and out.shape[1] == 1 and out.dtype == np.float32
        size = (1 if depth else 3, self.height, self.width)
        if out.ndim != 4 or out.shape[1:] != size or out.dtype not in _OUT_DTYPES:
            raise ValueError(
                f"{self.path}: frames_into takes a (M, 3, {self.height}, {self.width}) uint8 or float32, "
                f"or a (M, 1, {self.height}, {self.width}) float32 (depth codes), got {out.dtype} {out.shape}"
            )
        if rows.shape != query.shape:
            raise ValueError(f"{self.path}: {query.size} timestamps but {rows.size} rows")
        if query.size == 0:
            return
        last_pts, last_row = None, 0
        for frame, where in self._walk(query, tolerance_s):
            dest = rows[where]
            if frame.pts != last_pts:
                self._pixels.write_chw(frame, out[dest[0]])
                last_pts, last_row = frame.pts, dest[0]
            else:
                out[dest[0]] = out[last_row]
            for row in dest[1:]:
                out[row] = out[dest[0]]

    def _walk(self, query_s: np.ndarray, tolerance_s: float) -> Iterator[tuple[av.VideoFrame, np.ndarray]]:
        """For each distinct query time, in increasing order: its frame and the positions in `query_s` it
        fills. Decodes in forward passes, seeking where the cost model says so."""
        query = query_s / self.time_base
        tol = tolerance_s / self.time_base
        # Float error of a seconds -> pts conversion is far below a pts tick; 1e-6 tick of slack absorbs it.
        tol_pts = tol + 1e-6
        # Distinct query times, sorted, and for each the rows of the output it fills.
        order = np.argsort(query, kind="stable")
        ordered = query[order]
        starts = np.flatnonzero(np.concatenate(([True], ordered[1:] != ordered[:-1])))
        targets = ordered[starts].tolist()
        rows = np.split(order, starts[1:]) if len(starts) < len(order) else order.reshape(-1, 1)
        self._check_range(targets, tol_pts, tolerance_s)
        # How far a frame may lie past a target and still stand for the last frame at or before it: less
        # than half a frame spacing (so no nearer frame can lie before it), and within tolerance.
        slack = min(tol, self.step / 4)
        seeks = plan_seeks(
            [self._position(t) for t in targets],
            [self._keyframe_before(t) for t in targets],
            self._position_for(targets[0], slack),
            self._seek_cost,
        )
        fetches = self._plan_fetches(targets, seeks, slack) if self._byte_index is not None else None
        for i, (target, seek, where) in enumerate(zip(targets, seeks, rows)):
            if fetches and i in fetches:
                self._prefetch(fetches[i])
            if seek:
                self._seek(target, slack)
            frame = self._nearest(target)
            if abs(frame.pts - target) > tol_pts:
                self._raise_off_grid(target, frame.pts, tolerance_s)
            if (frame.width, frame.height) != (self.width, self.height):  # a stream that changes size midway
                raise VideoMismatchError(
                    self.path,
                    f"its frame at {frame.pts * self.time_base:.6f} s is {frame.height}x{frame.width} "
                    f"(height x width) but the stream, and the dataset, are {self.height}x{self.width}",
                    "re-encode the video at one frame size, the dataset's",
                )
            yield frame, where

    # --- planning -------------------------------------------------------------------------------------------

    def has_frame_near(self, seconds: float, tolerance_s: float) -> bool | None:
        """Whether the container indexes a frame within `tolerance_s` of `seconds` (from the index alone, no
        decoding); None when its index is not one entry per frame (a fragmented MP4)."""
        if not self._index_is_per_frame or not len(self._index):
            return None
        target = seconds / self.time_base - self._index_shift
        i = self._index.search_timestamp(int(math.floor(target)), backward=True, any_frame=True)
        near = [self._index[j].timestamp for j in (i, i + 1) if 0 <= j < len(self._index)]
        return any(abs(t - target) * self.time_base <= tolerance_s for t in near)

    def _keyframe_before(self, pts: float) -> int:
        """Frame number of the keyframe a seek to `pts` lands on, from the container index (costs only)."""
        if not len(self._index):
            return 0
        i = self._index.search_timestamp(int(math.floor(pts)) - self._index_shift, backward=True)
        if i < 0:
            return 0
        if self._index_is_per_frame:
            return max(i - self._hidden_before, 0)
        return self._position(self._index[i].timestamp + self._index_shift)

    def _position(self, pts: float) -> int:
        """Approximate frame number of a pts (for the cost model only; matching uses decoded pts)."""
        return max(round((pts - self.start_pts) / self.step), 0)

    def _position_for(self, target: float, slack: float) -> int | None:
        """Frame number of the decoder's current frame if it can continue forward to `target`, else None."""
        if self._gen is None:
            return None
        if self._cur is None:
            return -1 if self._fresh else None
        # (prev, cur) resolve any target from prev's pts on; a lone cur resolves targets from its own pts on,
        # or any target when it is the first frame of the file.
        low = self._prev.pts if self._prev is not None else self._cur.pts
        if target + slack < low and not (self._prev is None and self._cur.pts <= self.start_pts):
            return None
        return self._position(self._cur.pts)

    def _plan_fetches(
        self, targets: list[float], seeks: list[bool], slack: float
    ) -> dict[int, list[tuple[int, int]]]:
        """Byte ranges of the clusters of `targets` in an object-store file, in waves that each fit the
        prefetch budget (holes between windows merged into one request counted), keyed by the position in
        `targets` where a wave starts. A cluster larger than the budget is left to the block reader (a long
        forward decode reads ahead geometrically)."""
        assert self._blocks is not None
        budget = self._blocks.prefetch_budget
        starts = [i for i, seek in enumerate(seeks) if seek or i == 0]
        waves: dict[int, list[tuple[int, int]]] = {}
        wave_at, wave, held = 0, [], 0
        read_to: int | None = self._blocks.tell()  # where FFmpeg's next read starts
        for c, i in enumerate(starts):
            last = targets[(starts[c + 1] if c + 1 < len(starts) else len(targets)) - 1] + slack
            span = self._window(targets[i] + slack, last, seeks[i])
            if span is not None and read_to is not None and 0 < span[0] - read_to <= _FORWARD_READ:
                span = (read_to, span[1])  # FFmpeg reads up to the window instead of seeking
            if span is None or span[1] - span[0] > budget:
                read_to = None
                continue
            read_to = span[1]
            if wave and wave[-1][0] <= span[0] and span[0] - wave[-1][1] < self._blocks.hole:
                grow = max(span[1] - wave[-1][1], 0)  # one request with the previous window, hole included
                if held + grow <= budget:
                    wave[-1], held = (wave[-1][0], wave[-1][1] + grow), held + grow
                    continue
            if held + span[1] - span[0] > budget:
                waves[wave_at] = wave
                wave_at, wave, held = i, [], 0
            wave.append(span)
            held += span[1] - span[0]
        if wave:
            waves[wave_at] = wave
        return waves

    def _window(self, first: float, last: float, seek: bool) -> tuple[int, int] | None:
        """The bytes a cluster from `first` to `last` reads: from the keyframe a seek lands on, or from the
        decoder's current frame when it continues forward."""
        assert self._byte_index is not None
        if seek:
            return self._byte_index.window(first, last, from_keyframe=True)
        if self._cur is not None:
            return self._byte_index.window(self._cur.pts, last, from_keyframe=False)
        return self._byte_index.window(self.start_pts, last, from_keyframe=True)  # a fresh decoder

    def _prefetch(self, ranges: list[tuple[int, int]]) -> None:
        assert self._blocks is not None
        try:
            self._blocks.prefetch(ranges)
        except StorageError:
            raise
        except OSError as e:
            raise VideoDecodeError(self.path, f"it cannot be read ({e})", _FIX_CORRUPT) from None

    # --- decoding -------------------------------------------------------------------------------------------

    def _seek(self, target: float, slack: float) -> None:
        """Position the decoder so its next frames include the last frame at or before `target`."""
        if self._seeks_unsafe:  # decode from the start, unless the decoder can go on forward to the target
            if self._position_for(target, slack) is None:
                self._restart(None)
            return
        seek_to = int(math.floor(target + slack))
        for attempt in range(6):
            self._restart(seek_to)
            frame = self._next_frame()
            if frame is None:  # landed past the end: try earlier
                seek_to -= int(self.step * 2**attempt) + 1
                continue
            self._cur = frame
            if not frame.key_frame:
                # The first frame decoded after a seek is the keyframe it landed on, in every codec and GOP
                # structure tried (closed and open GOPs, B-pyramids, H.264, HEVC, AV1, VP9), except where
                # the container's keyframes are not decoder refresh points: x264's intra-refresh marks the
                # start of each refresh cycle as one, and the frames decoded from it are wrong until the
                # refresh has crossed the picture (FFmpeg outputs some of them as if sound). Decoding from
                # the start is right. (A seek into the first group, before the file's first shown
                # keyframe, e.g. behind an edit list, lands where the start does anyway.)
                if self._keyframe_before(seek_to) > 0:
                    self._distrust_keyframes()
                break
            if frame.pts <= target + slack or frame.pts <= self.start_pts:
                return
            # The demuxer landed on a keyframe after the target (its index may hold decode times): go back.
            seek_to = min(seek_to, frame.pts) - int(self.step * 2**attempt) - 1
        logger.debug("%s: seeks near pts %s kept landing late; decoding from the start", self.path, target)
        self._restart(None)

    def _distrust_keyframes(self) -> None:
        """Every later seek in this file decodes from its start (or on from where the decoder is)."""
        self._seeks_unsafe = True
        logger.warning(
            "%s: a seek landed on a keyframe that does not refresh the decoder (x264 intra-refresh?): "
            "frames decoded from it would be wrong, so this file is decoded from its start for every seek, "
            "which is slow. Fix: re-encode it with real keyframes (e.g. x264 without intra-refresh)",
            self.path,
        )

    def _restart(self, seek_to: int | None) -> None:
        """Seek to the keyframe at or before pts `seek_to` (None: the start of the file); reset the state."""
        try:
            if seek_to is None:
                self._container.seek(0)
            else:
                self._container.seek(seek_to, stream=self._stream, backward=True)
        except StorageError:
            self.broken = True
            raise
        except av.FFmpegError as e:
            self.broken = True
            bad = VideoDecodeError(self.path, f"FFmpeg cannot seek in it ({e})", _FIX_CORRUPT)
            raise self._store_failure() or bad from None
        self._new_generator()
        self._fresh = seek_to is None

    def _new_generator(self) -> None:
        """A new decode generator from the demuxer's position (the file start when nothing was read)."""
        self._drop_generator()
        self._gen = _decode(self._container, self._stream)
        self._prev = self._cur = None
        self._eof = False
        self._fresh = True

    def _drop_generator(self) -> None:
        """Close the live decode generator: see `_decode`."""
        if self._gen is not None:
            self._gen.close()
            self._gen = None

    def _next_frame(self) -> av.VideoFrame | None:
        assert self._gen is not None
        try:
            while True:
                frame = next(self._gen)
                if frame.pts is not None:
                    return frame
                logger.debug("%s: skipping a decoded frame without pts", self.path)
        except StopIteration:
            self._eof = True
            return None
        except StorageError:
            self.broken = True
            self._gen = None
            raise
        except av.FFmpegError as e:
            self.broken = True
            self._gen = None
            bad = VideoDecodeError(self.path, f"FFmpeg cannot decode it ({e})", _FIX_CORRUPT)
            raise self._store_failure() or bad from None

    def _nearest(self, target: float) -> av.VideoFrame:
        """Decode forward until the frames around `target` are known; return the nearer (earlier on a tie).

        A frame at most half a tick below `target` is known to be the nearer one without decoding the next:
        pts are integers, so any other frame lies at least half a tick further. Targets come from float32
        timestamps and land a little off the tick (512.0000267 for pts 512): stopping only at `pts >= target`
        would decode one frame more at the end of every run of needed frames (8.4 frames per sample instead
        of 7.2 on the VLA H.264 workload)."""
        if self._gen is None:
            self._restart(None)
        while not self._eof and (self._cur is None or self._cur.pts < target - 0.5):
            frame = self._next_frame()
            if frame is None:
                break
            self._prev, self._cur = self._cur, frame
            self._fresh = False
        if self._cur is None:
            bad = VideoDecodeError(self.path, "FFmpeg decoded no frame from it", _FIX_CORRUPT)
            raise self._store_failure() or bad
        prev, cur = self._prev, self._cur
        if cur.pts >= target and prev is not None and target - prev.pts <= cur.pts - target:
            return prev
        return cur

    # --- errors ---------------------------------------------------------------------------------------------

    def _check_range(self, targets: list[float], tol_pts: float, tolerance_s: float) -> None:
        """Reject, before decoding, queries before the first frame or after the end of the video (sorted)."""
        if not (math.isfinite(targets[0]) and math.isfinite(targets[-1])):
            bad = [t * self.time_base for t in targets if not math.isfinite(t)]
            raise FrameTimestampError(f"{self.path}: query timestamps must be finite numbers, got {bad}")
        if targets[0] < self.start_pts - tol_pts:
            self._raise_off_grid(targets[0], self.start_pts, tolerance_s)
        if self.end_pts is not None and targets[-1] > self.end_pts + tol_pts:
            self._raise_too_short(targets[-1])

    def _raise_off_grid(self, target: float, nearest_pts: int, tolerance_s: float) -> None:
        failure = self._store_failure()  # frames missing because a store read failed: that failure
        if failure is not None:
            self.broken = True
            raise failure
        if target > nearest_pts and self._eof and self._cur is not None and nearest_pts == self._cur.pts:
            self._raise_too_short(target)
        query_s, nearest_s = target * self.time_base, nearest_pts * self.time_base
        raise FrameTimestampError(
            f"{self.path}: no frame within tolerance_s={tolerance_s} of t={query_s:.6f} s; the nearest "
            f"frame is at {nearest_s:.6f} s ({abs(query_s - nearest_s) * 1e3:.3f} ms away). Fix: check the "
            "query time and tolerance_s; in a v3.0 dataset check the episode's videos/<key>/from_timestamp "
            "(merged datasets may hold from_timestamp values off the 1/fps frame grid)"
        )

    def _store_failure(self) -> BaseException | None:
        """The object-store failure behind an FFmpeg error or an early end of the stream, if any: FFmpeg
        reports a failed read as damage or as the end of the file (`BlockFile.failure`)."""
        return None if self._blocks is None else self._blocks.failure

    def _raise_too_short(self, target: float) -> None:
        failure = self._store_failure()
        if failure is not None:
            self.broken = True
            raise failure
        last = self._last_frame_time()
        raise VideoDecodeError(
            self.path,
            f"a frame at t={target * self.time_base:.6f} s was requested but the video ends at {last}",
            _FIX_SHORT,
        )

    def _last_frame_time(self) -> str:
        if self._eof and self._cur is not None:
            return f"its last frame, t={self._cur.pts * self.time_base:.6f} s"
        if self.end_pts is not None:
            return f"t={self.end_pts * self.time_base:.6f} s ({self._stream.frames} frames)"
        return "an earlier time"


def _decode(container: av.container.InputContainer, stream: av.VideoStream) -> Iterator[av.VideoFrame]:
    """`container.decode(stream)`, with its demuxer generator closed when this one stops.

    PyAV (18.1, measured) allocates the demuxer's read buffer (an AVPacket) when a `demux` generator starts
    and frees it in a `finally` that runs on `close()` or exhaustion only: a started generator dropped
    unclosed keeps 150-170 bytes of native memory for good, and `container.decode` drops its inner `demux`
    even when it is closed itself (`benchmarks/repro_pyav_demux_leak.py`). A reader starts a new pass at
    every seek, about one per camera and sample of a random batch: ~20 KB per batch of 32 on the VLA corpus.
    """
    packets = container.demux(stream)
    try:
        for packet in packets:
            yield from packet.decode()
    finally:
        packets.close()


def _discarded_run(index, positions) -> int:
    """How many index entries, in the order of `positions`, are discarded (hidden by an edit list) before the
    first shown one; stops there, so it costs the hidden samples only."""
    n = 0
    for i in positions:
        if not index[i].is_discard:
            break
        n += 1
    return n
