"""Faults of the machine, not of the data: no descriptor left, a file this user may not read, an interrupt in
the middle of a decode. Each is typed as what it is (a `StorageError` saying what to change), never as a
damaged file the user would re-download, and none leaves a broken reader behind."""

from __future__ import annotations

import gc
import os
import resource
import shutil
import subprocess
import sys

import pytest

from robotempo import LeRobotDataset
from robotempo.errors import StorageError
from robotempo.store.parquet import DEFAULT_HANDLES, default_handles, default_parquet_files
from robotempo.synth import CAMERA_KEY, decode_frame_identity, write_synthetic


@pytest.fixture
def low_descriptor_limit():
    """Lower this process's soft open-file limit to what it uses now + the value given; restored after."""
    old = resource.getrlimit(resource.RLIMIT_NOFILE)

    def lower(spare: int) -> int:
        used = len(os.listdir("/proc/self/fd"))
        resource.setrlimit(resource.RLIMIT_NOFILE, (used + spare, old[1]))
        return used + spare

    yield lower
    resource.setrlimit(resource.RLIMIT_NOFILE, old)


def test_no_descriptor_left_is_a_storage_error_not_a_damaged_file(tmp_path, low_descriptor_limit):
    root = write_synthetic(
        tmp_path / "ds", version="v2.1", n_episodes=60, n_tasks=1, camera="image", image_size=(32, 32), fps=10
    )
    ds = LeRobotDataset("d", root=root, speed_labels=False)
    starts = ds.episode_data_index["from"].tolist()
    # The process-wide handle cache (64 files) may be full of earlier tests' files: each open here would then
    # close one of those and need no new descriptor. Start it empty, as in a fresh process.
    default_parquet_files().close()
    gc.collect()
    low_descriptor_limit(6)  # the image reads open one data file per episode (60), 64 kept open by default
    with pytest.raises(StorageError, match="no file descriptor left.*Fix: raise the process's open-file"):
        for i in starts:
            ds[i]


def test_default_handles_leave_room_under_a_low_limit(low_descriptor_limit):
    assert default_handles() == DEFAULT_HANDLES  # the usual limits (1,024 and up)
    limit = low_descriptor_limit(40)
    assert default_handles() == max(2, min(DEFAULT_HANDLES, limit // 8))


UNREADABLE = """
import sys
from robotempo import LeRobotDataset
from robotempo.errors import StorageError
try:
    LeRobotDataset("d", root=sys.argv[1])
except StorageError as e:
    print("typed:", e)
"""


@pytest.mark.skipif(os.geteuid() == 0 and not shutil.which("setpriv"), reason="root without setpriv")
@pytest.mark.parametrize("rel", ["meta/info.json", "meta/episodes", "meta/speed_percentiles.jsonl"])
def test_a_file_this_user_may_not_read_is_a_storage_error(tmp_path, rel):
    """A colleague's umask 077 on a shared dataset: a bare PermissionError before (and the speed file's)."""
    root = write_synthetic(tmp_path / "ds", version="v3.0", n_episodes=3, n_tasks=1, fps=10)
    LeRobotDataset("d", root=root)  # writes the speed file
    os.chmod(root / rel, 0)
    cmd = [sys.executable, "-c", UNREADABLE, str(root)]
    if os.geteuid() == 0:  # root reads anything: drop the capabilities that let it
        caps = "-dac_override,-dac_read_search"
        cmd = ["setpriv", f"--inh-caps={caps}", f"--bounding-set={caps}", *cmd]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    finally:
        os.chmod(root / rel, 0o755)
    assert "typed:" in out.stdout and "permission denied" in out.stdout, out.stdout + out.stderr[-2000:]
    assert "readable by the user running the loader" in out.stdout


def test_an_interrupted_reader_is_not_reused(tmp_path):
    """Ctrl-C inside a decode finishes the decoder's generator: reused, its next call read as the end of the
    file ('a frame at t=3.0 s was requested but the video ends at t=2.8 s')."""
    root = write_synthetic(
        tmp_path / "ds", version="v3.0", n_episodes=2, n_tasks=1, camera="video", image_size=(32, 32), fps=10
    )
    ds = LeRobotDataset("d", root=root, speed_labels=False)
    ds[0]
    ref = ds.video_file(CAMERA_KEY, 0)
    cache = ds._video().cache
    with pytest.raises(KeyboardInterrupt):
        with cache.reader(ref) as interrupted:
            raise KeyboardInterrupt
    assert interrupted.closed
    with cache.reader(ref) as reader:
        assert reader is not interrupted
    item = ds[len(ds) - 1]
    assert decode_frame_identity(item[CAMERA_KEY]) == (int(item["episode_index"]), int(item["frame_index"]))
