"""Resident numeric columns reach spawn / forkserver DataLoader workers as one shared mapping, not copies,
and nothing of it outlives its owner (no /dev/shm entry, no descriptor left once the dataset is gone)."""

from __future__ import annotations

import gc
import mmap
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from robotempo import LeRobotDataset, collate
from robotempo.store.shared import MEMFD_NAME


def _base(array: np.ndarray):
    while isinstance(array, np.ndarray):
        array = array.base
    return array.obj if isinstance(array, memoryview) else array


def assert_columns_shared(worker_id: int) -> None:
    """DataLoader worker_init_fn: every column of the worker's dataset (or mixture) maps the shared memory."""
    dataset = torch.utils.data.get_worker_info().dataset
    assert f"memfd:{MEMFD_NAME}" in Path("/proc/self/maps").read_text()
    for ds in getattr(dataset, "datasets", [dataset]):
        for name, column in ds.frames.columns.items():
            assert isinstance(_base(column), mmap.mmap) and not column.flags.writeable, name


def _memfds() -> set[str]:
    """This process's descriptors of robotempo's shared-memory files."""
    out = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if MEMFD_NAME in target:
            out.add(fd)
    return out


@pytest.mark.skipif(not hasattr(os, "memfd_create"), reason="memfd_create is Linux-only")
def test_forkserver_workers_map_the_columns_and_nothing_leaks(v30_dataset):
    shm_before = set(os.listdir("/dev/shm"))
    ds = LeRobotDataset("s", root=v30_dataset, delta_timestamps={"action": [0.0, 0.1]})
    expected = {k: v.copy() for k, v in ds.frames.columns.items()}
    gc.collect()  # other tests' garbage closes its descriptors now, not in the middle of this test
    memfds_before = _memfds()  # other tests' live datasets may still own theirs
    assert ds.frames.shared is None
    loader = torch.utils.data.DataLoader(
        ds,
        batch_size=16,
        num_workers=2,
        collate_fn=collate,
        multiprocessing_context="forkserver",
        worker_init_fn=assert_columns_shared,
    )
    batches = list(loader)
    assert torch.cat([b["index"] for b in batches]).tolist() == list(range(len(ds)))
    assert _memfds() - memfds_before, "the main process owns the segment (its descriptor, the mapping's own)"
    for name, column in ds.frames.columns.items():  # the parent reads the shared copy from now on
        assert isinstance(_base(column), mmap.mmap)
        np.testing.assert_array_equal(column, expected[name])
    copy = pickle.loads(pickle.dumps(ds))  # a plain pickle carries copies, not a descriptor
    assert copy.frames.shared is None and copy.frames.columns["action"].flags.writeable
    del loader, batches, ds, copy, column
    gc.collect()
    assert _memfds() == memfds_before
    new = set(os.listdir("/dev/shm")) - shm_before
    # multiprocessing's own queue semaphores may outlive the loader until collected; nothing else may appear
    assert all(name.startswith("sem.mp-") for name in new), new
