"""`FrameTable`: the rows of the selected episodes, read in place from the data parquet files.

Numeric columns (the five default columns and every numeric feature) are read once, for the selected rows
only, into contiguous numpy arrays (forked DataLoader workers share their pages). Heavy columns
(embedded images, strings) stay on disk and are read on demand, by page or by row group, through a bounded
LRU cache (`store/heavy.py`), so memory does not grow with camera data. Every read is checked against the
metadata: the rows must carry exactly the selected episodes, in order, with the promised lengths and global
indices.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pyarrow as pa

from robotempo.arrays import distinct
from robotempo.arrays import take as take_rows
from robotempo.errors import (
    DatasetFormatError,
    NonFiniteValueError,
    RowAlignmentError,
    TaskMismatchError,
    UnknownTaskError,
)
from robotempo.format.episodes import EpisodeTable
from robotempo.format.info import DatasetInfo
from robotempo.fs import DatasetRoot, FileRef, as_root
from robotempo.store.columns import ALIGN_FIX, SchemaChecks, plan_columns
from robotempo.store.fill import fill_columns
from robotempo.store.heavy import HeavyCache, default_heavy_cache, read_group_rows, release_read_memory
from robotempo.store.parquet import (
    ParquetFiles,
    RowBounds,
    check_group_sizes,
    default_parquet_files,
    file_identity,
    open_parquet,
    read_groups,
    release_freed_memory,
    row_group_offsets,
    typed_reads,
)
from robotempo.store.shared import SharedArrays, for_child_process, share_tables
from robotempo.store.wholefiles import read_whole_files

logger = logging.getLogger(__name__)
OPEN_THREADS = 8  # files read at once while opening; reads mostly wait on pyarrow outside the GIL


class FrameTable:
    """Rows of the selected episodes (`episodes`, a sub-table sorted by episode_index), in that order.

    `catalog` is the whole dataset's episode table (the selection's file codes index it): every data file
    read must hold exactly the rows the catalog lists for it. `tasks` is the task table: every `task_index`
    read must be in it. Both are used while opening only (not kept). `files` and the heavy cache default to
    the process-wide ones (one budget per process); `heavy_cache_mb` gives this table a private cache of that
    size instead.
    """

    def __init__(
        self,
        root: str | Path | DatasetRoot,
        info: DatasetInfo,
        episodes: EpisodeTable,
        catalog: EpisodeTable,
        tasks: Mapping[int, str],
        files: ParquetFiles | None = None,
        heavy_cache_mb: float | None = None,
    ):
        self.location = as_root(root)
        self.root = self.location.where()
        self.info = info
        self.episodes = episodes
        self.files = files or default_parquet_files()
        self._heavy_cache = (
            HeavyCache(int(heavy_cache_mb * 2**20)) if heavy_cache_mb is not None else default_heavy_cache()
        )
        self.shared: tuple[SharedArrays, str] | None = None  # (segment, key prefix) once columns are shared
        self.ep_to = np.cumsum(episodes.length)
        self.ep_from = self.ep_to - episodes.length
        self.num_rows = int(self.ep_to[-1]) if len(self.ep_to) else 0
        self.plan = plan_columns(info)
        self._bounds = RowBounds.of(info.features)  # what a row may expand to: no decompression bomb
        self._sized_groups: set[tuple[int, int]] = set()  # (file code, row group) checked against it
        self.columns: dict[str, np.ndarray] = {}
        self.heavy_keys: list[str] = list(self.plan.heavy)
        self._rg_offsets: dict[int, np.ndarray] = {}
        self._refs: dict[int, FileRef] = {}  # data file of each code, named once
        self._file_ids: dict[int, tuple] = {}  # identity of each data file as read at open (cache keys)
        self._whole_ids = (np.zeros(0, dtype=np.int64), np.zeros((0, 3), dtype=np.int64))  # the same, as
        # arrays (sorted codes, identity rows) for the files `read_whole_files` read: no object per file
        self.row_from = np.empty(len(episodes), dtype=np.int64)  # verified in-file row offset per episode
        self._read(catalog, tasks)

    # -- open -------------------------------------------------------------------------------------------
    def _path(self, code: int) -> FileRef:
        ref = self._refs.get(code)
        if ref is None:
            ref = self._refs[code] = self.location.file(self.episodes.data_files[code])
        return ref

    def _read(self, catalog: EpisodeTable, tasks: Mapping[int, str]) -> None:
        eps = self.episodes
        order = np.argsort(eps.data_file, kind="stable")
        codes, starts = np.unique(eps.data_file[order], return_index=True)
        if not len(codes):
            return
        bounds = list(starts[1:]) + [len(order)]
        jobs = [(int(c), order[lo:hi]) for c, lo, hi in zip(codes, starts, bounds)]
        layout = _FileLayout(catalog)
        layout.of(jobs[0][0])  # groups the catalog once, before any thread asks
        self._schemas = SchemaChecks(self.plan)
        pieces = self._read_files(jobs, list(self.plan.numeric), layout)
        del self._schemas
        self.columns = fill_columns(pieces, self.plan, eps.length, lambda code: self._path(code).where)
        del pieces
        release_freed_memory()  # the transient tables and footers
        self._verify()
        self._check_tasks(tasks)
        self._check_episode_tasks(tasks)

    def _read_files(self, jobs: list[tuple[int, np.ndarray]], columns: list[str], layout) -> list[tuple]:
        """Pieces `(codes, positions, table)`: the table holds the rows of the episodes at `positions` of the
        selection, in that order, read from data files `codes` (one code per position). Files that hold one
        episode, selected (v2.1: every file of an open of all episodes), are read by `read_whole_files`; the
        others, and every file it leaves, through `_read_file`. Many files are read by threads, as pyarrow
        releases the GIL while it reads and decodes. The handles opened here are closed before the open
        returns, outside the shared handle cache: footers of files with thousands of row groups weigh
        megabytes, and a tabular or video dataset never reads its data files again."""
        pieces = self._read_whole(jobs, columns, layout) if self.location.is_local else []
        if pieces:
            done = set(np.concatenate([codes for codes, _, _ in pieces]).tolist())
            jobs = [job for job in jobs if job[0] not in done]

        def run(batch: list[tuple[int, np.ndarray]]) -> list[tuple]:
            return [
                (np.full(len(positions), code), positions, self._read_file(code, positions, columns, layout))
                for code, positions in batch
            ]

        threads = min(OPEN_THREADS, len(jobs))
        if threads <= 1:
            return pieces + run(jobs)
        step = -(-len(jobs) // (threads * 4))
        batches = [jobs[i : i + step] for i in range(0, len(jobs), step)]
        with ThreadPoolExecutor(threads, thread_name_prefix="robotempo-open") as pool:
            return pieces + [piece for done in pool.map(run, batches) for piece in done]

    def _read_whole(self, jobs: list[tuple[int, np.ndarray]], columns: list[str], layout) -> list[tuple]:
        """Pieces of the files that hold one episode, selected, read by `read_whole_files` (at least two)."""
        whole = [(code, positions) for code, positions in jobs if len(positions) == 1 and layout.single(code)]
        if len(whole) < 2:
            return []
        code, positions = whole.pop(0)  # through the careful path: its schema is then an accepted one
        first = (np.full(1, code), positions, self._read_file(code, positions, columns, layout))
        codes = np.array([code for code, _ in whole], dtype=np.int64)
        positions = np.array([p[0] for _, p in whole], dtype=np.int64)
        rels = [self.episodes.data_files[code] for code in codes.tolist()]
        read, identity = read_whole_files(
            self.location,
            rels,
            self.episodes.length[positions],
            columns,
            self._schemas,
            OPEN_THREADS,
            self._bounds,
        )
        done = np.sort(np.concatenate([at for at, _ in read])) if read else np.zeros(0, dtype=np.int64)
        self.row_from[positions[done]] = 0
        by_code = np.argsort(codes[done])
        self._whole_ids = codes[done][by_code], identity[done][by_code]
        return [first, *((codes[at], positions[at], table) for at, table in read)]

    def _check_layout(
        self, code: int, pf, offsets: np.ndarray, positions: np.ndarray, layout: _FileLayout
    ) -> np.ndarray:
        """Each selected episode's first row in the file, from the metadata's layout of the file (every
        episode it puts there, in order, with its length), once the file agrees with it: the file holds as
        many rows as the layout (footer), and the rows just outside each selected episode belong to other
        episodes (its own rows are checked by `_verify`). Together they catch a truncated or extended
        episode, shifted boundaries and episodes the metadata does not list, reading at most the row groups
        around the selected episodes."""
        listed, lengths = layout.of(code)
        if len(listed) == 1 and lengths[0] == offsets[-1]:
            return np.zeros(1, dtype=np.int64)  # the file is that episode (v2.x); `_verify` checks its rows
        path = self._path(code).where
        total = int(lengths.sum())
        if total != offsets[-1]:
            many = f"episodes {listed[:8].tolist()}{'...' if len(listed) > 8 else ''}"
            which = f"episode {listed[0]}" if len(listed) == 1 else many
            raise RowAlignmentError(
                path,
                f"the metadata lists {len(listed)} episode(s) with {total} rows for this file ({which}); the "
                f"file holds {offsets[-1]}",
                ALIGN_FIX,
            )
        by_episode = np.argsort(listed)
        first_row = (np.cumsum(lengths) - lengths)[by_episode]
        mine = self.episodes.episode_index[positions]
        row_from = first_row[np.searchsorted(listed, mine, sorter=by_episode)]
        if len(positions) == len(listed):
            return row_from  # every row of the file is selected, and `_verify` checks every row it reads
        row_to = row_from + self.episodes.length[positions]
        outside = np.concatenate([row_from - 1, row_to])
        owner = np.concatenate([mine, mine])
        keep = (outside >= 0) & (outside < total)
        outside, owner = outside[keep], owner[keep]
        if len(outside):
            groups = distinct(np.searchsorted(offsets, outside, side="right") - 1)
            with typed_reads(self._path(code)):
                values = pf.read_row_groups(groups.tolist(), columns=["episode_index"], use_threads=False)
            held = values.column(0).to_numpy()
            sizes = offsets[groups + 1] - offsets[groups]
            starts = np.concatenate([[0], np.cumsum(sizes)])[:-1]
            group_of = np.searchsorted(offsets, outside, side="right") - 1
            at = starts[np.searchsorted(groups, group_of)] + (outside - offsets[group_of])
            bad = np.flatnonzero(held[at] == owner)
            if len(bad):
                i = int(bad[0])
                side = "before" if outside[i] < row_from[np.flatnonzero(mine == owner[i])[0]] else "after"
                raise RowAlignmentError(
                    path,
                    f"file row {outside[i]}, just {side} the rows the metadata gives episode {owner[i]}, "
                    f"also holds episode_index {owner[i]}: the metadata's episode boundaries in this file "
                    "are shifted (or its lengths are wrong)",
                    ALIGN_FIX,
                )
        return row_from

    def _read_file(
        self, code: int, positions: np.ndarray, columns: list[str], layout: _FileLayout
    ) -> pa.Table:
        """Read the row groups of one file that hold the given episodes, and slice out exactly their rows."""
        ref = self._path(code)
        self._file_ids[code] = file_identity(ref)
        pf = open_parquet(ref)
        try:
            self._schemas.check(pf.schema_arrow, lambda: ref.where)
            offsets = row_group_offsets(pf)
            self._rg_offsets[code] = offsets
            eps = self.episodes
            row_from = self._check_layout(code, pf, offsets, positions, layout)
            row_to = row_from + eps.length[positions]
            self.row_from[positions] = row_from
            if row_from[0] == 0 and row_to[-1] == offsets[-1] and np.array_equal(row_from[1:], row_to[:-1]):
                check_group_sizes(pf, ref, None, self._bounds)
                return read_groups(pf, ref, None, columns)  # the selection is the whole file
            first_rg = np.searchsorted(offsets, row_from, side="right") - 1
            last_rg = np.searchsorted(offsets, row_to - 1, side="right") - 1
            groups = sorted({g for a, b in zip(first_rg, last_rg) for g in range(int(a), int(b) + 1)})
            check_group_sizes(pf, ref, groups, self._bounds)
            table = read_groups(pf, ref, groups, columns)
        finally:
            pf.close()
        # The groups read are concatenated: file row r sits at r + shift[g] where g is r's first group.
        groups_arr = np.array(groups)
        group_start = np.concatenate([[0], np.cumsum(offsets[groups_arr + 1] - offsets[groups_arr])])[:-1]
        shift = dict(zip(groups, group_start - offsets[groups_arr]))
        take = np.concatenate(
            [np.arange(a, b) + shift[int(g)] for a, b, g in zip(row_from, row_to, first_rg)]
        )
        return take_rows(table, take)  # a contiguous run (one episode, or all of them) is a zero-copy slice

    def _check_tasks(self, tasks: Mapping[int, str]) -> None:
        """Every frame's task_index names a task of the task table (an unknown one would serve no prompt)."""
        known = np.fromiter(tasks, dtype=np.int64, count=len(tasks))
        task = self.columns["task_index"]
        bad = np.flatnonzero(~np.isin(task, known))
        if len(bad):
            row = int(bad[0])
            e = int(np.searchsorted(self.ep_to, row, side="right"))
            eps = self.episodes
            table = "meta/tasks.parquet" if self.info.is_v3 else "meta/tasks.jsonl"
            raise UnknownTaskError(
                self._path(int(eps.data_file[e])).where,
                f"episode {eps.episode_index[e]} frame {row - self.ep_from[e]} has task_index {task[row]}, "
                f"which {table} does not list (it lists {sorted(tasks)[:10]}; {len(bad)} frame(s) affected)",
                f"add the task to {table}, or correct the task_index column",
            )

    def _check_episode_tasks(self, tasks: Mapping[int, str]) -> None:
        """Each selected episode's task per its metadata (the first it lists, when the task table names it) is
        among its frames' task_index. The frames decide an episode's task (the speed labels' rule), and a
        metadata task naming another task of the table describes the episode as what it is not: an
        `episode_filter` on the task selected frames of another task. A task string the table does not list
        (a paraphrase) is not compared; nor is the order of a multi-task episode's list (writers list a
        set)."""
        eps = self.episodes
        meta = eps.task_index
        rows = eps.length > 0
        if not len(meta) or not rows.any():
            return
        frame_task = self.columns["task_index"]
        first_of = {}  # a task string the table lists twice is one task: compare the first index of each
        same = {i: first_of.setdefault(t, i) for i, t in sorted(tasks.items())}
        if any(i != j for i, j in same.items()):
            keys = np.fromiter(same, dtype=np.int64, count=len(same))  # sorted; every frame's is listed
            canon = np.fromiter(same.values(), dtype=np.int64, count=len(same))
            frame_task = canon[np.searchsorted(keys, frame_task)]
            meta = np.where(meta >= 0, canon[np.searchsorted(keys, meta).clip(0, len(keys) - 1)], meta)
        hit = frame_task == np.repeat(meta, eps.length)
        found = np.ones(len(meta), dtype=bool)
        found[rows] = np.logical_or.reduceat(hit, self.ep_from[rows])
        bad = np.flatnonzero(~found & (meta >= 0))
        if len(bad):
            e = int(bad[0])
            theirs = distinct(self.columns["task_index"][self.ep_from[e] : self.ep_to[e]]).tolist()
            named = ", ".join(f"{t} ({tasks.get(t, '?')!r})" for t in theirs[:5])
            listing = "meta/episodes/*.parquet" if self.info.is_v3 else "meta/episodes.jsonl"
            raise TaskMismatchError(
                self._path(int(eps.data_file[e])).where,
                f"episode {eps.episode_index[e]}'s task in {listing} is task_index {meta[e]} "
                f"({tasks.get(int(meta[e]), '?')!r}), but its {eps.length[e]} frames have task_index {named} "
                f"({len(bad)} episode(s) affected)",
                f"correct the episode's tasks in {listing} to its frames' task, or the frames' task_index "
                "column (the frames decide an episode's task)",
            )

    def _verify(self) -> None:
        """Rows must carry exactly the selected episodes with the promised lengths and global indices."""
        eps = self.episodes
        ep_col = self.columns["episode_index"]
        expected_ep = np.repeat(eps.episode_index, eps.length)
        first = eps.dataset_from_index if eps.index_stated else self._v21_first_index()
        expected_index = np.repeat(first - self.ep_from, eps.length) + np.arange(self.num_rows)
        bad = np.flatnonzero((ep_col != expected_ep) | (self.columns["index"] != expected_index))
        if len(bad):
            row = int(bad[0])
            e = int(np.searchsorted(self.ep_to, row, side="right"))
            raise RowAlignmentError(
                self._path(int(eps.data_file[e])).where,
                f"row {row - self.ep_from[e]} of episode {eps.episode_index[e]} (length {eps.length[e]} per "
                f"metadata) holds episode_index {ep_col[row]} and index {self.columns['index'][row]}, "
                f"expected "
                f"episode_index {expected_ep[row]} and index {expected_index[row]}",
                ALIGN_FIX,
            )

    def _v21_first_index(self) -> np.ndarray:
        """v2.1 states no global `index`: each selected episode's range starts at its own first row's value
        (an episode deleted by hand leaves a gap; `_verify` checks each range runs on by one), and the ranges
        must rise with episode_index without overlapping (an index restarting in each file is refused)."""
        eps = self.episodes
        index = self.columns["index"]
        first = index[self.ep_from].astype(np.int64)

        # An episode's range cannot start below the frames of the episodes listed before it (a dataset whose
        # ranges rise from 0 never does): this refuses an index restarting in each file also when one
        # episode is opened, as opening all of them does.
        def refuse(e: int, where: str) -> RowAlignmentError:
            return RowAlignmentError(
                self._path(int(eps.data_file[e])).where,
                f"episode {eps.episode_index[e]}'s rows start at index {first[e]}, {where}: the global index "
                "must rise from episode to episode",
                "renumber the index column (0, 1, 2, ... over the episodes in order), or re-export "
                "the dataset",
            )

        low = np.flatnonzero(first < eps.dataset_from_index)
        if len(low):
            e = int(low[0])
            held = f"{eps.dataset_from_index[e]} frames (an index restarting in each file?)"
            raise refuse(e, f"but the episodes listed before it in meta/episodes.jsonl hold {held}")
        end = first + eps.length
        bad = np.flatnonzero(first[1:] < end[:-1])
        if len(bad):
            e = int(bad[0]) + 1
            inside = f"{eps.episode_index[e - 1]}'s range {first[e - 1]}..{end[e - 1] - 1}"
            raise refuse(e, f"inside episode {inside}")
        return first

    def non_finite(self) -> dict[str, tuple[int, int]]:
        """Float columns holding NaN or infinity: name -> (how many values, first table row)."""
        out = {}
        for name, values in self.columns.items():
            if values.dtype.kind != "f":
                continue
            bad = ~np.isfinite(values.reshape(len(values), -1))
            rows = np.flatnonzero(bad.any(axis=1))
            if len(rows):
                out[name] = (int(bad.sum()), int(rows[0]))
        return out

    def check_finite(self) -> None:
        """Raise `NonFiniteValueError` naming the file, column and row of the first NaN or infinity."""
        for name, (count, row) in self.non_finite().items():
            e = int(np.searchsorted(self.ep_to, row, side="right"))
            eps = self.episodes
            raise NonFiniteValueError(
                self._path(int(eps.data_file[e])).where,
                f"column {name!r} holds {count} NaN or infinite value(s); the first in episode "
                f"{eps.episode_index[e]} frame {row - self.ep_from[e]}: {self.columns[name][row].tolist()!r}",
                "clean the data, or pass check_finite=False to serve NaN and infinity as they are",
            )

    # -- access -----------------------------------------------------------------------------------------
    def episode_of(self, rows: np.ndarray) -> np.ndarray:
        """Position (in the selection) of the episode holding each row."""
        return np.searchsorted(self.ep_to, rows, side="right")

    def read_heavy(self, key: str, rows: np.ndarray) -> list:
        """Values of a heavy column at the given table rows: an embedded image's encoded bytes (None for an
        empty cell), other columns as Python values (str...). See `store/heavy.py` for how they are read."""
        rows = np.asarray(rows, dtype=np.int64).reshape(-1)
        eps = self.episode_of(rows)
        codes = self.episodes.data_file[eps]
        in_file = self.row_from[eps] + (rows - self.ep_from[eps])
        image = self.info.features[key].dtype == "image"
        out: list = [None] * len(rows)
        for code in distinct(codes).tolist():
            mask = np.flatnonzero(codes == code)
            offsets = self._offsets(code)
            groups = np.searchsorted(offsets, in_file[mask], side="right") - 1
            ref = self._path(code)
            file = (str(ref), self._identity(code))
            pf = self._opened_file(code)
            for g in distinct(groups).tolist():
                sel = mask[groups == g]
                if (code, g) not in self._sized_groups:  # once per row group (the footer only)
                    check_group_sizes(pf, ref, [g], self._bounds)
                    self._sized_groups.add((code, g))
                rows_in_group = in_file[sel] - offsets[g]
                values = read_group_rows(
                    self._heavy_cache, file, pf, ref, g, key, rows_in_group, image, self._bounds.row_bytes
                )
                for i, value in zip(sel.tolist(), values):
                    out[i] = value
        release_read_memory()
        return out

    def _offsets(self, code: int) -> np.ndarray:
        if code not in self._rg_offsets:
            self._rg_offsets[code] = row_group_offsets(self._opened_file(code))
        return self._rg_offsets[code]

    def _identity(self, code: int) -> tuple:
        if code in self._file_ids:
            return self._file_ids[code]
        codes, identity = self._whole_ids
        return tuple(identity[np.searchsorted(codes, code)].tolist())

    def first_changed_file(self) -> tuple[str, tuple, tuple] | None:
        """(file, identity at open, identity now) of the first local data file that is no longer the one the
        open read, else None. One stat per data file; files in an object store are compared at their opens."""
        if not self.location.is_local:
            return None
        codes = sorted(set(self._file_ids) | set(self._whole_ids[0].tolist()))
        for code in codes:
            ref = self._path(code)
            try:
                now = ref.root.identity(ref.rel)
            except OSError:
                now = ()
            if now != self._identity(code):
                return str(ref.where), self._identity(code), now
        return None

    def _opened_file(self, code: int):
        """The data file through the shared handle cache, if it is still the file read at open."""
        ref = self._path(code)
        changed = DatasetFormatError(
            ref.where,
            "the file changed on disk after the dataset was opened (inode, size or mtime differ)",
            "open the dataset again to read the new file",
        )
        try:
            identity, pf = self.files.get_with_identity(ref)
        except DatasetFormatError:
            # a file replaced by one that does not parse: say it changed, not "re-download it" (QA)
            try:
                now = ref.root.identity(ref.rel)
            except OSError:
                now = None
            if now is not None and now != self._identity(code):
                raise changed from None
            raise
        if identity != self._identity(code):
            raise changed
        return pf

    @property
    def heavy_cache(self) -> HeavyCache:
        return self._heavy_cache

    @property
    def numeric_nbytes(self) -> int:
        return sum(a.nbytes for a in self.columns.values())

    # -- crossing a process boundary ----------------------------------------------------------------------
    def use_shared(self, segment: SharedArrays, prefix: str) -> None:
        """Read the columns from `segment` (where `share_tables` copied them) from now on."""
        self.columns = {name: segment.arrays[prefix + name] for name in self.columns}
        self.shared = (segment, prefix)

    def __getstate__(self) -> dict:
        child = for_child_process()
        if child:
            share_tables([self])
        state = self.__dict__.copy()
        if child and self.shared is not None:
            state["columns"] = list(self.columns)  # the child maps them from the shared segment
        else:
            state["shared"] = None  # a plain pickle carries copies of the arrays
        return state

    def __setstate__(self, state: dict) -> None:
        if state.get("shared") is not None:
            arrays, prefix = state["shared"]  # `SharedArrays` unpickles as its arrays, mapped in this process
            state["columns"] = {name: arrays[prefix + name] for name in state["columns"]}
            state["shared"] = None
        self.__dict__.update(state)


