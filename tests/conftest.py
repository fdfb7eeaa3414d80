"""Session-wide synthetic datasets written by robotempo's own writer (real files, deterministic).

Each fixture returns the dataset root (a `Path`). `SYNTH_SPECS[name]` is the `SynthSpec` it was written from,
so a test can regenerate the exact arrays of any episode: `SYNTH_SPECS["v30_dataset"].episode(3)`.
Identity is in the data: `observation.state[:, :3] == [episode_index, frame_index, task_index]`, and camera
frames decode with `robotempo.synth.decode_frame_identity`. The helpers at the end (`read_dataset`,
`check_consistent`, ...) read a dataset straight from its files, independently of robotempo's reader.

- `v21_dataset`: v2.1, image camera 32x32, 10 episodes, 3 tasks.
- `v30_dataset`: v3.0, image camera 32x32, 10 episodes, 3 tasks, one data file.
- `v21_video_dataset`: v2.1, H.264 video 32x32, 6 episodes, 2 tasks.
- `v30_video_dataset`: v3.0, H.264 video 64x64, 16 episodes, 3 tasks, `chunks_size=2` and small size limits:
  3 data files and 5 MP4 files over several chunks, with data and MP4 file numbers that differ.
"""

from __future__ import annotations

import json
import weakref
from pathlib import Path

import av
import numpy as np
import pyarrow.parquet as pq
import pytest
import torch.utils.data

from robotempo.synth import CAMERA_KEY, SynthSpec, decode_frame_identity, write_synthetic

_COMMON = {"fps": 10, "state_dim": 6, "action_dim": 5, "mean_length": 24.0}
SYNTH_ARGS: dict[str, dict] = {
    "v21_dataset": {
        "version": "v2.1",
        "n_episodes": 10,
        "n_tasks": 3,
        "camera": "image",
        "image_size": (32, 32),
        "seed": 1,
    },
    "v30_dataset": {
        "version": "v3.0",
        "n_episodes": 10,
        "n_tasks": 3,
        "camera": "image",
        "image_size": (32, 32),
        "seed": 2,
    },
    "v21_video_dataset": {
        "version": "v2.1",
        "n_episodes": 6,
        "n_tasks": 2,
        "camera": "video",
        "image_size": (32, 32),
        "seed": 3,
    },
    "v30_video_dataset": {
        "version": "v3.0",
        "n_episodes": 16,
        "n_tasks": 3,
        "camera": "video",
        "image_size": (64, 64),
        "seed": 4,
        "chunks_size": 2,
        "data_files_size_in_mb": 0.009,
        "video_files_size_in_mb": 0.02,
    },
}
_SPEC_KEYS = (
    "n_episodes",
    "n_tasks",
    "camera",
    "image_size",
    "seed",
    "fps",
    "state_dim",
    "action_dim",
    "mean_length",
)
SYNTH_SPECS: dict[str, SynthSpec] = {
    name: SynthSpec(**{k: v for k, v in {**_COMMON, **args}.items() if k in _SPEC_KEYS})
    for name, args in SYNTH_ARGS.items()
}


def _write(tmp_path_factory: pytest.TempPathFactory, name: str) -> Path:
    root = tmp_path_factory.mktemp(name) / "ds"
    return write_synthetic(root, **_COMMON, **SYNTH_ARGS[name])


@pytest.fixture(scope="session")
def v21_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _write(tmp_path_factory, "v21_dataset")


@pytest.fixture(scope="session")
def v30_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _write(tmp_path_factory, "v30_dataset")


@pytest.fixture(scope="session")
def v21_video_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _write(tmp_path_factory, "v21_video_dataset")


@pytest.fixture(scope="session")
def v30_video_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _write(tmp_path_factory, "v30_video_dataset")


# Reading a dataset straight from its files (pyarrow, PyAV), independently of robotempo's reader.


def read_dataset(root: Path) -> tuple[dict, list[dict], list[str]]:
    """(info, episode rows, tasks) straight from the metadata files, for both versions."""
    meta = root / "meta"
    info = json.loads((meta / "info.json").read_text())
    if info["codebase_version"] == "v2.1":
        episodes = [json.loads(line) for line in (meta / "episodes.jsonl").read_text().splitlines()]
        stats = [json.loads(line) for line in (meta / "episodes_stats.jsonl").read_text().splitlines()]
        for row, st in zip(episodes, stats, strict=True):
            assert st["episode_index"] == row["episode_index"]
            row["stats"] = st["stats"]
        tasks = [json.loads(line)["task"] for line in (meta / "tasks.jsonl").read_text().splitlines()]
    else:
        files = sorted((meta / "episodes").glob("chunk-*/file-*.parquet"))
        episodes = [row for f in files for row in pq.read_table(f).to_pylist()]
        tasks_table = pq.read_table(meta / "tasks.parquet")
        assert tasks_table.column("task_index").to_pylist() == list(range(len(tasks_table)))
        tasks = tasks_table.column("task").to_pylist()
    return info, episodes, tasks


