"""Property: a random disagreement between metadata and data never yields an item that differs from the
pristine dataset's item without a typed error somewhere on the path (open or read).

The corruptions are structural (what a merge, another tool or a hand edit does to a dataset): a column's
dtype changed or dropped, rows removed or repeated, an index, timestamp or task column edited, episode
metadata shifted, info.json's dtype / shape / fps edited, a task dropped, list rows made uneven. Changing a
feature's plain values (a joint angle, or a lossy cast of one) is not a disagreement any reader could see,
so it is not drawn.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from robotempo.dataset import LeRobotDataset
from robotempo.errors import RobotempoError
from robotempo.synth import write_synthetic

DATA = {"v2.1": "data/chunk-000/episode_000001.parquet", "v3.0": "data/chunk-000/file-000.parquet"}
COLUMNS = ["observation.state", "action", "timestamp", "frame_index", "episode_index", "index", "task_index"]
PLAIN = (
    "observation.state",
    "action",
    "timestamp",
)  # values no reader can check (timestamps: within tolerance)
CASTS = [pa.float64(), pa.float32(), pa.float16(), pa.int64(), pa.int32(), pa.int8(), pa.uint8(), pa.string()]


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    out = {}
    for version in DATA:
        root = tmp_path_factory.mktemp(f"prop-{version}") / "ds"
        write_synthetic(root, version=version, n_episodes=4, n_tasks=2, fps=10, seed=5, mean_length=12.0,
                        state_dim=4, action_dim=3)  # fmt: skip
        out[version] = (root, _items(root))
    return out


def _items(root) -> list[dict]:
    ds = LeRobotDataset("p", root=root)
    batch = ds.__getitems__(list(range(len(ds))))
    return [batch[i] for i in range(len(batch))]


def _table_edit(root, rel, fn) -> None:
    path = root / rel
    pq.write_table(fn(pq.read_table(path)), path)


def _set(t: pa.Table, name: str, values) -> pa.Table:
    return t.set_column(t.column_names.index(name), name, values)


class ValueChange(Exception):
    """The corruption rewrote a feature's values (a lossy cast of a plain feature): not a disagreement."""


def _cast(name: str, type_: pa.DataType):
    def fn(t: pa.Table) -> pa.Table:
        col = t.column(name).combine_chunks()
        flat = col.flatten() if pa.types.is_fixed_size_list(col.type) else col
        cast = pc.cast(flat, type_, safe=False)
        if (
            name in PLAIN
            and not pa.types.is_string(type_)
            and not cast.cast(flat.type, safe=False).equals(flat)
        ):
            raise ValueChange(f"{name} as {type_}")
        if pa.types.is_fixed_size_list(col.type):
            return _set(t, name, pa.FixedSizeListArray.from_arrays(cast, col.type.list_size))
        return _set(t, name, cast)

    return fn


def _edit_value(name: str, row: int, delta: float):
    def fn(t: pa.Table) -> pa.Table:
        values = t.column(name).to_numpy().copy()
        row_ = row % len(values)
        values[row_] = values[row_] + (delta if name != "task_index" else 50)
        return _set(t, name, pa.array(values, t.schema.field(name).type))

    return fn


def _rows(drop: int | None, repeat: int | None):
    def fn(t: pa.Table) -> pa.Table:
        idx = list(range(t.num_rows))
        if drop is not None:
            idx.pop(drop % len(idx))
        if repeat is not None:
            r = repeat % len(idx)
            idx.insert(r, idx[r])
        return t.take(pa.array(idx))

    return fn


def _uneven(name: str, row: int):
    def fn(t: pa.Table) -> pa.Table:
        rows = t.column(name).to_pylist()
        r = row % (len(rows) - 1)
        rows[r], rows[r + 1] = rows[r] + [0.25], rows[r + 1][:-1]
        return _set(t, name, pa.array(rows, pa.list_(pa.float32())))

    return fn


def _meta(version: str, episode: int, field: str, delta: int):
    def corrupt(root) -> None:
        if version == "v2.1":
            path = root / "meta/episodes.jsonl"
            lines = path.read_text().splitlines()
            row = json.loads(lines[episode])
            row["length"] += delta
            lines[episode] = json.dumps(row)
            path.write_text("\n".join(lines) + "\n")
            return
        _table_edit(root, "meta/episodes/chunk-000/file-000.parquet", _edit_value(field, episode, delta))

    return corrupt


