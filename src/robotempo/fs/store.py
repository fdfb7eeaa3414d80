"""Object-store settings and faults: S3 client options from `storage_options` and the AWS environment, which
client errors are store faults (denied, no bucket, unreachable) rather than bad files, and the deadline of
one store operation."""

from __future__ import annotations

import contextlib
import errno
import math
import os
import random
import re
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor, wait
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path
from typing import Any, TypeVar

import pyarrow.fs as pafs

from robotempo.env import env_float, env_int
from robotempo.errors import ConfigError, StorageError
from robotempo.forksafe import ProcessLocal

T = TypeVar("T")

RETRIES_ENV = "ROBOTEMPO_S3_RETRIES"
DEADLINE_ENV = "ROBOTEMPO_S3_DEADLINE_S"
CONCURRENCY_ENV = "ROBOTEMPO_REMOTE_CONCURRENCY"
DEFAULT_RETRIES = 10
DEFAULT_DEADLINE_S = 60.0
DEFAULT_CONCURRENCY = 8
CONNECT_TIMEOUT_S = 2.0  # a TCP handshake takes milliseconds; a dropped one is retried sooner
REQUEST_TIMEOUT_S = 10.0  # no byte for this long: the request is abandoned (then retried)

_S3_ALIASES = {  # fsspec / boto-style names users already write -> pyarrow's names
    "endpoint_url": "endpoint_override",
    "region_name": "region",
    "anon": "anonymous",
    "key": "access_key",
    "aws_access_key_id": "access_key",
    "secret": "secret_key",
    "aws_secret_access_key": "secret_key",
    "token": "session_token",
    "aws_session_token": "session_token",
}
CREDENTIALS_FIX = (
    "pass storage_options={'access_key': ..., 'secret_key': ...} (or 'anonymous': True for a public bucket), "
    "or set AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_PROFILE"
)
ENDPOINT_FIX = (
    "check the endpoint (storage_options={'endpoint_override': 'http://host:port'} or AWS_ENDPOINT_URL) "
    f"and the network; an endpoint that answered before was retried until {DEADLINE_ENV} (default 60 s): "
    "raise it to ride out longer outages"
)

# One pool per process for robotempo's own store requests: its size bounds the requests under way at once,
# and a request waited for past the deadline finishes there (at its own timeouts) while the caller moves on.
_pool: ProcessLocal[ThreadPoolExecutor] = ProcessLocal(
    lambda: ThreadPoolExecutor(
        env_int(CONCURRENCY_ENV, DEFAULT_CONCURRENCY), thread_name_prefix="robotempo-store"
    )
)


def store_pool() -> ThreadPoolExecutor:
    """This process's pool for store requests (`ROBOTEMPO_REMOTE_CONCURRENCY` threads, default 8)."""
    return _pool.get()


# Requests given up at their deadline that may still be under way (their own retries and timeouts go on).
_abandoned: list[Future] = []


def abandoned_requests() -> int:
    """Store requests given up at their deadline and still under way. At interpreter exit pyarrow's S3
    finalization waits for them (up to retries x timeouts: 186 s against a black-holed endpoint), which is
    why the CLI leaves at once after reporting such an error."""
    _abandoned[:] = [f for f in _abandoned if not f.done()]
    return len(_abandoned)


def deadline_s() -> float:
    """How long one store operation may take, retries included (`ROBOTEMPO_S3_DEADLINE_S`, default 60)."""
    return env_float(DEADLINE_ENV, DEFAULT_DEADLINE_S, minimum=0.001)


def deadline_error(where: Path | str, seconds: float) -> StorageError:
    return StorageError(
        str(where), f"the object store did not answer within {seconds:g} s ({DEADLINE_ENV})", ENDPOINT_FIX
    )


# Whether an object store has answered this process (or the parent it was forked from, or the process that
# pickled a root for it): an endpoint that answered before and now refuses or drops connections is an outage
# (a restarting server, a load balancer's failover) to ride out; one that never answered is more likely a
# wrong endpoint, reported after the SDK's own attempts instead of after the whole deadline.
_answered = False


