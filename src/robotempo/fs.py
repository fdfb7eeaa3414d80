"""The one way a dataset's bytes are read: local folders and object-store URLs through one small interface.

`DatasetRoot` is a dataset's root (a local folder, `s3://bucket/prefix`, or another fsspec URL) and the
filesystem that reads it (pyarrow's LocalFileSystem / S3FileSystem; other schemes through fsspec when it is
installed). Everything above names files by their path relative to the root; nothing else on the read path
touches `Path` I/O. Object stores are read with ranged requests only: parquet through pyarrow's random-access
files, MP4 through `BlockFile` (a bounded block cache that FFmpeg reads as a file object). No listing is made
where the metadata names the files.

Local roots keep the fast paths of plain files: builtin `open` for small reads, and FFmpeg opening the file
by name.
"""

from __future__ import annotations

import io
import logging
import os
import stat
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs

from robotempo.env import env_int
from robotempo.errors import ConfigError, StorageError
from robotempo.forksafe import ProcessLocal
from robotempo.safepath import check_file

logger = logging.getLogger(__name__)

BLOCK_KB_ENV = "ROBOTEMPO_REMOTE_BLOCK_KB"
BLOCKS_ENV = "ROBOTEMPO_REMOTE_BLOCKS"
RETRIES_ENV = "ROBOTEMPO_S3_RETRIES"
DEFAULT_BLOCK_KB = 1024
DEFAULT_BLOCKS = 8
DEFAULT_RETRIES = 10
LOCAL_FIX = "replace it by the regular file the dataset's metadata names (or re-download the dataset)"
CONNECT_TIMEOUT_S = 5.0
REQUEST_TIMEOUT_S = 30.0

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
    f"and the network; transient faults were retried ({RETRIES_ENV} sets how often)"
)


def _split_scheme(text: str) -> tuple[str, str]:
    if "://" in text:
        scheme, rest = text.split("://", 1)
        if scheme.isidentifier() and len(scheme) > 1:  # "C://" on Windows is a drive, not a scheme
            return scheme.lower(), rest
    return "", text


