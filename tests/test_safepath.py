"""`check_file` remembers folder resolutions: a folder swapped for a symlink out of the root is seen."""

from __future__ import annotations

import pytest

from robotempo.errors import MissingFileError, UnsafePathError
from robotempo.safepath import check_file


def test_folder_replaced_by_symlink_out_of_root_after_a_check(tmp_path):
    root, outside = tmp_path / "root", tmp_path / "outside"
    (root / "data").mkdir(parents=True)
    outside.mkdir()
    (root / "data" / "a.parquet").write_bytes(b"in")
    (outside / "a.parquet").write_bytes(b"out")
    assert check_file(root, "data/a.parquet", "the file", "fix") == root / "data" / "a.parquet"

    (root / "data" / "a.parquet").unlink()
    (root / "data").rmdir()
    (root / "data").symlink_to(outside)  # same path, now leading out of the root
    with pytest.raises(UnsafePathError, match="outside the dataset root"):
        check_file(root, "data/a.parquet", "the file", "fix")


def test_file_in_a_known_folder_replaced_by_symlink_or_removed(tmp_path):
    root = tmp_path / "root"
    (root / "data").mkdir(parents=True)
    for name in ("a", "b"):
        (root / "data" / f"{name}.parquet").write_bytes(name.encode())
    check_file(root, "data/a.parquet", "the file", "fix")
    (tmp_path / "secret").write_bytes(b"s")
    (root / "data" / "b.parquet").unlink()
    (root / "data" / "b.parquet").symlink_to(tmp_path / "secret")
    with pytest.raises(UnsafePathError, match="outside the dataset root"):
        check_file(root, "data/b.parquet", "the file", "fix")
    (root / "data" / "a.parquet").unlink()
    with pytest.raises(MissingFileError):
        check_file(root, "data/a.parquet", "the file", "fix")
    (root / "data" / "c").mkdir()
    with pytest.raises(UnsafePathError, match="a directory"):
        check_file(root, "data/c", "the file", "fix")


def test_a_root_symlink_repointed_to_a_new_version(tmp_path):
    """`current -> v1`, then `current -> v2`: the root's resolution was remembered by its path string, so
    every file of v2 lay 'outside' the root until the process ended."""
    from robotempo import LeRobotDataset
    from robotempo.synth import write_synthetic

    for name, episodes in (("v1", 2), ("v2", 3)):
        write_synthetic(tmp_path / name, version="v3.0", n_episodes=episodes, n_tasks=1, fps=10)
    current = tmp_path / "current"
    current.symlink_to(tmp_path / "v1")
    assert LeRobotDataset("d", root=current).num_episodes == 2
    current.unlink()
    current.symlink_to(tmp_path / "v2")
    assert LeRobotDataset("d", root=current).num_episodes == 3