def mark_answered() -> None:
    global _answered
    _answered = True


def _retrying(call: Callable[[], T]) -> Callable[[], T]:
    """`call` again, with jittered backoff (at most 2 s apart), after a throttling or server error the SDK did
    not retry (`_UNKNOWN_TRANSIENT`, at most `ROBOTEMPO_S3_RETRIES` times), and after the SDK's attempts
    against an endpoint that answered before and now refuses, resets or does not answer connections (an
    outage: until the deadline). Never past `deadline_s()` from the first attempt, so a request the caller
    gave up on ends by itself too."""

    def run() -> T:
        retries = env_int(RETRIES_ENV, DEFAULT_RETRIES)
        until = time.monotonic() + deadline_s()
        attempt = 0
        while True:
            try:
                with _fork_gate.operation():
                    result = call()
            except OSError as e:
                text = str(e)
                attempt += 1
                throttled = attempt <= retries and _UNKNOWN_TRANSIENT.search(text) is not None
                outage = _answered and any(sign in text for sign in _UNREACHABLE)
                pause = min(2.0, 0.05 * 2**attempt) * (0.5 + random.random())
                if not (throttled or outage) or time.monotonic() + pause >= until:
                    raise
                time.sleep(pause)
                _exit_if_orphaned()
                continue
            mark_answered()
            return result

    return run


class _ForkGate:
    """The store operations under way in this process. A fork waits until none is (at most `FORK_WAIT_S`; ones
    given up at their deadline do not count) and holds new ones back until it is done: pyarrow's S3 client
    holds a lock shared by every operation under way, a child forked during one inherits it held, and the
    child's first client then waits forever (QA, 2026-12-02: DataLoader workers forked while another thread of
    the main process read a bucket hung in `ClientBuilder::BuildClient` in 8 of 20 rounds)."""

    def __init__(self) -> None:
        self.cond = threading.Condition(threading.Lock())
        self.busy = 0
        self.forking = False

    @contextlib.contextmanager
    def operation(self) -> Iterator[None]:
        with self.cond:
            while self.forking:
                self.cond.wait()
            self.busy += 1
        try:
            yield
        finally:
            with self.cond:
                self.busy -= 1
                self.cond.notify_all()

    def before_fork(self) -> None:
        with self.cond:
            self.forking = True
            self.cond.wait_for(lambda: self.busy <= abandoned_requests(), timeout=FORK_WAIT_S)

    def after_fork_in_parent(self) -> None:
        with self.cond:
            self.forking = False
            self.cond.notify_all()

    def after_fork_in_child(self) -> None:  # the parent's operations are not this process's
        self.__init__()  # type: ignore[misc]


FORK_WAIT_S = 5.0
_fork_gate = _ForkGate()
os.register_at_fork(
    before=_fork_gate.before_fork,
    after_in_parent=_fork_gate.after_fork_in_parent,
    after_in_child=_fork_gate.after_fork_in_child,
)


# The process that started this one, as it was when this one began (at import, or at fork): a DataLoader
# worker whose parent is gone (SIGKILLed by the OOM killer, preempted) has no one to serve.
_parent_pid = os.getppid()


def _note_parent() -> None:
    global _parent_pid
    _parent_pid = os.getppid()


os.register_at_fork(after_in_child=_note_parent)


def _exit_if_orphaned() -> None:
    """End this process at once when it is a DataLoader worker whose parent is gone. Waiting out store
    requests (up to the deadline, then interpreter exit joining the store pool's threads while the SDK
    retries) kept orphaned workers alive for 40 s to minutes, each holding its memory and the job's output
    pipe. torch's own check runs only between batches."""
    worker = sys.modules.get("torch.utils.data._utils.worker")
    if worker is None or getattr(worker, "_worker_info", None) is None or os.getppid() == _parent_pid:
        return
    sys.stderr.write(f"robotempo: DataLoader worker {os.getpid()} ends: its parent {_parent_pid} is gone\n")
    sys.stderr.flush()
    os._exit(1)


_SLICE_S = 1.0  # how often a wait on the store checks that a worker's parent is still there


