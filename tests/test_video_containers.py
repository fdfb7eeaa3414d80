"""MP4s as other tools make them: cut by stream copy (an edit list), a stretched last frame, frames off the
1/fps grid, a file replaced after its check, and templates that name one file for two cameras. Each video is
a real MP4 remuxed with PyAV; each frame is a solid grey level that names it."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import av
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from robotempo import LeRobotDataset
from robotempo.errors import DatasetFormatError, VideoMismatchError
from robotempo.writer import DatasetWriter

CAM = "observation.images.cam"
FPS = 30
FEATURES = {
    "observation.state": {"dtype": "float32", "shape": [1], "names": None},
    CAM: {"dtype": "video", "shape": [32, 32, 3], "names": ["height", "width", "channels"]},
}


def _grey(level: int) -> np.ndarray:
    return np.full((32, 32, 3), level % 256, np.uint8)


def _write(root: Path, version: str, episodes: list[list[int]]) -> Path:
    with DatasetWriter(root, fps=FPS, features=FEATURES, version=version) as w:
        for levels in episodes:
            n = len(levels)
            w.add_episode(
                {
                    "observation.state": np.zeros((n, 1), np.float32),
                    CAM: np.stack([_grey(v) for v in levels]),
                },
                task="t",
            )
    return root


def _video(root: Path) -> Path:
    return next(root.glob("videos/**/*.mp4"))


def _remux(path: Path, edit) -> None:
    """Rewrite `path` packet by packet; `edit(packets, stream)` returns the packets to write."""
    tmp = path.with_suffix(".remux.mp4")
    with av.open(str(path)) as src, av.open(str(tmp), "w", format="mp4") as dst:
        si = src.streams.video[0]
        so = dst.add_stream_from_template(si)
        for p in edit([p for p in src.demux(si) if p.dts is not None], si):
            p.stream = so
            dst.mux(p)
    os.replace(tmp, path)


def _level(item) -> int:
    return int(item[CAM].float().mean().round())


def test_a_clip_cut_by_stream_copy_serves_its_frames(tmp_path):
    """`ffmpeg -ss T -c copy` keeps the packets from the keyframe before T and hides them with an edit list:
    they are in the container's sample count, so the stream looked 3 frames longer than it lasts."""
    if "h264" not in av.codecs_available and "libx264" not in av.codecs_available:
        pytest.skip("no H.264 encoder in this PyAV")
    n, cut = 20, 13
    root = _write(tmp_path / "ds", "v2.1", [[6 * (cut + i) for i in range(n)]])
    recording = tmp_path / "rec.mp4"
    with av.open(str(recording), "w", format="mp4") as c:
        s = c.add_stream("libx264", rate=FPS, options={"g": "10", "bf": "0"})
        s.width = s.height = 32
        s.pix_fmt = "yuv420p"
        for k in range(40):
            frame = av.VideoFrame.from_ndarray(_grey(6 * k), format="rgb24")
            frame.pts = k
            for p in s.encode(frame):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    path = _video(root)
    shutil.copy(recording, path)

    def cut_at(packets, stream):
        step = round(1 / (FPS * stream.time_base))
        kept = [p for p in packets if 10 * step <= p.pts < (cut + n) * step]  # from the keyframe at 10
        for p in kept:
            p.pts -= cut * step
            p.dts -= cut * step
        return kept

    _remux(path, cut_at)
    with av.open(str(path)) as c:
        assert c.streams.video[0].frames == n + 3  # the 3 hidden samples count
    ds = LeRobotDataset("x", root=root, return_uint8=True, speed_labels=False)
    levels = [_level(ds[i]) for i in (0, 5, n - 1)]
    assert levels == pytest.approx([6 * cut, 6 * (cut + 5), 6 * (cut + n - 1)], abs=3)


