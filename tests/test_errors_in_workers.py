"""Typed errors survive DataLoader workers: the training loop gets the same class with the full message."""

from __future__ import annotations

import inspect
import pickle
import shutil

import pytest
import torch
from torch._utils import ExceptionWrapper

import robotempo.errors as E
from robotempo.dataset import LeRobotDataset, collate

ALL_ERRORS = [cls for _, cls in inspect.getmembers(E, inspect.isclass) if issubclass(cls, E.RobotempoError)]


def _example(cls: type) -> E.RobotempoError:
    if issubclass(cls, E.MissingFileError):
        return cls("/data/x.parquet", "the data file", "re-download it")
    if issubclass(cls, E.DatasetFormatError):
        return cls("/data/x.parquet", "row 3 is bad", "re-export it", line=7)
    return cls("episodes has 77, which the dataset lacks; pick existing episodes")


@pytest.mark.parametrize("cls", ALL_ERRORS, ids=lambda c: c.__name__)
def test_every_error_rebuilds_from_its_message_and_pickles(cls):
    error = _example(cls)
    rebuilt = cls(str(error))  # what torch's ExceptionWrapper.reraise does in the main process
    assert type(rebuilt) is cls and str(rebuilt) == str(error)
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is cls and str(copy) == str(error) and copy.__dict__ == error.__dict__
    try:
        raise error
    except E.RobotempoError:
        wrapper = ExceptionWrapper(where="in DataLoader worker process 0")
    with pytest.raises(cls) as info:
        wrapper.reraise()
    assert str(error) in str(info.value)


@pytest.fixture()
def broken_video_dataset(v21_video_dataset, tmp_path):
    root = tmp_path / "ds"
    shutil.copytree(v21_video_dataset, root)
    video = root / "videos/chunk-000/observation.images.top/episode_000002.mp4"
    video.write_bytes(video.read_bytes()[:600])  # a damaged download: FFmpeg cannot read it
    return root, video


@pytest.mark.parametrize("context", ["fork", "spawn"])
def test_a_worker_error_reaches_the_loop_typed_with_its_message(broken_video_dataset, context):
    root, video = broken_video_dataset
    ds = LeRobotDataset("broken", root=root)
    loader = torch.utils.data.DataLoader(
        ds, batch_size=8, num_workers=1, collate_fn=collate, multiprocessing_context=context
    )
    with pytest.raises(E.VideoDecodeError) as info:
        for _ in loader:
            pass
    message = str(info.value)
    assert "DataLoader worker" in message and str(video) in message and "Fix:" in message