def within_deadline(call: Callable[[], T], where: Path | str) -> T:
    """`call()` (a blocking store request and its retries) on the store pool, waited for at most
    `deadline_s()`: past it a `StorageError` naming `where`; the client's own errors pass through."""
    future = store_pool().submit(_retrying(call))
    seconds = deadline_s()
    end = time.monotonic() + seconds
    while True:
        try:
            return future.result(timeout=max(0.0, min(_SLICE_S, end - time.monotonic())))
        except FutureTimeout:
            _exit_if_orphaned()
            if time.monotonic() >= end:
                _abandoned.append(future)
                raise deadline_error(where, seconds) from None


def all_within_deadline(calls: list[Callable[[], T]], where: Path | str) -> list[T]:
    """Every `call()` on the store pool, at most `ROBOTEMPO_REMOTE_CONCURRENCY` under way at once, all
    waited for `deadline_s()` at most; after all ended, the first failure in `calls`' order is raised."""
    futures = [store_pool().submit(_retrying(call)) for call in calls]
    seconds = deadline_s()
    end = time.monotonic() + seconds
    while wait(futures, timeout=max(0.0, min(_SLICE_S, end - time.monotonic()))).not_done:
        _exit_if_orphaned()
        if time.monotonic() < end:
            continue
        _abandoned.extend(f for f in futures if not f.cancel() and not f.done())
        raise deadline_error(where, seconds)
    for future in futures:
        if future.exception() is not None:
            raise future.exception()  # type: ignore[misc]
    return [f.result() for f in futures]


def split_scheme(text: str) -> tuple[str, str]:
    if "://" in text:
        scheme, rest = text.split("://", 1)
        if scheme.isidentifier() and len(scheme) > 1:  # "C://" on Windows is a drive, not a scheme
            return scheme.lower(), rest
    return "", text


# One S3 client per process and distinct settings. pyarrow builds a client only while no request of any
# client in the process is under way (its S3 finalizer's lock): with a client per dataset, each of a
# mixture's concurrent opens waited for the others' requests, and after a request abandoned at its deadline
# no new client could be built until that request's own retries ended.
# (Not a ProcessLocal: a root's ProcessLocal builds its filesystem here under ProcessLocal's own lock.)
_clients: dict[tuple, pafs.S3FileSystem] = {}
_clients_pid = os.getpid()
_inherited_clients: list[pafs.S3FileSystem] = []  # a parent's clients, never destroyed in a child
_clients_lock = threading.Lock()


def _new_clients_lock() -> None:  # a fork while another thread held it would leave the child's copy held
    global _clients_lock
    _clients_lock = threading.Lock()


os.register_at_fork(after_in_child=_new_clients_lock)


def s3_filesystem(storage_options: Mapping[str, Any] | None) -> pafs.S3FileSystem:
    """This process's client for these settings (`s3_options`), shared by every root that uses them."""
    opts = s3_options(storage_options)
    own = "retry_strategy" in (storage_options or {})  # the caller's object: shared only with itself
    strategy = id(opts["retry_strategy"]) if own else _attempts()  # robotempo's: a new object each call
    key = tuple(sorted((k, strategy if k == "retry_strategy" else repr(v)) for k, v in opts.items()))
    key += tuple(sorted((k, v) for k, v in os.environ.items() if k.startswith("AWS_")))  # keys, profile
    global _clients_pid
    with _clients_lock:
        if _clients_pid != os.getpid():
            _inherited_clients.extend(_clients.values())
            _clients.clear()
            _clients_pid = os.getpid()
        fs = _clients.get(key)
        if fs is None:
            fs = _clients[key] = pafs.S3FileSystem(**opts)
    return fs


