"""The AV1 encoder runs in a child process with a stall watchdog: a stopped or killed child is replaced and
fed the file's frames again, and past the replay buffer the write is a typed error, never a hang."""

from __future__ import annotations

import os
import resource
import signal
import time

import av
import numpy as np
import pytest

from robotempo.errors import ConfigError, WriterError
from robotempo.video import encode_process
from robotempo.video.encoder import VideoEncoder, available_codecs

pytestmark = pytest.mark.skipif("av1" not in available_codecs(), reason="PyAV has no libsvtav1")

H, W, FPS = 48, 64, 10


def frames(n: int, seed: int) -> np.ndarray:
    # smooth frames, so a lossy encode stays close to them
    y, x = np.mgrid[0:H, 0:W]
    out = np.empty((n, H, W, 3), np.uint8)
    for i in range(n):
        out[i, ..., 0] = (x * 4 + i * 9 + seed) % 256
        out[i, ..., 1] = (y * 5 + i * 3) % 256
        out[i, ..., 2] = 128
    return out


def decode(path) -> np.ndarray:
    with av.open(str(path)) as c:
        return np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)])


def encode(path, batches: list[np.ndarray], between=None) -> VideoEncoder:
    enc = VideoEncoder(path, FPS, W, H, codec="av1")
    for i, batch in enumerate(batches):
        if between and i:
            between(enc)
        enc.write(batch)
    enc.close()
    return enc


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


@pytest.mark.parametrize("sig", [signal.SIGSTOP, signal.SIGKILL], ids=["stopped", "killed"])
def test_a_failed_child_is_replaced_and_the_file_is_the_same(tmp_path, monkeypatch, sig):
    monkeypatch.setenv("ROBOTEMPO_ENCODER_STALL_S", "3")
    batches = [frames(12, 0), frames(9, 50), frames(7, 90)]
    reference = decode(encode(tmp_path / "ref.mp4", batches).path)
    assert len(reference) == 28
    pids = []

    def fail(enc):
        if not pids:
            pids.append(enc._child.pid)
            os.kill(enc._child.pid, sig)

    enc = encode(tmp_path / "a.mp4", batches, between=fail)
    # one restart for the failure (a heavily loaded machine may add a spurious one: harmless, same file)
    assert enc._child.restarts >= 1 and enc.frames_written == 28
    got = decode(tmp_path / "a.mp4")
    # the replacement child encoded every frame again from the start: the same file as without the failure
    np.testing.assert_array_equal(got, reference)
    assert gone(pids[0])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.mp4", "ref.mp4"]


def test_a_stall_past_the_replay_buffer_is_a_typed_error_naming_the_file(tmp_path, monkeypatch):
    monkeypatch.setenv("ROBOTEMPO_ENCODER_STALL_S", "3")
    monkeypatch.setenv("ROBOTEMPO_ENCODER_REPLAY_MB", "0")
    enc = VideoEncoder(tmp_path / "b.mp4", FPS, W, H, codec="av1")
    enc.write(frames(5, 0))
    pid = enc._child.pid
    os.kill(pid, signal.SIGSTOP)
    start = time.monotonic()
    with pytest.raises(WriterError) as err:
        enc.write(frames(5, 1))
    waited = time.monotonic() - start
    enc.abort()
    text = str(err.value)
    assert "b.mp4" in text and "stalled" in text and "ROBOTEMPO_ENCODER_REPLAY_MB" in text
    assert "codec='h264'" in text
    assert waited < 60  # the watchdog fired; nothing waits for the stopped child
    assert gone(pid)
    assert list(tmp_path.iterdir()) == []  # no temp file is left behind


def test_a_bad_watchdog_setting_is_a_config_error(tmp_path, monkeypatch):
    monkeypatch.setenv("ROBOTEMPO_ENCODER_STALL_S", "soon")
    with pytest.raises(ConfigError, match="ROBOTEMPO_ENCODER_STALL_S"):
        VideoEncoder(tmp_path / "c.mp4", FPS, W, H, codec="av1")
    assert list(tmp_path.iterdir()) == []


def test_a_child_serves_the_next_file_and_a_failed_one_is_never_reused(tmp_path, monkeypatch):
    monkeypatch.setenv("ROBOTEMPO_ENCODER_STALL_S", "3")
    first = encode(tmp_path / "1.mp4", [frames(6, 0)])
    second = VideoEncoder(tmp_path / "2.mp4", FPS, W, H, codec="av1")
    assert second._child.pid == first._child.pid  # the idle child took the next file
    os.kill(second._child.pid, signal.SIGKILL)
    second.write(frames(6, 1))  # replayed into a new child
    second.close()
    assert second._child.pid != first._child.pid and gone(first._child.pid)
    assert len(decode(tmp_path / "2.mp4")) == 6


def test_the_watchdog_works_when_the_process_holds_descriptors_above_1024(tmp_path):
    # select() cannot wait on descriptors >= 1024; a writer that holds many files open must still encode
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 1200:
        pytest.skip(f"the descriptor limit is {soft}")
    encode_process._release_idle()  # the encoder below starts a child whose pipes come after `held`
    held = [os.open(os.devnull, os.O_RDONLY) for _ in range(1100)]
    try:
        enc = encode(tmp_path / "many.mp4", [frames(8, 0)])
        assert min(enc._child._in, enc._child._out) >= 1024
    finally:
        for fd in held:
            os.close(fd)
    assert len(decode(tmp_path / "many.mp4")) == 8