def test_a_stretched_last_frame_is_not_a_slower_frame_rate(tmp_path):
    """A muxer that stamps the stop time gives the last sample a long duration: the average rate (frames /
    duration) then read 26.5 fps and the video 'ran past' its episode."""
    n = 30
    root = _write(tmp_path / "ds", "v2.1", [[8 * k for k in range(n)]])

    def stretch(packets, stream):
        packets[-1].duration = packets[-1].duration * 5
        return packets

    _remux(_video(root), stretch)
    with av.open(str(_video(root))) as c:
        assert abs(float(c.streams.video[0].average_rate) - FPS) > 1  # what was taken for the frame rate
    ds = LeRobotDataset("x", root=root, return_uint8=True, speed_labels=False)
    assert [_level(ds[i]) for i in (0, n - 1)] == pytest.approx([0, 8 * (n - 1)], abs=3)


def _shift_second_episode(root: Path, first: int, ticks: int) -> float:
    """Move episode 1's frames `ticks` later in the shared MP4 and say so in meta/episodes (seconds moved)."""
    moved = {}

    def later(packets, stream):
        step = round(1 / (FPS * stream.time_base))
        for p in packets:
            if p.pts >= first * step:
                p.pts += ticks
                p.dts += ticks
        moved["s"] = float(ticks * stream.time_base)
        return packets

    _remux(_video(root), later)
    meta = next(root.glob("meta/episodes/*/*.parquet"))
    table = pq.read_table(meta)
    for col in (f"videos/{CAM}/from_timestamp", f"videos/{CAM}/to_timestamp"):
        values = table[col].to_numpy().copy()
        values[1] += moved["s"]
        table = table.set_column(table.schema.get_field_index(col), col, pa.array(values))
    pq.write_table(table, meta)
    return moved["s"]


def test_frames_off_the_grid_are_found_at_their_stored_offset(tmp_path):
    """Episode 1's frames sit 0.06 frame past the grid and from_timestamp says so: snapping the offset onto
    the grid (for merged datasets whose offsets drifted while the frames did not) found no frame there."""
    root = _write(tmp_path / "ds", "v3.0", [[4 * k for k in range(30)], [100 + 4 * k for k in range(20)]])
    with av.open(str(_video(root))) as c:
        tb = c.streams.video[0].time_base
    moved = _shift_second_episode(root, 30, round(0.06 / FPS / tb))
    assert 0.05 / FPS < moved < 0.1 / FPS  # within the snapping range, beyond the tolerance
    ds = LeRobotDataset("x", root=root, return_uint8=True, speed_labels=False)
    assert [_level(ds[i]) for i in (5, 30, 35, 49)] == pytest.approx([20, 100, 120, 176], abs=3)


def test_a_video_replaced_after_its_check_is_a_typed_error(tmp_path):
    """The decoder cache opened the new file (its identity changed) but nothing checked it again: a new frame
    size surfaced as a bare ValueError from deep inside the batch copy."""
    root = _write(tmp_path / "ds", "v3.0", [[8 * k for k in range(10)]])
    ds = LeRobotDataset("x", root=root, return_uint8=True, speed_labels=False)
    assert _level(ds[3]) == pytest.approx(24, abs=3)
    other = _write(tmp_path / "other", "v3.0", [[200] * 10])
    shutil.copy(_video(other), _video(root))  # same size, new inode and mtime
    with pytest.raises(VideoMismatchError, match="changed on disk after this dataset checked it"):
        ds[3]
    assert _level(LeRobotDataset("x", root=root, return_uint8=True, speed_labels=False)[3]) == pytest.approx(
        200, abs=3
    )  # a dataset opened again reads the new file


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_a_video_replaced_between_epochs_is_refused_by_the_next_epochs_workers(tmp_path, method):
    """Workers start afresh each epoch (persistent_workers=False) and checked the replaced file only against
    the metadata's windows, which a re-conversion with the episodes in another order still fits: epoch 1
    served every frame's state with another episode's pixels (QA: datasets changing under a job)."""
    import torch

    from robotempo import collate

    first, second = [8 * k for k in range(10)], [120 + 8 * k for k in range(10)]
    root = _write(tmp_path / "ds", "v3.0", [first, second])
    ds = LeRobotDataset("x", root=root, return_uint8=True, speed_labels=False)
    loader = torch.utils.data.DataLoader(
        ds, batch_size=5, num_workers=2, collate_fn=collate, multiprocessing_context=method
    )
    levels = [float(frame.float().mean()) for batch in loader for frame in batch[CAM]]
    assert levels == pytest.approx(first + second, abs=3)
    other = _write(tmp_path / "other", "v3.0", [second, first])  # the same windows, the episodes swapped
    os.replace(_video(other), _video(root))
    with pytest.raises(VideoMismatchError, match="changed after this job first used it"):
        [batch for batch in loader]


