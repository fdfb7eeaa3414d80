"""split_episodes: by episode, stratified per task, a function of (seed, selection, tasks) only."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from robotempo import LeRobotDataset, split_episodes
from robotempo.errors import SplitError
from robotempo.synth import SynthSpec, write_synthetic

ARGS = {"n_episodes": 40, "n_tasks": 4, "fps": 10, "seed": 11, "mean_length": 10.0}


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    path = tmp_path_factory.mktemp("splits") / "ds"
    return write_synthetic(path, version="v3.0", camera=None, **ARGS)


def task_of(episode: int) -> int:
    return SynthSpec(n_episodes=40, n_tasks=4, seed=11).episode_task(episode)


def test_split_is_disjoint_complete_stratified_and_deterministic(root):
    ds = LeRobotDataset("s", root=root)
    train, val = split_episodes(ds, val_fraction=0.25, seed=0)
    assert not set(train) & set(val) and sorted(train + val) == list(range(40))
    assert train == sorted(train) and val == sorted(val) and len(val) == 10
    per_task = Counter(task_of(e) for e in range(40))
    val_per_task = Counter(task_of(e) for e in val)
    for task, size in per_task.items():
        assert abs(val_per_task[task] - 0.25 * size) < 1
    assert split_episodes(ds, val_fraction=0.25, seed=0) == (train, val)
    assert split_episodes(LeRobotDataset("s", root=root), 0.25, seed=0) == (train, val)
    assert split_episodes(ds, val_fraction=0.25, seed=1)[1] != val
    assert split_episodes(ds, val_fraction=0.0, seed=0) == (list(range(40)), [])


def test_split_never_depends_on_rank_or_world_size(root, monkeypatch):
    ds = LeRobotDataset("s", root=root)
    alone = split_episodes(ds, 0.1, seed=3)
    for rank, world in [(0, 2), (1, 2), (2, 3)]:
        monkeypatch.setenv("RANK", str(rank))
        monkeypatch.setenv("WORLD_SIZE", str(world))
        assert split_episodes(LeRobotDataset("s", root=root), 0.1, seed=3) == alone


def test_split_respects_the_selection(root):
    excluded = [0, 5, 6, 7, 30]
    ds = LeRobotDataset("s", root=root, excluded_episodes=excluded)
    train, val = split_episodes(ds, 0.2, seed=0)
    assert sorted(train + val) == [e for e in range(40) if e not in excluded]
    picked = LeRobotDataset("s", root=root, episodes=list(range(10, 30)))
    train, val = split_episodes(picked, 0.2, seed=0)
    assert sorted(train + val) == list(range(10, 30)) and len(val) == 4


def test_tiny_selections(root):
    two = LeRobotDataset("s", root=root, episodes=[3, 9])
    train, val = split_episodes(two, 0.01, seed=0)
    assert len(val) == 1 and len(train) == 1  # validation holds at least one episode when asked for
    one = LeRobotDataset("s", root=root, episodes=[3])
    with pytest.raises(SplitError, match="cannot split 1 episode"):
        split_episodes(one, 0.1)
    assert split_episodes(one, 0.0) == ([3], [])


@pytest.mark.parametrize("fraction", [1.0, -0.1, float("nan"), "0.1", True, None])
def test_bad_fraction_is_a_typed_error(root, fraction):
    with pytest.raises(SplitError, match="val_fraction"):
        split_episodes(LeRobotDataset("s", root=root), fraction)


def test_bad_seed_and_dataset_are_typed_errors(root):
    with pytest.raises(SplitError, match="seed must be an int"):
        split_episodes(LeRobotDataset("s", root=root), 0.1, seed=1.5)
    with pytest.raises(SplitError, match="needs a robotempo LeRobotDataset or Mixture"):
        split_episodes(list(range(10)), 0.1)


def test_mixture_splits_each_dataset_as_alone(root, tmp_path):
    other = write_synthetic(tmp_path / "b", version="v2.1", camera=None, n_episodes=12, n_tasks=2, seed=2)
    a, b = LeRobotDataset("a", root=root), LeRobotDataset("b", root=other)

    class Sources:  # the Mixture attributes split_episodes reads
        datasets = [a, b]
        dataset_lengths = [len(a), len(b)]

    train, val = split_episodes(Sources(), 0.25, seed=5)
    assert (train[0], val[0]) == split_episodes(a, 0.25, seed=5)
    assert (train[1], val[1]) == split_episodes(b, 0.25, seed=5)
    assert np.isin(val[1], range(12)).all() and len(val[1]) == 3
