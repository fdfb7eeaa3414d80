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


# -- statistics as the files give them: checked, and from the open's snapshot (QA: normalisation stats) ----


def _tiny(tmp_path, version: str, **kwargs):
    from robotempo.synth import write_synthetic

    root = tmp_path / f"ds-{version}"
    write_synthetic(
        root, version=version, n_episodes=4, n_tasks=2, camera=None, fps=10, seed=1, state_dim=4,
        action_dim=3, mean_length=20.0, **kwargs,
    )  # fmt: skip
    return root


def _edit_json(path, edit) -> None:
    import json

    path.write_text(json.dumps(edit(json.loads(path.read_text()))))


def _stats_of(root):
    return LeRobotDataset("s", root=root, speed_labels=False).meta.stats


def _jsonl(path) -> list:
    import json

    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _write_jsonl(path, rows) -> None:
    import json

    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_v21_statistics_are_the_per_episode_aggregate_not_a_stale_stats_json(tmp_path):
    """v2.1 readers (LeRobot's, OpenTau) aggregate episodes_stats.jsonl; a stats.json beside it, left stale
    by a tool that keeps only the per-episode file, was served (count 999, a shifted mean)."""
    root = _tiny(tmp_path, "v2.1")
    before = _stats_of(root)["action"]

    def stale(stats):
        stats["action"]["count"] = [999]
        stats["action"]["mean"] = [m + 1 for m in stats["action"]["mean"]]
        return stats

    _edit_json(root / "meta" / "stats.json", stale)
    after = _stats_of(root)["action"]
    assert (
        after["count"].tolist()
        == before["count"].tolist()
        == [LeRobotDataset("s", root=root).meta.total_frames]
    )
    np.testing.assert_array_equal(after["mean"], before["mean"])


@pytest.mark.parametrize(
    "edit, match",
    [
        (lambda rows: rows + rows[:1], r"episode 0 has a second row \(its first is line 1\)"),
        (lambda rows: rows[1:], "episode 0 of the dataset has no statistics row"),
        (lambda rows: [{"episode_index": 0}] + rows[1:], "must be an object with an integer 'episode_index'"),
        (
            lambda rows: (
                [
                    {
                        **rows[0],
                        "stats": {**rows[0]["stats"], "action": {**rows[0]["stats"]["action"], "count": [0]}},
                    }
                ]
                + rows[1:]
            ),  # fmt: skip
            r"episode 0: the statistics of 'action' count 0 frames, the episode has \d+",
        ),
    ],
)
def test_v21_per_episode_statistics_rows_are_checked_against_the_episodes(tmp_path, edit, match):
    """A duplicated row was counted twice, a missing one dropped silently, a count of 0 gave NaN."""
    from robotempo.errors import DatasetFormatError

    root = _tiny(tmp_path, "v2.1")
    (root / "meta" / "stats.json").unlink()
    path = root / "meta" / "episodes_stats.jsonl"
    _write_jsonl(path, edit(_jsonl(path)))
    with pytest.raises(DatasetFormatError, match=match) as info:
        _stats_of(root)
    assert "episodes_stats.jsonl" in str(info.value) and "Fix:" in str(info.value)


@pytest.mark.parametrize(
    "edit, match",
    [
        (lambda s: {**s, "action": {**s["action"], "std": None}}, "'action' std holds a null"),
        (lambda s: {**s, "action": {**s["action"], "std": [None, 1, 1]}}, "'action' std holds a null"),
        (lambda s: {**s, "action": {**s["action"], "mean": [0.5]}}, r"'action' mean has shape \(1,\)"),
        (lambda s: {**s, "action": {**s["action"], "min": "low"}}, "'action' min is not a number"),
        (lambda s: {**s, "action": {**s["action"], "max": [1, [2]]}}, "'action' max is not a number"),
        (lambda s: {**s, "action": {**s["action"], "count": [2.5]}}, "must be a whole number"),
        (lambda s: [s], "statistics must be an object of features"),
    ],
)
def test_stats_json_values_are_checked(tmp_path, edit, match):
    """A null was served as NaN (every normalised value NaN), a (1,) mean broadcast silently over a (3,)
    feature, and a list or a string raised bare AttributeError / ValueError."""
    from robotempo.errors import DatasetFormatError

    root = _tiny(tmp_path, "v3.0")
    _edit_json(root / "meta" / "stats.json", edit)
    ds = LeRobotDataset("s", root=root, speed_labels=False)  # opens: the error is where the stats are used
    with pytest.raises(DatasetFormatError, match=match) as info:
        ds.meta.stats  # noqa: B018 - the property reads them
    assert "stats.json" in str(info.value) and "Fix:" in str(info.value)


def test_scalar_statistics_are_1d_as_lerobot_loads_them(tmp_path):
    root = _tiny(tmp_path, "v3.0")
    _edit_json(
        root / "meta" / "stats.json",
        lambda s: {**s, "timestamp": {**s["timestamp"], "mean": 0.5, "count": 7}},
    )
    stats = _stats_of(root)["timestamp"]
    assert stats["mean"].shape == (1,) and stats["count"].tolist() == [7] and stats["count"].dtype == np.int64


@pytest.mark.parametrize("version", ["v2.1", "v3.0"])
def test_statistics_are_those_of_the_episodes_the_open_read(tmp_path, version):
    """Another process appended episodes after the open: the dataset served the opened frames, its
    statistics counted the appended dataset's."""
    from robotempo.synth import write_synthetic

    root = tmp_path / "ds"
    write_synthetic(root, version=version, n_episodes=6, mean_length=20)
    ds = LeRobotDataset("x", root=root, speed_labels=False)
    write_synthetic(root, version=version, n_episodes=12, mean_length=20, resume=True)
    assert LeRobotDataset("x", root=root, speed_labels=False).meta.total_frames > len(ds)
    assert int(ds.meta.stats["observation.state"]["count"][0]) == len(ds)


def test_v30_aggregate_covers_declared_features_only(tmp_path):
    """LeRobot's remove_feature leaves the feature's stats/ columns in meta/episodes."""
    root = _tiny(tmp_path, "v3.0")
    (root / "meta" / "stats.json").unlink()
    for path in (root / "meta" / "episodes").rglob("*.parquet"):
        table = pq.read_table(path)
        for stat in ("min", "max", "mean", "std", "count"):
            source = table.column(f"stats/action/{stat}")
            table = table.append_column(f"stats/removed/{stat}", source.cast(source.type))
        pq.write_table(table, path)
    stats = _stats_of(root)
    assert "removed" not in stats and "action" in stats


def test_group_labels_that_cannot_name_a_group_are_a_mixture_error(tmp_path):
    from robotempo import Mixture, compute_stats
    from robotempo.errors import MixtureError

    root = _tiny(tmp_path, "v3.0")
    mix = Mixture([{"repo_id": "a", "root": str(root)}, {"repo_id": "b", "root": str(root)}])
    with pytest.raises(MixtureError, match=r"label \['arm'\], which cannot name a group"):
        compute_stats(mix, group_by=[["arm"], ["arm"]])


def test_validate_reports_statistics_that_cannot_be_used(tmp_path):
    from robotempo import validate_dataset

    root = _tiny(tmp_path, "v3.0")
    assert [f.status for f in validate_dataset(root) if f.check == "statistics"] == ["ok"]
    _edit_json(root / "meta" / "stats.json", lambda s: {**s, "action": {**s["action"], "std": None}})
    (found,) = [f for f in validate_dataset(root) if f.check == "statistics"]
    assert found.status == "failed" and "null" in found.details
