"""The frame store's open path on files laid out as other writers make them: many row groups (one per
episode, with or without footer statistics, or fixed row counts cutting through episodes), one file per
episode read in parallel, no handle kept."""

from __future__ import annotations

import shutil

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from robotempo.dataset import LeRobotDataset
from robotempo.errors import DatasetFormatError, RowAlignmentError
from robotempo.format import read_metadata
from robotempo.synth import write_synthetic

FPS = 10


@pytest.fixture(scope="module")
def v30(tmp_path_factory):
    root = tmp_path_factory.mktemp("v30") / "ds"
    write_synthetic(
        root, version="v3.0", n_episodes=40, n_tasks=3, camera=None, fps=FPS, seed=7, mean_length=9.0
    )
    return root


def _regroup(root, dst, sizes, statistics: bool = True):
    """A copy of `root` whose data file is rewritten in row groups of `sizes` rows (as other writers make
    them: LeRobot one group per episode, others fixed row counts that cut through episodes)."""
    shutil.copytree(root, dst)
    (path,) = (dst / "data").rglob("*.parquet")
    table = pq.read_table(path)
    assert sum(sizes) == table.num_rows
    with pq.ParquetWriter(path.with_suffix(".tmp"), table.schema, write_statistics=statistics) as w:
        at = 0
        for n in sizes:
            w.write_table(table.slice(at, n), row_group_size=n)
            at += n
    path.with_suffix(".tmp").replace(path)
    assert pq.ParquetFile(path).metadata.num_row_groups == len(sizes)
    return dst


def _numeric(ds):
    return {k: v.copy() for k, v in ds.frames.columns.items()}


