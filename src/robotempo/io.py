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


def read_json(path: str | Path, what: str, fix: str) -> Any:
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise MissingFileError(path, what, fix) from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise DatasetFormatError(path, f"invalid JSON ({e.msg})", fix, line=e.lineno) from None


def read_jsonl(path: str | Path, what: str, fix: str) -> list[tuple[int, dict]]:
    """Rows of a JSON-lines file as `(line_number, object)`; blank lines are skipped."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise MissingFileError(path, what, fix) from None
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
