"""Data columns against their declared features: kind, shape per row and dtype, checked per file.

`plan_columns` decides from info.json alone which columns are read as dense numeric arrays and which stay on
disk (images, strings); `check_schema` checks one file's arrow schema against that plan; `column_values`
turns one column of one file into a numpy array of the declared dtype and shape, or raises a typed error.
Nothing here reads a file: callers pass what they read, so the checks cost nothing when the data agrees.

Decisions:
- The declared dtype decides the output dtype, never the first file's. A column stored in another dtype is
  cast when every value survives the round trip (int32 -> int64, whole floats -> int, float64 values that
  are exact float32s -> float32); otherwise `FeatureMismatchError` (no float is ever truncated or rounded
  silently). A float stored narrower than declared (float16 where float32 is declared) is an error too:
  its values were rounded when the file was written, so no reader can serve what the card promises.
- Every row of a list column must hold exactly the declared number of values: rows of uneven length are an
  error even when the total count happens to match.
- A scalar column stands for a feature of shape [1] (items hold 0-d values, as LeRobot serves them).
- Columns info.json does not declare are not served (LeRobot does not serve them either); the five default
  columns are implicitly declared with LeRobot's dtypes when info.json omits them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from robotempo.errors import FeatureMismatchError, RowAlignmentError
from robotempo.format.info import DEFAULT_COLUMNS, DatasetInfo, FeatureSpec

logger = logging.getLogger(__name__)

DEFAULT_SPECS = {
    name: FeatureSpec(name, "float32" if name == "timestamp" else "int64", (1,)) for name in DEFAULT_COLUMNS
}
FEATURE_FIX = (
    "make the data match meta/info.json's features (re-export the dataset), or correct the feature's dtype / "
    "shape in meta/info.json if the data is right"
)
ALIGN_FIX = "the metadata and the data disagree: re-export the dataset, or regenerate meta/ from the data"


@dataclass(frozen=True)
class ColumnPlan:
    numeric: dict[str, FeatureSpec]  # read once into dense arrays of the declared dtype
    heavy: dict[str, FeatureSpec]  # images and strings, read per row group on demand


def plan_columns(info: DatasetInfo) -> ColumnPlan:
    """Which declared features are read as dense numeric arrays, which stay on disk (video has no column)."""
    numeric = dict(DEFAULT_SPECS)
    heavy = {}
    for name, spec in info.features.items():
        if spec.is_video:
            continue
        if spec.is_numeric:
            numeric[name] = spec
        else:
            heavy[name] = spec
    return ColumnPlan(numeric, heavy)


def _leaf(type_: pa.DataType) -> tuple[pa.DataType, int]:
    if isinstance(type_, pa.ExtensionType):
        type_ = type_.storage_type
    ndim = 0
    while pa.types.is_list(type_) or pa.types.is_large_list(type_) or pa.types.is_fixed_size_list(type_):
        type_, ndim = type_.value_type, ndim + 1
        if isinstance(type_, pa.ExtensionType):
            type_ = type_.storage_type
    return type_, ndim


def _is_numeric(type_: pa.DataType) -> bool:
    return pa.types.is_integer(type_) or pa.types.is_floating(type_) or pa.types.is_boolean(type_)


def _is_image(type_: pa.DataType) -> bool:
    if pa.types.is_struct(type_):
        return type_.get_field_index("bytes") >= 0
    return pa.types.is_binary(type_) or pa.types.is_large_binary(type_)


def _describe(spec: FeatureSpec) -> str:
    return f"{spec.dtype} of shape {list(spec.shape)}"


def check_schema(schema: pa.Schema, plan: ColumnPlan, path: Path | str) -> None:
    """Every declared column is present in this file with a compatible kind and number of dimensions."""
    names = set(schema.names)
    missing = [c for c in DEFAULT_COLUMNS if c not in names]
    if missing:
        raise RowAlignmentError(path, f"default columns {missing} are missing", ALIGN_FIX)
    absent = [n for n in (*plan.numeric, *plan.heavy) if n not in names]
    if absent:
        raise FeatureMismatchError(
            path,
            f"feature(s) {absent} are declared in meta/info.json but this data file has no such column "
            f"(its columns: {schema.names})",
            FEATURE_FIX,
        )
    for name, spec in plan.numeric.items():
        leaf, ndim = _leaf(schema.field(name).type)
        if not _is_numeric(leaf):
            raise FeatureMismatchError(
                path,
                f"column {name!r} holds {schema.field(name).type} values, but meta/info.json declares "
                f"{_describe(spec)}",
                FEATURE_FIX,
            )
        if ndim != len(spec.shape) and not (ndim == 0 and int(np.prod(spec.shape)) == 1):
            raise FeatureMismatchError(
                path,
                f"column {name!r} has {ndim}-dimensional rows ({schema.field(name).type}), but "
                f"meta/info.json declares {_describe(spec)}",
                FEATURE_FIX,
            )
    for name, spec in plan.heavy.items():
        type_ = schema.field(name).type
        ok = (
            _is_image(type_)
            if spec.is_image
            else pa.types.is_string(type_) or pa.types.is_large_string(type_)
        )
        if not ok:
            raise FeatureMismatchError(
                path,
                f"column {name!r} holds {type_} values, but meta/info.json declares {spec.dtype}",
                FEATURE_FIX,
            )


def column_values(column: pa.ChunkedArray | pa.Array, spec: FeatureSpec, path: Path) -> np.ndarray:
    """One file's column as `(rows, *shape)` of the declared dtype (`shape` () for a scalar column)."""
    name = spec.name
    arr = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    n = len(arr)
    shape: list[int] = []
    level = 0
    while True:
        if isinstance(arr.type, pa.ExtensionType):
            arr = arr.storage
        if arr.null_count:
            raise FeatureMismatchError(
                path,
                f"column {name!r} has {arr.null_count} null values",
                "fill the missing values; robotempo reads dense numeric columns",
            )
        if not (
            pa.types.is_list(arr.type)
            or pa.types.is_large_list(arr.type)
            or pa.types.is_fixed_size_list(arr.type)
        ):
            break
        want = spec.shape[level]
        if pa.types.is_fixed_size_list(arr.type):
            lengths = np.array([arr.type.list_size])
        else:
            lengths = pc.list_value_length(arr).to_numpy(zero_copy_only=False)
        bad = np.flatnonzero(lengths != want)
        if len(bad):
            row = int(bad[0]) if level == 0 else None
            where = f"row {row}" if row is not None else "a row"
            raise FeatureMismatchError(
                path,
                f"column {name!r}: {where} holds {int(lengths[bad[0]])} values at dimension {level}, but "
                f"meta/info.json declares {_describe(spec)} ({len(bad)} such list(s) in this file)",
                FEATURE_FIX,
            )
        shape.append(want)
        arr = arr.flatten()
        level += 1
    values = arr.to_numpy(zero_copy_only=False).reshape((n, *shape))
    return _as_declared(values, spec, path)


