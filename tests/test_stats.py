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


def _direct(root, column: str, exclude: set[int] = frozenset()) -> np.ndarray:
    """A column straight from the data files (pyarrow), rows of the episodes not excluded."""
    parts = []
    for path in sorted(root.glob("data/**/*.parquet")):
        table = pq.read_table(path, columns=["episode_index", column])
        keep = ~np.isin(table.column("episode_index").to_numpy(), list(exclude))
        parts.append(np.stack(table.column(column).to_numpy(zero_copy_only=False))[keep])
    return np.concatenate(parts).astype(np.float64)


def _check(stats: dict, x: np.ndarray) -> None:
    np.testing.assert_allclose(stats["mean"], x.mean(0), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(stats["std"], x.std(0), rtol=1e-9, atol=1e-12)
    np.testing.assert_array_equal(stats["min"], x.min(0))
    np.testing.assert_array_equal(stats["max"], x.max(0))
    np.testing.assert_allclose(stats["q01"], np.quantile(x, 0.01, axis=0), rtol=1e-12)
    np.testing.assert_allclose(stats["q99"], np.quantile(x, 0.99, axis=0), rtol=1e-12)
    assert stats["count"].tolist() == [len(x)]


def test_compute_stats_cover_exactly_the_selected_frames(v30_dataset):
    from robotempo import compute_stats

    full = compute_stats(LeRobotDataset("s", root=v30_dataset, speed_labels=False))
    part = compute_stats(LeRobotDataset("s", root=v30_dataset, excluded_episodes=[3], speed_labels=False))
    assert set(full) == {"observation.state", "action"}
    for key in full:
        _check(full[key], _direct(v30_dataset, key))
        _check(part[key], _direct(v30_dataset, key, exclude={3}))
        assert not np.allclose(full[key]["mean"], part[key]["mean"])
        assert part[key]["count"][0] < full[key]["count"][0]


def test_compute_stats_of_mixture_groups_are_exact_pooled_statistics(v21_dataset, v30_dataset, tmp_path):
    from robotempo import Mixture, compute_stats
    from robotempo.synth import write_synthetic

    narrow = write_synthetic(
        tmp_path / "narrow", n_episodes=3, n_tasks=1, fps=10, state_dim=4, action_dim=3, mean_length=20.0
    )
    roots = [v21_dataset, v30_dataset, narrow]
    mix = Mixture(
        [LeRobotDataset(f"d{i}", root=r, speed_labels=False) for i, r in enumerate(roots)],
        key_maps=[{"observation.state": "state"}] * 3,
    )
    per_dataset = compute_stats(mix, keys=["state"])
    assert list(per_dataset) == ["d0", "d1", "d2"]
    _check(per_dataset["d2"]["state"], _direct(narrow, "observation.state"))
    grouped = compute_stats(mix, group_by=["wide", "wide", "narrow"])
    wide = np.concatenate([_direct(r, "observation.state") for r in roots[:2]])
    _check(grouped["wide"]["state"], wide)
    # different widths pooled per dimension, over the datasets that have it
    everything = compute_stats(mix, group_by="all")["all"]["state"]
    x = [_direct(r, "observation.state") for r in roots]
    assert everything["count"].tolist() == [sum(map(len, x))] * 4 + [len(wide)] * 2
    for j in range(6):
        column = np.concatenate([p[:, j] for p in x if p.shape[1] > j])
        assert everything["mean"][j] == pytest.approx(column.mean(), rel=1e-12)
        assert everything["q99"][j] == pytest.approx(np.quantile(column, 0.99), rel=1e-12)


def test_compute_stats_rejects_a_bad_grouping(v30_dataset):
    from robotempo import Mixture, compute_stats
    from robotempo.errors import MixtureError

    mix = Mixture([LeRobotDataset("a", root=v30_dataset, speed_labels=False)])
    with pytest.raises(MixtureError, match="not a grouping of 1 datasets"):
        compute_stats(mix, group_by=["x", "y"])
    assert list(compute_stats(mix, group_by="robot_type")) == [mix.datasets[0].meta.robot_type]
