"""Dataset files stay inside the dataset, and are regular files: checked before anything opens them.

A dataset from the internet chooses its path templates, file entries and symlinks; none of them may make the
loader read other files of the machine, and none may make it block (opening a FIFO for reading waits for a
writer forever) or read a device. `check_file(root, path, ...)` resolves `path` (following symlinks), checks
that it lies inside the root, and that it is a regular file, with one `stat` per call after the root is known.

Symlinks pointing inside the root are fine. A symlink may also point into a trusted folder: the `blobs/`
folder of a huggingface_hub cache repository when the root is one of its `snapshots/<revision>` folders or
a folder inside one, as given or once its own symlinks resolve (that is how the hub cache stores files),
and the folders listed in `ROBOTEMPO_TRUSTED_ROOTS` (`os.pathsep`-separated), for datasets assembled from
symlinks on purpose.
"""

from __future__ import annotations

import errno
import os
import stat
from functools import lru_cache
from pathlib import Path

from robotempo.errors import MissingFileError, UnsafePathError

TRUSTED_ROOTS_ENV = "ROBOTEMPO_TRUSTED_ROOTS"
_KINDS = {
    stat.S_IFDIR: "a directory",
    stat.S_IFIFO: "a FIFO (named pipe)",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFSOCK: "a socket",
}


def _allowed(root: str, trusted: str) -> tuple[str, ...]:
    """The resolved folders files of `root` may live in, remembered while `root` names the same directory: a
    root that is a symlink re-pointed to a new version (current -> v2) resolves again."""
    try:
        st = os.stat(root)
        identity = (st.st_dev, st.st_ino)
    except OSError:
        identity = None
    return _allowed_for(root, trusted, identity)


@lru_cache(maxsize=64)
def _allowed_for(root: str, trusted: str, identity: tuple[int, int] | None) -> tuple[str, ...]:
    real = os.path.realpath(root)
    out = [real]
    for path in (str(Path(root).absolute()), real):  # a symlink to the snapshot, a folder inside it
        blobs = hub_blobs(path)
        if blobs is not None:
            out.append(os.path.realpath(blobs))
    out += [os.path.realpath(t) for t in trusted.split(os.pathsep) if t]
    return tuple(out)


_HUB_REPO_PREFIXES = ("datasets--", "models--", "spaces--")  # huggingface_hub's names for cache repositories


def hub_blobs(path: str | Path) -> str | None:
    """The `blobs/` folder of the huggingface_hub cache repository whose snapshot holds `path`
    (`<type>s--<org>--<name>/snapshots/<revision>`, or a folder inside it: hub repositories holding several
    datasets), else None. The snapshot's files are symlinks into it."""
    parts = Path(path).parts
    for i in range(len(parts) - 2, 0, -1):
        if parts[i] == "snapshots" and parts[i - 1].startswith(_HUB_REPO_PREFIXES):
            return os.path.join(*parts[:i], "blobs")
    return None


def in_hub_cache(root: str | Path) -> bool:
    """Whether `root` lies in a huggingface_hub cache snapshot (as given, or once its symlinks resolve):
    a cache shared by every tool, which robotempo never writes to."""
    return hub_blobs(Path(root).absolute()) is not None or hub_blobs(os.path.realpath(root)) is not None


def _inside(path: str, folders: tuple[str, ...]) -> bool:
    return any(path == f or path.startswith(f.rstrip(os.sep) + os.sep) for f in folders)


@lru_cache(maxsize=256)
def _real_folder(folder: str, identity: tuple[int, int]) -> str:
    """`realpath(folder)`, remembered while `folder` is the same directory (device, inode)."""
    return os.path.realpath(folder, strict=True)


def _resolve(full: str) -> tuple[str, int]:
    """(realpath, mode) of `full`. The folder's resolution is remembered, so a file that is not a symlink
    costs two `stat` calls instead of one `lstat` per path component (the 5,000 files of a v2.1 dataset share
    5 folders). Raises `OSError` as `realpath(strict=True)` does."""
    folder, name = os.path.split(full)
    if name not in ("", ".", ".."):
        st = os.lstat(full)
        if not stat.S_ISLNK(st.st_mode):
            info = os.stat(folder)
            return os.path.join(_real_folder(folder, (info.st_dev, info.st_ino)), name), st.st_mode
    real = os.path.realpath(full, strict=True)
    return real, os.stat(real).st_mode


def folder_inside(root: str | Path, folder: str | Path) -> bool:
    """Whether `folder` is an existing directory that resolves inside `root` (or a trusted folder of it): a
    regular file directly in it, not a symlink, is then a file `check_file` accepts."""
    try:
        real = os.path.realpath(folder, strict=True)
    except OSError:
        return False
    return os.path.isdir(real) and _inside(
        real, _allowed(os.fspath(root), os.environ.get(TRUSTED_ROOTS_ENV, ""))
    )


def check_file(root: str | Path, path: str | Path, what: str, fix: str) -> Path:
    """`path` (absolute, or relative to `root`) as a Path, once known to be a regular file inside `root`.

    Raises `MissingFileError` if it does not exist, `UnsafePathError` if it resolves outside the root (through
    '..', an absolute path or a symlink), is a symlink loop, or is not a regular file.
    """
    root = os.fspath(root)
    full = os.path.join(root, os.fspath(path))
    try:
        real, mode = _resolve(full)
    except OSError as e:
        if e.errno in (errno.ENOENT, errno.ENOTDIR):  # absent, or a dangling symlink on the way
            raise MissingFileError(full, what, fix) from None
        if e.errno == errno.ELOOP:
            raise UnsafePathError(
                full, f"{what} is a symlink loop", "replace the symlink by the file it should name"
            ) from None
        raise UnsafePathError(full, f"{what} cannot be inspected ({e.strerror})", fix) from None
    if not _inside(real, _allowed(root, os.environ.get(TRUSTED_ROOTS_ENV, ""))):
        raise UnsafePathError(
            full,
            f"{what} resolves to {real}, outside the dataset root {os.path.realpath(root)}",
            "keep every file of the dataset inside its folder (fix the path template or the symlink), or, "
            f"if the dataset is assembled from symlinks on purpose, list their target folders in "
            f"{TRUSTED_ROOTS_ENV}",
        )
    if not stat.S_ISREG(mode):
        kind = _KINDS.get(stat.S_IFMT(mode), "not a regular file")
        raise UnsafePathError(full, f"{what} is {kind}, not a regular file", fix)
    return Path(full)
