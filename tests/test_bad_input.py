"""R3: every corrupted dataset / bad argument in the catalog raises a typed error naming the file, the
value and the fix, whether at open or while reading the items, and no file of the dataset changes. The
issue-9 classes (tests/bad_input_classes.py) also run here; its `CORRECT_CASES` must serve exactly the
pristine dataset's items."""

from __future__ import annotations

import hashlib
import os
import shutil
import stat

import numpy as np
import pytest
import torch
from bad_input_catalog import CASES
from bad_input_classes import CLASS_CASES, CORRECT_CASES

from robotempo.dataset import LeRobotDataset
from robotempo.errors import DatasetFormatError, RobotempoError
from robotempo.synth import write_synthetic

BASES = {
    "v2.1": {"version": "v2.1", "camera": "image"},
    "v3.0": {"version": "v3.0", "camera": "image"},
    "v2.1-video": {"version": "v2.1", "camera": "video", "mean_length": 20.0},
    "v3.0-video": {"version": "v3.0", "camera": "video", "mean_length": 20.0},
}
ALL = CASES + CLASS_CASES


@pytest.fixture(scope="module")
def bases(tmp_path_factory):
    out = {}
    for name, args in BASES.items():
        root = tmp_path_factory.mktemp(f"base-{name}") / "ds"
        write_synthetic(root, n_episodes=4, n_tasks=2, image_size=(32, 32), fps=10, seed=7, **args)
        LeRobotDataset("base", root=root)  # writes meta/speed_percentiles.jsonl, the one file robotempo adds
        out[name] = root
    return out


def checksums(root) -> dict:
    """Content of every regular file, target of every symlink, kind of anything else (never opened)."""
    sums = {}
    for dirpath, dirs, files in os.walk(root):
        for name in files + dirs:
            p = os.path.join(dirpath, name)
            mode = os.lstat(p).st_mode
            if stat.S_ISLNK(mode):
                sums[p] = "-> " + os.readlink(p)
            elif stat.S_ISREG(mode):
                with open(p, "rb") as f:
                    sums[p] = hashlib.sha1(f.read()).hexdigest()
            else:
                sums[p] = stat.S_IFMT(mode)
    return sums


def read_all(ds: LeRobotDataset) -> list[dict]:
    items = []
    for start in range(0, len(ds), 64):
        batch = ds.__getitems__(list(range(start, min(len(ds), start + 64))))
        items += [batch[i] for i in range(len(batch))]
    return items


def test_the_catalog_is_large_enough():
    assert len(CASES) >= 30 and len(CLASS_CASES) >= 60
    names = [c.name for c in ALL + CORRECT_CASES]
    assert len(set(names)) == len(names)
    for cls in "123456":
        assert sum(c.name.startswith(cls + " ") for c in CLASS_CASES) >= 3, f"class {cls}"


@pytest.mark.parametrize("case", ALL, ids=[c.name for c in ALL])
def test_bad_input_raises_a_typed_error(case, bases, tmp_path):
    root = tmp_path / "ds"
    shutil.copytree(bases[case.version], root)
    if case.corrupt is not None:
        case.corrupt(root)
    before = checksums(root)
    with pytest.raises(RobotempoError) as info:
        read_all(LeRobotDataset("bad", root=root, **case.kwargs))
    err = info.value
    assert isinstance(err, case.error), f"{type(err).__name__}: {err}"
    message = str(err)
    for needle in case.names:
        assert needle in message, f"{needle!r} not in {message!r}"
    if isinstance(err, DatasetFormatError):
        assert "Fix:" in message and str(err.path).startswith(str(root))
    assert checksums(root) == before


@pytest.mark.parametrize("case", CORRECT_CASES, ids=[c.name for c in CORRECT_CASES])
def test_lossless_disagreements_serve_the_pristine_items(case, bases, tmp_path):
    root = tmp_path / "ds"
    shutil.copytree(bases[case.version], root)
    case.corrupt(root)
    before = checksums(root)
    got = read_all(LeRobotDataset("cast", root=root))
    want = read_all(LeRobotDataset("pristine", root=bases[case.version]))
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert g.keys() == w.keys()
        for key, value in w.items():
            if isinstance(value, torch.Tensor):
                assert g[key].dtype == value.dtype and torch.equal(g[key], value), key
            else:
                assert g[key] == value, key
    assert checksums(root) == before
    assert np.all(np.isfinite(got[0]["observation.state"].numpy()))


def test_video_window_messages_print_plain_numbers(tmp_path):
    """They printed numpy reprs: 'from_timestamp np.float64(1.2) .. (np.float64(5.8999999999999995) ..'."""
    import numpy as np

    from robotempo.format.checks import check_video_windows

    start, end = np.array([0.0, 0.7, 1.2]), np.array([0.7, 1.3, 1.8])  # episode 2 starts inside episode 1
    with pytest.raises(DatasetFormatError) as e:
        check_video_windows(
            tmp_path, "cam", np.arange(3), np.array([7, 6, 6]), np.zeros(3, np.int64), start, end, fps=10
        )
    message = str(e.value)
    assert "np." not in message and "from_timestamp 1.2 .. to_timestamp 1.8" in message
    assert "overlaps the window of episode 1 (0.7 .. 1.3)" in message, message


def test_a_video_fps_other_than_the_datasets_says_re_encode_as_well(bases, tmp_path):
    """Its fix said only 'set video.fps to 10': for a video that really runs at 30 fps, doing so led to a
    second error asking to re-encode."""
    import json

    root = tmp_path / "ds"
    shutil.copytree(bases["v3.0-video"], root)
    info = json.loads((root / "meta/info.json").read_text())
    camera = next(k for k, f in info["features"].items() if f["dtype"] == "video")
    info["features"][camera].setdefault("info", {})["video.fps"] = 3 * info["fps"]
    (root / "meta/info.json").write_text(json.dumps(info))
    with pytest.raises(DatasetFormatError, match="video.fps=") as e:
        LeRobotDataset("x", root=root)
    assert "re-encode it at" in str(e.value) and f"set video.fps to {info['fps']:g}" in str(e.value)
