"""The task of every episode, read via footer statistics, equals a direct read of the rows."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from robotempo.format import read_metadata
from robotempo.store.parquet import ParquetFiles, first_value
from robotempo.store.population import episode_task_index
from robotempo.synth import write_synthetic


def first_frame_tasks(root) -> dict[int, int]:
    meta = read_metadata(root)
    table = pa.concat_tables(
        [
            pq.read_table(root / f, columns=["episode_index", "frame_index", "task_index"])
            for f in meta.episodes.data_files
        ]
    )
    first = table.filter(pa.compute.equal(table.column("frame_index"), 0))
    return dict(zip(first.column("episode_index").to_pylist(), first.column("task_index").to_pylist()))


@pytest.mark.parametrize("version", ["v2.1", "v3.0"])
@pytest.mark.parametrize(
    "camera", [None, "image"]
)  # an image struct column shifts the parquet leaf positions
def test_episode_task_index_matches_the_rows(tmp_path, version, camera):
    root = tmp_path / "ds"
    write_synthetic(
        root,
        version=version,
        n_episodes=9,
        n_tasks=4,
        camera=camera,
        image_size=(32, 32),
        fps=10,
        seed=5,
        data_files_size_in_mb=0.02,
    )
    meta = read_metadata(root)
    got = episode_task_index(root, meta.episodes)
    truth = first_frame_tasks(root)
    assert got.tolist() == [truth[int(e)] for e in meta.episodes.episode_index]
    assert len(set(got.tolist())) > 1
    files = ParquetFiles()
    for f in meta.episodes.data_files:
        index = pq.read_table(root / f, columns=["index"]).column("index").to_numpy()
        assert first_value(files.get(root / f), "index") == int(index[0])


def test_first_value_on_one_row_row_groups(tmp_path):
    """A one-row row group: min == max for every column; only the right column's statistics answer right."""
    path = tmp_path / "f.parquet"
    table = pa.table(
        {
            "img": pa.array([{"bytes": b"x", "path": ""}] * 3),
            "episode_index": pa.array([7, 7, 7], pa.int64()),
            "index": pa.array([40, 41, 42], pa.int64()),
        }
    )
    pq.write_table(table, path, row_group_size=1)
    assert first_value(ParquetFiles().get(path), "index") == 40
    assert np.array_equal(pq.read_table(path).column("index").to_numpy(), [40, 41, 42])
