"""Atomic file writes and JSON / JSONL reading with file- and line-numbered errors."""

from __future__ import annotations

import contextlib
import json
import os
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, BinaryIO

from robotempo.errors import DatasetFormatError, MissingFileError
from robotempo.safepath import check_file


def temp_path_for(path: Path) -> Path:
    """A unique temp name in the same folder (so `os.replace` is atomic), hidden from `*.parquet` globs."""
    return path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")


def atomic_write(path: str | Path, write: Callable[[BinaryIO], None]) -> None:
    """Write through `write(fileobj)` to a unique temp file, fsync, then `os.replace` onto `path`.

    Readers see either the old file or the complete new one, never a partial file; concurrent writers never
    share a temp file. The temp file is removed on every failure path.
    """
    path = Path(path)
    tmp = temp_path_for(path)
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    atomic_write(path, lambda f: f.write(data))


def atomic_write_json(path: str | Path, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=4) + "\n").encode())


def atomic_write_jsonl(path: str | Path, rows: Iterable[dict]) -> None:
    atomic_write_bytes(path, "".join(json.dumps(r) + "\n" for r in rows).encode())


def read_text(path: str | Path, what: str, fix: str, root: str | Path | None = None) -> str:
    """The UTF-8 text of a dataset file, once `check_file` accepts it (inside `root`, default its folder)."""
    path = Path(path)
    check_file(path.parent if root is None else root, path, what, fix)
    try:
        return path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise MissingFileError(path, what, fix) from None
    except UnicodeDecodeError as e:
        raise DatasetFormatError(path, f"not UTF-8 text ({e.reason} at byte {e.start})", fix) from None


def read_json(path: str | Path, what: str, fix: str, root: str | Path | None = None) -> Any:
    path = Path(path)
    text = read_text(path, what, fix, root)
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise DatasetFormatError(path, f"invalid JSON ({e.msg})", fix, line=e.lineno) from None


def read_jsonl(
    path: str | Path, what: str, fix: str, root: str | Path | None = None
) -> list[tuple[int, dict]]:
    """Rows of a JSON-lines file as `(line_number, object)`; blank lines are skipped."""
    path = Path(path)
    text = read_text(path, what, fix, root)
    rows = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise DatasetFormatError(
                path, f"invalid JSON line ({e.msg}): {line[:80]!r}", fix, line=lineno
            ) from None
        if not isinstance(obj, dict):
            raise DatasetFormatError(path, f"expected a JSON object, got {line[:80]!r}", fix, line=lineno)
        rows.append((lineno, obj))
    return rows