def data_file(info: dict, row: dict) -> str:
    if info["codebase_version"] == "v2.1":
        e = row["episode_index"]
        return info["data_path"].format(episode_chunk=e // info["chunks_size"], episode_index=e)
    return info["data_path"].format(chunk_index=row["data/chunk_index"], file_index=row["data/file_index"])


def video_file(info: dict, row: dict, key: str) -> str:
    if info["codebase_version"] == "v2.1":
        e = row["episode_index"]
        return info["video_path"].format(
            episode_chunk=e // info["chunks_size"], episode_index=e, video_key=key
        )
    return info["video_path"].format(
        video_key=key,
        chunk_index=row[f"videos/{key}/chunk_index"],
        file_index=row[f"videos/{key}/file_index"],
    )


def episode_rows(root: Path, info: dict, row: dict):
    """The episode's rows, located the way a v3.0 reader must: from the file's first `index`."""
    table = pq.read_table(root / data_file(info, row))
    first = table.column("index")[0].as_py()
    return table.slice(row["dataset_from_index"] - first if "dataset_from_index" in row else 0, row["length"])


def check_consistent(root: Path, spec: SynthSpec | None = None) -> int:
    """Assert the dataset is complete and consistent as info.json describes it; returns total_episodes."""
    info, episodes, tasks = read_dataset(root)
    n = info["total_episodes"]
    assert len(episodes) >= n and [r["episode_index"] for r in episodes] == list(range(len(episodes)))
    assert (
        sum(r["length"] for r in episodes[:n]) == info["total_frames"] and len(tasks) >= info["total_tasks"]
    )
    start = 0
    for row in episodes:  # rows past n only exist after a kill inside a commit; their files are complete too
        rows = episode_rows(root, info, row)
        assert rows.column("episode_index").to_pylist() == [row["episode_index"]] * row["length"]
        assert rows.column("index").to_pylist() == list(range(start, start + row["length"]))
        assert rows.column("frame_index").to_pylist() == list(range(row["length"]))
        if "dataset_from_index" in row:
            assert (row["dataset_from_index"], row["dataset_to_index"]) == (start, start + row["length"])
        assert tasks[rows.column("task_index")[0].as_py()] == row["tasks"][0]
        if spec is not None:
            expected, task = spec.episode(row["episode_index"])
            state = np.stack(rows.column("observation.state").to_numpy(zero_copy_only=False))
            np.testing.assert_array_equal(state, expected["observation.state"])
            assert task == row["tasks"][0]
        start += row["length"]
    return n


def visible_files_are_complete(root: Path) -> None:
    for path in root.rglob("*"):
        if path.suffix == ".parquet":
            pq.read_table(path)
        elif path.suffix == ".mp4":
            with av.open(str(path)) as c:
                assert sum(1 for _ in c.decode(video=0)) > 0


def hidden_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.name.startswith(".") or p.name.endswith(".tmp")]


def check_video_identity(root: Path) -> None:
    info, episodes, _ = read_dataset(root)
    for row in episodes:
        start = round(row.get(f"videos/{CAMERA_KEY}/from_timestamp", 0) * info["fps"])
        with av.open(str(root / video_file(info, row, CAMERA_KEY))) as c:
            frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)][start : start + row["length"]]
        assert [decode_frame_identity(f) for f in frames] == [
            (row["episode_index"], t) for t in range(row["length"])
        ]


def encode_frames(path: Path, codec: str, options: dict, frames, rate: int = 10) -> Path:
    """Encode RGB `frames` (N, H, W, 3) uint8 into an MP4 at `path` with `codec` and its `options`, one
    frame per tick (pts 0, 1, ...): files as other tools make them, not as robotempo's writer does."""
    with av.open(str(path), "w", format="mp4") as c:
        s = c.add_stream(codec, rate=rate, options=options)
        s.height, s.width = frames[0].shape[:2]
        s.pix_fmt = "yuv420p"
        for k, pixels in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(pixels), format="rgb24")
            frame.pts = k
            for p in s.encode(frame):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return path


_LOADER_ITERATORS: weakref.WeakSet = weakref.WeakSet()
_start_iterator = torch.utils.data.dataloader._MultiProcessingDataLoaderIter.__init__


def _tracked_start(self, *args, **kwargs):
    _LOADER_ITERATORS.add(self)
    _start_iterator(self, *args, **kwargs)


torch.utils.data.dataloader._MultiProcessingDataLoaderIter.__init__ = _tracked_start


def shut_down_failed_loaders() -> None:
    """Stop the workers of every DataLoader iterator a test left running.

    An iterator whose iteration raised lives on in the traceback's reference cycle. When the cyclic collector
    frees it, it finalises the iterator's index queues before the iterator's `__del__` runs, so the workers
    never receive their stop signal and torch waits 5 s for each before killing it: a 10 s stall at whatever
    later collection (measured on two tests of test_s3). Shutting the iterator down while its queues live
    takes milliseconds. Nothing here changes what a test asserts: it runs after the test."""
    for iterator in list(_LOADER_ITERATORS):
        if not getattr(iterator, "_shutdown", True):  # True: its start failed before it had workers
            iterator._shutdown_workers()


@pytest.fixture(autouse=True)
def _failed_loaders_shut_down():
    yield
    shut_down_failed_loaders()


@pytest.fixture(scope="session", autouse=True)
def _children_use_the_sessions_temp_dir(tmp_path_factory):
    """Processes the tests start (torchrun, whose agent makes a `torchelastic_*` log folder it never removes;
    a killed worker's `pymp-*` folder) make their temporary files under the session's folder, which pytest
    removes with its old sessions, not in the machine's /tmp (a whole run left ~60 folders there)."""
    import os

    scratch = tmp_path_factory.mktemp("children-tmp")
    before = os.environ.get("TMPDIR")
    os.environ["TMPDIR"] = str(scratch)
    yield
    if before is None:
        os.environ.pop("TMPDIR", None)
    else:
        os.environ["TMPDIR"] = before