def _info(key: str, value):
    def corrupt(root) -> None:
        path = root / "meta/info.json"
        d = json.loads(path.read_text())
        if key == "fps":
            d["fps"] = value
        else:
            feature, attr = key.split(":")
            d["features"][feature][attr] = value
        path.write_text(json.dumps(d))

    return corrupt


def _drop_task(version: str):
    def corrupt(root) -> None:
        if version == "v2.1":
            path = root / "meta/tasks.jsonl"
            path.write_text(path.read_text().splitlines()[0] + "\n")
        else:
            _table_edit(root, "meta/tasks.parquet", lambda t: t.slice(0, 1))

    return corrupt


@st.composite
def corruptions(draw):
    version = draw(st.sampled_from(sorted(DATA)))
    rel = DATA[version]
    column = draw(st.sampled_from(COLUMNS))
    row = draw(st.integers(0, 60))
    kind = draw(st.sampled_from(["cast", "drop", "rows", "value", "meta", "info", "task", "uneven"]))
    if kind == "cast":
        type_ = draw(st.sampled_from(CASTS))
        return version, f"{column} as {type_}", lambda r: _table_edit(r, rel, _cast(column, type_))
    if kind == "drop":
        return version, f"drop {column}", lambda r: _table_edit(r, rel, lambda t: t.drop([column]))
    if kind == "rows":
        drop, repeat = draw(st.sampled_from([(row, None), (None, row), (row, row + 3)]))
        return version, f"rows -{drop} +{repeat}", lambda r: _table_edit(r, rel, _rows(drop, repeat))
    if kind == "value":
        name = draw(st.sampled_from(["timestamp", "frame_index", "episode_index", "index", "task_index"]))
        delta = draw(st.sampled_from([-2, -1, 1, 3, 0.01, 1e9]))
        return (
            version,
            f"{name}[{row}] += {delta}",
            lambda r: _table_edit(r, rel, _edit_value(name, row, delta)),
        )
    if kind == "meta":
        field = draw(st.sampled_from(["length", "dataset_from_index", "dataset_to_index", "data/file_index"]))
        episode, delta = draw(st.integers(0, 3)), draw(st.sampled_from([-2, -1, 1, 2]))
        return version, f"meta {field}[{episode}] += {delta}", _meta(version, episode, field, delta)
    if kind == "info":
        key, value = draw(
            st.sampled_from([
                ("observation.state:dtype", "int64"), ("observation.state:dtype", "float16"),
                ("action:dtype", "int32"), ("action:shape", [4]), ("observation.state:shape", [2, 2]),
                ("timestamp:dtype", "int64"), ("fps", 20), ("fps", 5), ("fps", float("nan")),
                ("index:dtype", "int8"), ("frame_index:dtype", "float16"),
            ])
        )  # fmt: skip
        return version, f"info {key} = {value}", _info(key, value)
    if kind == "task":
        return version, "drop a task", _drop_task(version)
    name = draw(st.sampled_from(["observation.state", "action"]))
    return version, f"uneven {name} at {row}", lambda r: _table_edit(r, rel, _uneven(name, row))


def _same(got: dict, want: dict, dtypes: bool) -> bool:
    """Same keys and values (and dtypes, unless the corruption re-declared a dtype in info.json)."""
    if got.keys() != want.keys():
        return False
    for key, value in want.items():
        other = got[key]
        if isinstance(value, torch.Tensor):
            if (dtypes and other.dtype != value.dtype) or other.shape != value.shape:
                return False
            if not torch.equal(other.double(), value.double()):
                return False
        elif other != value:
            return False
    return True


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.filter_too_much],
)
@given(corruption=corruptions())
def test_corruptions_never_serve_different_items_silently(pristine, tmp_path_factory, corruption):
    version, what, corrupt = corruption
    src, want = pristine[version]
    root = tmp_path_factory.mktemp("corrupt") / "ds"
    shutil.copytree(src, root)
    try:
        corrupt(root)
    except ValueChange:
        assume(False)
    try:
        got = _items(root)
    except RobotempoError:
        return
    assert len(got) == len(want), f"{what}: {len(got)} items instead of {len(want)}, no error"
    # A dtype re-declared in info.json that the data fits exactly is served in that dtype, as declared.
    dtypes = "dtype" not in what
    bad = [i for i, (g, w) in enumerate(zip(got, want)) if not _same(g, w, dtypes)]
    assert not bad, f"{what}: item {bad[0]} differs from the pristine one, no error"
    assert np.all([g["index"] == w["index"] for g, w in zip(got, want)])