def _cell_descriptors(batch=None) -> int:
    """Open descriptors of this process on the video identity tables' shared memory (a collate_fn: in a
    DataLoader worker it counts the worker's)."""
    return sum(
        os.readlink(f"/proc/self/fd/{fd}").startswith("/memfd:robotempo-cells")
        for fd in os.listdir("/proc/self/fd")
        if os.path.exists(f"/proc/self/fd/{fd}")
    )


@pytest.mark.parametrize("method", ["spawn", "forkserver"])
def test_spawned_workers_hold_the_identity_tables_of_many_datasets_in_a_few_descriptors(tmp_path, method):
    """Each dataset's video identity table was a memfd of its own, held twice (its descriptor and the
    mapping's copy) in the trainer and in every spawned worker: 400 datasets took 800 of a worker's 1,024
    descriptors, outside every descriptor budget, and 500 failed with torch's untyped 'Too many open files'
    (QA, a mixture of 100 datasets)."""
    import torch

    from robotempo import Mixture

    n = 12
    roots = [_write(tmp_path / f"d{i}", "v3.0", [[8 * i, 8 * i + 4]]) for i in range(n)]
    mix = Mixture([{"repo_id": f"d{i}", "root": r, "speed_labels": False} for i, r in enumerate(roots)])
    loader = torch.utils.data.DataLoader(
        mix, batch_size=len(mix), num_workers=1, collate_fn=_cell_descriptors, multiprocessing_context=method
    )
    in_worker = next(iter(loader))
    assert 1 <= in_worker <= 2 and 1 <= _cell_descriptors() <= 2, (in_worker, _cell_descriptors())
    levels = [float(mix[i][CAM].float().mean()) * 255 for i in range(len(mix))]
    assert levels == pytest.approx([v for i in range(n) for v in (8 * i, 8 * i + 4)], abs=3)


@pytest.mark.parametrize("version", ["v2.1", "v3.0"])
def test_two_cameras_need_their_own_files(tmp_path, version):
    """A video_path without {video_key} served one camera's frames for both."""
    features = {**FEATURES, "observation.images.wrist": FEATURES[CAM]}
    root = tmp_path / "ds"
    with DatasetWriter(root, fps=FPS, features=features, version=version) as w:
        w.add_episode(
            {
                "observation.state": np.zeros((4, 1), np.float32),
                CAM: np.stack([_grey(30)] * 4),
                "observation.images.wrist": np.stack([_grey(220)] * 4),
            },
            task="t",
        )
    info_path = root / "meta" / "info.json"
    info = json.loads(info_path.read_text())
    info["video_path"] = info["video_path"].replace("{video_key}/", "").replace("/{video_key}", "")
    info_path.write_text(json.dumps(info))
    with pytest.raises(
        DatasetFormatError, match=r"names one file for the video features.*Fix: put \{video_key\}"
    ):
        LeRobotDataset("x", root=root)