class _FileLayout:
    """Which catalog episodes the metadata puts in each data file, in row order (grouped once, on demand)."""

    def __init__(self, catalog: EpisodeTable):
        self.catalog = catalog
        self._order: np.ndarray | None = None  # catalog rows by file (None: in file order already)
        self._bounds: np.ndarray | None = None  # rows of file c: _order[_bounds[c] : _bounds[c + 1]]
        self._grouped = False

    def _group(self, code: int) -> tuple[int, int]:
        files = self.catalog.data_file
        if not self._grouped:
            self._grouped = True
            if not np.all(files[1:] >= files[:-1]):  # v2.1 and most v3.0 catalogs are in file order already
                self._order = np.argsort(files, kind="stable")
                codes = files[self._order]
                self._bounds = np.searchsorted(codes, np.arange(int(codes[-1]) + 2 if len(codes) else 1))
        if self._bounds is None:  # in file order: two binary searches, no array of the catalog's size
            return int(np.searchsorted(files, code)), int(np.searchsorted(files, code, side="right"))
        return int(self._bounds[code]), int(self._bounds[code + 1])

    def single(self, code: int) -> bool:
        """Whether the metadata puts exactly one episode in data file `code`."""
        lo, hi = self._group(code)
        return hi - lo == 1

    def of(self, code: int) -> tuple[np.ndarray, np.ndarray]:
        """(episode_index, length) of the episodes of data file `code`, sorted by dataset_from_index."""
        cat = self.catalog
        lo, hi = self._group(code)
        mine = np.arange(lo, hi) if self._order is None else self._order[lo:hi]
        if hi - lo > 1:
            mine = mine[np.argsort(cat.dataset_from_index[mine], kind="stable")]
        return cat.episode_index[mine], cat.length[mine]
