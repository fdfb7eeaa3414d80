"""Frames written in place, channels first (`VideoReader.frames_into`, `FrameFetcher.fetch_into`): the same
pixels as the packed `frames_at` path, exactly, in uint8 and float32, on real MP4 files."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from robotempo.video.decoder import FrameFetcher
from robotempo.video.pixels import PLANAR_EXACT, PixelWriter, store
from robotempo.video.reader import VideoReader

FPS = 30


def write_video(path: Path, codec: str, pix_fmt: str, width: int, height: int, colorspace: int | None = None):
    """12 frames of noise over a gradient: every level and chroma edge the conversion can round."""
    rng = np.random.default_rng(len(str(path)))
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=FPS)
        stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
        stream.options = {"g": "4"} if codec == "libx264" else {}
        if colorspace is not None:
            stream.codec_context.colorspace = colorspace
        for _ in range(12):
            image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
            image[: height // 2] = np.linspace(0, 255, width, dtype=np.uint8)[None, :, None]
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


@pytest.mark.parametrize("pix_fmt", sorted(PLANAR_EXACT - {"yuvj422p", "yuvj444p"}))
@pytest.mark.parametrize("colorspace", [None, 1, 5, 9])  # unspecified, BT.709, BT.470BG, BT.2020
def test_planar_conversion_equals_packed_rgb(tmp_path, pix_fmt, colorspace):
    path = write_video(tmp_path / "v.mp4", "libx264", pix_fmt, 64, 48, colorspace)
    packed, planar = PixelWriter(), PixelWriter()
    with av.open(str(path)) as container:
        frames = list(container.decode(video=0))
    assert frames and frames[0].format.name == pix_fmt
    for frame in frames:
        out = np.empty((3, 48, 64), np.uint8)
        planar.write_chw(frame, out)
        assert np.array_equal(out, packed.rgb(frame).transpose(2, 0, 1))


@pytest.mark.parametrize("pix_fmt", ["yuv420p", "yuv422p", "yuv444p", "yuvj420p"])
def test_every_even_width_is_written_exactly(pix_fmt):
    """swscale's gbrp output left the last columns unwritten at yuv420p widths 18-24, 34-40, ... (84 among
    them): those frames came out with a dark band on the right, silently. Every even width must equal the
    packed conversion, in uint8 and float32."""
    rng = np.random.default_rng(0)
    for width in range(2, 132, 2):
        for height in (2, 24):
            image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
            frame = av.VideoFrame.from_ndarray(image, format="rgb24").reformat(format=pix_fmt)
            writer = PixelWriter()
            want = writer.rgb(frame).transpose(2, 0, 1)
            for dtype in (np.uint8, np.float32):
                out = np.zeros((3, height, width), dtype)
                writer.write_chw(frame, out)
                expected = want if dtype == np.uint8 else want / np.float32(255)
                assert np.array_equal(out, expected.astype(dtype)), (pix_fmt, width, height, dtype)


def test_float_levels_equal_torch_division():
    levels = np.arange(256, dtype=np.uint8).reshape(1, 16, 16)
    out = np.empty(levels.shape, np.float32)
    store(out, levels)
    assert np.array_equal(out, torch.from_numpy(levels).to(torch.float32).div_(255.0).numpy())


@pytest.mark.parametrize(
    "codec,pix_fmt,width,height",
    [("libx264", "yuv420p", 64, 48), ("mpeg4", "yuv420p", 97, 75)],  # planar path; packed + transpose
    ids=["planar", "odd-size"],
)
@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_frames_into_equals_frames_at(tmp_path, codec, pix_fmt, width, height, dtype):
    path = write_video(tmp_path / "v.mp4", codec, pix_fmt, width, height)
    times = np.array([5, 0, 5, 11, 3, 4, 4, 9]) / FPS  # unsorted, with repeats
    rows = np.array([7, 0, 3, 6, 1, 2, 4, 5])
    reader = VideoReader(path)
    expected = VideoReader(path).frames_at(times, 1e-4)
    out = np.full((8, 3, height, width), 7, dtype)
    reader.frames_into(times, 1e-4, out, rows)
    as_chw = torch.from_numpy(expected).permute(0, 3, 1, 2)
    want = as_chw.numpy() if dtype == np.uint8 else as_chw.to(torch.float32).div_(255.0).numpy()
    assert np.array_equal(out[rows], want)
    with pytest.raises(ValueError, match="uint8 or float32"):
        reader.frames_into(times, 1e-4, out.astype(np.float64), rows)
    with pytest.raises(ValueError, match="rows"):
        reader.frames_into(times, 1e-4, out, rows[:3])


def test_fetch_into_several_files_and_requests_on_one_file(tmp_path):
    paths = [write_video(tmp_path / f"{i}.mp4", "libx264", "yuv420p", 64, 48) for i in range(3)]
    out = np.zeros((3, 6, 3, 48, 64), np.uint8)
    requests = [(p, np.array([1, 8, 2]) / FPS, out[i], np.array([0, 2, 4])) for i, p in enumerate(paths)]
    requests.append((paths[0], np.array([10, 0, 6]) / FPS, out[0], np.array([1, 3, 5])))
    with FrameFetcher(max_workers=2) as fetcher:
        fetcher.fetch_into(requests, 1e-4)
        for i, path in enumerate(paths):
            times = np.array([1, 10, 8, 0, 2, 6] if i == 0 else [1, 8, 2]) / FPS
            frames = fetcher.fetch([(path, times)], 1e-4)[0].transpose(0, 3, 1, 2)
            got = out[i] if i == 0 else out[i][[0, 2, 4]]
            assert np.array_equal(got, frames)


class _AllocationProbe(torch.utils.data.Dataset):
    """Reports, from where `__getitems__` runs, whether the camera tensor it built lives in shared memory."""

    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int) -> dict:
        frames = self.dataset.__getitems__([i, (i + 3) % len(self.dataset)]).stacked[CAMERA]
        return {"shared": frames.untyped_storage().is_shared(), "frames": frames}


CAMERA = "observation.images.top"


@pytest.mark.parametrize("return_uint8", [False, True])
def test_worker_batches_are_built_in_shared_memory(tmp_path, return_uint8):
    from robotempo.dataset import LeRobotDataset
    from robotempo.synth import write_synthetic

    root = tmp_path / "ds"
    write_synthetic(root, version="v3.0", n_episodes=2, camera="video", image_size=(32, 32), fps=10, seed=3)
    ds = LeRobotDataset("v", root=root, delta_timestamps={CAMERA: [-0.1, 0.0]}, return_uint8=return_uint8)
    probe = _AllocationProbe(ds)
    assert not probe[4]["shared"]  # in-process: ordinary memory
    loader = torch.utils.data.DataLoader(probe, batch_size=None, sampler=[4, 9], num_workers=1)
    for i, item in zip([4, 9], loader):
        assert item["shared"]  # in a worker: written once, where the main process reads it
        expected = probe[i]["frames"]
        assert item["frames"].is_contiguous() and torch.equal(item["frames"], expected)
        assert item["frames"].dtype == (torch.uint8 if return_uint8 else torch.float32)


class _ThreadProbe(torch.utils.data.Dataset):
    """Reads a batch over two episodes (two video files) and reports the decode threads its process has."""

    def __init__(self, dataset, rows):
        self.dataset, self.rows = dataset, rows

    def __len__(self) -> int:
        return 4

    def __getitem__(self, i: int) -> dict:
        frames = self.dataset.__getitems__(self.rows).stacked[CAMERA]
        names = [t.name for t in threading.enumerate() if t.name.startswith("robotempo-video")]
        return {"threads": len(names), "frames": frames}


def _two_cores(worker_id: int) -> None:
    os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[:2])


@pytest.mark.skipif(
    not hasattr(os, "sched_setaffinity") or len(os.sched_getaffinity(0)) < 2, reason="needs 2 cores"
)
@pytest.mark.parametrize(
    ("num_workers", "local_world_size", "threaded"),
    [(2, None, False), (1, None, True), (1, "2", False)],  # a 1-core share decodes in the worker's own thread
)
def test_decode_threads_per_worker_follow_its_share_of_the_cores(
    tmp_path, monkeypatch, num_workers, local_world_size, threaded
):
    from robotempo.dataset import LeRobotDataset
    from robotempo.synth import write_synthetic

    root = tmp_path / "ds"
    write_synthetic(root, version="v2.1", n_episodes=2, camera="video", image_size=(32, 32), fps=10, seed=5)
    ds = LeRobotDataset("v", root=root, delta_timestamps={CAMERA: [-0.1, 0.0]})
    rows = [1, 2, len(ds) - 2, len(ds) - 1]  # both episodes: two files, two decode jobs
    expected = _ThreadProbe(ds, rows)[0]["frames"]
    if local_world_size is None:
        monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    else:
        monkeypatch.setenv("LOCAL_WORLD_SIZE", local_world_size)
    loader = torch.utils.data.DataLoader(
        _ThreadProbe(ds, rows), batch_size=None, num_workers=num_workers, worker_init_fn=_two_cores
    )
    for item in loader:
        assert (item["threads"] > 0) == threaded
        assert torch.equal(item["frames"], expected)
