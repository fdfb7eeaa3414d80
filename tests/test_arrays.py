"""`distinct` is `np.unique` for the arrays robotempo deduplicates, and opening a dataset and reading its
numeric columns never imports numpy.ma (numpy's plain `np.unique` would, at ~40 ms of CPU per process)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pyarrow as pa
import pytest

from robotempo.arrays import distinct, take
from robotempo.synth import write_synthetic


@pytest.mark.parametrize("n", [0, 1, 2, 17, 1000])
def test_distinct_equals_unique(n):
    rng = np.random.default_rng(n)
    for values in (rng.integers(-5, 5, n), rng.integers(0, 2**40, n), rng.integers(0, 3, (n, 2))):
        got = distinct(values)
        assert got.dtype == values.dtype
        np.testing.assert_array_equal(got, np.unique(values))
    assert distinct([3, 1, 3]).tolist() == [1, 3]


def test_take_equals_arrow_take_and_slices_runs():
    table = pa.table({"a": np.arange(50) * 3, "b": [str(i) for i in range(50)]})
    rng = np.random.default_rng(0)
    for rows in (rng.integers(0, 50, 20), np.arange(7, 19), np.array([4]), np.array([], np.int64), [3, 2]):
        want = table.take(pa.array(np.asarray(rows, np.int64)))
        assert take(table, rows).equals(want)
        assert take(table.column("b").chunk(0), rows).equals(want["b"].chunk(0))
    run = take(table, np.arange(7, 19))
    assert run.column("a").chunk(0).buffers()[1].address == table.column("a").chunk(0).buffers()[1].address


@pytest.mark.parametrize("version", ["v2.1", "v3.0"])
def test_open_and_numeric_reads_do_not_import_numpy_ma(version, tmp_path):
    root = write_synthetic(tmp_path / "ds", version=version, n_episodes=6, n_tasks=2, camera=None, seed=5)
    code = (
        "import sys; from robotempo.dataset import LeRobotDataset\n"
        f"ds = LeRobotDataset('t/x', root={str(root)!r}, delta_timestamps={{'action': [0.0, 0.1]}})\n"
        f"one = LeRobotDataset('t/x', root={str(root)!r}, episodes=[3])\n"
        "ds.__getitems__(list(range(0, len(ds), 7))); ds[len(ds) - 1]; one[0]\n"
        "print('numpy.ma' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