def test_float32_timestamps_past_2048_s_pass_the_spacing_check(tmp_path):
    """float32 steps are 2.4e-4 s past 2048 s: the writer's own timestamps (float32(frame_index / fps)) failed
    the 1e-4 s spacing check there."""
    n = 6300  # 2,100 s at 3 fps
    root = tmp_path / "ds"
    with DatasetWriter(root, fps=3, features={"observation.state": FEATURES["observation.state"]}) as w:
        w.add_episode({"observation.state": np.zeros((n, 1), np.float32)}, task="t")
    ds = LeRobotDataset("x", root=root, speed_labels=False)
    assert float(ds[n - 1]["timestamp"]) == pytest.approx((n - 1) / 3, abs=3e-4)


def test_two_data_files_need_their_own_names(tmp_path):
    """A v3.0 data_path without {file_index} names one file for two files of the metadata."""
    root = tmp_path / "ds"
    features = {"observation.state": FEATURES["observation.state"]}
    with DatasetWriter(root, fps=FPS, features=features, version="v3.0", data_files_size_in_mb=1e-6) as w:
        for _ in range(2):
            w.add_episode({"observation.state": np.zeros((5, 1), np.float32)}, task="t")
    assert len(list(root.glob("data/**/*.parquet"))) == 2
    info_path = root / "meta" / "info.json"
    info = json.loads(info_path.read_text())
    info["data_path"] = "data/chunk-{chunk_index:03d}/file-000.parquet"
    info_path.write_text(json.dumps(info))
    with pytest.raises(DatasetFormatError, match=r"names 'data/chunk-000/file-000.parquet' for both"):
        LeRobotDataset("x", root=root)


def test_keyframes_that_do_not_refresh_the_decoder_are_not_seeked_to(tmp_path, caplog):
    """x264's intra-refresh marks the start of each refresh cycle as a keyframe (an MP4 sync sample) though it
    is a P frame: frames decoded from it are wrong until the refresh has crossed the picture, and some came
    out of FFmpeg as if sound. They were served after a seek, silently (4 of 178 frames here, up to 117/255
    off); the file is now decoded from its start, with a warning."""
    import random

    from conftest import encode_frames

    from robotempo.synth import CAMERA_KEY, write_synthetic

    if "libx264" not in av.codecs_available:
        pytest.skip("no x264 encoder in this PyAV")
    root = write_synthetic(
        tmp_path / "ds", version="v2.1", n_episodes=3, camera="video", image_size=(64, 96), fps=10,
        mean_length=60, seed=0,
    )  # fmt: skip
    expected = {}
    for path in sorted(root.glob("videos/**/*.mp4")):
        with av.open(str(path)) as c:
            frames = [f.to_ndarray(format="rgb24") for f in c.decode(c.streams.video[0])]
        encode_frames(path, "libx264", {"x264-params": "intra-refresh=1:keyint=10"}, frames)
        with av.open(str(path)) as c:  # the sync samples x264 marked
            assert sum(p.is_keyframe for p in c.demux(video=0) if p.size) > 2
        with av.open(str(path)) as c:
            stream = c.streams.video[0]
            episode = int(path.stem.rsplit("_", 1)[1])
            expected[episode] = [f.to_ndarray(format="rgb24").transpose(2, 0, 1) for f in c.decode(stream)]
    ds = LeRobotDataset("x", root=root, return_uint8=True, speed_labels=False)
    order = list(range(len(ds)))
    random.Random(0).shuffle(order)  # one item at a time, as a shuffled sampler asks
    wrong = []
    with caplog.at_level("WARNING", logger="robotempo.video.reader"):
        for i in order:
            item = ds[i]
            want = expected[int(item["episode_index"])][int(item["frame_index"])]
            if not np.array_equal(item[CAMERA_KEY].numpy(), want):
                wrong.append(i)
    assert not wrong, f"{len(wrong)} of {len(ds)} frames differ from a decode from the start"
    assert "does not refresh the decoder" in caplog.text