def s3_options(storage_options: Mapping[str, Any] | None) -> dict[str, Any]:
    """Keyword arguments for `pyarrow.fs.S3FileSystem`: aliases resolved, finite timeouts, bounded retries."""
    opts: dict[str, Any] = {}
    for key, value in (storage_options or {}).items():
        key = _S3_ALIASES.get(key, key)
        opts[key] = _typed(key, value)
    endpoint = (
        opts.get("endpoint_override")
        or os.environ.get("AWS_ENDPOINT_URL_S3")
        or os.environ.get("AWS_ENDPOINT_URL")
    )
    if endpoint:
        scheme, rest = split_scheme(str(endpoint))
        opts["endpoint_override"] = rest.rstrip("/")
        if scheme:
            opts.setdefault("scheme", scheme)
    if "region" not in opts and (os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")):
        opts["region"] = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    _pair_keys(opts)
    # A request's own timeouts and retries end near the deadline: past it the caller has moved on, and a
    # request still under way holds pyarrow's lock on building clients (see `_clients`).
    opts.setdefault("connect_timeout", min(CONNECT_TIMEOUT_S, deadline_s()))
    opts.setdefault("request_timeout", min(REQUEST_TIMEOUT_S, deadline_s()))
    if "retry_strategy" not in opts:
        opts["retry_strategy"] = pafs.AwsStandardS3RetryStrategy(max_attempts=_attempts())
    return opts


# pyarrow's S3FileSystem settings that are not strings. A value given as text (`--storage-option KEY=VALUE`,
# a config file) is read as its type: pyarrow took any non-empty string for True ("anonymous=0" turned
# anonymous access on and sent no credentials) and refused "5" for a timeout.
_BOOL_SETTINGS = frozenset({
    "anonymous", "background_writes", "allow_bucket_creation", "allow_bucket_deletion",
    "check_directory_existence_before_creation", "allow_delayed_open", "force_virtual_addressing",
})  # fmt: skip
_NUMBER_SETTINGS = frozenset({"connect_timeout", "request_timeout", "load_frequency"})
_TRUE, _FALSE = ("true", "yes", "on", "1"), ("false", "no", "off", "0")


def _typed(key: str, value: Any) -> Any:
    if key in _BOOL_SETTINGS and not isinstance(value, bool):
        text = str(value).strip().lower()
        if text in _TRUE or text in _FALSE:
            return text in _TRUE
        raise ConfigError(
            f"storage option {key}={value!r} is not true or false. Fix: {key}=true or {key}=false"
        )
    if key in _NUMBER_SETTINGS and isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            raise ConfigError(
                f"storage option {key}={value!r} is not a number. Fix: e.g. {key}=5 (seconds)"
            ) from None
        return int(number) if key == "load_frequency" else number
    return value


def _attempts() -> int:
    """`ROBOTEMPO_S3_RETRIES`, at most as many attempts as silent requests fit in the deadline (60 s: 6)."""
    return max(1, min(env_int(RETRIES_ENV, DEFAULT_RETRIES), math.ceil(deadline_s() / REQUEST_TIMEOUT_S)))


def _pair_keys(opts: dict[str, Any]) -> None:
    """pyarrow takes both keys or neither: one given, the other comes from the AWS environment (the CLI's help
    says unset settings do), else a `ConfigError` (pyarrow's own ValueError reached users untyped)."""
    pairs = (("access_key", "AWS_ACCESS_KEY_ID"), ("secret_key", "AWS_SECRET_ACCESS_KEY"))
    given = [key for key, _ in pairs if opts.get(key)]
    if len(given) != 1:
        return
    missing, variable = next((k, v) for k, v in pairs if k not in given)
    value = os.environ.get(variable)
    if not value:
        raise ConfigError(
            f"storage_options give {given[0]} but no {missing}, and {variable} is not set. Fix: pass both "
            f"{given[0]} and {missing} (or neither, to use the AWS environment and config files)"
        )
    opts[missing] = value


_DENIED = (
    "ACCESS_DENIED",
    "AccessDenied",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "HTTP response code: 403",
)
_NO_BUCKET = ("NoSuchBucket", "NO_SUCH_BUCKET")
_TOKEN = ("ExpiredToken", "InvalidToken", "TokenRefreshRequired", "EXPIRED_TOKEN")
_REGION = ("PermanentRedirect", "AuthorizationHeaderMalformed", "IncorrectEndpoint", "HTTP status 301")
TOKEN_FIX = (
    "refresh the credentials (a new AWS_SESSION_TOKEN, or storage_options={'session_token': ...} with its "
    "keys), or, for a bucket in another region, pass storage_options={'region': ...} (or AWS_REGION)"
)
REGION_FIX = "pass the bucket's region: storage_options={'region': ...} or AWS_REGION"
# Throttling and server errors whose code the AWS SDK does not know (MinIO's XMinioServerNotInitialized while
# it restarts, 429 TooManyRequests from a rate-limiting proxy): the SDK does not retry them, robotempo does.
_UNKNOWN_TRANSIENT = re.compile(r"AWS Error UNKNOWN \(HTTP status (?:429|5\d\d)\)")
_ERRNO_TEXT = {
    errno.EMFILE: "Too many open files",
    errno.ENFILE: "Too many open files in system",
    errno.EACCES: "Permission denied",
    errno.EPERM: "Operation not permitted",
}
_UNREACHABLE = (
    "NETWORK_CONNECTION", "curlCode", "Couldn't connect", "timed out", "Connection refused", "reset by peer",
)  # fmt: skip


def _clip(text: str, limit: int = 300) -> str:
    """The SDK's message, whole words only (a cut at a fixed width left 'No response bod')."""
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    return text[:limit].rsplit(" ", 1)[0] + " ..."


DESCRIPTORS_FIX = (
    "raise the process's open-file limit (ulimit -n; each DataLoader worker keeps up to "
    "ROBOTEMPO_PARQUET_HANDLES parquet files and ROBOTEMPO_VIDEO_CACHE_SIZE (or video_cache_size=) video "
    "files open), or lower those"
)
PERMISSION_FIX = "make the file (and its folders) readable by the user running the loader"
BACKEND_FIX = "check the root URL, the credentials and the network for this store, then run again"


class BackendError(OSError):
    """A failure an fsspec backend raised as its own client's exception (not an OSError), carried as one."""


def classify(error: BaseException, where: Path | str) -> BaseException:
    """`StorageError` for a denied, unknown-bucket or unreachable-store failure, and for a local file this
    process may not read or cannot open for want of descriptors (the file itself is fine: a format error would
    send the user to re-download it); other errors unchanged."""
    if (
        isinstance(error, StorageError)
        or not isinstance(error, OSError)
        or isinstance(error, FileNotFoundError)
    ):
        return error
    text = str(error)
    url = str(where)
    if isinstance(error, BackendError):
        return StorageError(url, f"the store failed the request ({_clip(text)})", BACKEND_FIX)
    if any(s in text for s in _DENIED):
        return StorageError(url, f"access denied ({_clip(text)})", CREDENTIALS_FIX)
    if any(s in text for s in _NO_BUCKET):
        return StorageError(url, "the bucket does not exist", "check the bucket name in the root URL")
    if any(s in text for s in _TOKEN):
        return StorageError(url, f"the credentials have expired or are invalid ({_clip(text)})", TOKEN_FIX)
    if any(s in text for s in _REGION):
        return StorageError(url, f"the bucket answers from another region ({_clip(text)})", REGION_FIX)
    if "HTTP status 400" in text:  # S3 answers an expired token (and a HEAD anything) with a bare 400
        return StorageError(url, f"the store refused the request as bad (HTTP 400: {_clip(text)})", TOKEN_FIX)
    if any(s in text for s in _UNREACHABLE) or "AWS Error" in text:
        return StorageError(url, f"the object store failed the request ({_clip(text)})", ENDPOINT_FIX)
    code = error.errno
    if code is None:  # pyarrow's local errors carry the errno only in their text
        code = next((c for c, name in _ERRNO_TEXT.items() if name in text), None)
    if code in (errno.EMFILE, errno.ENFILE):
        return StorageError(
            url, f"this process has no file descriptor left to open it ({_clip(text)})", DESCRIPTORS_FIX
        )
    if code in (errno.EACCES, errno.EPERM):
        return StorageError(url, f"permission denied ({_clip(text)})", PERMISSION_FIX)
    return error
