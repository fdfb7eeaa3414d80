"""robotempo.video decoding, on real MP4 files whose frames draw their own index as black/white blocks."""

from __future__ import annotations

import ctypes
import ctypes.util
import io
import multiprocessing
import pickle
from concurrent.futures import ThreadPoolExecutor
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from robotempo.errors import FrameTimestampError, VideoDecodeError
from robotempo.video import encoder as encoder_module
from robotempo.video.cache import DECODER_BUDGET_BYTES, decoder_bytes
from robotempo.video.decoder import FrameFetcher, VideoDecoderCache, decode_frames
from robotempo.video.encoder import VideoEncoder, available_codecs
from robotempo.video.reader import FFMPEG_INDEX, VideoReader
from robotempo.video.seek_plan import plan_seeks

FPS = 30
SIZE = 64  # 4x4 blocks of 16x16 pixels: 16 bits of frame index
EPISODE_LENGTHS = [40, 25, 61, 33, 50]
CODECS = available_codecs()


def index_frames(indices: np.ndarray) -> np.ndarray:
    """uint8 (T, 64, 64, 3) frames showing each index's 16 bits as white (1) / black (0) blocks."""
    bits = (np.asarray(indices)[:, None] >> np.arange(16)) & 1
    blocks = (bits.reshape(-1, 4, 4) * 255).astype(np.uint8)
    return np.repeat(np.repeat(blocks, 16, axis=1), 16, axis=2)[..., None].repeat(3, axis=3)


def read_indices(frames: np.ndarray) -> np.ndarray:
    centers = frames[:, 4::16, 4::16, :].astype(np.int32)  # a pixel well inside each block
    bits = (centers.mean(axis=-1) > 127).reshape(len(frames), 16)
    return (bits << np.arange(16)).sum(axis=1)


def write_episodes(path: Path, codec: str, lengths: list[int]) -> np.ndarray:
    """One file, episode after episode, frame index = global frame number; returns the from_timestamps."""
    enc = VideoEncoder(path, FPS, SIZE, SIZE, codec=codec)
    start = 0
    for length in lengths:
        enc.write(index_frames(np.arange(start, start + length)))
        start += length
    enc.close()
    return np.concatenate([[0], np.cumsum(lengths)[:-1]]) / FPS


@pytest.fixture(scope="module", params=CODECS)
def episodes_file(request, tmp_path_factory):
    path = tmp_path_factory.mktemp("video") / f"episodes_{request.param}.mp4"
    from_timestamps = write_episodes(path, request.param, EPISODE_LENGTHS)
    return path, from_timestamps


@pytest.fixture(scope="module")
def long_gop_file(tmp_path_factory):
    """H.264 with a GOP of 50 and B-frames (decode order differs from presentation order)."""
    if "h264" not in CODECS:
        pytest.skip("no H.264 encoder")
    path = tmp_path_factory.mktemp("video") / "gop50.mp4"
    mp = pytest.MonkeyPatch()
    mp.setitem(encoder_module.CODECS, "h264", ("libx264", {"crf": "23", "preset": "veryfast", "g": "50"}))
    try:
        write_episodes(path, "h264", [300])
    finally:
        mp.undo()
    with av.open(str(path)) as container:
        pts = [p.pts for p in container.demux(video=0) if p.pts is not None]
    assert np.any(np.diff(pts) < 0)  # packets really come out of presentation order
    return path