def s3_options(storage_options: Mapping[str, Any] | None) -> dict[str, Any]:
    """Keyword arguments for `pyarrow.fs.S3FileSystem`: aliases resolved, finite timeouts, bounded retries."""
    opts: dict[str, Any] = {}
    for key, value in (storage_options or {}).items():
        opts[_S3_ALIASES.get(key, key)] = value
    endpoint = (
        opts.get("endpoint_override")
        or os.environ.get("AWS_ENDPOINT_URL_S3")
        or os.environ.get("AWS_ENDPOINT_URL")
    )
    if endpoint:
        scheme, rest = _split_scheme(str(endpoint))
        opts["endpoint_override"] = rest.rstrip("/")
        if scheme:
            opts.setdefault("scheme", scheme)
    if "region" not in opts and (os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")):
        opts["region"] = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    opts.setdefault("connect_timeout", CONNECT_TIMEOUT_S)
    opts.setdefault("request_timeout", REQUEST_TIMEOUT_S)
    if "retry_strategy" not in opts:
        opts["retry_strategy"] = pafs.AwsStandardS3RetryStrategy(
            max_attempts=env_int(RETRIES_ENV, DEFAULT_RETRIES)
        )
    return opts


class DatasetRoot:
    """A dataset root and the filesystem that reads it. Picklable: a process rebuilds its own client.

    Args:
        root: a local folder (str or Path, `file://` accepted), `s3://bucket/prefix`, or any URL fsspec
            knows (`gs://`, `az://`, ...; needs fsspec and its backend installed).
        storage_options: object-store settings. For s3: `endpoint_override` (or `endpoint_url`), `region`,
            `anonymous`, `access_key` / `secret_key` / `session_token`, and any other
            `pyarrow.fs.S3FileSystem` argument; unset ones come from the standard AWS environment
            (AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION, config files). For other
            schemes they go to the fsspec filesystem. Ignored for local roots.
    """

    def __init__(self, root: str | os.PathLike, storage_options: Mapping[str, Any] | None = None):
        text = os.fspath(root) if isinstance(root, os.PathLike) else str(root)
        scheme, rest = _split_scheme(text)
        self.storage_options = dict(storage_options or {})
        if scheme in ("", "file"):
            self.scheme = "file"
            self.base = os.path.abspath(os.path.expanduser(rest))
            self.url = self.base
        else:
            self.scheme = scheme
            self.base = rest.strip("/")
            if not self.base:
                raise ConfigError(f"{text!r} names no bucket. Fix: pass root='{scheme}://bucket/prefix'")
            self.url = f"{scheme}://{self.base}"
        self.is_local = self.scheme == "file"
        self._fs: ProcessLocal[pafs.FileSystem] = ProcessLocal(self._make_fs)

    def __getstate__(self) -> dict:
        return {"root": self.url, "storage_options": self.storage_options}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["root"], state["storage_options"])  # type: ignore[misc]

    def __repr__(self) -> str:
        return f"DatasetRoot({self.url!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, DatasetRoot) and (self.url, self.storage_options) == (
            other.url,
            other.storage_options,
        )

    def __hash__(self) -> int:
        return hash(self.url)

    # -- naming ------------------------------------------------------------------------------------------
    @property
    def fs(self) -> pafs.FileSystem:
        """This process's filesystem client."""
        return self._fs.get()

    def _make_fs(self) -> pafs.FileSystem:
        if self.is_local:
            return pafs.LocalFileSystem()
        if self.scheme == "s3":
            opts = s3_options(self.storage_options)
            try:
                return pafs.S3FileSystem(**opts)
            except TypeError as e:
                raise ConfigError(
                    f"{self.url}: storage_options {sorted(self.storage_options)} are not all S3 settings "
                    f"({e}). "
                    "Fix: use endpoint_override, region, anonymous, access_key, secret_key, session_token or "
                    "another pyarrow.fs.S3FileSystem argument"
                ) from None
        try:
            import fsspec
            from pyarrow.fs import FSSpecHandler, PyFileSystem
        except ImportError:
            raise ConfigError(
                f"{self.url}: robotempo reads {self.scheme}:// roots through fsspec, which is not "
                "installed. "
                f"Fix: pip install fsspec and its {self.scheme} backend, or copy the dataset to a folder"
            ) from None
        return PyFileSystem(FSSpecHandler(fsspec.filesystem(self.scheme, **self.storage_options)))

    def path(self, rel: str = "") -> str:
        """The filesystem path of `rel` (relative to the root)."""
        if not rel:
            return self.base
        return os.path.join(self.base, rel) if self.is_local else f"{self.base}/{rel}"

    def where(self, rel: str = "") -> Path | str:
        """How messages name `rel`: a Path for a local root, the URL for an object store."""
        if self.is_local:
            return Path(self.path(rel))
        return f"{self.url}/{rel}" if rel else self.url

    @property
    def cache_key(self) -> str:
        """Identifies the dataset in the user cache: the resolved folder, or the URL and its endpoint."""
        if self.is_local:
            return str(Path(self.base).resolve())
        endpoint = self.storage_options.get("endpoint_override") or self.storage_options.get("endpoint_url")
        return f"{self.url}@{endpoint or os.environ.get('AWS_ENDPOINT_URL', '')}"

    def file(self, rel: str) -> FileRef:
        return FileRef(self, rel)

    # -- reading -----------------------------------------------------------------------------------------
    def local(self, rel: str) -> str:
        """The path of `rel` in a local root, once `robotempo.safepath.check_file` accepts it: inside the root
        (no '..', absolute path or symlink leads out) and a regular file (not a FIFO, device or directory)."""
        return str(check_file(self.base, rel, "the file", LOCAL_FIX))

    def read_bytes(self, rel: str) -> bytes:
        """The whole file; `FileNotFoundError` if absent, `StorageError` for store faults."""
        if self.is_local:
            with open(self.local(rel), "rb") as f:
                return f.read()
        with self.guard(rel):
            with self.fs.open_input_stream(self.path(rel)) as f:
                return f.read()

    def open_input_file(self, rel: str) -> pa.NativeFile:
        """A random-access file (parquet reads ranges of it; on an object store each range is a request)."""
        if self.is_local:
            self.local(rel)
        with self.guard(rel):
            return self.fs.open_input_file(self.path(rel))

    def open_video(self, rel: str) -> str | BlockFile:
        """What FFmpeg opens: the file name for a local root, else a block-cached file object."""
        if self.is_local:
            return self.local(rel)
        return BlockFile(self.open_input_file(rel), self.where(rel))

    def is_file(self, rel: str) -> bool:
        if self.is_local:
            return os.path.isfile(self.path(rel))
        with self.guard(rel):
            return self.fs.get_file_info(self.path(rel)).type == pafs.FileType.File

    def identity(self, rel: str) -> tuple:
        """What tells a rewritten file from the one opened before: (inode, size, mtime) of a local file.

        An object in a store is taken as it was when first opened: checking it on every read would cost a
        request each, and a dataset is not rewritten in place in a bucket while it trains.
        """
        if not self.is_local:
            return ()
        try:
            st = os.stat(self.path(rel))
        except OSError:
            self.local(rel)  # the typed error: absent, a symlink loop...
            raise
        if not stat.S_ISREG(st.st_mode):
            self.local(rel)
        return (st.st_ino, st.st_size, st.st_mtime_ns)

    def size(self, rel: str) -> int:
        if self.is_local:
            return os.path.getsize(self.path(rel))
        with self.guard(rel):
            info = self.fs.get_file_info(self.path(rel))
        if info.type != pafs.FileType.File:
            raise FileNotFoundError(f"{self.where(rel)} does not exist")
        return int(info.size)

    def list_files(self, rel_dir: str, suffix: str) -> list[str]:
        """Files under `rel_dir` ending in `suffix`, relative to the root, sorted. One listing request.

        Only for files the metadata does not name (v3.0's episode-metadata parquet files).
        """
        with self.guard(rel_dir):
            infos = self.fs.get_file_info(
                pafs.FileSelector(self.path(rel_dir), recursive=True, allow_not_found=True)
            )
        start = len(self.base) + 1
        return sorted(
            i.path[start:].replace(os.sep, "/")
            for i in infos
            if i.type in (pafs.FileType.File, pafs.FileType.Unknown)  # a FIFO is Unknown: opening it names it
            and i.path.endswith(suffix)
            and not os.path.basename(i.path).startswith(".")
        )

    def tree_size(self, rel_dir: str) -> tuple[int, int]:
        """Total bytes and number of files under `rel_dir` (a listing; for `robotempo info` only)."""
        with self.guard(rel_dir):
            infos = self.fs.get_file_info(
                pafs.FileSelector(self.path(rel_dir), recursive=True, allow_not_found=True)
            )
        files = [i for i in infos if i.type == pafs.FileType.File]
        return sum(int(i.size or 0) for i in files), len(files)

    # -- faults ------------------------------------------------------------------------------------------
    def guard(self, rel: str) -> _Guard:
        """A `with` block whose store faults (denied, no bucket, unreachable) become `StorageError`s."""
        return _Guard(self, rel)

    def storage_error(self, error: BaseException, rel: str = "") -> BaseException:
        """The typed error for a failed read of `rel`: `StorageError` for a store fault, else `error`."""
        return classify(error, self.where(rel), self)

    def fault(self, error: BaseException, rel: str, otherwise: BaseException) -> BaseException:
        """`StorageError` when `error` is a store fault (denied, no bucket, unreachable), else `otherwise`."""
        typed = classify(error, self.where(rel), self)
        return typed if isinstance(typed, StorageError) else otherwise

    def missing_root_error(self, rel: str) -> StorageError | None:
        """Why `rel` cannot be found when the cause is the store (no such bucket), else None. Cold path."""
        if self.is_local:
            return None
        bucket = self.base.split("/", 1)[0]
        try:
            kind = self.fs.get_file_info(bucket).type
        except OSError as e:
            err = classify(e, self.where(rel), self)
            return err if isinstance(err, StorageError) else None
        if kind == pafs.FileType.NotFound:
            return StorageError(
                f"{self.scheme}://{bucket}",
                "the bucket does not exist (or the credentials cannot see it)",
                "check the bucket name in the root URL and the endpoint",
            )
        return None


