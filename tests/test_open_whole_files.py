"""Opening many one-episode files (v2.1) through `store/wholefiles.py`: the same columns as the files hold,
the same typed errors naming the file at fault, whatever the file's place among the files read together."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from robotempo.dataset import LeRobotDataset
from robotempo.errors import FeatureMismatchError, UnsafePathError
from robotempo.synth import write_synthetic

N_EPISODES = 70  # more than one thread task of files (FILES_PER_TASK = 64)
COLUMNS = ("observation.state", "action", "timestamp", "frame_index", "episode_index", "index", "task_index")


@pytest.fixture(scope="module")
def many_files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("whole") / "v21"
    write_synthetic(
        root,
        version="v2.1",
        n_episodes=N_EPISODES,
        camera=None,
        state_dim=4,
        action_dim=3,
        mean_length=10,
        seed=5,
    )
    return root


@pytest.fixture
def copy(many_files: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(many_files, tmp_path / "v21"))


def rel(e: int) -> str:
    return f"data/chunk-000/episode_{e:06d}.parquet"


def expected(root: Path, episodes: list[int]) -> dict[str, np.ndarray]:
    """The columns straight from the files, in episode order, independently of robotempo's reader."""
    table = pa.concat_tables([pq.read_table(root / rel(e), columns=list(COLUMNS)) for e in episodes])
    out = {}
    for name in COLUMNS:
        col = table.column(name).combine_chunks()
        if pa.types.is_fixed_size_list(col.type) or pa.types.is_list(col.type):
            out[name] = np.stack([np.asarray(v, dtype=np.float64) for v in col.to_pylist()])
        else:
            out[name] = col.to_numpy().astype(np.float64)
    return out


def assert_columns(ds: LeRobotDataset, want: dict[str, np.ndarray]) -> None:
    for name, values in want.items():
        got = ds.frames.columns[name]
        np.testing.assert_array_equal(got.reshape(values.shape).astype(np.float64), values, err_msg=name)


def rewrite(root: Path, e: int, edit) -> None:
    path = root / rel(e)
    pq.write_table(edit(pq.read_table(path)), path)


def as_float64_lists(table: pa.Table, name: str = "observation.state") -> pa.Table:
    col = table.column(name).combine_chunks()
    values = pc.cast(col.flatten(), pa.float64())
    lists = pa.FixedSizeListArray.from_arrays(values, col.type.list_size)
    return table.set_column(table.column_names.index(name), name, lists)


@pytest.mark.parametrize("episodes", [None, [3, 17, 64, 65, 69]])
def test_columns_equal_the_files(many_files: Path, episodes: list[int] | None) -> None:
    ds = LeRobotDataset("t/whole", root=many_files, episodes=episodes)
    assert_columns(ds, expected(many_files, episodes or list(range(N_EPISODES))))


def test_hub_cache_symlinks_are_read(copy: Path, tmp_path: Path) -> None:
    """The hub cache's layout: snapshots/<rev>/... are symlinks into ../../blobs."""
    repo = tmp_path / "datasets--t--whole"
    snapshot = repo / "snapshots" / "abc123"
    shutil.copytree(copy, snapshot)
    (repo / "blobs").mkdir()
    for e in range(N_EPISODES):
        blob = repo / "blobs" / f"blob{e}"
        (snapshot / rel(e)).rename(blob)
        (snapshot / rel(e)).symlink_to(os.path.relpath(blob, (snapshot / rel(e)).parent))
    ds = LeRobotDataset("t/whole", root=snapshot)
    assert_columns(ds, expected(copy, list(range(N_EPISODES))))


def test_schemas_that_differ_losslessly_are_read(copy: Path) -> None:
    """Episode 0 keeps its schema; every later file stores `index` as int32 and the state as float64 (exact
    float32 values): the later files are read together, then converted file by file."""
    want = expected(copy, list(range(N_EPISODES)))

    def narrow(t: pa.Table) -> pa.Table:
        t = t.set_column(t.column_names.index("index"), "index", pc.cast(t.column("index"), pa.int32()))
        return as_float64_lists(t)

    for e in range(1, N_EPISODES):
        rewrite(copy, e, narrow)
    ds = LeRobotDataset("t/whole", root=copy)
    assert ds.frames.columns["index"].dtype == np.int64
    assert ds.frames.columns["observation.state"].dtype == np.float32
    assert_columns(ds, want)


def test_lossy_value_in_a_file_read_with_others_names_that_file(copy: Path) -> None:
    """Every file stores the state as float64; episode 40's holds a value float32 cannot hold exactly."""
    for e in range(N_EPISODES):
        rewrite(copy, e, as_float64_lists)

    def lossy(t: pa.Table) -> pa.Table:
        t = as_float64_lists(t)
        values = t.column("observation.state").combine_chunks().flatten().to_numpy().copy()
        values[5] = 0.1  # not a float32
        lists = pa.FixedSizeListArray.from_arrays(pa.array(values), 4)
        return t.set_column(t.column_names.index("observation.state"), "observation.state", lists)

    rewrite(copy, 40, lossy)
    with pytest.raises(FeatureMismatchError, match="episode_000040.parquet") as err:
        LeRobotDataset("t/whole", root=copy)
    assert "0.1" in str(err.value)


def test_folder_leading_out_of_the_root_is_refused(copy: Path, tmp_path: Path) -> None:
    """A chunk folder that is a symlink out of the root: its files are not read, whatever their place."""
    outside = tmp_path / "elsewhere"
    shutil.move(copy / "data" / "chunk-000", outside)
    (copy / "data" / "chunk-000").symlink_to(outside)
    with pytest.raises(UnsafePathError, match="outside the dataset root"):
        LeRobotDataset("t/whole", root=copy)
