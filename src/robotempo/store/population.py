"""The task of every episode from the frame data (authoritative), for speed labels over the whole dataset.

Reads as little as possible: per data file only the `episode_index` and `task_index` columns, and where the
footer's row-group statistics already say min == max for an episode's row group, not even that.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
import pyarrow as pa

from robotempo.errors import FeatureMismatchError, RowAlignmentError
from robotempo.format.episodes import EpisodeTable
from robotempo.fs import DatasetRoot, as_root
from robotempo.store.parquet import ParquetFiles, column_stats, first_value, row_group_offsets, typed_reads

ProgressFn = Callable[[int, int], None]


def _stats_task(pf, group: int) -> int | None:
    stats = column_stats(pf, group, "task_index")
    return int(stats.min) if stats is not None and stats.min == stats.max else None


def episode_task_index(
    root: str | Path | DatasetRoot,
    table: EpisodeTable,
    progress: ProgressFn | None = None,
    files: ParquetFiles | None = None,
    tasks: Mapping[int, str] | None = None,
) -> np.ndarray:
    """`task_index` of the first frame of every episode in `table`, read from the data files.

    `tasks` (the task table) is accepted for the callers' symmetry and not checked here: an episode whose
    task_index the table does not define is counted under that index, and the speed labels warn once per
    such index and label its episodes 50 (the speed-label contract). Serving a frame of such an episode is
    refused where frames are read (`FrameTable`: `UnknownTaskError`), so a selection without them opens.
    """
    root = as_root(root)
    files = files or ParquetFiles(max_open=4)
    out = np.full(len(table), -1, dtype=np.int64)
    order = np.argsort(table.data_file, kind="stable")
    codes, starts = np.unique(table.data_file[order], return_index=True)
    bounds = list(starts[1:]) + [len(order)]
    for done, (code, lo, hi) in enumerate(zip(codes, starts, bounds)):
        ref = root.file(table.data_files[int(code)])
        path = ref.where
        pf = files.get(ref)
        if "task_index" in pf.schema_arrow.names and not pa.types.is_integer(
            pf.schema_arrow.field("task_index").type
        ):
            raise FeatureMismatchError(
                path,
                f"column 'task_index' holds {pf.schema_arrow.field('task_index').type} values, not integers",
                "re-export the dataset (task_index is an int64 column)",
            )
        positions = order[lo:hi]
        offsets = row_group_offsets(pf)
        first_index = first_value(pf, "index")
        if first_index is None:
            raise RowAlignmentError(path, "the data file holds no rows", "re-export the dataset")
        if table.index_stated:
            rows = table.dataset_from_index[positions] - first_index
        else:  # v2.1: a file holds one episode, whose `index` need not continue the previous episode's
            rows = np.zeros(len(positions), dtype=np.int64)
        groups = np.searchsorted(offsets, rows, side="right") - 1
        exact = (groups >= 0) & (rows < offsets[-1]) & (offsets[np.clip(groups, 0, None)] == rows)
        pending = []
        for p, g, at_start in zip(positions, groups, exact):
            value = _stats_task(pf, int(g)) if at_start else None
            if value is None:
                pending.append(p)
            else:
                out[p] = value
        if pending:
            with typed_reads(ref):
                cols = pf.read(columns=["index", "task_index"], use_threads=False)
            index = cols.column("index").to_numpy()
            task = cols.column("task_index").to_numpy()
            first = (
                table.dataset_from_index[pending] if table.index_stated else index[:1].repeat(len(pending))
            )
            where = np.searchsorted(index, first)
            where = np.clip(where, 0, len(index) - 1)
            if not np.array_equal(index[where], first):
                raise RowAlignmentError(
                    path, "episodes listed for this file are not in it", "re-export the dataset"
                )
            out[pending] = task[where]
        if progress is not None:
            progress(done + 1, len(codes))
    files.close()
    return out