def _as_declared(values: np.ndarray, spec: FeatureSpec, path: Path) -> np.ndarray:
    dtype = np.dtype(spec.dtype)
    if values.dtype == dtype:
        return values
    if values.dtype.kind == "f" and dtype.kind == "f" and values.dtype.itemsize < dtype.itemsize:
        raise FeatureMismatchError(
            path,
            f"column {spec.name!r} is stored as {values.dtype}, narrower than the declared "
            f"{_describe(spec)}: its values lost precision when this file was written (e.g. rewritten by "
            "another tool)",
            FEATURE_FIX,
        )
    with np.errstate(all="ignore"):
        cast = values.astype(dtype)
        back = cast.astype(values.dtype)
    same = back == values
    if values.dtype.kind == "f":
        same |= np.isnan(values) & np.isnan(back)
    if not same.all():
        flat = np.flatnonzero(~same.reshape(len(values), -1).all(axis=1))
        row = int(flat[0])
        raise FeatureMismatchError(
            path,
            f"column {spec.name!r} is stored as {values.dtype} and row {row} holds "
            f"{values[row].tolist()!r}, which {dtype} cannot hold exactly (meta/info.json declares "
            f"{_describe(spec)}; {len(flat)} row(s) differ)",
            FEATURE_FIX,
        )
    return cast


def undeclared(schema: pa.Schema, plan: ColumnPlan) -> list[str]:
    """Columns of a file that meta/info.json does not declare (not served)."""
    known = {*plan.numeric, *plan.heavy, "__index_level_0__"}
    return [n for n in schema.names if n not in known]


class SchemaChecks:
    """`check_schema` for the files of one open, run once per distinct schema.

    The files of a dataset (5,000 of them in a v2.1 dataset) usually share one schema; comparing a schema
    with one already accepted is one C++ call, where the check walks every column in Python. Safe to call
    from the open's reader threads (a race only checks a schema twice).
    """

    def __init__(self, plan: ColumnPlan):
        self.plan = plan
        self._accepted: list[pa.Schema] = []

    def accepts(self, schema: pa.Schema) -> bool:
        """Whether `schema` equals one already accepted (one C++ comparison per accepted schema)."""
        for seen in self._accepted:
            if schema.equals(seen):
                return True
        return False

    def check(self, schema: pa.Schema, path: Callable[[], Path | str]) -> None:
        """Raise as `check_schema` would; `path()` names the file, asked for only on a schema not yet seen."""
        if self.accepts(schema):
            return
        where = path()
        check_schema(schema, self.plan, where)
        extra = undeclared(schema, self.plan)
        if extra:
            logger.debug("%s: columns %s are not declared in meta/info.json and are not served", where, extra)
        self._accepted.append(schema)