class _Guard:
    """Turns store faults raised inside a `with` block into `StorageError`s naming the URL."""

    def __init__(self, root: DatasetRoot, rel: str):
        self.root, self.rel = root, rel

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind, error, tb) -> bool:
        if error is None or isinstance(error, (FileNotFoundError, StorageError)) or self.root.is_local:
            return False
        typed = self.root.storage_error(error, self.rel)
        if typed is not error:
            raise typed from None
        return False


_DENIED = (
    "ACCESS_DENIED",
    "AccessDenied",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "HTTP response code: 403",
)
_NO_BUCKET = ("NoSuchBucket", "NO_SUCH_BUCKET")
_UNREACHABLE = ("NETWORK_CONNECTION", "curlCode", "Couldn't connect", "timed out", "Connection refused")


def classify(error: BaseException, where: Path | str, root: DatasetRoot | None = None) -> BaseException:
    """`StorageError` for a denied, unknown-bucket or unreachable-store failure; other errors unchanged."""
    if (
        isinstance(error, StorageError)
        or not isinstance(error, OSError)
        or isinstance(error, FileNotFoundError)
    ):
        return error
    text = str(error)
    url = str(where)
    if any(s in text for s in _DENIED):
        return StorageError(url, f"access denied ({text.strip()[:160]})", CREDENTIALS_FIX)
    if any(s in text for s in _NO_BUCKET):
        return StorageError(url, "the bucket does not exist", "check the bucket name in the root URL")
    if any(s in text for s in _UNREACHABLE) or "AWS Error" in text:
        return StorageError(url, f"the object store failed the request ({text.strip()[:200]})", ENDPOINT_FIX)
    return error


