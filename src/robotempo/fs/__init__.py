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

import logging
import os
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs

from robotempo.errors import ConfigError, StorageError
from robotempo.forksafe import ProcessLocal
from robotempo.fs.blockfile import BlockFile
from robotempo.fs.store import (
    BackendError,
    classify,
    s3_filesystem,
    s3_options,
    split_scheme,
    within_deadline,
)
from robotempo.safepath import check_file

__all__ = ["BlockFile", "DatasetRoot", "FileRef", "as_file", "as_root", "classify", "s3_options"]

logger = logging.getLogger(__name__)

LOCAL_FIX = "replace it by the regular file the dataset's metadata names (or re-download the dataset)"


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
        if not isinstance(root, (str, os.PathLike)):
            raise ConfigError(f"root={root!r:.80} is not a path. Fix: pass a dataset folder or an s3:// URL")
        if storage_options is not None and not isinstance(storage_options, Mapping):
            raise ConfigError(
                f"storage_options={storage_options!r:.80} is not a mapping. Fix: pass a dict, e.g. "
                "{'endpoint_override': 'http://...', 'region': ...}"
            )
        text = os.fspath(root) if isinstance(root, os.PathLike) else str(root)
        scheme, rest = split_scheme(text)
        self.storage_options = dict(storage_options or {})
        if scheme in ("", "file"):
            self.scheme = "file"
            self.base = os.path.abspath(os.path.expanduser(rest))
            self.url = self.base
        elif scheme == "hf":
            # The Hub through fsspec reaches the network on every read and fails with whatever the HTTP
            # client raises; robotempo reads a downloaded snapshot in place instead.
            raise ConfigError(
                f"{text!r}: robotempo does not read the Hugging Face Hub over the network. Fix: download the "
                "dataset first (pip install 'robotempo[hub]'; huggingface-cli download --repo-type dataset "
                "<repo_id> --local-dir <folder>) and pass that folder as root"
            )
        else:
            self.scheme = scheme
            self.base = rest.strip("/")
            if not self.base:
                raise ConfigError(f"{text!r} names no bucket. Fix: pass root='{scheme}://bucket/prefix'")
            if "//" in self.base:  # pyarrow's S3 client refuses an empty path component (bare ArrowInvalid)
                tidy = "/".join(part for part in self.base.split("/") if part)
                raise ConfigError(
                    f"{text!r} has an empty path component ('//'), which the object-store client cannot "
                    f"address. Fix: pass root='{scheme}://{tidy}'"
                )
            self.url = f"{scheme}://{self.base}"
        self.is_local = self.scheme == "file"
        self._fs: ProcessLocal[pafs.FileSystem] = ProcessLocal(self._make_fs)
        self._versions: dict[str, tuple] = {}  # object -> (size, ETag or Last-Modified) at its first open
        # meta/info.json as parsed by a step of this open that needed it first (a Mixture mapping its offsets
        # onto the dataset's fps), for the dataset's own read right after: one request, not two.
        self.info_for_next_read = None

    def __getstate__(self) -> dict:
        # The objects' versions at their first open travel too: a spawned worker (or a rank given this
        # open by `open_once`) compares its own opens with them, not with whatever it opens first.
        return {"root": self.url, "storage_options": self.storage_options, "versions": dict(self._versions)}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["root"], state["storage_options"])  # type: ignore[misc]
        self._versions.update(state.get("versions") or {})
        if self._versions:  # the store answered the process that pickled this root: an outage is ridden out
            from robotempo.fs.store import mark_answered

            mark_answered()

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
            try:
                return s3_filesystem(self.storage_options)
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
        try:
            backend = fsspec.filesystem(self.scheme, **self.storage_options)
        except ImportError as e:  # fsspec knows the scheme, its package is missing ("Install gcsfs to ...")
            raise ConfigError(
                f"{self.url}: robotempo reads {self.scheme}:// roots through fsspec, whose {self.scheme} "
                f"backend is not installed ({e}). Fix: pip install it (gcsfs for gs://, adlfs for az://), "
                "or copy the dataset to a folder"
            ) from None
        except ValueError as e:  # "Protocol not known"
            raise ConfigError(
                f"{self.url}: fsspec has no filesystem for {self.scheme}:// ({e}). Fix: check the URL's "
                "scheme (s3://, gs://, az://, ...), or copy the dataset to a folder"
            ) from None
        return PyFileSystem(FSSpecHandler(_OSErrorsOnly(backend)))

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

        def read() -> bytes:
            with self.fs.open_input_file(self.path(rel)) as f:
                return f.read_at(f.size(), 0)  # one ranged GET (a stream reads in chunks, a request each)

        with self.guard(rel):
            return within_deadline(read, self.where(rel))

    def open_input_file(self, rel: str) -> pa.NativeFile:
        """A random-access file (parquet reads ranges of it; on an object store each range is a request)."""
        if self.is_local:
            self.local(rel)
            return self.fs.open_input_file(self.path(rel))
        with self.guard(rel):
            f = within_deadline(lambda: self.fs.open_input_file(self.path(rel)), self.where(rel))
        self._check_unchanged(rel, f)
        return f

    def changed_error(self, rel: str) -> StorageError | None:
        """After a read of `rel` failed: the `StorageError` saying the object changed since this root first
        opened it (one HEAD request), else None. A handle kept open reads a rewritten object's new bytes at
        the old offsets, which look like a damaged file; the error should say what happened."""
        if self.is_local or rel not in self._versions:
            return None
        try:
            self.open_input_file(rel).close()
        except StorageError as e:
            return e if "changed" in str(e) else None
        except OSError:
            return None
        return None

    def _check_unchanged(self, rel: str, f: pa.NativeFile) -> None:
        """Raise `StorageError` when the object `f` opens differs from the one this root first opened.

        A store file is opened with one HEAD request, whose answer (size, ETag, Last-Modified) `f` already
        holds: comparing it costs no request. A file already open is not re-checked (that would cost a
        request per read), so a rewrite is noticed at the next open of the object, not mid-read.
        """
        version = (f.size(), _object_version(f.metadata() or {}))
        first = self._versions.setdefault(rel, version)
        if first != version:
            f.close()
            raise StorageError(
                str(self.where(rel)),
                f"the object changed while the dataset was being read (size, version {first} at its first "
                f"open, now {version})",
                "do not rewrite a dataset's objects while a run reads it: let the run finish, or restart it "
                "to read the new version (items already served came from the old one)",
            )

    def open_video(self, rel: str) -> str | BlockFile:
        """What FFmpeg opens: the file name for a local root, else a block-cached file object."""
        if self.is_local:
            return self.local(rel)
        source = self.open_input_file(rel)  # the HEAD that tells a rewritten object from the one first opened
        version = (source.size(), _object_version(source.metadata() or {}))
        return BlockFile(source, self.where(rel), version=(self.cache_key, *version))

    def is_file(self, rel: str) -> bool:
        if self.is_local:
            return os.path.isfile(self.path(rel))
        with self.guard(rel):
            info = within_deadline(lambda: self.fs.get_file_info(self.path(rel)), self.where(rel))
        return info.type == pafs.FileType.File

    def identity(self, rel: str) -> tuple:
        """What tells a rewritten file from the one opened before: (inode, size, mtime) of a local file.

        An object in a store has no identity here (asking would cost a request on every cache lookup);
        instead each new handle on it is compared with its first open (`open_input_file`), for free.
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
            info = within_deadline(lambda: self.fs.get_file_info(self.path(rel)), self.where(rel))
        if info.type != pafs.FileType.File:
            raise FileNotFoundError(f"{self.where(rel)} does not exist")
        return int(info.size)

    def list_files(self, rel_dir: str, suffix: str) -> list[str]:
        """Files under `rel_dir` ending in `suffix`, relative to the root, sorted. One listing request.

        Only for files the metadata does not name (v3.0's episode-metadata parquet files).
        """
        infos = self._listing(rel_dir)
        return sorted(
            self._relative(i.path)
            for i in infos
            if i.type in (pafs.FileType.File, pafs.FileType.Unknown)  # a FIFO is Unknown: opening it names it
            and i.path.endswith(suffix)
            and not os.path.basename(i.path).startswith(".")
        )

    def _listing(self, rel_dir: str) -> list[pafs.FileInfo]:
        selector = pafs.FileSelector(self.path(rel_dir), recursive=True, allow_not_found=True)
        if self.is_local:
            try:
                return _walk(self.path(rel_dir))
            except OSError as e:  # a folder this user may not list: typed
                typed = self.fault(e, rel_dir, e)
                if typed is e:
                    raise
                raise typed from None
        with self.guard(rel_dir):
            return within_deadline(lambda: self.fs.get_file_info(selector), self.where(rel_dir))

    def _relative(self, fs_path: str) -> str:
        """A listed path relative to the root (fsspec filesystems list with a leading '/')."""
        if self.is_local:
            return os.path.relpath(fs_path, self.base).replace(os.sep, "/")
        return fs_path.lstrip("/")[len(self.base) + 1 :]

    def tree_size(self, rel_dir: str) -> tuple[int, int]:
        """Total bytes and number of files under `rel_dir` (a listing; for `robotempo info` only)."""
        infos = self._listing(rel_dir)
        files = [i for i in infos if i.type == pafs.FileType.File]
        return sum(int(i.size or 0) for i in files), len(files)

    # -- faults ------------------------------------------------------------------------------------------
    def guard(self, rel: str) -> _Guard:
        """A `with` block whose store faults (denied, no bucket, unreachable) become `StorageError`s."""
        return _Guard(self, rel)

    def storage_error(self, error: BaseException, rel: str = "") -> BaseException:
        """The typed error for a failed read of `rel`: `StorageError` for a store fault, else `error`."""
        return classify(error, self.where(rel))

    def fault(self, error: BaseException, rel: str, otherwise: BaseException) -> BaseException:
        """`StorageError` when `error` is a store fault (denied, no bucket, unreachable), else `otherwise`."""
        typed = classify(error, self.where(rel))
        return typed if isinstance(typed, StorageError) else otherwise

    def missing_root_error(self, rel: str) -> StorageError | None:
        """Why `rel` cannot be found when the cause is the store (no such bucket), else None. Cold path."""
        if self.is_local:
            return None
        bucket = self.base.split("/", 1)[0]
        try:
            kind = self.fs.get_file_info(bucket).type
        except OSError as e:
            err = classify(e, self.where(rel))
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
    scheme, rest = split_scheme(text)
    if scheme in ("", "file"):
        full = os.path.abspath(os.path.expanduser(rest))
        return FileRef(DatasetRoot(os.path.dirname(full)), os.path.basename(full))
    folder, _, name = text.rpartition("/")
    return FileRef(DatasetRoot(folder), name)


def _object_version(meta) -> str | None:
    """The ETag (else Last-Modified) of an opened object. pyarrow's metadata keys are str; the bytes spelling
    is accepted too. Reading only `b"ETag"` compared sizes alone, so an object rewritten at its size (new
    pixels, same bytes count) was served silently."""
    for key in ("ETag", "Last-Modified"):
        value = meta.get(key) or meta.get(key.encode())
        if value:
            return value.decode() if isinstance(value, bytes) else str(value)
    return None


def _walk(top: str) -> list[pafs.FileInfo]:
    """Every file under `top` (symlinks to files included), without following symlinks to folders: two links
    pointing back inside the dataset (`chunk-001 -> .`) made pyarrow's recursive listing run forever."""
    if not os.path.isdir(top):
        return []

    def fail(error: OSError) -> None:
        raise error

    out = []
    for folder, _, files in os.walk(top, onerror=fail, followlinks=False):
        for name in files:
            path = os.path.join(folder, name)
            try:
                st = os.stat(path)
            except OSError:  # a dangling link: opening it names it
                out.append(pafs.FileInfo(path, pafs.FileType.Unknown))
                continue
            kind = pafs.FileType.File if stat.S_ISREG(st.st_mode) else pafs.FileType.Unknown
            out.append(pafs.FileInfo(path, kind, size=st.st_size))
    return out


class _OSErrorsOnly:
    """An fsspec filesystem (or one of its open files) whose failures are all `OSError`s.

    Backends raise what their HTTP or SDK client raises (an httpx ConnectError, gcsfs's HttpError, an auth
    library's credential errors), which robotempo's storage errors do not catch: the CLI called them bugs
    inside robotempo. Here any other exception becomes an `OSError` naming it (the original chained), so a
    failed request reaches the user as the `StorageError` of the file it was for."""

    def __init__(self, target):
        self._target = target

    def __getattr__(self, name: str):
        if name == "_target":  # not set yet (an unpickled copy): no recursion through this method
            raise AttributeError(name)
        value = getattr(self._target, name)
        if not callable(value):
            return value

        def call(*args, **kwargs):
            try:
                result = value(*args, **kwargs)
            except OSError:
                raise
            except Exception as e:  # noqa: BLE001 - every backend failure, typed as storage's
                raise BackendError(f"{type(e).__name__}: {e}") from e
            return _OSErrorsOnly(result) if name == "open" else result

        return call

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()
