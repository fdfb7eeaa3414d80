"""Object-store roots against a real S3 server (moto, its own process on 127.0.0.1), no client mocks.

Datasets written by robotempo's writer are uploaded, read back through `s3://` and compared bit for bit with
the same dataset read from its local folder. A TCP relay in front of the server counts requests and bytes,
and is closed and reopened to play an endpoint that goes away mid-epoch. The server checks credentials
(moto's IAM mode), so wrong keys are refused as a real store refuses them.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from robotempo.dataset import LeRobotDataset, collate
from robotempo.errors import (
    ConfigError,
    DatasetFormatError,
    MissingFileError,
    StorageError,
    VideoMismatchError,
)
from robotempo.fs.store import abandoned_requests
from robotempo.synth import CAMERA_KEY, write_synthetic
from robotempo.video.reader import FFMPEG_INDEX

sys.path.insert(0, str(Path(__file__).parent))
from s3_server import CLEAN_ENV, HttpFaults, Store  # noqa: E402

BUCKET = "robotempo-test"
_CLEAN_ENV = (
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
    "AWS_PROFILE",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        for name in CLEAN_ENV:
            mp.delenv(name, raising=False)
        mp.setenv("AWS_EC2_METADATA_DISABLED", "true")
        mp.setenv("ROBOTEMPO_CACHE", str(tmp_path_factory.mktemp("user-cache")))
        s = Store(BUCKET)
        yield s
        s.close()


@pytest.fixture(autouse=True)
def _workers_of_failed_loaders_end():
    """A loader whose iteration raised is kept alive by the traceback's reference cycle until a collection,
    and so are its forked workers, which hold a copy of the relay's listening socket: a later test that
    closes the relay then has connections queued there instead of refused, and cannot open it again."""
    yield
    import gc

    from conftest import shut_down_failed_loaders

    shut_down_failed_loaders()  # before the collection, which would wait 5 s for each of their workers
    gc.collect()


@pytest.fixture(scope="module")
def av1_dataset(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("av1") / "ds"
    return write_synthetic(
        root, version="v3.0", n_episodes=5, n_tasks=2, camera="video", codec="av1", image_size=(32, 32),
        seed=7, fps=10, state_dim=4, action_dim=3, mean_length=16.0,
    )  # fmt: skip


@pytest.fixture(params=["ffmpeg index", "rebuilt index"])
def index_kind(request, monkeypatch):
    """Each video file's sample index: FFmpeg's (PyAV >= 17), or rebuilt by a demux pass that reads no
    sample (what PyAV 15 and 16 get, `stream_index.rebuilt_index`): both must cost the same requests."""
    if request.param == "ffmpeg index":
        if not FFMPEG_INDEX:
            pytest.skip("PyAV < 17 has no FFmpeg index")
    else:
        from robotempo.video import reader as reader_module

        monkeypatch.setattr(reader_module, "FFMPEG_INDEX", False)
    return request.param


def assert_same_batches(a: dict, b: dict) -> None:
    assert sorted(a) == sorted(b)
    for key, value in b.items():
        if isinstance(value, torch.Tensor):
            assert value.dtype == a[key].dtype and torch.equal(a[key], value), key
        else:
            assert a[key] == value, key


def both(store: Store, root: Path, name: str, **kwargs) -> tuple[LeRobotDataset, LeRobotDataset]:
    url = store.upload(root, name)
    remote = LeRobotDataset(name, root=url, storage_options=store.options(), **kwargs)
    local = LeRobotDataset(name, root=root, **kwargs)
    return remote, local


CASES = [
    ("v21_dataset", {}),
    (
        "v30_dataset",
        {
            "episodes": [1, 4, 8],
            "delta_timestamps": {"observation.state": [-0.1, 0.0], CAMERA_KEY: [-0.1, 0]},
        },
    ),
    ("v21_video_dataset", {"excluded_episodes": [0, 3], "delta_timestamps": {CAMERA_KEY: [-0.2, 0.0, 0.1]}}),
    ("v30_video_dataset", {"episodes": [0, 5, 6, 11, 15], "delta_timestamps": {"action": [0, 0.1, 0.2]}}),
    ("v30_video_dataset", {"delta_timestamps": {CAMERA_KEY: [-0.1, 0.0]}}),
    ("av1_dataset", {"delta_timestamps": {CAMERA_KEY: [-0.1, 0.0]}}),
]


@pytest.mark.parametrize(("fixture", "kwargs"), CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_items_from_s3_equal_local_items(store, request, fixture, kwargs):
    remote, local = both(store, request.getfixturevalue(fixture), fixture, **kwargs)
    assert len(remote) == len(local) and remote.episodes == local.episodes
    assert isinstance(remote.root, str) and remote.root.startswith(f"s3://{BUCKET}/")
    every = np.random.default_rng(0).permutation(len(local))
    for start in range(0, len(every), 64):
        rows = every[start : start + 64].tolist()
        assert_same_batches(remote.__getitems__(rows).stacked, local.__getitems__(rows).stacked)
    assert_same_batches(remote[0], local[0])


@pytest.mark.parametrize("workers", [0, 2])
def test_dataloader_from_s3_equals_local(store, v30_video_dataset, workers):
    kwargs = {"delta_timestamps": {CAMERA_KEY: [-0.1, 0.0], "action": [0, 0.1]}, "episodes": [2, 3, 9, 14]}
    remote, local = both(store, v30_video_dataset, "v30_video_dataset", **kwargs)

    def batches(ds):
        loader = torch.utils.data.DataLoader(ds, batch_size=16, num_workers=workers, collate_fn=collate)
        return list(loader)

    got, want = batches(remote), batches(local)
    assert len(got) == len(want)
    for a, b in zip(got, want):
        assert_same_batches(a, b)


def _open_requests(store: Store, root: Path, name: str, episode: int) -> tuple[int, int]:
    LeRobotDataset(
        name, root=root
    )  # writes meta/speed_percentiles.jsonl locally, then uploaded with the rest
    url = store.upload(root, name)
    store.gate.reset_counts()
    ds = LeRobotDataset(name, root=url, storage_options=store.options(), episodes=[episode])
    requests, sent = store.gate.reset_counts()
    assert ds.num_episodes == 1 and ds[0]["episode_index"].item() == episode
    return requests, sent


def test_images_read_page_by_page_from_s3_equal_local_items(store, tmp_path):
    root = write_synthetic(
        tmp_path / "img", version="v3.0", n_episodes=3, n_tasks=1, camera="image", image_size=(64, 64),
        seed=9, fps=10, state_dim=4, action_dim=3, mean_length=30.0,
    )  # fmt: skip
    remote, local = both(store, root, "pages", heavy_cache_mb=0.05)  # smaller than a row group's images
    for i in np.random.default_rng(1).permutation(len(local))[:25].tolist():
        assert_same_batches(remote[i], local[i])
    held = remote.frames.heavy_cache._lru.get().items
    assert any(len(key) == 4 and isinstance(key[3], int) for key in held)  # pages, by ranged reads


@pytest.mark.parametrize("version", ["v2.1", "v3.0"])
def test_open_of_one_episode_costs_the_same_requests_at_any_size(store, tmp_path, version, monkeypatch):
    from robotempo.writer import v30

    # ~1 MB row groups would hold all 200 episodes here; 32 KB ones (~8 episodes) scale the layout down to
    # this dataset, so that the row group of the episode is a small part of the file as it is at full size.
    monkeypatch.setattr(v30, "ROW_GROUP_BYTES", 32 * 1024)
    counts = []
    for n in (20, 200):
        root = write_synthetic(
            tmp_path / f"{n}", version=version, n_episodes=n, n_tasks=2, camera=None, seed=n,
            fps=10, state_dim=48, action_dim=48, mean_length=12.0,
        )  # fmt: skip
        requests, sent = _open_requests(store, root, f"open-{version}-{n}", episode=n // 2)
        counts.append(requests)
    data = sum(p.stat().st_size for p in (root / "data").rglob("*.parquet"))
    assert sent < data / 3, (sent, data)  # the selected episode's rows, the footer: not the data file
    # The footer of a file holding 10x the row groups may need one more ranged read; nothing else grows.
    assert counts[1] - counts[0] in (0, 1), counts
    # info, tasks, episode metadata (+ listing for v3.0), stats.json (v3.0: read at open, one request),
    # speed file, one data file (HEAD, footer, the episode's row groups and its neighbours' episode_index for
    # the layout check): a constant.
    assert counts[1] <= 18, counts


def test_a_small_data_file_costs_two_requests_to_open(store, tmp_path):
    """v2.1 keeps each episode in a file of its own, mostly a few KB for tabular data: opening all episodes
    from a store made a HEAD, a footer read (which fetched the whole file) and a column read per file; now the
    HEAD and one read of the whole file. The extra files of a larger dataset cost exactly that, and the items
    are the local ones."""
    counts = []
    for n in (10, 30):
        root = write_synthetic(
            tmp_path / f"{n}", version="v2.1", n_episodes=n, n_tasks=2, camera=None, seed=n, fps=10,
            mean_length=20.0,
        )  # fmt: skip
        LeRobotDataset("s", root=root)  # the speed file, uploaded with the rest
        url = store.upload(root, f"small-files-{n}")
        store.gate.reset_counts()
        remote = LeRobotDataset("s", root=url, storage_options=store.options())
        counts.append(store.gate.reset_counts()[0])
        assert all(p.stat().st_size <= 64 * 1024 for p in (root / "data").rglob("*.parquet"))
    local = LeRobotDataset("s", root=root)
    for i in range(0, len(local), 7):
        assert_same_batches(remote[i], local[i])
    assert counts[1] - counts[0] == 2 * 20, counts


def test_one_episode_of_a_long_video_file_fetches_a_bounded_share(store, tmp_path, monkeypatch, index_kind):
    root = write_synthetic(
        tmp_path / "long", version="v3.0", n_episodes=80, n_tasks=1, camera="video", image_size=(64, 64),
        seed=3, fps=10, state_dim=3, action_dim=3, mean_length=20.0,
    )  # fmt: skip
    monkeypatch.setenv("ROBOTEMPO_REMOTE_BLOCK_KB", "16")
    url = store.upload(root, f"long-video-{index_kind.split()[0]}")
    mp4 = next(p for p in root.rglob("*.mp4"))
    ds = LeRobotDataset("long", root=url, storage_options=store.options(), episodes=[57], speed_labels=False)
    store.gate.reset_counts()
    for start in range(0, len(ds), 8):
        ds.__getitems__(list(range(start, min(start + 8, len(ds)))))
    requests, sent = store.gate.reset_counts()
    # FFmpeg reads the file head, the index (moov) and the episode's cluster: a few 16 KB blocks in all.
    assert sent < mp4.stat().st_size / 4, (sent, mp4.stat().st_size)
    assert requests <= 10, store.gate.lines


@pytest.mark.parametrize("codec", ["h264", "av1"])
def test_frame_windows_cost_a_request_each_at_most_in_a_file_larger_than_the_cache(
    store, tmp_path, monkeypatch, codec
):
    """A batch's frame windows are fetched before decoding (merged, concurrently) and the decode makes no
    request of its own: a seek plus the decode of one cluster costs one request of about the cluster's bytes,
    however small the cache against the file, and the items equal the local ones bit for bit."""
    root = write_synthetic(
        tmp_path / codec, version="v3.0", n_episodes=30, n_tasks=1, camera="video", codec=codec,
        image_size=(64, 64), seed=11, fps=10, state_dim=3, action_dim=3, mean_length=30.0,
    )  # fmt: skip
    monkeypatch.setenv("ROBOTEMPO_REMOTE_BLOCKS", "2")  # 2 blocks of 64 KB; as much for prefetched ranges
    assert next(root.rglob("*.mp4")).stat().st_size > 2 * 2 * 64 * 1024
    deltas = {CAMERA_KEY: [-0.1, 0.0], "action": [0.0, 0.1]}
    remote = _fresh(store, root, f"windows-{codec}", delta_timestamps=deltas)
    local = LeRobotDataset("local", root=root, speed_labels=False, delta_timestamps=deltas)
    remote.__getitems__([0])  # opens the file: its head and its index
    rng = np.random.default_rng(4)
    store.gate.reset_counts()
    for row in rng.choice(len(local), 12, replace=False).tolist():
        got = remote.__getitems__([row]).stacked
        lines = list(store.gate.lines)
        requests, sent = store.gate.reset_counts()
        # The cluster (two 64x64 frames and a few samples of margin, < 8 KB) plus the bytes FFmpeg reads
        # instead of seeking when the cluster lies less than 32 KB past its last read; not 64 KB blocks.
        assert requests <= 1 and sent < 40 * 1024, (row, sent, lines)
        assert_same_batches(got, local.__getitems__([row]).stacked)
    for _ in range(4):
        rows = rng.choice(len(local), 24, replace=False).tolist()
        got = remote.__getitems__(rows).stacked
        lines = list(store.gate.lines)
        requests, _ = store.gate.reset_counts()
        assert requests <= len(rows), lines
        assert_same_batches(got, local.__getitems__(rows).stacked)


@pytest.mark.parametrize("kept_mb", ["16", "0"])
def test_a_video_file_reopened_costs_its_head_only_and_serves_the_same_frames(
    store, v21_video_dataset, monkeypatch, kept_mb, index_kind
):
    """A v2.1 dataset holds one MP4 per episode and camera: a random pass reopens files the video cache
    evicted all the time. A reopen of an object whose version (size, ETag) the HEAD confirms starts from the
    blocks its first open read (its head and index; these small files whole), so it costs that HEAD alone;
    with the kept blocks turned off, the index is read again. Items equal the local ones either way."""
    monkeypatch.setenv("ROBOTEMPO_REMOTE_HEADERS_MB", kept_mb)
    remote = _fresh(store, v21_video_dataset, f"reopen-{kept_mb}-{index_kind.split()[0]}", video_cache_size=1)
    local = LeRobotDataset("local", root=v21_video_dataset, speed_labels=False)
    groups = _rows_by_video_file(remote)[:3]
    for rows in groups:  # first opens: the head, the index and the frames
        remote.__getitems__(rows[:1])
    store.gate.reset_counts()
    for rows in groups * 2:  # each group reopens its file: the cache holds one
        got = remote.__getitems__(rows).stacked
        lines = list(store.gate.lines)
        requests, _ = store.gate.reset_counts()
        heads = sum(line.startswith(b"HEAD") for line in lines)
        assert heads == 1, lines
        if kept_mb == "0":
            assert requests >= 2, lines
        else:
            assert requests == 1, lines
        assert_same_batches(got, local.__getitems__(rows).stacked)


def _fresh(store: Store, root: Path, name: str, **kwargs) -> LeRobotDataset:
    url = store.upload(root, name)
    return LeRobotDataset(name, root=url, storage_options=store.options(), speed_labels=False, **kwargs)


def _rows_by_video_file(ds: LeRobotDataset) -> list[list[int]]:
    files = ds._selected.videos[CAMERA_KEY].file[ds.frames.episode_of(np.arange(len(ds)))]
    return [np.flatnonzero(files == f).tolist() for f in np.unique(files)]


def test_endpoint_down_mid_epoch_and_back_the_pass_completes(store, v30_video_dataset, monkeypatch):
    monkeypatch.setenv("ROBOTEMPO_REMOTE_BLOCK_KB", "4")
    # its own decoders and a URL of its own: the process keeps the blocks of files other tests opened
    ds = _fresh(store, v30_video_dataset, "down-and-back", video_cache_size=2)
    local = LeRobotDataset("local", root=v30_video_dataset, speed_labels=False)
    groups = _rows_by_video_file(ds)
    assert len(groups) >= 3
    assert_same_batches(ds.__getitems__(groups[0]).stacked, local.__getitems__(groups[0]).stacked)
    store.gate.close()  # connections reset, new ones refused
    timer = threading.Timer(1.5, store.gate.open)
    timer.start()
    try:
        started = time.monotonic()
        got = ds.__getitems__(groups[1]).stacked  # a file not read yet: needs the store
        waited = time.monotonic() - started
    finally:
        timer.join()
    assert waited >= 1.0  # it waited out the outage (retried) instead of failing or returning early
    assert_same_batches(got, local.__getitems__(groups[1]).stacked)
    for rows in groups[2:]:
        assert_same_batches(ds.__getitems__(rows).stacked, local.__getitems__(rows).stacked)


def test_an_outage_longer_than_the_sdks_attempts_is_ridden_out_until_the_deadline(
    store, v30_video_dataset, monkeypatch
):
    """An endpoint that answered and then refused connections (a restarting server) failed the read as soon
    as the SDK's attempts were spent (6.7-22 s into a 25-70 s outage, with a 60 s deadline; QA). Two SDK
    attempts here: the outage outlasts them, not the deadline."""
    monkeypatch.setenv("ROBOTEMPO_S3_RETRIES", "2")
    ds = _fresh(store, v30_video_dataset, "outage", video_cache_size=2)
    local = LeRobotDataset("local", root=v30_video_dataset, speed_labels=False)
    groups = _rows_by_video_file(ds)
    ds.__getitems__(groups[0])
    store.gate.close()
    timer = threading.Timer(6.0, store.gate.open)
    timer.start()
    try:
        started = time.monotonic()
        got = ds.__getitems__(groups[1]).stacked
        waited = time.monotonic() - started
    finally:
        timer.join()
    assert waited >= 5.0
    assert_same_batches(got, local.__getitems__(groups[1]).stacked)


_ORPHAN_CHILD = """
import json, sys, torch
from robotempo.dataset import LeRobotDataset, collate
url, options, out = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3]
ds = LeRobotDataset("x", root=url, storage_options=options, speed_labels=False, heavy_cache_mb=0.01)
loader = torch.utils.data.DataLoader(
    ds, batch_size=2, shuffle=True, num_workers=2, collate_fn=collate, persistent_workers=True,
    multiprocessing_context="fork", prefetch_factor=1,
)
it = iter(loader)
next(it)
open(out, "w").write(" ".join(str(w.pid) for w in it._workers))
for _ in it:
    pass
