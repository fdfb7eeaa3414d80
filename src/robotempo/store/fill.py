"""The numeric columns of an open, one array each, from the tables read per file (or per group of files).

When the pieces hold the selection in order (the usual layout) and share one schema, they are concatenated and
each column is converted once. Otherwise, or when that conversion fails, each file's rows are converted on
their own, so that an error (a null, a list of the wrong length, a value the declared dtype cannot hold
exactly) names the file at fault, even inside a piece that holds many files.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa

from robotempo.errors import DatasetFormatError
from robotempo.store.columns import ColumnPlan, column_values

# (data-file code per position, positions in the selection, the table of those episodes' rows in that order)
Piece = tuple[np.ndarray, np.ndarray, pa.Table]


def fill_columns(
    pieces: list[Piece], plan: ColumnPlan, length: np.ndarray, where: Callable[[int], Path | str]
) -> dict[str, np.ndarray]:
    """`plan.numeric` columns for the selection whose episode lengths are `length`; `where(code)` names a
    data file in errors. Sorts `pieces` by position."""
    pieces.sort(key=lambda piece: int(piece[1][0]))
    columns = _concatenated(pieces, plan, length, where)
    return columns if columns is not None else _by_file(pieces, plan, length, where)


def _concatenated(pieces: list[Piece], plan: ColumnPlan, length: np.ndarray, where) -> dict | None:
    flat = np.concatenate([positions for _, positions, _ in pieces])
    if not np.array_equal(flat, np.arange(len(length))):
        return None
    try:
        table = pa.concat_tables([t for _, _, t in pieces])  # pieces of unequal schemas raise
    except pa.ArrowInvalid:
        return None
    columns = {}
    try:
        for name, spec in plan.numeric.items():
            values = column_values(table.column(name), spec, where(int(pieces[0][0][0])))
            columns[name] = values if values.flags.writeable else values.copy()
    except DatasetFormatError:
        return None  # the per-file pass names the file at fault
    return columns


def _by_file(pieces: list[Piece], plan: ColumnPlan, length: np.ndarray, where) -> dict[str, np.ndarray]:
    ep_from = np.cumsum(length) - length
    num_rows = int(length.sum())
    columns: dict[str, np.ndarray] = {}
    for codes, positions, table in pieces:
        cut = np.flatnonzero(codes[1:] != codes[:-1]) + 1
        offset = 0
        for code, mine in zip(codes[np.r_[0, cut]].tolist(), np.split(positions, cut)):
            rows = int(length[mine].sum())
            part = table.slice(offset, rows)
            offset += rows
            for name, spec in plan.numeric.items():
                values = column_values(part.column(name), spec, where(code))
                if name not in columns:
                    columns[name] = np.empty((num_rows, *values.shape[1:]), dtype=values.dtype)
                dest = columns[name]
                values = values.reshape((len(values), *dest.shape[1:]))  # scalar and [1]-list files mixed
                at = 0
                for p in mine.tolist():
                    n = int(length[p])
                    dest[ep_from[p] : ep_from[p] + n] = values[at : at + n]
                    at += n
    return columns
