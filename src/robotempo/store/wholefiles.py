"""Many small data files read whole at open, with little Python per file (v2.x: one parquet file per episode).

A v2.1 dataset of 5,000 episodes is 5,000 parquet files of a few KB each. Read one at a time through the
careful per-file path (`FrameTable._read_file`: a `FileRef`, the path check, the identity, the footer's row
groups, the layout arithmetic), the Python around each file cost more CPU than pyarrow's own reading, and
held the GIL, so the reader threads ran one at a time. Here each file costs one `lstat` (a regular file in a
folder resolved once per open inside the root; the same call gives the file's identity; a symlink, as in the
hub cache, is resolved and checked by `check_file`), one pyarrow open and read (outside the GIL), one
comparison of its schema with an accepted one and of its row count with the metadata's.

This path never raises and never decides that a file is bad: a file that needs more than that (an error of
any kind, a schema not accepted yet, a row count other than the metadata's) is left out of the pieces, and
the caller reads it through the careful path, which raises the typed error naming it (or reads it).

Nothing per file outlives a thread's task but the task's one combined table and a row of the identity array:
small objects kept per file until the end of the open pin the heap pages freed around them in the threads'
malloc arenas, which `malloc_trim` does not return (5,000 files, 21 MB of columns: RSS after open 72 MB
through the careful path, 56 MB without its row-group offset array per file, 93 MB when this path kept the
per-file tables until the end, 37 MB this way).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from robotempo.env import process_cores
from robotempo.errors import RobotempoError
from robotempo.fs import LOCAL_FIX, DatasetRoot
from robotempo.safepath import check_file, folder_inside
from robotempo.store.columns import SchemaChecks
from robotempo.store.parquet import RowBounds, oversized_group

FILES_PER_TASK = 64  # files one thread reads per task: enough to amortise the hand-over, small for balance


def read_whole_files(
    root: DatasetRoot,
    rels: Sequence[str],
    rows: np.ndarray,
    columns: list[str],
    schemas: SchemaChecks,
    threads: int,
    bounds: RowBounds | None = None,
) -> tuple[list[tuple[np.ndarray, pa.Table]], np.ndarray]:
    """Read `columns` of each local file `rels[i]`, expected to hold exactly `rows[i]` rows, by up to
    `threads` threads (no more than the CPUs this process may use).

    Returns pieces `(indices, table)`: the table holds the rows of files `rels[indices]`, one file after the
    other in that (increasing) order; a file in no piece is left to the careful path. Also the identity of
    each file read, `(inode, size, mtime_ns)` per row of an int64 array, as `DatasetRoot.identity` gives it.
    """
    n = len(rels)
    identity = np.zeros((n, 3), dtype=np.int64)
    full = [os.path.join(root.base, rel) for rel in rels]
    parts = [path.rpartition(os.sep) for path in full]
    inside = {folder: folder_inside(root.base, folder) for folder in {folder for folder, _, _ in parts}}
    plain = [inside[folder] and name not in ("", ".", "..") for folder, _, name in parts]

    def run(lo: int) -> list[tuple[np.ndarray, pa.Table]]:
        done, tables = [], []
        for i in range(lo, min(lo + FILES_PER_TASK, n)):
            if not plain[i]:
                continue
            path = full[i]
            try:
                st = os.lstat(path)
                if stat.S_ISLNK(st.st_mode):  # e.g. the hub cache's snapshots -> blobs
                    check_file(root.base, rels[i], "the data file", LOCAL_FIX)
                    st = os.stat(path)
                if not stat.S_ISREG(st.st_mode):
                    continue
                table = _read(path, columns, schemas, bounds)
            except (OSError, pa.ArrowException, RobotempoError):
                continue
            if table is not None and table.num_rows == rows[i]:
                done.append(i)
                tables.append(table)
                identity[i] = st.st_ino, st.st_size, st.st_mtime_ns
        return _combined(np.array(done, dtype=np.int64), tables)

    starts = range(0, n, FILES_PER_TASK)
    threads = min(threads, process_cores())  # the work is CPU-bound: more threads than cores only contend
    if threads <= 1 or n <= FILES_PER_TASK:
        return [piece for lo in starts for piece in run(lo)], identity
    with ThreadPoolExecutor(threads, thread_name_prefix="robotempo-open") as pool:
        return [piece for done in pool.map(run, starts) for piece in done], identity


def _combined(done: np.ndarray, tables: list[pa.Table]) -> list[tuple[np.ndarray, pa.Table]]:
    """One table for the files of one task, combined in the thread that read them, before its next task: the
    arrow objects of thousands of small tables kept until the open concatenates them would grow every
    thread's heap by megabytes that stay resident once freed (see the module docstring)."""
    if not tables:
        return []
    try:
        return [(done, pa.concat_tables(tables).combine_chunks())]
    except pa.ArrowInvalid:  # files of different (accepted) schemas: one piece each
        return [(done[i : i + 1], t) for i, t in enumerate(tables)]


def _read(path: str, columns: list[str], schemas: SchemaChecks, bounds: RowBounds | None) -> pa.Table | None:
    source = pa.OSFile(path)
    try:
        pf = pq.ParquetFile(source, pre_buffer=False, page_checksum_verification=True)
        try:
            if not schemas.accepts(pf.schema_arrow):
                return None
            if bounds is not None and oversized_group(pf, None, bounds) is not None:
                return None  # the careful path names the file
            return pf.read(columns=columns, use_threads=False)
        finally:
            pf.close()
    finally:
        source.close()
