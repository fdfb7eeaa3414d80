"""Statistics: aggregation of per-episode stats equals stats computed over all rows at once."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest

from robotempo.dataset import LeRobotDataset
from robotempo.stats import aggregate


def _stats(x: np.ndarray) -> dict:
    return {"min": x.min(0), "max": x.max(0), "mean": x.mean(0), "std": x.std(0), "count": np.array([len(x)])}


def test_aggregate_equals_the_union():
    rng = np.random.default_rng(0)
    parts = [rng.normal(i, 1 + i, size=(n, 3)) for i, n in enumerate([5, 17, 40])]
    agg = aggregate({"a": _stats(p)} for p in parts)["a"]
    whole = _stats(np.concatenate(parts))
    for k in ("min", "max", "mean", "std"):
        np.testing.assert_allclose(agg[k], whole[k], rtol=1e-12)
    assert agg["count"].tolist() == [62]


@pytest.mark.parametrize("version", ["v2.1", "v3.0"])
def test_dataset_stats_match_the_data(tmp_path, version):
    from robotempo.synth import write_synthetic

    root = tmp_path / "ds"
    write_synthetic(root, version=version, n_episodes=6, n_tasks=2, camera=None, fps=10, seed=2)
    (root / "meta" / "stats.json").unlink(missing_ok=True)  # force the per-episode aggregation path
    ds = LeRobotDataset("s", root=root, speed_labels=False)
    action = np.concatenate(
        [
            pq.read_table(root / f, columns=["action"])
            .column("action")
            .combine_chunks()
            .flatten()
            .to_numpy()
            .reshape(-1, 14)
            for f in ds.meta.episodes.data_files
        ]
    )
    stats = ds.meta.stats["action"]
    np.testing.assert_allclose(stats["mean"], action.mean(0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(stats["std"], action.std(0), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(stats["max"], action.max(0), rtol=1e-6)
    assert int(stats["count"][0]) == len(action) == ds.meta.total_frames
    assert ds.meta.camera_keys == [] and ds.meta.total_tasks == 2 and "action" in ds.meta.features