@pytest.fixture(scope="module")
def offset_file(tmp_path_factory):
    """First pts not 0 (and not on the nominal grid): frames written with pts 10, 11, ... and an edit list."""
    if "h264" not in CODECS:
        pytest.skip("no H.264 encoder")
    path = tmp_path_factory.mktemp("video") / "offset.mp4"
    with av.open(str(path), "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=Fraction(FPS), options={"g": "4"})
        stream.width = stream.height = SIZE
        stream.pix_fmt = "yuv420p"
        stream.time_base = Fraction(1, FPS)
        for i, image in enumerate(index_frames(np.arange(20))):
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts = 10 + i
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    with av.open(str(path)) as container:
        s = container.streams.video[0]
        pts = np.array([f.pts for f in container.decode(s)])
        times = pts * float(s.time_base)
    assert times[0] > 0.3
    return path, times


def check(path, timestamps, expected, **kwargs):
    frames = decode_frames(path, np.asarray(timestamps, dtype=np.float64), **kwargs)
    assert frames.dtype == np.uint8 and frames.shape == (len(expected), SIZE, SIZE, 3)
    np.testing.assert_array_equal(read_indices(frames), expected)
    return frames


def count_seeks(monkeypatch) -> list:
    seeks: list = []
    original = VideoReader._restart

    def counting(self, seek_to):
        seeks.append(seek_to)
        return original(self, seek_to)

    monkeypatch.setattr(VideoReader, "_restart", counting)
    return seeks


# --- correct frames ----------------------------------------------------------------------------------------


def test_random_repeated_unsorted_timestamps(episodes_file):
    path, _ = episodes_file
    total = sum(EPISODE_LENGTHS)
    rng = np.random.default_rng(0)
    cache = VideoDecoderCache(2)
    for _ in range(5):
        idx = rng.integers(0, total, 40)
        idx[5:9] = idx[0]  # repeats
        check(path, idx / FPS, idx, cache=cache)
    check(path, [0.0, (total - 1) / FPS, 0.0], [0, total - 1, 0])  # first and last frame, no cache


def test_episode_offsets_and_float32_timestamps(episodes_file):
    """v3.0 style queries: from_timestamp (float64) + the parquet's float32 timestamp."""
    path, from_timestamps = episodes_file
    cache = VideoDecoderCache()
    starts = np.concatenate([[0], np.cumsum(EPISODE_LENGTHS)[:-1]])
    for ep, (offset, length) in enumerate(zip(from_timestamps, EPISODE_LENGTHS)):
        k = np.array([0, length - 1, length // 2, 1])
        ts = offset + (k / FPS).astype(np.float32)
        check(path, ts, starts[ep] + k, cache=cache)


def test_matches_a_plain_full_decode_pixel_for_pixel(episodes_file):
    path, _ = episodes_file
    with av.open(str(path)) as container:
        reference = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    idx = np.array([3, 90, 2, 150, 151])
    np.testing.assert_array_equal(decode_frames(path, idx / FPS), np.stack([reference[i] for i in idx]))


def test_long_gop_with_b_frames(long_gop_file):
    rng = np.random.default_rng(1)
    cache = VideoDecoderCache()
    for _ in range(4):
        idx = rng.integers(0, 300, 30)
        check(long_gop_file, idx / FPS, idx, cache=cache)
    check(long_gop_file, [49 / FPS, 50 / FPS, 299 / FPS], [49, 50, 299], cache=cache)


def test_first_pts_not_zero(offset_file):
    path, times = offset_file
    idx = np.array([0, 19, 7, 7, 3])
    check(path, times[idx], idx)
    with pytest.raises(FrameTimestampError, match="nearest frame"):
        decode_frames(path, np.array([10 / FPS]))  # nominal time, 0.33 ms from the frame: beyond 1e-4 s
    check(path, 10 / FPS + idx / FPS, idx, tolerance_s=1e-3)
    with pytest.raises(FrameTimestampError):
        decode_frames(path, np.array([0.0]))  # before the first frame


# --- seeks -------------------------------------------------------------------------------------------------


def test_one_seek_per_cluster_not_per_frame(episodes_file, monkeypatch):
    path, _ = episodes_file
    seeks = count_seeks(monkeypatch)
    clusters = [np.arange(20, 30), np.arange(100, 112), np.arange(180, 190)]
    idx = np.concatenate(clusters)[::-1]
    check(path, idx / FPS, idx, cache=VideoDecoderCache())
    assert len(seeks) == 3


def test_sequential_calls_continue_without_seeking(episodes_file, monkeypatch):
    path, _ = episodes_file
    seeks = count_seeks(monkeypatch)
    cache = VideoDecoderCache()
    for i in range(60, 90):
        check(path, [i / FPS], [i], cache=cache)
    check(path, [89 / FPS, 88 / FPS], [89, 88], cache=cache)  # the last two frames are still at hand
    assert len(seeks) == 1
    check(path, [10 / FPS], [10], cache=cache)  # backwards: a seek
    assert len(seeks) == 2


def test_no_frame_decoded_past_the_last_one_needed(long_gop_file, monkeypatch):
    """Query times a hair past their frames' ticks (as float32 timestamps land) are resolved without
    decoding the frame after the last one needed; the frames served stay the nearest ones."""
    decoded: list = []
    original = VideoReader._next_frame

    def counting(self):
        frame = original(self)
        decoded.append(None if frame is None else round(frame.pts * self.time_base * FPS))
        return frame

    monkeypatch.setattr(VideoReader, "_next_frame", counting)
    cache = VideoDecoderCache()
    for run in (np.arange(102, 106), np.arange(160, 163), np.array([299])):
        decoded.clear()
        check(long_gop_file, run / FPS + 2e-7, run, cache=cache)  # 2e-7 s: within the 1e-4 s tolerance
        assert max(decoded) == run[-1], (run, decoded)
    check(long_gop_file, [161 / FPS + 0.4 / FPS], [161], cache=cache, tolerance_s=0.5 / FPS)  # still nearest


def test_long_gop_reads_forward_inside_a_gop(long_gop_file, monkeypatch):
    seeks = count_seeks(monkeypatch)
    idx = np.array([112, 105, 140, 148])  # one GOP (100..149): one seek, then forward
    check(long_gop_file, idx / FPS, idx, cache=VideoDecoderCache())
    assert len(seeks) == 1


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost".split()
    ]


def _malloc_bytes() -> int:
    """Bytes glibc's malloc has handed out and not taken back (every arena, mmapped chunks included)."""
    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    libc.mallinfo2.restype = _MallInfo2
    info = libc.mallinfo2()
    return info.uordblks + info.hblkhd


@pytest.mark.skipif(
    not hasattr(ctypes.CDLL(ctypes.util.find_library("c")), "mallinfo2"), reason="needs glibc >= 2.33"
)
def test_seeks_leave_no_native_memory_behind(episodes_file, monkeypatch):
    """Each seek starts a new decode pass; the pass it replaces must give back FFmpeg's read buffer (PyAV
    frees it only when its demux generator is closed: ~150-200 bytes per seek leaked before)."""
    path, _ = episodes_file
    seeks = count_seeks(monkeypatch)
    cache = VideoDecoderCache()
    far = [20, 180]  # far apart: every call seeks

    def calls(n: int) -> None:
        for i in range(n):
            check(path, [far[i % 2] / FPS], [far[i % 2]], cache=cache)

    calls(200)  # the reader, its buffers and Python's free lists reach their working size
    before, seeks_before = _malloc_bytes(), len(seeks)
    calls(2000)
    seeks_made = len(seeks) - seeks_before
    assert seeks_made >= 2000
    # An AVPacket alone is 104 bytes; measured with the fix: 8-9 bytes per seek, 8 of them the list `seeks`.
    assert (_malloc_bytes() - before) / seeks_made < 40


def test_plan_gop2_seeks_only_on_large_gaps():
    positions = [10, 11, 13, 30, 31, 100]
    keyframes = [p - p % 2 for p in positions]
    assert plan_seeks(positions, keyframes, None, 2.0) == [True, False, False, True, False, True]
    assert plan_seeks(positions, keyframes, 9, 2.0)[0] is False  # continue from the decoder's position
    assert plan_seeks([0, 5], [0, 0], -1, 2.0) == [False, False]  # fresh decoder, one GOP: no seek


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.integers(0, 2000), min_size=1, max_size=40),
    st.sampled_from([1, 2, 12, 250]),
    st.floats(0.0, 8.0),
    st.one_of(st.none(), st.integers(-1, 2000)),
)
def test_plan_costs_no_more_than_always_or_never_seeking(positions, gop, seek_cost, current):
    positions = sorted(positions)
    keyframes = [p - p % gop for p in positions]

    def cost(seeks):
        total, previous = 0.0, current
        for p, k, s in zip(positions, keyframes, seeks):
            if not s and previous is None:
                return np.inf
            total += seek_cost + p - k + 1 if s else max(p - previous, 0)
            previous = p
        return total

    plan = cost(plan_seeks(positions, keyframes, current, seek_cost))
    assert plan <= cost([True] * len(positions)) + 1e-9
    assert plan <= cost([False] * len(positions)) + 1e-9


