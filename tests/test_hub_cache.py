"""Datasets in a huggingface_hub cache, laid out as `snapshot_download` leaves them: every file of
`<repo>/snapshots/<sha>/` is a symlink into `<repo>/blobs/`. Reached as users reach them: through a symlink
to the snapshot, as a folder inside a snapshot, or by `repo_id` alone where LeRobot 0.6.1 downloads; the cache
is read, never written to."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import torch

from robotempo import LeRobotDataset
from robotempo.errors import MissingFileError
from robotempo.synth import write_synthetic


@pytest.fixture(scope="module")
def original(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("hub-original") / "ds"
    return write_synthetic(root, version="v3.0", n_episodes=4, n_tasks=2, camera="video", image_size=(32, 32),
                           seed=3, fps=10, mean_length=8.0)  # fmt: skip


def as_hub_cache(dataset: Path, repo: Path, sha: str, inside: str = "") -> Path:
    """`dataset` copied into the hub cache repository `repo` as snapshot `sha` (under `inside`), every file
    a relative symlink into `repo/blobs`; returns the dataset's folder in the snapshot."""
    snapshot = repo / "snapshots" / sha
    target = snapshot / inside
    shutil.copytree(dataset, target)
    (repo / "blobs").mkdir(parents=True, exist_ok=True)
    for i, path in enumerate(sorted(p for p in target.rglob("*") if p.is_file())):
        blob = repo / "blobs" / f"{sha[:6]}{i:04d}"
        path.rename(blob)
        path.symlink_to(os.path.relpath(blob, path.parent))
    return target


def regular_files(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file() and not p.is_symlink()]


def assert_same_items(ds: LeRobotDataset, original: Path) -> None:
    want = LeRobotDataset("x", root=original, speed_labels=False)
    assert len(ds) == len(want)
    for i in (0, len(ds) // 2, len(ds) - 1):
        got, expected = ds[i], want[i]
        for key, value in expected.items():
            if isinstance(value, torch.Tensor):
                assert torch.equal(got[key], value), key


def test_a_symlink_to_a_snapshot_and_a_dataset_folder_inside_one_are_read(original, tmp_path):
    """Only `<snapshot>` itself, as typed, was trusted to point into `blobs/`: through a symlink to it
    (`ln -s ~/.cache/huggingface/hub/datasets--x/snapshots/<sha> /data/x`) or as a folder of a repository
    holding several datasets, every file was an UnsafePathError."""
    snapshot = as_hub_cache(original, tmp_path / "hub" / "datasets--lab--ds", "a1b2c3")
    link = tmp_path / "data" / "ds"
    link.parent.mkdir()
    link.symlink_to(snapshot)
    assert_same_items(LeRobotDataset("x", root=link, speed_labels=False), original)
    inner = as_hub_cache(original, tmp_path / "hub" / "datasets--lab--many", "d4e5f6", inside="pick_cube")
    assert_same_items(LeRobotDataset("x", root=inner, speed_labels=False), original)


def test_speed_labels_of_a_snapshot_go_to_the_user_cache(original, tmp_path, monkeypatch):
    """The hub cache is content-addressed and shared by every tool: a file written into a snapshot looks like
    part of that revision."""
    monkeypatch.setenv("ROBOTEMPO_CACHE", str(tmp_path / "user-cache"))
    repo = tmp_path / "hub" / "datasets--lab--ds"
    snapshot = as_hub_cache(original, repo, "a1b2c3")
    before = sorted(repo.rglob("*"))
    ds = LeRobotDataset("x", root=snapshot)
    assert sorted(repo.rglob("*")) == before and regular_files(snapshot) == []
    assert list((tmp_path / "user-cache").rglob("*.jsonl"))  # the labels' copy
    expected = LeRobotDataset("x", root=original)  # computed from the same data: the same labels
    assert torch.equal(ds[len(ds) - 1]["speed"], expected[len(expected) - 1]["speed"])


def test_a_folder_merely_named_snapshots_is_not_the_hub_cache(original, tmp_path, monkeypatch):
    """Only huggingface_hub's repositories (`datasets--...`) count: a user's own `snapshots/` folder keeps
    its speed-label file in the dataset, and gains no trusted `blobs/`."""
    monkeypatch.setenv("ROBOTEMPO_CACHE", str(tmp_path / "user-cache"))
    root = tmp_path / "backups" / "snapshots" / "2026-12" / "ds"
    shutil.copytree(original, root)
    (root / "meta" / "speed_percentiles.jsonl").unlink(missing_ok=True)  # another test's open wrote it
    LeRobotDataset("x", root=root)
    assert (root / "meta" / "speed_percentiles.jsonl").is_file()
    assert not (tmp_path / "user-cache").exists()


def test_repo_id_alone_finds_lerobots_hub_download(original, tmp_path, monkeypatch):
    """LeRobot 0.6.1 downloads `repo_id` into $HF_LEROBOT_HOME/hub; robotempo looked only in
    $HF_LEROBOT_HOME/<repo_id> and told the user to download a second copy."""
    home = tmp_path / "lerobot-home"
    monkeypatch.setenv("HF_LEROBOT_HOME", str(home))
    repo = home / "hub" / "datasets--lab--ds"
    with pytest.raises(MissingFileError, match="lab/ds"):
        LeRobotDataset("lab/ds", speed_labels=False)
    as_hub_cache(original, repo, "1" * 40)
    assert_same_items(LeRobotDataset("lab/ds", speed_labels=False), original)  # the only snapshot
    as_hub_cache(original, repo, "2" * 40)
    with pytest.raises(MissingFileError):  # two snapshots and no ref: which one is not guessed
        LeRobotDataset("lab/ds", speed_labels=False)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("2" * 40)
    assert LeRobotDataset("lab/ds", speed_labels=False).root == repo / "snapshots" / ("2" * 40)
    (repo / "refs" / "v3.0").write_text("1" * 40)  # LeRobot's default revision is its codebase version
    assert LeRobotDataset("lab/ds", speed_labels=False).root == repo / "snapshots" / ("1" * 40)
    main = LeRobotDataset("lab/ds", revision="main", speed_labels=False)
    assert main.root == repo / "snapshots" / ("2" * 40)
