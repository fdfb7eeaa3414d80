"""Staged files: written under a hidden temp name, published into place by `os.replace` at a commit.

A staged file's name comes from `robotempo.io.temp_path_for` (`.{name}.{uuid}.tmp`), so `*.parquet` /
`*.mp4` globs never see it, whether it is still being written or complete and waiting for its commit.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from robotempo.errors import WriterError
from robotempo.format.info import FeatureSpec
from robotempo.io import atomic_write, temp_path_for
from robotempo.video.encoder import VideoEncoder

DATA_PAGE_BYTES = 16 * 1024  # about one 224x224 PNG, a few small ones, ~300 rows of a 14-float vector


def fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def heavy_columns(schema: pa.Schema) -> set[str]:
    """The columns holding embedded images (a struct of PNG bytes and path, or raw bytes)."""
    return {f.name for f in schema if pa.types.is_struct(f.type) or pa.types.is_binary(f.type)}


def open_parquet(final: Path, schema: pa.Schema) -> tuple[pq.ParquetWriter, Path]:
    """A ParquetWriter on a staged temp file for `final`; returns it with the temp path."""
    final.parent.mkdir(parents=True, exist_ok=True)
    staged = temp_path_for(final)
    heavy = heavy_columns(schema)
    light = [f.name for f in schema if f.name not in heavy]
    # Dictionaries and min/max statistics of PNG bytes cost time and footer space for nothing. Small pages
    # (a row per write batch, so a page closes once it passes DATA_PAGE_BYTES) and a page index let a reader
    # fetch one image's page instead of the row group's column; checksums let it tell a damaged page. Files
    # without embedded images keep pyarrow's 1 MB pages: numbers are read whole, small pages only cost there.
    writer = pq.ParquetWriter(
        staged,
        schema,
        compression="snappy",
        use_dictionary=light,
        write_statistics=light,
        data_page_size=DATA_PAGE_BYTES if heavy else None,
        write_batch_size=1 if heavy else None,
        write_page_index=bool(heavy),
        write_page_checksum=True,
    )
    return writer, staged


def stage_table(final: Path, table: pa.Table, staging: Staging) -> None:
    """Write `table` as one row group to a staged file for `final` and queue it for the next commit."""
    writer, staged = open_parquet(final, table.schema)
    try:
        writer.write_table(table, row_group_size=len(table))
        writer.close()
    except BaseException:
        writer.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(staged)
        raise
    staging.add(staged, final)


def write_table_file(path: Path, table: pa.Table) -> None:
    """Write a small table (metadata) as one row group, atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda f: pq.write_table(table, f, compression="snappy"))


def open_video(final: Path, fps: float, spec: FeatureSpec, codec: str) -> VideoEncoder:
    """A VideoEncoder whose finished file lands on a staged name for `final` (published at the commit)."""
    height, width, _ = spec.shape
    return VideoEncoder(temp_path_for(final), fps, width=width, height=height, codec=codec)


class Staging:
    """Complete files waiting for the next commit, as (staged path, final path) pairs."""

    def __init__(self) -> None:
        self.pending: list[tuple[Path, Path]] = []
        # New files a commit published before its metadata was written: a commit that fails there (a full
        # disk) must take them back, or readers that glob data/*/*.parquet (LeRobot) read their rows.
        self.unsettled: list[Path] = []

    def add(self, staged: Path, final: Path) -> None:
        fsync_file(staged)
        self.pending.append((staged, final))

    def publish(self) -> None:
        for staged, final in self.pending:
            new = not os.path.lexists(final)
            os.replace(staged, final)
            if new:
                self.unsettled.append(final)
        self.pending.clear()

    def settle(self) -> None:
        """The commit's metadata is written: the files it published belong to the dataset."""
        self.unsettled.clear()

    def discard(self) -> None:
        for staged, _ in self.pending:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(staged)
        self.pending.clear()
        for final in self.unsettled:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(final)
        self.unsettled.clear()


def check_template(template: str, what: str, fields: dict) -> str:
    try:
        template.format(**fields)
    except (KeyError, IndexError, ValueError) as e:
        raise WriterError(
            f"{what} template {template!r} does not format ({type(e).__name__}: {e}). "
            f"Fix: use only the fields {sorted(fields)}"
        ) from None
    return template
