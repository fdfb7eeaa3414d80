"""Reading in place: nothing is written, and a one-episode open touches only that episode's files."""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile

import pytest
import torch

from robotempo.dataset import LeRobotDataset, collate
from robotempo.format import read_metadata
from robotempo.synth import write_synthetic


def snapshot(*dirs) -> dict:
    """Every file under the given folders: size, mtime and content hash."""
    state = {}
    for d in dirs:
        for dirpath, _, files in os.walk(d):
            for name in files:
                p = os.path.join(dirpath, name)
                st = os.stat(p)
                with open(p, "rb") as f:
                    state[p] = (st.st_size, st.st_mtime_ns, hashlib.sha1(f.read()).hexdigest())
    return state


@pytest.mark.parametrize("version", ["v2.1", "v3.0"])
def test_open_and_full_pass_write_nothing(tmp_path, monkeypatch, version):
    root = tmp_path / "ds"
    write_synthetic(
        root, version=version, n_episodes=8, n_tasks=2, camera="image", image_size=(32, 32), fps=10
    )
    LeRobotDataset("d", root=root)  # the one allowed write: meta/speed_percentiles.jsonl, once
    assert (root / "meta" / "speed_percentiles.jsonl").is_file()
    hf_home, tmp = tmp_path / "hf_home", tmp_path / "tmp"
    hf_home.mkdir()
    tmp.mkdir()
    monkeypatch.setenv("HF_HOME", str(hf_home))
    monkeypatch.setenv("TMPDIR", str(tmp))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    before = snapshot(root, hf_home, tmp)
    ds = LeRobotDataset("d", root=root, delta_timestamps={"action": [0.0, 0.1, 0.2]})
    loader = torch.utils.data.DataLoader(
        ds, batch_size=32, num_workers=2, collate_fn=collate, multiprocessing_context="fork"
    )
    seen = sum(len(b["index"]) for b in loader)
    assert seen == len(ds)
    assert snapshot(root, hf_home, tmp) == before


@pytest.mark.parametrize("version", ["v2.1", "v3.0"])
def test_one_episode_open_reads_only_its_files(tmp_path, version):
    root = tmp_path / "ds"
    write_synthetic(
        root, version=version, n_episodes=30, n_tasks=3, camera=None, fps=10, data_files_size_in_mb=0.001
    )
    LeRobotDataset("d", root=root)  # computes the speed file from every episode
    meta = read_metadata(root)
    k = 17
    keep = meta.episodes.data_files[int(meta.episodes.data_file[k])]
    full = LeRobotDataset("d", root=root, episodes=[k])
    expected = [full[i] for i in range(len(full))]
    removed = 0
    for f in set(meta.episodes.data_files) - {keep}:
        os.remove(root / f)
        removed += 1
    assert removed > 0
    ds = LeRobotDataset("d", root=root, episodes=[k])
    assert ds.episodes == [k] and len(ds) == len(expected)
    for i, item in enumerate(expected):
        got = ds[i]
        assert torch.equal(got["action"], item["action"]) and int(got["speed"]) == int(item["speed"])
    with pytest.raises(FileNotFoundError):
        LeRobotDataset("d", root=root, episodes=[k, (k + 5) % 30])
    shutil.rmtree(root)