def test_single_episodes_of_a_many_group_file_equal_the_whole_read(v30, tmp_path):
    whole = LeRobotDataset("t", root=v30, speed_labels=False)
    assert pq.ParquetFile(v30 / whole.meta.episodes.data_files[0]).metadata.num_row_groups == 1  # ~20 KB
    per_episode = (whole.frames.ep_to - whole.frames.ep_from).tolist()
    rows = int(whole.frames.ep_to[-1])
    cut = [7] * (rows // 7) + [rows % 7] * (rows % 7 > 0)
    layouts = {
        "one per episode": _regroup(v30, tmp_path / "lerobot", per_episode),
        "one per episode, no statistics": _regroup(v30, tmp_path / "bare", per_episode, statistics=False),
        "7 rows, across episodes": _regroup(v30, tmp_path / "cut", cut),
    }
    for name, root in {"robotempo's": v30, **layouts}.items():
        for k in (0, 1, 17, 38, 39):
            one = LeRobotDataset("t", root=root, episodes=[k], speed_labels=False)
            a, b = int(whole.frames.ep_from[k]), int(whole.frames.ep_to[k])
            for key, values in _numeric(one).items():
                np.testing.assert_array_equal(values, whole.frames.columns[key][a:b], err_msg=f"{name} {key}")
        some = LeRobotDataset("t", root=root, episodes=[3, 4, 20, 31], speed_labels=False)
        rows_of = np.concatenate(
            [np.arange(whole.frames.ep_from[k], whole.frames.ep_to[k]) for k in (3, 4, 20, 31)]
        )
        np.testing.assert_array_equal(
            some.frames.columns["action"], whole.frames.columns["action"][rows_of], err_msg=name
        )


def _move_boundary(root, episode: int, by: int) -> None:
    """Move the metadata's boundary between `episode` and the next one by `by` rows (row counts kept)."""
    (path,) = (root / "meta" / "episodes").rglob("*.parquet")
    table = pq.read_table(path)
    for name, at, delta in (
        ("length", episode, by), ("dataset_to_index", episode, by),
        ("length", episode + 1, -by), ("dataset_from_index", episode + 1, by),
    ):  # fmt: skip
        values = table.column(name).to_numpy().copy()
        values[at] += delta
        table = table.set_column(table.column_names.index(name), name, pa.array(values))
    pq.write_table(table, path)


@pytest.mark.parametrize(("by", "k", "side"), [(-2, 17, "after"), (2, 18, "before")])
def test_a_moved_boundary_is_caught_on_lerobots_layout(v30, tmp_path, by, k, side):
    """One row group per episode (LeRobot's layout; robotempo's writer now makes one group here). Episode
    k's own rows all still hold k, so only the row just outside it shows the moved boundary."""
    whole = LeRobotDataset("t", root=v30, speed_labels=False)
    root = _regroup(v30, tmp_path / "lerobot", (whole.frames.ep_to - whole.frames.ep_from).tolist())
    _move_boundary(root, 17, by)
    with pytest.raises(RowAlignmentError, match=f"just {side} the rows the metadata gives episode {k}"):
        LeRobotDataset("t", root=root, episodes=[k], speed_labels=False)


def test_open_keeps_no_parquet_handle_and_columns_are_writable(v30):
    ds = LeRobotDataset("t", root=v30, speed_labels=False)
    kept = list(ds.frames.files._open.get())  # footers of many-group files weigh megabytes: none kept
    assert not [k for k in kept if k.startswith(str(v30))]
    assert all(v.flags.writeable and v.flags.c_contiguous for v in ds.frames.columns.values())


@pytest.fixture(scope="module")
def v21_many(tmp_path_factory):
    root = tmp_path_factory.mktemp("v21") / "ds"
    write_synthetic(
        root, version="v2.1", n_episodes=60, n_tasks=2, camera=None, fps=FPS, seed=8, mean_length=6.0
    )
    return root


def test_v21_parallel_open_equals_one_file_at_a_time(v21_many):
    meta = read_metadata(v21_many)
    ds = LeRobotDataset("t", root=v21_many, speed_labels=False)
    for k in (0, 29, 59):
        table = pq.read_table(v21_many / meta.episodes.data_files[k])
        a, b = int(ds.frames.ep_from[k]), int(ds.frames.ep_to[k])
        np.testing.assert_array_equal(ds.frames.columns["index"][a:b], table.column("index").to_numpy())
        state = np.stack(table.column("observation.state").to_numpy(zero_copy_only=False))
        np.testing.assert_array_equal(ds.frames.columns["observation.state"][a:b], state)


def test_v21_errors_name_the_file_at_fault_among_many(v21_many, tmp_path):
    root = shutil.copytree(v21_many, tmp_path / "ds")
    meta = read_metadata(root)
    bad = root / meta.episodes.data_files[41]
    table = pq.read_table(bad)
    state = pa.array(
        [None] + table.column("observation.state").to_pylist()[1:],
        table.schema.field("observation.state").type,
    )
    pq.write_table(
        table.set_column(table.column_names.index("observation.state"), "observation.state", state), bad
    )
    with pytest.raises(DatasetFormatError, match="episode_000041.*null"):
        LeRobotDataset("t", root=root, speed_labels=False)
    bad.write_bytes(b"not parquet")
    with pytest.raises(DatasetFormatError, match="episode_000041"):
        LeRobotDataset("t", root=root, speed_labels=False)
    pq.write_table(table.slice(0, len(table) - 1), bad)  # one row short
    with pytest.raises(RowAlignmentError, match="episode_000041"):
        LeRobotDataset("t", root=root, speed_labels=False)


def test_data_files_out_of_episode_order_read_the_same(tmp_path):
    """A v3.0 catalog whose episodes do not run through the data files in order (episode 0 in the second
    file) is grouped by file with a sort; one in file order by binary search: both read the same rows."""
    root = write_synthetic(
        tmp_path / "ds", version="v3.0", n_episodes=30, n_tasks=3, fps=FPS, seed=3, mean_length=40.0,
        data_files_size_in_mb=0.02,
    )  # fmt: skip
    swapped = tmp_path / "swapped"
    shutil.copytree(root, swapped)
    first, second = (swapped / "data" / "chunk-000" / f"file-00{i}.parquet" for i in (0, 1))
    first.rename(tmp_path / "tmp.parquet")
    second.rename(first)
    (tmp_path / "tmp.parquet").rename(second)
    for path in (swapped / "meta" / "episodes").rglob("*.parquet"):
        table = pq.read_table(path)
        column = table.column("data/file_index").to_numpy()
        chunk = table.column("data/chunk_index").to_numpy()
        flipped = np.where((chunk == 0) & (column < 2), 1 - column, column)
        i = table.schema.get_field_index("data/file_index")
        table = table.set_column(i, table.schema.field(i), pa.array(flipped, type=table.schema.field(i).type))
        pq.write_table(table, path)
    files = read_metadata(swapped).episodes.data_file
    assert not np.all(files[1:] >= files[:-1])  # the sorting path is the one under test
    for episodes in (None, [0, 1, 29], [5]):
        a = LeRobotDataset("t", root=root, episodes=episodes, speed_labels=False)
        b = LeRobotDataset("t", root=swapped, episodes=episodes, speed_labels=False)
        assert _numeric(a).keys() == _numeric(b).keys()
        for name, values in _numeric(a).items():
            np.testing.assert_array_equal(values, b.frames.columns[name], err_msg=name)