"""


def test_workers_of_a_killed_trainer_end_while_the_store_is_down(store, v21_dataset, tmp_path):
    """The trainer SIGKILLed (OOM killer, preemption) while its workers waited on an unreachable store: they
    waited out the deadline, then interpreter exit joined the store threads still retrying (40 s to minutes,
    each worker holding its memory and the job's output pipe; QA)."""
    import json
    import signal

    url = store.upload(v21_dataset, "v21_dataset")
    out = tmp_path / "pids"
    env = {k: v for k, v in os.environ.items() if k not in CLEAN_ENV}
    child = subprocess.Popen(
        [sys.executable, "-c", _ORPHAN_CHILD, url, json.dumps(store.options()), str(out)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    workers: list[int] = []
    try:
        deadline = time.monotonic() + 120
        while not (out.exists() and out.read_text().strip()):
            assert child.poll() is None and time.monotonic() < deadline
            time.sleep(0.1)
        workers = [int(p) for p in out.read_text().split()]
        store.gate.close()  # the store is gone: the workers' next reads wait on it
        time.sleep(3)
        child.send_signal(signal.SIGKILL)
        child.wait()
        killed = time.monotonic()
        while any(_alive(p) for p in workers) and time.monotonic() - killed < 20:
            time.sleep(0.2)
        assert not [p for p in workers if _alive(p)], "workers outlived their killed parent by 20 s"
    finally:
        store.gate.open()
        for p in [child.pid, *workers]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(p, signal.SIGKILL)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_endpoint_gone_gives_a_typed_error_in_bounded_time(store, v30_video_dataset, monkeypatch):
    monkeypatch.setenv("ROBOTEMPO_S3_RETRIES", "3")
    monkeypatch.setenv("ROBOTEMPO_S3_DEADLINE_S", "8")  # an outage is ridden out until the deadline
    ds = _fresh(store, v30_video_dataset, "gone", video_cache_size=2)
    groups = _rows_by_video_file(ds)
    store.gate.close()
    try:
        started = time.monotonic()
        with pytest.raises(StorageError) as e:
            ds.__getitems__(groups[1])
        assert time.monotonic() - started < 30
    finally:
        store.gate.open()
    assert f"s3://{BUCKET}/datasets/gone/videos/" in str(e.value) and "Fix:" in str(e.value)
    assert ds.__getitems__(groups[1]).stacked[CAMERA_KEY].shape[0] == len(groups[1])  # usable again


def test_an_object_rewritten_during_a_run_is_a_typed_error_at_its_next_open(store, v30_video_dataset):
    ds = _fresh(store, v30_video_dataset, "rewritten", video_cache_size=1)
    local = LeRobotDataset("local", root=v30_video_dataset, speed_labels=False)
    groups = _rows_by_video_file(ds)
    assert_same_batches(ds.__getitems__(groups[0]).stacked, local.__getitems__(groups[0]).stacked)
    assert_same_batches(ds.__getitems__(groups[1]).stacked, local.__getitems__(groups[1]).stacked)
    fs = store.server.filesystem()
    videos = [k for k in store.keys() if "/rewritten/videos/" in k]
    contents = [fs.open_input_file(k).read() for k in videos]
    for key, data in zip(videos, contents[1:] + contents[:1]):  # every video object now holds another's bytes
        with fs.open_output_stream(key) as out:
            out.write(data)
    with pytest.raises(StorageError, match="the object changed while the dataset was being read") as e:
        ds.__getitems__(groups[0])  # its reader was evicted (cache of 1): a new handle, compared
    assert f"{BUCKET}/datasets/rewritten/videos/" in str(e.value) and "Fix:" in str(e.value)


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_an_object_rewritten_between_epochs_is_refused_by_the_next_epochs_workers(
    store, v30_video_dataset, method
):
    """Each epoch's new workers compared an object with their own first open of it, so a video rewritten
    between epochs was read as the one the metadata describes (QA: datasets changing under a job)."""
    ds = _fresh(store, v30_video_dataset, f"between-epochs-{method}")
    loader = torch.utils.data.DataLoader(
        ds, batch_size=16, num_workers=2, collate_fn=collate, multiprocessing_context=method
    )
    assert sum(len(batch["index"]) for batch in loader) == len(ds)
    fs = store.server.filesystem()
    videos = [k for k in store.keys() if f"/between-epochs-{method}/videos/" in k]
    contents = [fs.open_input_file(k).read() for k in videos]
    for key, data in zip(videos, contents[1:] + contents[:1]):  # every video object now holds another's bytes
        with fs.open_output_stream(key) as out:
            out.write(data)
    with pytest.raises(VideoMismatchError, match="changed after this job first used it"):
        [batch for batch in loader]


def test_a_data_object_rewritten_after_the_open_is_refused_by_a_spawned_worker(store, v21_dataset):
    """A spawned worker got the dataset without the objects' versions at the open, took the rewritten image
    file's first open for the one the columns were read from, and served its images with the old state."""
    ds = _fresh(store, v21_dataset, "spawn-versions")
    fs = store.server.filesystem()
    key = sorted(k for k in store.keys() if "/spawn-versions/data/" in k)[0]
    data = bytearray(fs.open_input_file(key).read())
    data[len(data) // 2] ^= 0xFF  # one byte of an image: the same size, another ETag
    with fs.open_output_stream(key) as out:
        out.write(bytes(data))
    loader = torch.utils.data.DataLoader(
        ds, batch_size=4, num_workers=1, collate_fn=collate, multiprocessing_context="spawn"
    )
    with pytest.raises(StorageError, match="the object changed while the dataset was being read"):
        [batch for batch in loader]


def test_an_object_rewritten_under_a_kept_handle_is_named_changed_not_damaged(store, tmp_path):
    """A handle kept open reads a rewritten object's new bytes at the old offsets: every read after the
    rewrite was a DatasetFormatError 'does not read ... re-download this file'. Now the failed read asks the
    store once (a HEAD) and says the object changed."""
    root = write_synthetic(
        tmp_path / "img", version="v2.1", n_episodes=3, n_tasks=1, camera="image", image_size=(64, 64),
        seed=11, fps=10, state_dim=4, action_dim=3, mean_length=30.0,
    )  # fmt: skip
    local = LeRobotDataset("local", root=root, speed_labels=False)
    ds = _fresh(store, root, "kept-handle", heavy_cache_mb=0.05)
    rows = np.flatnonzero(local.frames.episode_of(np.arange(len(local))) == 1).tolist()
    assert_same_batches(ds[rows[0]], local[rows[0]])
    fs = store.server.filesystem()
    prefix = f"{BUCKET}/datasets/kept-handle/data/chunk-000"
    other = fs.open_input_file(f"{prefix}/episode_000002.parquet").read()
    with fs.open_output_stream(f"{prefix}/episode_000001.parquet") as out:
        out.write(other)
    outcomes = set()
    for row in rows[1:]:
        try:
            assert_same_batches(ds[row], local[row])  # served from what was read before the rewrite
            outcomes.add("served")
        except StorageError as e:
            assert "the object changed while the dataset was being read" in str(e)
            outcomes.add("changed")
    assert "changed" in outcomes, outcomes


def test_wrong_secret_is_access_denied(store, v21_dataset):
    url = store.upload(v21_dataset, "v21_dataset")
    with pytest.raises(StorageError, match="access denied") as e:
        LeRobotDataset("x", root=url, storage_options=store.options(secret_key="not-the-secret"))
    assert url in str(e.value) and "AWS_ACCESS_KEY_ID" in str(e.value)


def test_unknown_access_key_is_access_denied(store, v21_dataset):
    url = store.upload(v21_dataset, "v21_dataset")
    with pytest.raises(StorageError, match="access denied"):
        LeRobotDataset("x", root=url, storage_options=store.options(access_key="AKIANOSUCHKEY"))


def test_wrong_bucket_names_the_bucket(store):
    with pytest.raises(StorageError, match="bucket does not exist") as e:
        LeRobotDataset("x", root="s3://no-such-bucket-here/ds", storage_options=store.options())
    assert "s3://no-such-bucket-here" in str(e.value)


def test_wrong_prefix_is_a_missing_dataset(store, v21_dataset):
    store.upload(v21_dataset, "v21_dataset")
    with pytest.raises(MissingFileError) as e:
        LeRobotDataset("x", root=f"s3://{BUCKET}/datasets/nope", storage_options=store.options())
    assert str(e.value).startswith(f"s3://{BUCKET}/datasets/nope/meta/info.json")


def test_missing_data_object_names_its_url(store, tmp_path):
    root = write_synthetic(
        tmp_path / "gap", version="v2.1", n_episodes=4, n_tasks=1, camera=None, seed=5,
        fps=10, state_dim=3, action_dim=3, mean_length=10.0,
    )  # fmt: skip
    url = store.upload(root, "gap")
    store.server.filesystem().delete_file(f"{BUCKET}/datasets/gap/data/chunk-000/episode_000002.parquet")
    with pytest.raises(MissingFileError) as e:
        LeRobotDataset("gap", root=url, storage_options=store.options(), speed_labels=False)
    assert f"{url}/data/chunk-000/episode_000002.parquet" in str(e.value)


@pytest.mark.parametrize("remote", [False, True])
def test_a_damaged_page_header_names_the_file(store, tmp_path, remote):
    """The first page header of a data file overwritten (same size): a bare OSError "Couldn't deserialize
    thrift", with no file and no fix, from a local root and from the store alike."""
    root = write_synthetic(
        tmp_path / "pagehdr", version="v2.1", n_episodes=3, n_tasks=1, camera=None, seed=6,
        fps=10, state_dim=3, action_dim=3, mean_length=10.0,
    )  # fmt: skip
    rel = "data/chunk-000/episode_000001.parquet"
    data = bytearray((root / rel).read_bytes())
    data[4:12] = b"\xff" * 8  # just after the leading magic: the first column chunk's first page header
    (root / rel).write_bytes(bytes(data))
    url = store.upload(root, f"pagehdr-{remote}") if remote else str(root)
    options = store.options() if remote else None
    with pytest.raises(DatasetFormatError, match="do not read") as e:
        LeRobotDataset("p", root=url, storage_options=options, speed_labels=False)
    assert str(e.value).startswith(f"{url}/{rel}: ") and "Fix: re-download" in str(e.value)


@pytest.fixture(scope="module")
def faults(store):
    relay = HttpFaults(store.server.port)
    yield relay
    relay.close()


@pytest.mark.parametrize(
    "status, code",
    [(503, "XMinioServerNotInitialized"), (429, "TooManyRequests"), (500, "XAmzContentSHA256Mismatch")],
)
def test_one_throttle_or_server_error_unknown_to_the_sdk_is_retried(store, faults, v21_dataset, status, code):
    """MinIO restarting (503 XMinioServerNotInitialized) or a rate-limiting proxy (429 TooManyRequests):
    the AWS SDK retries only the codes it knows, so one such answer failed the pass at once, with an error
    saying transient faults were retried."""
    url = store.upload(v21_dataset, "v21_dataset")
    local = LeRobotDataset("l", root=v21_dataset, speed_labels=False)
    faults.clear()
    faults.fail("GET", r"/data/", status, code, times=1)
    remote = LeRobotDataset("r", root=url, storage_options=store.options(endpoint_override=faults.endpoint),
                            speed_labels=False)  # fmt: skip
    assert faults.injected == 1
    rows = list(range(0, len(local), 7))
    assert_same_batches(remote.__getitems__(rows).stacked, local.__getitems__(rows).stacked)


def test_a_lasting_unknown_server_error_fails_typed_after_bounded_retries(
    store, faults, v21_dataset, monkeypatch
):
    monkeypatch.setenv("ROBOTEMPO_S3_RETRIES", "2")
    url = store.upload(v21_dataset, "v21_dataset")
    faults.clear()
    faults.fail("GET", r"/data/", 503, "XMinioServerNotInitialized", times=None)
    start = time.monotonic()
    with pytest.raises(StorageError, match="failed the request"):
        LeRobotDataset("r", root=url, storage_options=store.options(endpoint_override=faults.endpoint),
                       speed_labels=False)  # fmt: skip
    assert time.monotonic() - start < 30
    assert faults.injected >= 3  # the first answer and 2 retries, of one request at least


@pytest.mark.parametrize(
    "method, status, code, words",
    [
        ("GET", 400, "ExpiredToken", "refresh the credentials"),  # named, or a bare 400 (as a HEAD gets)
        ("HEAD", 400, "ExpiredToken", "refresh the credentials"),  # a HEAD answer has no body to name it
        ("GET", 301, "PermanentRedirect", "another region"),
        ("GET", 400, "AuthorizationHeaderMalformed", "another region"),
    ],
)
def test_expired_credentials_and_another_region_say_so(
    store, faults, v21_dataset, method, status, code, words
):
    """Both were 'the object store failed the request ... check the endpoint and the network'."""
    url = store.upload(v21_dataset, "v21_dataset")
    faults.clear()
    faults.fail(method, r"/data/", status, code, times=None)
    with pytest.raises(StorageError) as e:
        LeRobotDataset("r", root=url, storage_options=store.options(endpoint_override=faults.endpoint),
                       speed_labels=False)  # fmt: skip
    text = str(e.value)
    assert words in text and url in text
    assert "region" in text.split("Fix:")[1] and ("credential" in text or "region" in text)


@pytest.mark.parametrize("kind", ["video", "image"])
def test_a_body_that_stalls_halfway_fails_within_the_deadline(store, faults, tmp_path, monkeypatch, kind):
    """Headers and half the body, then silence: a video open waited the deadline 4 times over (PyAV drops an
    exception raised in its read callback and FFmpeg reads again), a parquet footer or page read waited out
    every retry of the SDK (~50 s at a 5 s deadline)."""
    monkeypatch.setenv("ROBOTEMPO_S3_DEADLINE_S", "2")
    monkeypatch.setenv("ROBOTEMPO_S3_RETRIES", "1")
    root = write_synthetic(
        tmp_path / kind, version="v3.0" if kind == "video" else "v2.1", n_episodes=2, n_tasks=1, camera=kind,
        image_size=(64, 64), seed=12, fps=10, state_dim=3, action_dim=3, mean_length=20.0,
    )  # fmt: skip
    url = store.upload(root, f"stall-{kind}")
    faults.clear()
    ds = LeRobotDataset("s", root=url, storage_options=store.options(endpoint_override=faults.endpoint),
                        speed_labels=False, heavy_cache_mb=0.01)  # fmt: skip
    faults.stall("GET", r"/videos/" if kind == "video" else r"/data/", seconds=5)
    start = time.monotonic()
    with pytest.raises(StorageError, match="did not answer within 2 s"):
        ds[0]
    assert time.monotonic() - start < 2 * 2 + 2  # one deadline, with room for a loaded machine
    faults.clear()
    # the abandoned requests end once the stall does: wait, so that no later test meets their sockets
    while abandoned_requests() and time.monotonic() - start < 60:
        time.sleep(0.2)


def _cli(store: Store, *args: str) -> subprocess.CompletedProcess:
    """The CLI with only the standard AWS environment pointing at the server (no robotempo options)."""
    env = {k: v for k, v in os.environ.items() if k not in CLEAN_ENV}
    env.update(store.aws_environment(), COLUMNS="200")
    return subprocess.run(
        [sys.executable, "-c", "import sys; from robotempo.cli import main; sys.exit(main())", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_cli_info_validate_speed_on_s3_with_the_aws_environment(store, tmp_path, v30_video_dataset):
    copy = shutil.copytree(v30_video_dataset, tmp_path / "ds")
    (copy / "meta" / "speed_percentiles.jsonl").unlink(missing_ok=True)  # the CLI must compute them
    url = store.upload(copy, "cli")
    before = store.keys()
    info = _cli(store, "info", url)
    assert info.returncode == 0, info.stderr
    assert "v3.0" in info.stdout and "in the store" in info.stdout
    validate = _cli(store, "validate", url)
    assert validate.returncode == 0, validate.stdout + validate.stderr
    assert "FAILED" not in validate.stdout
    speed = _cli(store, "speed", url)
    assert speed.returncode == 0, speed.stderr
    assert "speed percentiles: computed" in speed.stdout
    assert store.keys() == before  # nothing written to the bucket
    assert list(Path(os.environ["ROBOTEMPO_CACHE"]).rglob("speed_percentiles.jsonl"))  # the copy: user cache


def test_mixture_of_s3_specs_equals_the_local_mixture(store, v30_video_dataset, v21_dataset):
    from robotempo import Mixture

    deltas = {"observation.state": [-0.1, 0.0], "action": [0.0, 0.1]}
    remote = [
        {
            "repo_id": "a",
            "root": store.upload(v30_video_dataset, "v30_video_dataset"),
            "storage_options": store.options(),
        },
        {
            "repo_id": "b",
            "root": store.upload(v21_dataset, "v21_dataset"),
            "storage_options": store.options(),
        },
    ]
    local = [{"repo_id": "a", "root": v30_video_dataset}, {"repo_id": "b", "root": v21_dataset}]
    maps = [None, {CAMERA_KEY: "observation.images.small"}]
    import threading

    opened_on = []
    real = Mixture._open

    def recording(self, d, source):
        opened_on.append(threading.current_thread().name)
        return real(self, d, source)

    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("ROBOTEMPO_MIXTURE_OPEN_THREADS", raising=False)
        mp.setattr(Mixture, "_open", recording)
        got = Mixture(remote, key_maps=maps, delta_timestamps=deltas)
    assert all(n.startswith("robotempo-mixture-open") for n in opened_on), opened_on  # store roots: threads
    want = Mixture(local, key_maps=maps, delta_timestamps=deltas)
    rows = np.random.default_rng(1).choice(len(want), 48, replace=False).tolist()
    assert_same_batches(got.__getitems__(rows).stacked, want.__getitems__(rows).stacked)


@contextlib.contextmanager
def silent_endpoint():
    """A port on 127.0.0.1 that accepts connections and never answers (a black-holed endpoint)."""
    hole = socket.socket()
    hole.bind(("127.0.0.1", 0))
    hole.listen(16)
    held: list[socket.socket] = []

    def accept_and_say_nothing() -> None:
        try:
            while True:
                held.append(hole.accept()[0])
        except OSError:  # closed at the end
            pass

    threading.Thread(target=accept_and_say_nothing, daemon=True).start()
    try:
        yield hole.getsockname()[1]
    finally:
        hole.close()
        for conn in held:  # an abandoned request fails at once and frees its thread
            conn.close()


@pytest.mark.parametrize("fixture", ["v21_dataset", "v30_dataset"])
def test_a_mixture_maps_its_offsets_without_a_request_of_its_own(store, request, fixture):
    """To map its delta_timestamps onto a dataset's fps the mixture read meta/info.json itself (a HEAD and a
    GET), then the dataset read it again: 3 requests more per dataset than opening it alone."""
    from robotempo import Mixture

    url = store.upload(request.getfixturevalue(fixture), f"mix-offsets-{fixture}")
    deltas = {"action": [0.0, 0.2]}
    counts = []
    for make in (
        lambda: LeRobotDataset("x", root=url, storage_options=store.options(), delta_timestamps=deltas),
        lambda: Mixture(
            [{"repo_id": "x", "root": url, "storage_options": store.options()}], delta_timestamps=deltas
        ),
    ):
        store.gate.reset_counts()
        opened = make()
        counts.append(store.gate.reset_counts()[0])
    assert counts[1] == counts[0], counts
    assert opened[0]["action"].shape[0] == 2


def test_an_endpoint_that_never_answers_fails_typed_in_bounded_time(store, monkeypatch):
    """A server that accepts connections and says nothing: with the default retries and timeouts (minutes of
    attempts in all) the operation gives up at its deadline, ROBOTEMPO_S3_DEADLINE_S."""
    monkeypatch.setenv("ROBOTEMPO_S3_DEADLINE_S", "3")
    started = time.monotonic()
    with silent_endpoint() as port:
        options = store.options(endpoint_override=f"http://127.0.0.1:{port}")
        with pytest.raises(StorageError, match="did not answer within 3 s") as e:
            LeRobotDataset("x", root=f"s3://{BUCKET}/datasets/v21_dataset", storage_options=options)
    assert time.monotonic() - started < 20  # without the deadline: 10 attempts x 10 s of silence, and backoff
    assert f"s3://{BUCKET}/datasets/v21_dataset/meta/info.json" in str(e.value)
    assert "ROBOTEMPO_S3_DEADLINE_S" in str(e.value) and "Fix:" in str(e.value)


def test_a_mixture_stops_opening_at_a_store_that_never_answers(store, monkeypatch):
    """A mixture goes on opening its other datasets after a broken one, to name them all in one error; a
    store that does not answer must not make each of them wait out its deadline (ten datasets, 3 s each)."""
    from robotempo import Mixture

    monkeypatch.setenv("ROBOTEMPO_S3_DEADLINE_S", "3")
    monkeypatch.setenv("ROBOTEMPO_MIXTURE_OPEN_THREADS", "1")
    started = time.monotonic()
    with silent_endpoint() as port:
        options = store.options(endpoint_override=f"http://127.0.0.1:{port}")
        specs = [
            {"repo_id": f"d{i}", "root": f"s3://{BUCKET}/datasets/d{i}", "storage_options": options}
            for i in range(10)
        ]
        with pytest.raises(StorageError, match="did not answer within 3 s") as e:
            Mixture(specs)
    assert time.monotonic() - started < 15  # one open's deadline, not ten
    assert "more of the mixture's" not in str(e.value)


def test_a_request_given_up_at_its_deadline_does_not_hold_up_another_store(store, v21_dataset, monkeypatch):
    """pyarrow builds an S3 client only while no request of the process is under way. A request abandoned
    at its deadline went on with its own retries (10 attempts of up to 10 s, then backoff), and the client
    for a working store waited for it: that open failed at its own deadline, blaming the working store."""
    url = store.upload(v21_dataset, "after-a-dead-endpoint")
    monkeypatch.setenv("ROBOTEMPO_S3_DEADLINE_S", "3")
    with silent_endpoint() as port:
        options = store.options(endpoint_override=f"http://127.0.0.1:{port}")
        with pytest.raises(StorageError, match="did not answer within 3 s"):
            LeRobotDataset("x", root=url, storage_options=options)
    monkeypatch.setenv("ROBOTEMPO_S3_DEADLINE_S", "20")
    ds = LeRobotDataset("x", root=url, storage_options=store.options(request_timeout=9.0))  # a new client
    local = LeRobotDataset("x", root=v21_dataset)
    assert_same_batches(ds[len(ds) - 1], local[len(local) - 1])


def test_roots_with_the_same_settings_share_one_client(store, v21_dataset, v30_dataset):
    """One client per process and settings: built once for a mixture's datasets, not once each (each build
    waits until no request of the process is under way)."""
    a = LeRobotDataset("a", root=store.upload(v21_dataset, "share-a"), storage_options=store.options())
    b = LeRobotDataset("b", root=store.upload(v30_dataset, "share-b"), storage_options=store.options())
    other = LeRobotDataset(
        "c", root=store.upload(v21_dataset, "share-c"), storage_options=store.options(request_timeout=8.0)
    )
    assert a.location.fs is b.location.fs and other.location.fs is not a.location.fs
    assert_same_batches(b[0], LeRobotDataset("b", root=v30_dataset)[0])


def _as_lerobot_writes_it(root: Path) -> Path:
    """Rewrite a v3.0 dataset's files in LeRobot 0.6.1's layout: one data row group per episode, and
    `meta/episodes` in row groups of 10 episodes with per-episode statistics columns beside the catalog."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    (data,) = (root / "data").rglob("*.parquet")
    table = pq.read_table(data)
    episode = table.column("episode_index").to_numpy()
    lengths = np.diff(np.flatnonzero(np.diff(episode, prepend=-1, append=-2)))
    with pq.ParquetWriter(data.with_suffix(".tmp"), table.schema) as w:
        at = 0
        for n in lengths.tolist():
            w.write_table(table.slice(at, n), row_group_size=n)
            at += n
    data.with_suffix(".tmp").replace(data)
    (meta,) = (root / "meta" / "episodes").rglob("*.parquet")
    episodes = pq.read_table(meta)
    rng = np.random.default_rng(0)
    for i in range(40):
        episodes = episodes.append_column(f"stats/f{i}/mean", pa.array(rng.random(episodes.num_rows)))
    pq.write_table(episodes, meta, row_group_size=10)
    return root


def test_open_of_one_episode_of_lerobot_written_files_costs_constant_requests(store, tmp_path):
    """pyarrow fetches the chunks of a read lazily, one row group after another: opening one episode of
    LeRobot's layout made a request per 10 episodes of `meta/episodes`. Planned from the footer, the chunks
    come in a constant number of requests, and the items are the local ones."""
    counts = []
    for n in (40, 400):
        root = write_synthetic(
            tmp_path / f"lr{n}", version="v3.0", n_episodes=n, n_tasks=2, camera=None, seed=n,
            fps=10, state_dim=6, action_dim=6, mean_length=6.0,
        )  # fmt: skip
        _as_lerobot_writes_it(root)
        requests, _ = _open_requests(store, root, f"lerobot-layout-{n}", episode=n // 2)
        counts.append(requests)
        remote = _fresh(store, root, f"lerobot-layout-{n}", episodes=[n // 2, n - 1])
        local = LeRobotDataset("x", root=root, episodes=[n // 2, n - 1], speed_labels=False)
        for i in range(len(local)):
            assert_same_batches(remote[i], local[i])
    assert counts[1] - counts[0] in (0, 1, 2), counts  # 10x the row groups: a longer footer at most


def test_opening_an_image_dataset_from_s3_leaves_its_images_unread(store, tmp_path):
    """The numeric columns of a data file with a camera lie between each episode's images: the planned
    requests fetch them, not the images in between (the open reads no camera data)."""
    root = write_synthetic(
        tmp_path / "img", version="v3.0", n_episodes=8, n_tasks=1, camera="image", image_size=(96, 96),
        seed=5, fps=10, state_dim=4, action_dim=3, mean_length=30.0,
    )  # fmt: skip
    LeRobotDataset("img", root=root)  # the speed file, uploaded with the rest
    (data,) = (root / "data").rglob("*.parquet")
    import pyarrow.parquet as pq

    assert pq.ParquetFile(data).metadata.num_row_groups >= 4
    meta = sum(p.stat().st_size for p in (root / "meta").rglob("*") if p.is_file())
    url = store.upload(root, "image-open")
    store.gate.reset_counts()
    remote = LeRobotDataset("img", root=url, storage_options=store.options())
    _, sent = store.gate.reset_counts()
    assert sent < meta + data.stat().st_size / 4, (sent, meta, data.stat().st_size)
    local = LeRobotDataset("img", root=root)
    for key, values in local.frames.columns.items():
        np.testing.assert_array_equal(remote.frames.columns[key], values, err_msg=key)


def test_an_object_rewritten_at_its_own_size_is_a_typed_error_at_its_next_open(store, v30_video_dataset):
    """Same size, other bytes: only the ETag tells them apart (it was read under a key pyarrow never uses, so
    the rewrite was served: new pixels beside the old state and action)."""
    ds = _fresh(store, v30_video_dataset, "same-size", video_cache_size=1)
    groups = _rows_by_video_file(ds)
    ds.__getitems__(groups[0])
    ds.__getitems__(groups[1])
    fs = store.server.filesystem()
    (key, *_) = [k for k in store.keys() if "/same-size/videos/" in k]
    data = bytearray(fs.open_input_file(key).read())
    data[-1] ^= 0xFF  # one byte of the last sample's payload
    with fs.open_output_stream(key) as out:
        out.write(bytes(data))
    with pytest.raises(StorageError, match="the object changed while the dataset was being read"):
        for rows in groups:
            ds.__getitems__(rows)  # each group's reader evicts the last one: new handles, compared


def test_cli_validate_on_s3_with_storage_options_only(store, tmp_path, v21_dataset):
    """validate rebuilt the data files' root from its URL, dropping --storage-option: each file waited out
    its deadline against the default endpoint and was reported FAILED."""
    url = store.upload(v21_dataset, "v21_dataset")
    env = {k: v for k, v in os.environ.items() if k not in CLEAN_ENV}
    env.update(COLUMNS="200", ROBOTEMPO_S3_DEADLINE_S="15", AWS_EC2_METADATA_DISABLED="true")
    options = [f"--storage-option={k}={v}" for k, v in store.options().items()]
    cli = "import sys; from robotempo.cli import main; sys.exit(main())"
    done = subprocess.run(
        [sys.executable, "-c", cli, "validate", url, *options],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "FAILED" not in done.stdout and "data files" in done.stdout


def test_the_cli_leaves_at_once_after_a_deadline(store):
    """The error came at the deadline, but the process stayed ~3 minutes more: pyarrow's S3 finalization at
    exit waits for the abandoned request's retries. The CLI now leaves once it has reported the error."""
    env = {k: v for k, v in os.environ.items() if k not in CLEAN_ENV}
    env.update(store.aws_environment(), ROBOTEMPO_S3_DEADLINE_S="3", COLUMNS="200")
    cli = "import sys; from robotempo.cli import main; sys.exit(main())"
    with silent_endpoint() as port:
        env["AWS_ENDPOINT_URL"] = f"http://127.0.0.1:{port}"
        done = subprocess.run(
            [sys.executable, "-c", cli, "info", f"s3://{BUCKET}/datasets/anything"],
            env=env, capture_output=True, text=True, timeout=90,  # the request alone retries for minutes
        )  # fmt: skip
    assert done.returncode == 2 and "did not answer within 3 s" in done.stdout + done.stderr


def test_open_files_of_a_store_keep_their_bytes_within_the_process_budget(
    store, v30_video_dataset, monkeypatch
):
    """Every file kept open, the blocks and ranges of all of them stay within ROBOTEMPO_REMOTE_CACHE_MB
    beyond the file being read (0: only that file's), and the frames stay the local dataset's."""
    from robotempo.fs import blockfile

    monkeypatch.setenv("ROBOTEMPO_REMOTE_CACHE_MB", "0")
    monkeypatch.setattr(blockfile, "_shared", blockfile._Shared())  # this test's files only
    local = LeRobotDataset("local", root=v30_video_dataset, speed_labels=False, video_cache_size=64)
    remote = _fresh(store, v30_video_dataset, "shared-budget", video_cache_size=64)
    rng = np.random.default_rng(7)
    held_by = set()
    for i in rng.integers(0, len(local), 40).tolist():
        assert torch.equal(remote[i][CAMERA_KEY], local[i][CAMERA_KEY])
        readers = [s.reader for s in remote._video().cache._state.get().slots.values() if s.reader]
        held = [r._blocks._bytes() for r in readers]
        assert blockfile._shared.held == sum(held) and sum(h > 0 for h in held) == 1, held
        held_by |= {id(r) for r, h in zip(readers, held) if h}
    assert len(readers) == remote._video_files > 1 and len(held_by) > 1  # all open, the bytes moved between
    remote._video().close()
    assert blockfile._shared.held == 0 and not blockfile._shared.files


@pytest.mark.parametrize("bad", ["abc", "-1", "1.5"])
def test_a_bad_process_block_budget_fails_at_the_open(store, v30_video_dataset, monkeypatch, bad):
    """Not inside a DataLoader worker's first read, raised through PyAV's open."""
    monkeypatch.setenv("ROBOTEMPO_REMOTE_CACHE_MB", bad)
    with pytest.raises(ConfigError, match=r"ROBOTEMPO_REMOTE_CACHE_MB=.*Fix: set it to e.g. 128"):
        _fresh(store, v30_video_dataset, "bad-budget")


def test_an_open_video_file_in_a_store_costs_its_blocks_in_the_decoder_cache_budget(
    store, v30_video_dataset, monkeypatch, tmp_path
):
    """An open file of a store keeps its blocks and prefetched ranges, which a long random pass fills (3
    files of 17 MB at 480x640 held 48 MB after 2,400 random samples:
    `benchmarks/profile_remote_video_memory.py`), up to the process's shared budget for all its open files;
    the decoder cache's default counts them beside the decoders, and a Mixture with a local dataset counts
    the store's files only."""
    from robotempo.fs.blockfile import held_bytes
    from robotempo.mixture import Mixture
    from robotempo.video import cache as cache_module
    from robotempo.video import decoder
    from robotempo.video.cache import DECODER_BUDGET_BYTES, decoder_bytes, video_union

    monkeypatch.delenv("ROBOTEMPO_VIDEO_CACHE_SIZE", raising=False)
    monkeypatch.setenv("ROBOTEMPO_REMOTE_BLOCKS", "32")  # 2 MB of blocks + 2 MB of ranges per open file
    pixels = 64 * 64
    assert held_bytes() == 2 * 32 * 64 * 1024
    remote = _fresh(store, v30_video_dataset, "held")
    assert remote._video_file_bytes == decoder_bytes(pixels)
    files = remote._video_files
    assert video_union(remote._video_parts()) == (files, decoder_bytes(pixels), files)
    local = LeRobotDataset("local", root=v30_video_dataset, speed_labels=False)
    assert video_union(local._video_parts()) == (files, decoder_bytes(pixels), 0)
    assert 2 * files > 8  # two such datasets have more than the default's floor of 8 per camera
    mix = Mixture([local, remote])
    both = [part for d in mix.datasets for part in d._video_parts()]
    assert video_union(both) == (2 * files, decoder_bytes(pixels), files)
    monkeypatch.setattr(decoder, "_default_fetcher", None)  # the process's cache, grown here, not elsewhere
    # a budget that holds every file of both at the local cost, not at the store's
    monkeypatch.setattr(cache_module, "DECODER_BUDGET_BYTES", 2 * files * decoder_bytes(pixels))
    assert DECODER_BUDGET_BYTES != cache_module.DECODER_BUDGET_BYTES
    mix[0], mix[len(mix) - 1]  # both datasets read: both joined the process's cache
    assert decoder.default_fetcher().cache.max_size == 8
    decoder.default_fetcher().close()
    monkeypatch.setattr(decoder, "_default_fetcher", None)
    copy = shutil.copytree(v30_video_dataset, tmp_path / "copy")  # files of its own: one root counts once
    local_only = Mixture(
        [LeRobotDataset(f"l{i}", root=r, speed_labels=False) for i, r in enumerate((copy, local.root))]
    )
    local_only[0], local_only[len(local_only) - 1]
    assert decoder.default_fetcher().cache.max_size == 2 * files
    decoder.default_fetcher().close()
