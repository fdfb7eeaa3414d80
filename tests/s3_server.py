"""A real S3 server on 127.0.0.1 for tests and benchmarks: moto in server mode, in its own process.

`S3Server` starts `moto.server` on a free loopback port and stops it; `Gate` is a TCP relay in front of it
that counts requests and bytes sent to the client, and can be closed and reopened to play an endpoint that
goes away mid-epoch (connections reset, new ones refused) and comes back with its data intact.
"""

from __future__ import annotations

import atexit
import ctypes
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import boto3
import pyarrow.fs as pafs

ACCESS_KEY = "testing"
SECRET_KEY = "testing"
REGION = "us-east-1"
# Variables of the machine that would point a client elsewhere; tests remove them.
CLEAN_ENV = (
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
    "AWS_PROFILE",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
)
_REQUEST_LINE = re.compile(rb"(?:GET|HEAD|PUT|POST|DELETE) /[^ ]* HTTP/1\.1\r\n")


def _die_with_parent() -> None:
    """In the server's process: be sent SIGTERM when the process that started it dies, however it dies."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_listening(port: int, timeout: float = 90.0, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"the S3 server exited with code {proc.returncode} before listening")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


class S3Server:
    """moto's S3 server in a child process on 127.0.0.1 (stopped by `stop()` or at interpreter exit)."""

    def __init__(self, initial_no_auth_actions: int | None = None) -> None:
        """`initial_no_auth_actions`: with a number, moto checks credentials after that many requests
        (create an IAM user and key within them and set `access_key` / `secret_key` to it)."""
        self.port = free_port()
        self.access_key, self.secret_key = ACCESS_KEY, SECRET_KEY
        env = {**os.environ, "MOTO_ALLOW_NONEXISTENT_REGION": "true"}
        if initial_no_auth_actions is not None:
            env["INITIAL_NO_AUTH_ACTION_COUNT"] = str(initial_no_auth_actions)
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=env,
            preexec_fn=_die_with_parent,
        )
        atexit.register(self.stop)
        _wait_listening(self.port, proc=self._proc)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def filesystem(self) -> pafs.S3FileSystem:
        return pafs.S3FileSystem(
            access_key=self.access_key,
            secret_key=self.secret_key,
            region=REGION,
            endpoint_override=f"127.0.0.1:{self.port}",
            scheme="http",
            allow_bucket_creation=True,
        )

    def upload(self, folder: Path, bucket: str, prefix: str) -> str:
        """Copy every file under `folder` to `s3://bucket/prefix/...`; returns that URL."""
        fs = self.filesystem()
        try:
            fs.create_dir(bucket)
        except OSError:
            pass  # already there
        pafs.copy_files(str(folder), f"{bucket}/{prefix}", destination_filesystem=fs)
        return f"s3://{bucket}/{prefix}"

    def keys(self, bucket: str) -> list[str]:
        infos = self.filesystem().get_file_info(pafs.FileSelector(bucket, recursive=True))
        return sorted(i.path for i in infos if i.type == pafs.FileType.File)

    def stop(self) -> None:
        if self._proc.poll() is not None:
            return
        self._proc.terminate()
        try:
            self._proc.wait(10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()


class Gate:
    """A TCP relay on its own loopback port in front of `target_port`: counts and can be closed and reopened.

    `requests` counts HTTP request lines from clients, `bytes_out` the bytes relayed back to clients.
    `close()` shuts the listening socket and resets every open connection; `open()` listens again.
    `latency_s` holds each response back that long (a round trip to a store in another building; loopback
    has none), so that requests made one after another cost what they cost on a network.
    """

    def __init__(self, target_port: int, port: int | None = None, latency_s: float = 0.0):
        self.target_port = target_port
        self.latency_s = latency_s
        self.port = port or free_port()
        self.requests = 0
        self.bytes_out = 0
        self.lines: list[bytes] = []  # the request lines since the last reset (method, path, query)
        self._lock = threading.Lock()
        self._conns: list[socket.socket] = []
        self._listener: socket.socket | None = None
        self.open()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def reset_counts(self) -> tuple[int, int]:
        with self._lock:
            counts = (self.requests, self.bytes_out)
            self.requests = self.bytes_out = 0
            self.lines = []
        return counts

    def open(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        for attempt in range(50):  # a process forked while it was open may still hold the old listener
            try:
                listener.bind(("127.0.0.1", self.port))
                break
            except OSError:
                if attempt == 49:
                    raise
                time.sleep(0.2)
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def close(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            try:  # wakes the accept thread, so the port is free for the next open() (EADDRINUSE once, QA)
                listener.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            listener.close()
        with self._lock:
            conns, self._conns = self._conns, []
        for c in conns:
            try:
                c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                c.close()
            except OSError:
                pass

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port))
            except OSError:
                client.close()
                continue
            with self._lock:
                self._conns += [client, upstream]
            waiting = threading.Semaphore(0)  # requests of this connection whose response has not begun
            threading.Thread(target=self._pump, args=(client, upstream, True, waiting), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, False, waiting), daemon=True).start()

    def _pump(
        self, src: socket.socket, dst: socket.socket, from_client: bool, waiting: threading.Semaphore
    ) -> None:
        tail = b""
        try:
            while True:
                data = src.recv(1 << 16)
                if not data:
                    break
                if from_client:
                    chunk = tail + data
                    matches = list(_REQUEST_LINE.finditer(chunk))
                    tail = chunk[matches[-1].end() if matches else 0 :][-64:]  # a request line cut in two
                    with self._lock:
                        self.requests += len(matches)
                        self.lines += [m.group(0).strip() for m in matches]
                    for _ in matches:
                        waiting.release()
                else:
                    if self.latency_s and waiting.acquire(blocking=False):
                        time.sleep(self.latency_s)  # the first bytes of a response: one round trip late
                    with self._lock:
                        self.bytes_out += len(data)
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            if not from_client:  # the second pump to end closes the pair (a long test run opens thousands)
                self._release(src, dst)

    def _release(self, *socks: socket.socket) -> None:
        with self._lock:
            self._conns = [c for c in self._conns if c not in socks]
        for s in socks:
            s.close()


