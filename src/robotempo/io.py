"""Atomic file writes; JSON / JSONL reading through `robotempo.fs` with file- and line-numbered errors."""

from __future__ import annotations

import contextlib
import json
import os
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, BinaryIO

from robotempo.errors import DatasetFormatError, MissingFileError
from robotempo.fs import FileRef, as_file


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


def read_file(path: str | Path | FileRef, what: str, fix: str) -> tuple[bytes, Path | str]:
    """The bytes of a dataset file (via `robotempo.fs`) and its name for messages; typed error if absent."""
    ref = as_file(path)
    try:
        return ref.read_bytes(), ref.where
    except FileNotFoundError:
        raise ref.root.missing_root_error(ref.rel) or MissingFileError(ref.where, what, fix) from None
    except OSError as e:  # not readable by this user, no descriptor left: typed, the file is not at fault
        typed = ref.root.fault(e, ref.rel, e)
        if typed is e:
            raise
        raise typed from None


def read_json(path: str | Path | FileRef, what: str, fix: str) -> Any:
    data, where = read_file(path, what, fix)
    try:
        return json.loads(data)
    except UnicodeDecodeError as e:
        raise DatasetFormatError(where, f"not UTF-8 text ({e.reason} at byte {e.start})", fix) from None
    except json.JSONDecodeError as e:
        raise DatasetFormatError(where, f"invalid JSON ({e.msg})", fix, line=e.lineno) from None
    except RecursionError:
        raise DatasetFormatError(where, "JSON nested too deeply to parse", fix) from None


def read_jsonl(path: str | Path | FileRef, what: str, fix: str) -> list[tuple[int, dict]]:
    """Rows of a JSON-lines file as `(line_number, object)`; blank lines are skipped."""
    data, where = read_file(path, what, fix)
    return parse_jsonl(data, where, fix)


def parse_jsonl(
    data: bytes, where: Path | str, fix: str, error: type[DatasetFormatError] = DatasetFormatError
) -> list[tuple[int, dict]]:
    """Rows of JSON-lines `data` as `(line_number, object)`; any fault is an `error` naming `where`."""
    try:
        text = data.decode("utf-8-sig")  # a leading byte-order mark (Windows editors) is not content
    except UnicodeDecodeError as e:
        raise error(where, f"not UTF-8 text ({e.reason} at byte {e.start})", fix) from None
    rows = []
    # Lines end at "\n" only (JSON lines; "\r\n" too, as JSON ignores the "\r"): str.splitlines() also
    # breaks at U+2028, U+0085 and other separators, which JSON strings may hold raw (OpenTau's jsonlines
    # writes them so), and cut such a line in two.
    for lineno, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise error(where, f"invalid JSON line ({e.msg}): {line[:80]!r}", fix, line=lineno) from None
        except RecursionError:
            raise error(where, "JSON nested too deeply to parse", fix, line=lineno) from None
        if not isinstance(obj, dict):
            raise error(where, f"expected a JSON object, got {line[:80]!r}", fix, line=lineno)
        rows.append((lineno, obj))
    return rows
