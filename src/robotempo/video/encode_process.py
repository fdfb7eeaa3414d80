"""Run an encoder in a child process, with a stall watchdog and a bounded replay.

Why: libsvtav1 (SVT-AV1 4.1.0, the AV1 encoder bundled with PyAV) can deadlock inside
`svt_av1_enc_send_picture` and wait forever with the CPU idle (a known upstream bug, also reported against
3.1.x). PyAV holds the GIL during that call, so nothing in the same process can notice or recover. In a child
process the hang is visible: a child that reports no progress for `ROBOTEMPO_ENCODER_STALL_S` seconds
(default 60; it reports after every frame, so a healthy child is never that quiet; a starting child gets
`STARTUP_S`) is killed, and a new one
is started and fed again every frame of the file so far, as long as those frames fit in the replay buffer
(`ROBOTEMPO_ENCODER_REPLAY_MB`, default 512). Past that, or after `RESTARTS` failed restarts, the write
raises a WriterError naming the file; the writer then aborts its uncommitted episodes as for any failure.

The child writes the MP4 itself (to the temp name given by `VideoEncoder`); frames travel through its stdin.
A child that closed its file cleanly waits for the next one (up to `MAX_IDLE` per process), so a writer
pays the start of a child once, not per file; a child that failed is never reused.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import os
import select
import struct
import subprocess
import sys
import time
import weakref
from pathlib import Path

import numpy as np

from robotempo.env import env_float, env_int
from robotempo.errors import WriterError
from robotempo.forksafe import ProcessLocal

logger = logging.getLogger(__name__)

CHILD_SCRIPT = Path(__file__).with_name("encode_child.py")
STALL_ENV = "ROBOTEMPO_ENCODER_STALL_S"
REPLAY_ENV = "ROBOTEMPO_ENCODER_REPLAY_MB"
RESTARTS = 2
MAX_IDLE = 4  # idle children kept per process for the next files (a v3.0 writer encodes one per camera)
STARTUP_S = 60.0  # a new child (Python + PyAV import) may take this long on a loaded machine before "ready"
_IOV_MAX = 64  # buffers per writev call (the header, one array per write call, or the replayed ones)
_PROGRESS = struct.Struct("<QQ")


class _ChildFailure(Exception):
    """The child stalled or died; `str()` says which (internal: turned into a restart or a WriterError)."""


def _spawn() -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, str(CHILD_SCRIPT)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0
    )
    os.set_blocking(proc.stdin.fileno(), False)
    os.set_blocking(proc.stdout.fileno(), False)
    _grow_pipe(proc.stdin.fileno())
    return proc


def _grow_pipe(fd: int) -> None:
    """Let a whole batch of frames wait in the pipe: with the default 64 KB, the child stopped after every few
    frames until this process was scheduled again to refill it (1.5-3x slower writes on a loaded machine)."""
    try:
        import fcntl

        with open("/proc/sys/fs/pipe-max-size") as f:
            size = min(int(f.read()), 16 * 2**20)
        fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, size)
    except (
        ImportError,
        OSError,
        ValueError,
        AttributeError,
    ):  # not Linux, or a lower limit: keep the default
        pass


def _take_child() -> subprocess.Popen:
    """An idle child of this process (still alive), else a new one."""
    idle = _IDLE.get()
    while idle:
        proc = idle.pop()
        if proc.poll() is None:
            return proc
    return _spawn()


def _give_back(proc: subprocess.Popen) -> None:
    idle = _IDLE.get()
    if len(idle) < MAX_IDLE:
        idle.append(proc)
    else:
        _release(proc)


def _release(proc: subprocess.Popen) -> None:
    """Let a healthy child exit (it does when its stdin closes)."""
    with contextlib.suppress(Exception):
        proc.stdin.close()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        _kill(proc)


def _release_idle() -> None:
    idle = _IDLE.mine() or []
    while idle:
        _release(idle.pop())


_IDLE: ProcessLocal[list[subprocess.Popen]] = ProcessLocal(list)
atexit.register(_release_idle)


def _kill(proc: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError):
        proc.kill()
    with contextlib.suppress(Exception):
        proc.wait(timeout=10)
    for pipe in (proc.stdin, proc.stdout):
        with contextlib.suppress(Exception):
            pipe.close()


def _wait(read_fd: int, write_fd: int | None, timeout_s: float) -> tuple[bool, bool]:
    """Whether `read_fd` can be read (or hung up) and `write_fd` written, waiting up to `timeout_s`.
    poll, not select: select fails on descriptors >= 1024, which a busy writer process may well hold."""
    poller = select.poll()
    poller.register(read_fd, select.POLLIN)
    if write_fd is not None:
        poller.register(write_fd, select.POLLOUT)
    ready = dict(poller.poll(max(1, int(timeout_s * 1000))))
    return read_fd in ready, write_fd is not None and write_fd in ready


class ChildEncoder:
    """Encode frames into `tmp` in a child process. `path` (the file being written) is for messages."""

    def __init__(
        self, tmp: Path, path: Path, fps: float, width: int, height: int, encoder: str, options: dict
    ):
        self._config = (
            json.dumps(
                {
                    "path": str(tmp),
                    "fps": fps,
                    "width": width,
                    "height": height,
                    "encoder": encoder,
                    "options": options,
                }
            ).encode()
            + b"\n"
        )
        self._tmp, self._path, self._encoder = tmp, path, encoder
        self._stall_s = env_float(STALL_ENV, 60.0, minimum=0.1)
        self._replay_limit = env_int(REPLAY_ENV, 512, minimum=0) * 2**20
        self._replay: list[np.ndarray] | None = []
        self._replay_bytes = 0
        self._target = 0  # frames sent to the current child (or to be replayed into it)
        self.frames_written = self.bytes_written = 0
        self.restarts = 0
        self._closed = False
        self._proc: subprocess.Popen | None = None
        self._start()

    @property
    def pid(self) -> int:
        """The child's process id (for diagnostics and tests)."""
        return self._proc.pid

    def _start(self) -> None:
        self._proc = _take_child()
        self._finalizer = weakref.finalize(self, _kill, self._proc)  # a failed or abandoned file kills it
        self._in, self._out = self._proc.stdin.fileno(), self._proc.stdout.fileno()
        self._buf = b""
        self._done = self._config_sent = self._ready = False
        self.frames_written = self.bytes_written = 0

    # -- public operations -------------------------------------------------------------------------------
    def write(self, frames: np.ndarray) -> None:
        frames = np.ascontiguousarray(frames)
        self._remember(frames)
        self._target += len(frames)
        buffers = [b"W" + struct.pack("<Q", len(frames)), memoryview(frames).cast("B")]
        try:
            self._exchange(buffers, lambda: self.frames_written >= self._target)
        except _ChildFailure as failure:
            self._restart(failure)  # the replay includes these frames

    def close(self) -> None:
        while True:
            try:
                self._exchange([b"C"], lambda: self._done)
                break
            except _ChildFailure as failure:
                self._restart(failure)
        self._closed = True
        self._finalizer.detach()
        _give_back(self._proc)  # healthy and between files: the next file reuses it

    def abort(self) -> None:
        self._finalizer()

    # -- the watchdog -------------------------------------------------------------------------------------
    def _remember(self, frames: np.ndarray) -> None:
        if self._replay is None:
            return
        self._replay_bytes += frames.nbytes
        if self._replay_bytes > self._replay_limit:
            self._replay = None  # too big to replay: a failure from here on is a WriterError
        else:
            self._replay.append(np.array(frames, copy=True))  # the caller may reuse its array

    def _restart(self, failure: _ChildFailure) -> None:
        while True:
            self._finalizer()
            if self._replay is None or self.restarts >= RESTARTS:
                raise WriterError(self._failure_message(failure))
            self.restarts += 1
            logger.warning(
                "%s: the %s encoder process %s; restarting it (%d of %d) and replaying %d frames",
                self._path,
                self._encoder,
                failure,
                self.restarts,
                RESTARTS,
                self._target,
            )
            self._start()
            buffers = [b"W" + struct.pack("<Q", self._target)]
            buffers += [memoryview(frames).cast("B") for frames in self._replay]
            try:
                self._exchange(buffers, lambda: self.frames_written >= self._target)
                return
            except _ChildFailure as again:
                failure = again

    def _failure_message(self, failure: _ChildFailure) -> str:
        if self._replay is None:
            limit = self._replay_limit >> 20
            why = f"the frames written so far exceed {REPLAY_ENV}={limit} MB, so it was not replayed"
        else:
            why = f"{self.restarts} restarts failed too"
        return (
            f"{self._path}: the {self._encoder} encoder process {failure} after {self._target} frames; "
            f"{why}. The file was not written. Fix: write again (DatasetWriter.resume continues from the "
            f"last commit); if it recurs, raise {STALL_ENV} on a very slow machine, or write this dataset "
            f"with codec='h264'"
        )

    def _exchange(self, buffers: list, done) -> None:
        """Send `buffers` to the child while reading its messages, until `done()`; raise _ChildFailure."""
        pending = [memoryview(b) for b in buffers]
        if not self._config_sent:  # a new child reads its configuration first
            pending.insert(0, memoryview(self._config))
            self._config_sent = True
        last = time.monotonic()
        while pending or not done():
            limit = self._stall_s if self._ready else max(self._stall_s, STARTUP_S)
            left = limit - (time.monotonic() - last)
            if left <= 0:
                raise _ChildFailure(f"made no progress for {limit:g} s (stalled)")
            readable, writable = _wait(self._out, self._in if pending else None, left)
            if writable:
                try:
                    sent = os.writev(self._in, pending[:_IOV_MAX])
                except BrokenPipeError:
                    sent = 0
                    pending = []
                    readable = True  # the child exited: read why
                if sent:
                    last = time.monotonic()
                while sent:  # drop what writev took, possibly several buffers and part of the next
                    taken = min(sent, len(pending[0]))
                    pending[0] = pending[0][taken:]
                    sent -= taken
                    if not len(pending[0]):
                        pending.pop(0)
            if readable:
                chunk = os.read(self._out, 1 << 16)
                if not chunk:
                    raise _ChildFailure(f"exited with status {self._proc.wait(timeout=10)}")
                self._buf += chunk
                self._parse()
                last = time.monotonic()

    def _parse(self) -> None:
        buf = self._buf
        while buf:
            kind = buf[:1]
            if kind == b"P" and len(buf) >= 1 + _PROGRESS.size:
                self.frames_written, self.bytes_written = _PROGRESS.unpack_from(buf, 1)
                buf = buf[1 + _PROGRESS.size :]
            elif kind in (b"D", b"R"):
                self._done = self._done or kind == b"D"
                self._ready = True
                buf = buf[1:]
            elif kind == b"E" and len(buf) >= 5:
                (n,) = struct.unpack_from("<I", buf, 1)
                if len(buf) < 5 + n:
                    break
                text = buf[5 : 5 + n].decode("utf-8", "replace").strip().splitlines()
                raise WriterError(
                    f"{self._path}: the {self._encoder} encoder failed: {text[-1] if text else '?'}"
                )
            elif kind in (b"P", b"E"):
                break  # incomplete message: wait for the rest
            else:
                raise WriterError(
                    f"{self._path}: the {self._encoder} encoder process sent {kind!r} (protocol error)"
                )
        self._buf = buf