# --- errors ------------------------------------------------------------------------------------------------


def test_tolerance_error_names_file_time_nearest_and_fix(episodes_file):
    path, _ = episodes_file
    with pytest.raises(FrameTimestampError) as info:
        decode_frames(path, np.array([10.5 / FPS]))
    message = str(info.value)
    assert str(path) in message and "0.350000" in message and "0.333333" in message
    assert "from_timestamp" in message and "tolerance_s" in message
    check(path, [10.5 / FPS], [10], tolerance_s=0.5 / FPS)  # tie: the earlier frame


def test_missing_corrupt_truncated_and_unknown_codec(episodes_file, tmp_path):
    path, _ = episodes_file
    cases = {"missing.mp4": None, "random.mp4": np.random.default_rng(0).bytes(5000)}
    data = path.read_bytes()
    cases["truncated.mp4"] = data[: len(data) // 2]
    stsd = data.find(b"stsd")
    for fourcc in (b"avc1", b"av01"):
        at = data.find(fourcc, stsd)
        if at > 0:
            cases["unknown_codec.mp4"] = data[:at] + b"zzz1" + data[at + 4 :]
    for name, content in cases.items():
        bad = tmp_path / name
        if content is not None:
            bad.write_bytes(content)
        with pytest.raises(VideoDecodeError) as info:
            decode_frames(bad, np.array([0.0]), cache=VideoDecoderCache())
        assert str(bad) in str(info.value) and "Fix:" in str(info.value)
    assert "unknown_codec.mp4" in cases


def test_damaged_frame_data(episodes_file, tmp_path):
    """Zeroed bytes in the media data: FFmpeg's decode error is a VideoDecodeError; the cache drops it."""
    path, _ = episodes_file
    data = bytearray(path.read_bytes())
    start = data.find(b"mdat") + 4
    size = int.from_bytes(data[start - 8 : start - 4], "big")
    data[start + size // 2 : start + size * 3 // 4] = bytes(size * 3 // 4 - size // 2)
    bad = tmp_path / "damaged.mp4"
    bad.write_bytes(bytes(data))
    cache = VideoDecoderCache()
    with pytest.raises(VideoDecodeError, match="FFmpeg cannot") as info:
        decode_frames(bad, np.arange(sum(EPISODE_LENGTHS)) / FPS, cache=cache)
    assert str(bad) in str(info.value)
    assert bad not in cache
    check(path, [1 / FPS], [1], cache=cache)


def test_video_shorter_than_its_episode(episodes_file):
    path, _ = episodes_file
    total = sum(EPISODE_LENGTHS)
    cache = VideoDecoderCache()
    for t in (total / FPS, (total + 100) / FPS):  # one frame past the end (found decoding), far (at once)
        with pytest.raises(VideoDecodeError, match="shorter than its episode") as info:
            decode_frames(path, np.array([1.0, t]), cache=cache)
        assert str(path) in str(info.value)
    check(path, [(total - 1) / FPS], [total - 1], cache=cache)  # the cached reader still works


def test_bad_arguments(episodes_file):
    path, _ = episodes_file
    with pytest.raises(FrameTimestampError, match="finite"):
        decode_frames(path, np.array([0.0, np.nan]))
    with pytest.raises(FrameTimestampError, match="tolerance_s"):
        decode_frames(path, np.array([0.0]), tolerance_s=-1.0)
    assert decode_frames(path, np.array([])).shape == (0, SIZE, SIZE, 3)


# --- cache, processes, threads -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("small")
    paths = []
    for i in range(4):
        paths.append(folder / f"cam{i}.mp4")
        enc = VideoEncoder(paths[-1], FPS, SIZE, SIZE, codec=CODECS[0])
        enc.write(index_frames(np.arange(1000 * i, 1000 * i + 30)))
        enc.close()
    return paths


def test_cache_bound_and_eviction_closes(small_files):
    cache = VideoDecoderCache(2)
    readers = []
    for path in small_files:
        decode_frames(path, np.array([0.0]), cache=cache)
        with cache.reader(path) as reader:
            readers.append(reader)
        assert len(cache) <= 2
    assert [r.closed for r in readers] == [True, True, False, False]
    assert small_files[3] in cache and small_files[0] not in cache
    cache.clear()
    assert len(cache) == 0 and all(r.closed for r in readers)


def test_cache_shared_by_threads_with_eviction_in_use(small_files):
    """Threads share one cache of size 1 over two files: evictions of files in use, same-file turns."""
    cache = VideoDecoderCache(1)
    rng = np.random.default_rng(3)
    jobs = [(i % 2, rng.integers(0, 30, 8)) for i in range(40)]

    def work(job):
        camera, idx = job
        frames = decode_frames(small_files[camera], idx / FPS, cache=cache)
        return np.array_equal(read_indices(frames), 1000 * camera + idx)

    with ThreadPoolExecutor(4) as pool:
        assert all(pool.map(work, jobs))
    assert len(cache) <= 1


def test_cache_size_knob(monkeypatch):
    monkeypatch.setenv("ROBOTEMPO_VIDEO_CACHE_SIZE", "3")
    assert VideoDecoderCache().max_size == 3
    assert VideoDecoderCache(5).max_size == 5
    monkeypatch.setenv("ROBOTEMPO_VIDEO_CACHE_SIZE", "zero")
    with pytest.raises(ValueError, match="ROBOTEMPO_VIDEO_CACHE_SIZE") as bad:
        VideoDecoderCache()
    assert "unset it to use robotempo's size for the datasets" in str(bad.value)  # not "the default 8" (QA)
    monkeypatch.delenv("ROBOTEMPO_VIDEO_CACHE_SIZE")
    assert VideoDecoderCache().max_size == 8


class _User:
    """Stands for a dataset reading through a cache (anything a weak reference can point to)."""


def test_the_cache_counts_the_files_of_every_dataset_alive_as_they_join_and_leave(monkeypatch):
    """The incremental count (group by group, freed datasets leaving at the next join) equals the union of
    the live datasets' files counted whole, over a random sequence of joins and frees: datasets that share
    folders (the same files selected twice count once), of several frame sizes, some in a store."""
    import random

    from robotempo.video import cache as cache_module

    monkeypatch.delenv("ROBOTEMPO_VIDEO_CACHE_SIZE", raising=False)
    rng = random.Random(0)
    cache = VideoDecoderCache()
    alive: dict[int, tuple[_User, int, list]] = {}
    for step in range(300):
        if alive and rng.random() < 0.3:
            for token in rng.sample(sorted(alive), rng.randint(1, min(3, len(alive)))):
                del alive[token]  # its last reference: freed here
        user = _User()
        cameras = rng.randint(1, 4)
        parts = [
            cache_module.VideoFiles(
                f"root{rng.randint(0, 12)}/cam{c}",
                np.unique(np.array(rng.sample(range(40), rng.randint(1, 12)))),
                decoder_bytes(rng.choice((64 * 64, 224 * 224, 480 * 640))),
                rng.random() < 0.3,
            )
            for c in range(cameras)
        ]
        alive[step] = (user, cameras, parts)
        cache.join(user, cameras, parts)
        whole = cache_module.video_union(p for _, _, ps in alive.values() for p in ps)
        most = max(c for _, c, _ in alive.values())
        assert cache._users.cover() == (most, *whole), step
        assert cache.max_size == cache_module.fitted_size(most, *whole)
    explicit = VideoDecoderCache(5)
    explicit.join(_User(), 3, alive[max(alive)][2])
    assert explicit.max_size == 5


def test_default_cache_size_is_8_per_camera(monkeypatch):
    monkeypatch.delenv("ROBOTEMPO_VIDEO_CACHE_SIZE", raising=False)
    cache = VideoDecoderCache()
    cache.fit(3)  # a random batch of a 3-camera dataset reads 3 files where one camera reads 1
    assert cache.max_size == 24
    cache.fit(1)
    assert cache.max_size == 24  # the largest dataset using the process's cache wins
    explicit = VideoDecoderCache(5)
    explicit.fit(3, files=100, file_bytes=decoder_bytes(96 * 96))
    assert explicit.max_size == 5
    monkeypatch.setenv("ROBOTEMPO_VIDEO_CACHE_SIZE", "3")
    from_env = VideoDecoderCache()
    from_env.fit(3, files=100, file_bytes=decoder_bytes(96 * 96))
    assert from_env.max_size == 3


def test_a_default_cache_holds_every_file_of_its_datasets_that_fits_the_budget(monkeypatch, caplog):
    """Every selected file when their decoders fit ~1 GiB (by the largest frame) and the open-file limit, or
    as many as fit when that covers 3/4 of them; else 8 per camera, not a small partial cover (64 of 120
    files open ran as slowly as 4) — and a log line says how to keep them all open."""
    import logging

    from robotempo.video import cache as cache_module

    monkeypatch.delenv("ROBOTEMPO_VIDEO_CACHE_SIZE", raising=False)
    monkeypatch.setattr(cache_module, "descriptor_limit", lambda: 1 << 20)
    vga = decoder_bytes(480 * 640)
    fits = DECODER_BUDGET_BYTES // vga
    assert 250 < fits < 350  # a mixture of 100 datasets of 3 VGA cameras, one file each, fits
    cache = VideoDecoderCache()
    cache.fit(3, files=fits, file_bytes=vga)
    assert cache.max_size == fits
    cache.fit(3, files=12, file_bytes=vga)  # a smaller dataset using the same process's cache later
    assert cache.max_size == fits
    monkeypatch.setattr(cache_module, "_noted", set())
    with caplog.at_level(logging.INFO, logger="robotempo.video.cache"):
        too_many = VideoDecoderCache()
        too_many.fit(3, files=fits + 1, file_bytes=vga)  # nearly all fit: as many as fit
        cache_module.note_cover(3, files=fits + 1, file_bytes=vga)
        cache_module.note_cover(3, files=fits + 1, file_bytes=vga)  # told once
        cache_module.note_cover(3, files=fits, file_bytes=vga)  # all fit: nothing to tell
    assert too_many.max_size == fits
    told = [r.getMessage() for r in caplog.records if "ROBOTEMPO_VIDEO_CACHE_SIZE" in r.getMessage()]
    assert len(told) == 1 and f"ROBOTEMPO_VIDEO_CACHE_SIZE={fits + 1}" in told[0], told
    assert f"cache of {fits} per process" in told[0] and "raise the open-file limit" not in told[0], told
    v21 = VideoDecoderCache()
    v21.fit(
        3, files=4 * fits // 3 + 1, file_bytes=vga
    )  # e.g. v2.1, a file per episode and camera: too few fit
    assert v21.max_size == 24
    v21.fit(3, files=4 * fits // 3 - 1, file_bytes=vga)
    assert v21.max_size == fits
    small = VideoDecoderCache()
    small.fit(1, files=fits + 1, file_bytes=decoder_bytes(96 * 96))  # smaller frames: more decoders fit
    assert small.max_size == fits + 1
    # Files in an object store also keep blocks and prefetched ranges: 16 MB each, at most 128 MB together
    # per process (ROBOTEMPO_REMOTE_CACHE_MB) beyond the file being read, so 100 datasets of 3 VGA cameras
    # in a bucket keep 263 open
    mib = 1024 * 1024
    assert cache_module.open_bytes(5, vga, 1.0) == 5 * vga + 5 * 16 * mib
    assert cache_module.open_bytes(300, vga, 1.0) == 300 * vga + (128 + 16) * mib
    assert cache_module.open_bytes(12, vga, 0.5) == 12 * vga + 6 * 16 * mib  # half of them in a store
    bucket = VideoDecoderCache()
    bucket.fit(3, files=fits, file_bytes=vga, remote=fits)
    assert bucket.max_size == (DECODER_BUDGET_BYTES - (128 + 16) * mib) // vga == 263
    few = VideoDecoderCache()
    few.fit(1, files=40, file_bytes=vga, remote=40)
    assert few.max_size == 40 and cache_module.open_bytes(40, vga, 1.0) == 40 * vga + (128 + 16) * mib
    monkeypatch.setenv("ROBOTEMPO_REMOTE_CACHE_MB", "256")  # a larger block budget: fewer decoders fit
    larger = VideoDecoderCache()
    larger.fit(3, files=fits, file_bytes=vga, remote=fits)
    assert larger.max_size == 24  # 224 of 306 would fit: short of 3/4
    monkeypatch.delenv("ROBOTEMPO_REMOTE_CACHE_MB")
    monkeypatch.setattr(cache_module, "descriptor_limit", lambda: 256)  # at most a quarter of the limit
    capped = VideoDecoderCache()
    capped.fit(1, files=90, file_bytes=decoder_bytes(96 * 96))
    assert capped.max_size == 8
    capped.fit(1, files=85, file_bytes=decoder_bytes(96 * 96))
    assert capped.max_size == 64
    # more files than half the limit: the note says to raise the limit first (its size alone would fail)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="robotempo.video.cache"):
        cache_module.note_cover(1, files=200, file_bytes=decoder_bytes(96 * 96))
    assert (
        "raise the open-file limit (256: ulimit -n), then set ROBOTEMPO_VIDEO_CACHE_SIZE=200" in caplog.text
    )
    # an explicit size that may keep more files open than half the limit: a warning naming both, not torch's
    # bare EMFILE later; from the environment or a dataset's argument, and only as many as there are files
    monkeypatch.setenv("ROBOTEMPO_VIDEO_CACHE_SIZE", "400")
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="robotempo.video.cache"):
        cache_module.note_cover(3, files=10_000, file_bytes=vga)
        cache_module.note_cover(3, files=30, file_bytes=vga)  # 400 allowed, 30 files: at most 30 open
        cache_module.note_cover(1, files=300, file_bytes=vga, size=200)  # video_cache_size=200
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warned) == 2, warned
    assert "cache of 400 keeps up to 400 of 10000" in warned[0] and "limit is 256" in warned[0]
    assert "cache of 200 keeps up to 200 of 300" in warned[1]


def _decode_in_child(args):
    """Runs in a child process: decode with an inherited (fork) or unpickled (spawn) cache or fetcher."""
    decoder, paths, frame = args
    if isinstance(decoder, FrameFetcher):
        before = len(decoder.cache)
        frames = decoder.fetch([(p, np.array([frame / FPS])) for p in paths], 1e-4)
        return before, [int(read_indices(f)[0]) for f in frames]
    before = len(decoder)
    frames = [decode_frames(p, np.array([frame / FPS]), cache=decoder) for p in paths]
    return before, [int(read_indices(f)[0]) for f in frames]


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_cache_and_fetcher_in_child_processes(small_files, method):
    cache, fetcher = VideoDecoderCache(4), FrameFetcher(max_workers=2, cache_size=4)
    for path in small_files[:2]:
        decode_frames(path, np.array([5 / FPS]), cache=cache)  # parent: open, positioned at frame 5
    fetcher.fetch([(p, np.array([5 / FPS])) for p in small_files[:2]], 1e-4)
    assert len(cache) == 2 and len(fetcher.cache) == 2
    assert pickle.loads(pickle.dumps(cache)).max_size == 4
    context = multiprocessing.get_context(method)
    with context.Pool(1) as pool:
        jobs = [(cache, small_files, 20), (fetcher, small_files, 20)]
        results = pool.map(_decode_in_child, jobs)
    expected = [1000 * i + 20 for i in range(4)]
    assert results == [(0, expected), (0, expected)]  # the child started empty and read the right frames
    for path, i in zip(small_files[:2], range(2)):  # the parent's open readers were not disturbed
        check(path, [6 / FPS], [1000 * i + 6], cache=cache)
    got = fetcher.fetch([(p, np.array([7 / FPS])) for p in small_files[:2]], 1e-4)
    assert [int(read_indices(f)[0]) for f in got] == [7, 1007]
    fetcher.close()


def test_fetcher_parallel_equals_sequential(small_files, episodes_file):
    path, _ = episodes_file
    rng = np.random.default_rng(2)
    requests = [(p, rng.integers(0, 30, 12) / FPS) for p in small_files]
    requests.append((path, rng.integers(0, sum(EPISODE_LENGTHS), 50) / FPS))
    requests.append((small_files[0], np.array([3 / FPS, 1 / FPS])))  # same file twice: merged
    with FrameFetcher(max_workers=3, cache_size=8) as fetcher:
        parallel = fetcher.fetch(requests, 1e-4)
        again = fetcher.fetch(requests, 1e-4)
    sequential = [decode_frames(p, ts) for p, ts in requests]
    assert len(parallel) == len(requests)
    for a, b, c in zip(parallel, again, sequential):
        np.testing.assert_array_equal(a, c)
        np.testing.assert_array_equal(b, c)
    with FrameFetcher(max_workers=2) as fetcher, pytest.raises(VideoDecodeError, match="missing"):
        fetcher.fetch([(small_files[0], [0.0]), (path.parent / "missing.mp4", [0.0])], 1e-4)


def _encode(path: Path, codec: str, options: dict, n: int = 48, size: int = 32) -> Path:
    from conftest import encode_frames

    levels = ((5 * np.arange(n)) % 256).astype(np.uint8)
    return encode_frames(path, codec, options, np.repeat(levels, size * size * 3).reshape(n, size, size, 3))


def _cut(path: Path, first: int, cut: int) -> Path:
    """What `ffmpeg -ss` with stream copy makes: the packets from the keyframe at `first` on, shifted so the
    frame at `cut` shows first: the ones before it hidden by an edit list."""
    out = path.with_name(path.stem + "-cut.mp4")
    with av.open(str(path)) as src, av.open(str(out), "w", format="mp4") as dst:
        si = src.streams.video[0]
        so = dst.add_stream_from_template(si)
        step = round(1 / (10 * si.time_base))
        for p in src.demux(si):
            if p.dts is None or p.pts < first * step:
                continue
            p.pts -= cut * step
            p.dts -= cut * step
            p.stream = so
            dst.mux(p)
    return out


def _remux(path: Path, movflags: str) -> Path:
    """The same packets in another MP4 layout (`movflags`: the index before the samples, or fragments)."""
    out = path.with_name(f"{path.stem}-{movflags.split('+')[1]}.mp4")
    options = {"movflags": movflags}
    with av.open(str(path)) as src, av.open(str(out), "w", format="mp4", options=options) as dst:
        si = src.streams.video[0]
        so = dst.add_stream_from_template(si)
        for p in src.demux(si):
            if p.dts is not None:
                p.stream = so
                dst.mux(p)
    return out


class _Reads(io.FileIO):
    """A file that records the byte ranges read from it."""

    def __init__(self, path):
        super().__init__(path, "r")
        self.ranges: list[tuple[int, int]] = []

    def read(self, n=-1):
        start = self.tell()
        data = super().read(n)
        self.ranges.append((start, start + len(data)))
        return data


def _index_files(tmp_path: Path) -> list[Path]:
    from robotempo.synth import write_synthetic

    h264 = "libx264" if "libx264" in av.codecs_available else "h264"
    files = [
        _encode(tmp_path / "bframes.mp4", h264, {"g": "12", "bf": "2"}),
        _encode(tmp_path / "gop10.mp4", h264, {"g": "10", "bf": "0"}),
    ]
    files += [_cut(files[1], 10, 13), _cut(files[0], 12, 15)]  # edit lists, without and with B-frames
    files += [
        _remux(files[0], "+faststart"),
        _remux(files[3], "+frag_keyframe+empty_moov"),
    ]  # moov first; moofs
    for codec in available_codecs():  # v3.0 files of several episodes, as the writer makes them
        root = write_synthetic(tmp_path / codec, version="v3.0", n_episodes=4, camera="video",
                               image_size=(32, 32), codec=codec, mean_length=20.0)  # fmt: skip
        files += sorted(root.glob("videos/**/*.mp4"))
    return files


@pytest.mark.skipif(not FFMPEG_INDEX, reason="PyAV < 17: no FFmpeg index to compare with")
def test_the_packet_index_is_ffmpegs_index(tmp_path):
    """Older PyAV (15, LeRobot 0.6.1's pin) has no `index_entries`: the reader rebuilds FFmpeg's index from
    one demux pass that reads no sample. Entry by entry (decode time, byte position, size, keyframe and
    discard flags) and lookup by lookup (every timestamp around every entry, forward and backward, keyframes
    or any frame) it is FFmpeg's, on files with B-frames, edit lists hiding samples, the index first or in
    fragments, and every codec the writer makes; and no byte the pass read lies in a sample (the pass read
    whole files: from an object store, each open downloaded the file)."""
    from robotempo.video.stream_index import rebuilt_index

    files = _index_files(tmp_path)
    hidden = 0
    for path in files:
        with av.open(str(path)) as c, _Reads(path) as f:
            theirs = c.streams.video[0].index_entries
            ours = rebuilt_index(f)
            assert len(ours) == len(theirs) > 0, path
            samples = [(theirs[i].pos, theirs[i].pos + theirs[i].size) for i in range(len(theirs))]
            read = [r for r in f.ranges if r[1] > r[0]]
            assert read and not [(r, s) for r in read for s in samples if r[0] < s[1] and s[0] < r[1]], path
            for i in range(len(theirs)):
                a, b = theirs[i], ours[i]
                got = (b.timestamp, b.pos, b.size, b.is_keyframe, b.is_discard)
                assert got == (a.timestamp, a.pos, a.size, a.is_keyframe, a.is_discard), (path, i)
                hidden += b.is_discard
            times = sorted({theirs[i].timestamp for i in range(len(theirs))})
            probes = {t + d for t in times for d in (-1, 0, 1)} | {times[0] - 10**6, times[-1] + 10**6}
            for t in sorted(probes):
                for backward in (True, False):
                    for any_frame in (True, False):
                        want = theirs.search_timestamp(t, backward=backward, any_frame=any_frame)
                        got = ours.search_timestamp(t, backward=backward, any_frame=any_frame)
                        assert got == want, (path, t, backward, any_frame)
    assert hidden >= 3  # an edit-listed file's hidden samples were compared too


@pytest.mark.skipif(not FFMPEG_INDEX, reason="PyAV < 17: the packet index is the only one")
def test_the_reader_serves_the_same_frames_from_the_packet_index(tmp_path, monkeypatch):
    """The reader on the rebuilt index (what PyAV 15 and 16 get) decodes the same frames as on FFmpeg's, in
    order and at random, on the same files."""
    from robotempo.video import reader as reader_module

    files = _index_files(tmp_path)
    rng = np.random.default_rng(0)
    for path in files:
        with av.open(str(path)) as c:  # the frames shown, as FFmpeg decodes them
            times = np.array([f.time for f in c.decode(video=0)])
        picks = np.concatenate([times, rng.choice(times, 40)])
        r = VideoReader(path)
        info = r.info
        expected = r.frames_at(picks, 0.02)
        r.close()
        monkeypatch.setattr(reader_module, "FFMPEG_INDEX", False)
        r = VideoReader(path)
        assert type(r._index).__name__ == "PacketIndex"
        assert r.info == info
        assert np.array_equal(r.frames_at(picks, 0.02), expected), path
        r.close()
        monkeypatch.setattr(reader_module, "FFMPEG_INDEX", True)
