"""`FrameTable`: the rows of the selected episodes, read in place from the data parquet files.

Numeric columns (the five default columns and every numeric feature) are read once, for the selected rows
only, into contiguous numpy arrays (forked DataLoader workers share their pages). Heavy columns
(embedded images, strings) stay on disk and are read per row group on demand through a bounded LRU cache,
so memory does not grow with camera data. Every read is checked against the metadata: the rows must
carry exactly the selected
episodes, in order, with the promised lengths and global indices.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pyarrow as pa

from robotempo.errors import DatasetFormatError, RowAlignmentError
from robotempo.format.episodes import EpisodeTable
from robotempo.format.info import DEFAULT_COLUMNS, DatasetInfo
from robotempo.store.parquet import (
    ParquetFiles,
    RowGroupIndex,
    first_value,
    is_fixed_shape,
    item_ndim,
    open_parquet,
    release_freed_memory,
    row_group_offsets,
    to_numpy,
)

ALIGN_FIX = "the metadata and the data disagree: re-export the dataset, or regenerate meta/ from the data"
DEFAULT_HEAVY_CACHE_MB = 256
OPEN_THREADS = 8  # files read at once while opening; reads mostly wait on pyarrow outside the GIL


class _HeavyCache:
    """Row-group columns of heavy features, LRU-bounded by bytes; dropped in a forked child."""

    def __init__(self, max_bytes: int):
        self.max_bytes = max_bytes
        self._items: OrderedDict[tuple, pa.Array] = OrderedDict()
        self._bytes = 0
        self._pid = os.getpid()

    def get(self, key: tuple, load: Callable[[], pa.Array]) -> pa.Array:
        if self._pid != os.getpid():
            self._items, self._bytes, self._pid = OrderedDict(), 0, os.getpid()
        hit = self._items.get(key)
        if hit is not None:
            self._items.move_to_end(key)
            return hit
        value = load()
        self._items[key] = value
        self._bytes += value.nbytes
        while self._bytes > self.max_bytes and len(self._items) > 1:
            _, old = self._items.popitem(last=False)
            self._bytes -= old.nbytes
        return value

    @property
    def nbytes(self) -> int:
        return self._bytes


class FrameTable:
    """Rows of the selected episodes (`episodes`, a sub-table sorted by episode_index), in that order."""

    def __init__(
        self,
        root: Path,
        info: DatasetInfo,
        episodes: EpisodeTable,
        files: ParquetFiles | None = None,
        heavy_cache_mb: float | None = None,
    ):
        self.root = Path(root)
        self.info = info
        self.episodes = episodes
        self.files = files or ParquetFiles()
        mb = (
            heavy_cache_mb
            if heavy_cache_mb is not None
            else float(os.environ.get("ROBOTEMPO_HEAVY_CACHE_MB", DEFAULT_HEAVY_CACHE_MB))
        )
        self._heavy_cache = _HeavyCache(int(mb * 2**20))
        self.ep_to = np.cumsum(episodes.length)
        self.ep_from = self.ep_to - episodes.length
        self.num_rows = int(self.ep_to[-1]) if len(self.ep_to) else 0
        self.columns: dict[str, np.ndarray] = {}
        self.heavy_keys: list[str] = []
        self._rg_offsets: dict[int, np.ndarray] = {}
        self.row_from = np.empty(len(episodes), dtype=np.int64)  # verified in-file row offset per episode
        self._read()

    # -- open -------------------------------------------------------------------------------------------
    def _path(self, code: int) -> Path:
        return self.root / self.episodes.data_files[code]

    def _plan_columns(self, schema: pa.Schema) -> tuple[list[str], dict[str, int]]:
        numeric, ndim = [], {}
        for name in schema.names:
            spec = self.info.features.get(name)
            if name == "__index_level_0__" or (spec is not None and spec.is_video):
                continue
            type_ = schema.field(name).type
            if (spec is None or not spec.is_camera) and is_fixed_shape(type_):
                numeric.append(name)
                ndim[name] = item_ndim(type_)
            elif spec is not None:
                self.heavy_keys.append(name)
        return numeric, ndim

    def _item_shape(self, name: str, ndim: int) -> tuple[int, ...]:
        if ndim == 0:
            return ()
        spec = self.info.features.get(name)
        if spec is not None and len(spec.shape) == ndim:
            return spec.shape
        return (-1,) * ndim

    def _read(self) -> None:
        eps = self.episodes
        order = np.argsort(eps.data_file, kind="stable")
        codes, starts = np.unique(eps.data_file[order], return_index=True)
        if not len(codes):
            return
        bounds = list(starts[1:]) + [len(order)]
        jobs = [(int(c), order[lo:hi]) for c, lo, hi in zip(codes, starts, bounds)]
        first = open_parquet(self._path(jobs[0][0]))
        numeric, ndim = self._plan_columns(first.schema_arrow)
        missing = [c for c in DEFAULT_COLUMNS if c not in numeric]
        if missing:
            first.close()
            raise RowAlignmentError(
                self._path(jobs[0][0]), f"default columns {missing} are missing", ALIGN_FIX
            )
        shapes = {n: self._item_shape(n, ndim[n]) for n in numeric}
        pieces = self._read_files(jobs, numeric, first)
        if not self._fill_concatenated(pieces, numeric, shapes):
            self._fill_by_piece(pieces, numeric, shapes)
        del pieces
        release_freed_memory()  # the transient tables and footers
        self._verify()

    def _read_files(self, jobs: list[tuple[int, np.ndarray]], columns: list[str], first) -> list[tuple]:
        """(code, positions, table) per file; many files (v2.1: one per episode) are read by threads, as
        pyarrow releases the GIL while it reads and decodes. No handle outlives the open: footers of files
        with thousands of row groups weigh megabytes."""

        def run(batch: list[tuple[int, np.ndarray]]) -> list[tuple]:
            out = []
            for code, positions in batch:
                pf = first if code == jobs[0][0] else open_parquet(self._path(code))
                try:
                    out.append((code, positions, self._read_file(code, pf, positions, columns)))
                finally:
                    pf.close()
            return out

        threads = min(OPEN_THREADS, len(jobs))
        if threads <= 1:
            return run(jobs)
        step = -(-len(jobs) // (threads * 4))
        batches = [jobs[i : i + step] for i in range(0, len(jobs), step)]
        with ThreadPoolExecutor(threads, thread_name_prefix="robotempo-open") as pool:
            return [piece for done in pool.map(run, batches) for piece in done]

    def _fill_concatenated(self, pieces: list[tuple], numeric: list[str], shapes: dict) -> bool:
        """When the files hold the selection in order (the usual layout), convert each column once."""
        pieces.sort(key=lambda piece: int(piece[1][0]))
        flat = np.concatenate([positions for _, positions, _ in pieces])
        schema = pieces[0][2].schema
        if not np.array_equal(flat, np.arange(len(self.episodes))) or not all(
            t.schema.equals(schema) for _, _, t in pieces
        ):
            return False
        table = pa.concat_tables([t for _, _, t in pieces])
        try:
            for name in numeric:
                values = to_numpy(table.column(name), shapes[name], self._path(pieces[0][0]), name)
                self.columns[name] = values if values.flags.writeable else values.copy()
        except DatasetFormatError:
            self.columns.clear()
            return False  # the per-file pass names the file at fault
        return True

    def _fill_by_piece(self, pieces: list[tuple], numeric: list[str], shapes: dict) -> None:
        eps = self.episodes
        for code, positions, table in pieces:
            for name in numeric:
                values = to_numpy(table.column(name), shapes[name], self._path(code), name)
                if name not in self.columns:
                    self.columns[name] = np.empty((self.num_rows, *values.shape[1:]), dtype=values.dtype)
                    shapes[name] = values.shape[1:]
                dest = self.columns[name]
                offset = 0
                for p in positions:
                    n = int(eps.length[p])
                    dest[self.ep_from[p] : self.ep_from[p] + n] = values[offset : offset + n]
                    offset += n

    def _read_file(self, code: int, pf, positions: np.ndarray, columns: list[str]) -> pa.Table:
        """Read the row groups of one file that hold the given episodes, and slice out exactly their rows."""
        path = self._path(code)
        eps = self.episodes
        num_rows = pf.metadata.num_rows
        first_index = first_value(pf, "index")
        if first_index is None:
            raise RowAlignmentError(path, "the file holds no rows (or no 'index' column)", ALIGN_FIX)
        row_from = eps.dataset_from_index[positions] - first_index
        row_to = row_from + eps.length[positions]
        bad = np.flatnonzero((row_from < 0) | (row_to > num_rows))
        if len(bad):
            p = positions[bad[0]]
            raise RowAlignmentError(
                path,
                f"episode {eps.episode_index[p]} (global rows {eps.dataset_from_index[p]}.."
                f"{eps.dataset_to_index[p]}) is not inside this file (first index {first_index}, "
                f"{num_rows} rows)",
                ALIGN_FIX,
            )
        self.row_from[positions] = row_from
        names = set(pf.schema_arrow.names)
        missing = [c for c in columns if c not in names]
        if missing:
            raise RowAlignmentError(
                path, f"columns {missing} are missing (other data files have them)", ALIGN_FIX
            )
        if row_from[0] == 0 and row_to[-1] == num_rows and np.array_equal(row_from[1:], row_to[:-1]):
            return pf.read(columns=columns, use_threads=False)  # the selection is the whole file
        index = RowGroupIndex(pf, first_index)
        first_rg, first_start = index.locate(row_from)
        last_rg, _ = index.locate(row_to - 1)
        spans = {int(g): int(s) for g, s in zip(first_rg, first_start)}
        groups = sorted({g for a, b in zip(first_rg, last_rg) for g in range(int(a), int(b) + 1)})
        table = pf.read_row_groups(groups, columns=columns, use_threads=False)
        # The groups read are concatenated: file row r of first group g sits at r - start(g) + (rows of the
        # groups read before g).
        sizes = np.array([pf.metadata.row_group(g).num_rows for g in groups], dtype=np.int64)
        at = dict(zip(groups, np.concatenate([[0], np.cumsum(sizes)])[:-1]))
        take = np.concatenate(
            [np.arange(a, b) + at[int(g)] - spans[int(g)] for a, b, g in zip(row_from, row_to, first_rg)]
        )
        if len(take) == table.num_rows and np.array_equal(take, np.arange(len(take))):
            return table
        return table.take(pa.array(take))

    def _verify(self) -> None:
        """Rows must carry exactly the selected episodes with the promised lengths and global indices."""
        eps = self.episodes
        ep_col = self.columns["episode_index"]
        expected_ep = np.repeat(eps.episode_index, eps.length)
        expected_index = np.repeat(eps.dataset_from_index - self.ep_from, eps.length) + np.arange(
            self.num_rows
        )
        bad = np.flatnonzero((ep_col != expected_ep) | (self.columns["index"] != expected_index))
        if len(bad):
            row = int(bad[0])
            e = int(np.searchsorted(self.ep_to, row, side="right"))
            raise RowAlignmentError(
                self._path(int(eps.data_file[e])),
                f"row {row - self.ep_from[e]} of episode {eps.episode_index[e]} (length {eps.length[e]} per "
                f"metadata) holds episode_index {ep_col[row]} and index {self.columns['index'][row]}, "
                f"expected "
                f"episode_index {expected_ep[row]} and index {expected_index[row]}",
                ALIGN_FIX,
            )

    # -- access -----------------------------------------------------------------------------------------
    def episode_of(self, rows: np.ndarray) -> np.ndarray:
        """Position (in the selection) of the episode holding each row."""
        return np.searchsorted(self.ep_to, rows, side="right")

    def read_heavy(self, key: str, rows: np.ndarray) -> list:
        """Values of a heavy column at the given table rows (python objects: dicts for images, str...)."""
        rows = np.asarray(rows, dtype=np.int64).reshape(-1)
        eps = self.episode_of(rows)
        codes = self.episodes.data_file[eps]
        in_file = self.row_from[eps] + (rows - self.ep_from[eps])
        out: list = [None] * len(rows)
        for code in np.unique(codes):
            mask = np.flatnonzero(codes == code)
            offsets = self._offsets(int(code))
            groups = np.searchsorted(offsets, in_file[mask], side="right") - 1
            for g in np.unique(groups):
                sel = mask[groups == g]
                column = self._heavy_cache.get(
                    (int(code), int(g), key), lambda c=int(code), g=int(g): self._load(c, g, key)
                )
                for i, value in zip(sel, column.take(pa.array(in_file[sel] - offsets[g])).to_pylist()):
                    out[i] = value
        return out

    def _offsets(self, code: int) -> np.ndarray:
        if code not in self._rg_offsets:
            self._rg_offsets[code] = row_group_offsets(self.files.get(self._path(code)))
        return self._rg_offsets[code]

    def _load(self, code: int, group: int, key: str) -> pa.Array:
        pf = self.files.get(self._path(code))
        return pf.read_row_group(group, columns=[key], use_threads=False).column(0).combine_chunks()

    @property
    def numeric_nbytes(self) -> int:
        return sum(a.nbytes for a in self.columns.values())