class FileRef:
    """One file of a dataset: its root and its path relative to it. `str()` is its path or URL."""

    __slots__ = ("root", "rel")

    def __init__(self, root: DatasetRoot, rel: str):
        self.root, self.rel = root, rel

    def __str__(self) -> str:
        return str(self.root.where(self.rel))

    def __repr__(self) -> str:
        return f"FileRef({str(self)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, FileRef) and (self.root, self.rel) == (other.root, other.rel)

    def __hash__(self) -> int:
        return hash((self.root.url, self.rel))

    def __reduce__(self):
        return FileRef, (self.root, self.rel)

    @property
    def where(self) -> Path | str:
        return self.root.where(self.rel)

    def is_file(self) -> bool:
        return self.root.is_file(self.rel)

    def open_input_file(self) -> pa.NativeFile:
        return self.root.open_input_file(self.rel)

    def open_video(self) -> str | BlockFile:
        return self.root.open_video(self.rel)

    def read_bytes(self) -> bytes:
        return self.root.read_bytes(self.rel)


def as_root(
    root: DatasetRoot | str | os.PathLike, storage_options: Mapping[str, Any] | None = None
) -> DatasetRoot:
    """`root` itself when it is a DatasetRoot, else a new one."""
    return root if isinstance(root, DatasetRoot) else DatasetRoot(root, storage_options)


def as_file(path: FileRef | str | os.PathLike) -> FileRef:
    """A FileRef for a file given by its own path or URL (its folder becomes the root)."""
    if isinstance(path, FileRef):
        return path
    text = os.fspath(path) if isinstance(path, os.PathLike) else str(path)
    scheme, rest = _split_scheme(text)
    if scheme in ("", "file"):
        full = os.path.abspath(os.path.expanduser(rest))
        return FileRef(DatasetRoot(os.path.dirname(full)), os.path.basename(full))
    folder, _, name = text.rpartition("/")
    return FileRef(DatasetRoot(folder), name)


class BlockFile(io.RawIOBase):
    """A read-only, seekable file object over a random-access store file, fetched in aligned blocks.

    FFmpeg reads in small pieces (32 KB) and seeks back and forth around keyframes; each block is fetched
    with one ranged request, contiguous missing blocks of one read are fetched together, and the last
    `ROBOTEMPO_REMOTE_BLOCKS` blocks (default 8 of `ROBOTEMPO_REMOTE_BLOCK_KB`, default 1024 KB) are kept,
    so a seek plus the decode of one cluster costs about (cluster bytes / block size) + 1 requests.
    """

    def __init__(
        self,
        source: pa.NativeFile,
        name: Path | str,
        block_size: int | None = None,
        blocks: int | None = None,
    ):
        super().__init__()
        self._source = source
        self.name = str(name)
        self._size = source.size()
        self._block = block_size or env_int(BLOCK_KB_ENV, DEFAULT_BLOCK_KB) * 1024
        self._max_blocks = blocks or env_int(BLOCKS_ENV, DEFAULT_BLOCKS)
        self._blocks: OrderedDict[int, bytes] = OrderedDict()
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if whence == io.SEEK_SET:
            pos = offset
        elif whence == io.SEEK_CUR:
            pos = self._pos + offset
        elif whence == io.SEEK_END:
            pos = self._size + offset
        else:
            raise ValueError(f"unsupported whence {whence}")
        if pos < 0:
            raise ValueError(f"negative seek position {pos}")
        self._pos = pos
        return pos

    def read(self, n: int = -1) -> bytes:
        end = self._size if n is None or n < 0 else min(self._size, self._pos + n)
        if end <= self._pos:
            return b""
        first, last = self._pos // self._block, (end - 1) // self._block
        self._fetch([b for b in range(first, last + 1) if b not in self._blocks])
        parts = []
        for b in range(first, last + 1):
            data = self._blocks[b]
            self._blocks.move_to_end(b)
            lo = max(self._pos - b * self._block, 0)
            hi = min(end - b * self._block, len(data))
            parts.append(data[lo:hi])
        out = b"".join(parts) if len(parts) > 1 else parts[0]
        self._pos += len(out)
        while len(self._blocks) > max(self._max_blocks, last - first + 1):
            self._blocks.popitem(last=False)
        return out

    def readinto(self, buffer) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def _fetch(self, blocks: list[int]) -> None:
        """One ranged read per run of consecutive missing blocks."""
        run_start = 0
        for i in range(1, len(blocks) + 1):
            if i == len(blocks) or blocks[i] != blocks[i - 1] + 1:
                lo = blocks[run_start] * self._block
                hi = min((blocks[i - 1] + 1) * self._block, self._size)
                try:
                    data = self._source.read_at(hi - lo, lo)
                except OSError as e:
                    raise classify(e, self.name) from None
                for j, b in enumerate(blocks[run_start:i]):
                    self._blocks[b] = data[j * self._block : (j + 1) * self._block]
                run_start = i

    def close(self) -> None:
        if not self.closed:
            self._blocks.clear()
            self._source.close()
        super().close()
