"""Long runs through DataLoader workers: open files and video decoders stay bounded epoch after epoch
(counts, read inside each worker from /proc/self/fd)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from robotempo.dataset import LeRobotDataset, collate
from robotempo.synth import write_synthetic

CAMERA = "observation.images.top"
CACHE = 2

pytestmark = pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc")


def open_files(root: str) -> tuple[int, int]:
    """(descriptors on files, descriptors on the MP4 files under `root`) of this process. Sockets, pipes and
    torch's shared-memory files of the batches in flight are left out: torch's machinery opens and closes them
    as batches travel (their number follows timing, not what the dataset holds). Only `root`'s MP4s count as
    this dataset's decoders: a forked worker also inherits, untouched, the files its parent's caches hold open
    (other datasets of the same process)."""
    targets = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            targets.append(os.readlink(f"/proc/self/fd/{fd}"))
        except OSError:  # closed between listing and reading
            pass
    targets = [t for t in targets if t.startswith("/") and not t.startswith("/dev/shm/torch_")]
    return len(targets), sum(t.startswith(root) and t.endswith(".mp4") for t in targets)


class _Probe(torch.utils.data.Dataset):
    """The dataset's batches, plus what the process serving them holds open right after."""

    def __init__(self, dataset: LeRobotDataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitems__(self, indices):
        batch = collate(self.dataset.__getitems__(indices))
        return {"batch": batch, "probe": (os.getpid(), *open_files(os.path.realpath(self.dataset.root)))}


def test_descriptors_and_decoders_stay_bounded_across_epochs(tmp_path):
    root = tmp_path / "ds"
    # Small files: several MP4s per camera, more than the decoder cache holds, so decoders keep being
    # evicted and reopened.
    write_synthetic(root, version="v3.0", n_episodes=10, camera="video", image_size=(32, 32), fps=10, seed=5,
                    mean_length=30, video_files_size_in_mb=0.002, data_files_size_in_mb=0.05)  # fmt: skip
    n_videos = len(list(root.glob("videos/**/*.mp4")))
    assert n_videos > 2 * CACHE
    ds = LeRobotDataset("v", root=root, delta_timestamps={CAMERA: [-0.1, 0.0]}, video_cache_size=CACHE)
    loader = torch.utils.data.DataLoader(
        _Probe(ds), batch_size=16, shuffle=True, generator=torch.Generator().manual_seed(0), num_workers=2,
        persistent_workers=True, multiprocessing_context="fork", collate_fn=lambda probe: probe,
    )  # fmt: skip
    per_epoch: list[dict[int, int]] = []
    for _ in range(4):
        most: dict[int, int] = {}
        for item in loader:
            pid, fds, mp4 = item["probe"]
            assert item["batch"][CAMERA].shape[1:3] == (2, 3)
            assert mp4 <= CACHE  # never more decoders open than the cache holds
            most[pid] = max(most.get(pid, 0), fds)
        per_epoch.append(most)
    assert len(per_epoch[0]) == 2 and all(e.keys() == per_epoch[0].keys() for e in per_epoch)  # same workers
    # The first epoch opens everything a worker ever holds; later epochs hold no more descriptors.
    for epoch in per_epoch[1:]:
        assert all(epoch[pid] <= per_epoch[0][pid] for pid in epoch), per_epoch