class Store:
    """The server, a relay in front of it, and a user allowed to read and write every bucket."""

    def __init__(self, bucket: str):
        self.bucket = bucket
        self.server = S3Server(initial_no_auth_actions=3)
        iam = boto3.client(
            "iam",
            endpoint_url=self.server.endpoint,
            region_name=REGION,
            aws_access_key_id="setup",
            aws_secret_access_key="setup",
        )
        iam.create_user(UserName="trainer")
        key = iam.create_access_key(UserName="trainer")["AccessKey"]
        policy = {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}],
        }
        iam.put_user_policy(UserName="trainer", PolicyName="s3", PolicyDocument=json.dumps(policy))
        self.server.access_key, self.server.secret_key = key["AccessKeyId"], key["SecretAccessKey"]
        self.gate = Gate(self.server.port)
        self._uploaded: dict[str, str] = {}

    def options(self, **overrides) -> dict:
        """`storage_options` for robotempo: through the relay, as the trainer user."""
        return {
            "endpoint_override": self.gate.endpoint,
            "access_key": self.server.access_key,
            "secret_key": self.server.secret_key,
            "region": REGION,
            **overrides,
        }

    def upload(self, root: Path, name: str) -> str:
        if name not in self._uploaded:
            self._uploaded[name] = self.server.upload(root, self.bucket, f"datasets/{name}")
        return self._uploaded[name]

    def aws_environment(self) -> dict[str, str]:
        """The standard AWS variables that point a client at the relay, as the trainer user."""
        return {
            "AWS_ENDPOINT_URL": self.gate.endpoint,
            "AWS_ACCESS_KEY_ID": self.server.access_key,
            "AWS_SECRET_ACCESS_KEY": self.server.secret_key,
            "AWS_REGION": REGION,
            "AWS_EC2_METADATA_DISABLED": "true",
        }

    def close(self) -> None:
        self.gate.close()
        self.server.stop()

    def keys(self) -> list[str]:
        return self.server.keys(self.bucket)


class HttpFaults:
    """An HTTP relay on its own loopback port in front of `target_port` that answers chosen requests with an
    S3 error of its own: `fail(method, path_regex, status, code, times)` makes the next `times` matching
    requests (None: all of them) get `status` and an S3 XML error body naming `code`; the rest are relayed.
    What an object store, a proxy or a rate limiter in front of one answers when it is not the happy path."""

    def __init__(self, target_port: int):
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.target_port = target_port
        self.rules: list[dict] = []
        self.injected = 0
        self._lock = threading.Lock()
        relay = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                return None

            def _any(self) -> None:
                relay._handle(self)

            do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = _any

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stall(self, method: str, path: str, seconds: float) -> None:
        """Matching requests get the real answer's headers and half its body, then nothing for `seconds`."""
        with self._lock:
            self.rules.append({"method": method, "path": re.compile(path), "stall": seconds, "times": None})

    def fail(self, method: str, path: str, status: int, code: str, times: int | None = 1) -> None:
        with self._lock:
            self.rules.append({"method": method, "path": re.compile(path), "status": status, "code": code,
                               "times": times})  # fmt: skip

    def clear(self) -> None:
        with self._lock:
            self.rules = []
            self.injected = 0

    def _rule(self, method: str, path: str) -> dict | None:
        with self._lock:
            for rule in self.rules:
                if rule["method"] == method and rule["path"].search(path) and rule["times"] != 0:
                    if rule["times"] is not None:
                        rule["times"] -= 1
                    self.injected += 1
                    return rule
        return None

    def _handle(self, h) -> None:
        import http.client

        length = int(h.headers.get("Content-Length") or 0)
        body = h.rfile.read(length) if length else b""
        rule = self._rule(h.command, h.path)
        if rule is not None and "stall" not in rule:
            error = (
                f'<?xml version="1.0" encoding="UTF-8"?><Error><Code>{rule["code"]}</Code>'
                "<Message>injected by the test relay</Message><RequestId>t</RequestId></Error>"
            ).encode()
            h.send_response(rule["status"])
            h.send_header("Content-Type", "application/xml")
            h.send_header("Content-Length", str(0 if h.command == "HEAD" else len(error)))
            h.end_headers()
            if h.command != "HEAD":
                h.wfile.write(error)
            return
        upstream = http.client.HTTPConnection("127.0.0.1", self.target_port, timeout=30)
        headers = {k: v for k, v in h.headers.items() if k.lower() != "connection"}
        upstream.request(h.command, h.path, body=body, headers=headers)
        answer = upstream.getresponse()
        data = answer.read()
        h.send_response(answer.status)
        for k, v in answer.getheaders():
            if k.lower() not in ("transfer-encoding", "connection", "content-length"):
                h.send_header(k, v)
        h.send_header("Content-Length", str(len(data) if h.command != "HEAD" else answer.getheader(
            "Content-Length") or 0))  # fmt: skip
        h.end_headers()
        if h.command != "HEAD" and rule is not None:  # a stall: half the body, then silence
            h.wfile.write(data[: len(data) // 2])
            h.wfile.flush()
            time.sleep(rule["stall"])
            h.close_connection = True
        elif h.command != "HEAD":
            h.wfile.write(data)
        upstream.close()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
