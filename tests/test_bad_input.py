"""R3: every corrupted dataset / bad argument in the catalog raises a typed error naming the file, the
value and the fix, and no file of the dataset changes."""

from __future__ import annotations

import hashlib
import os
import shutil

import pytest
from bad_input_catalog import CASES

from robotempo.dataset import LeRobotDataset
from robotempo.errors import DatasetFormatError, RobotempoError
from robotempo.synth import write_synthetic


@pytest.fixture(scope="module")
def bases(tmp_path_factory):
    out = {}
    for version in ("v2.1", "v3.0"):
        root = tmp_path_factory.mktemp(f"base-{version}") / "ds"
        write_synthetic(
            root,
            version=version,
            n_episodes=4,
            n_tasks=2,
            camera="image",
            image_size=(32, 32),
            fps=10,
            seed=7,
        )
        out[version] = root
    return out


def checksums(root) -> dict:
    sums = {}
    for dirpath, _, files in os.walk(root):
        for name in files:
            p = os.path.join(dirpath, name)
            with open(p, "rb") as f:
                sums[p] = hashlib.sha1(f.read()).hexdigest()
    return sums


def test_the_catalog_is_large_enough():
    assert len(CASES) >= 30
    assert len({c.name for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input_raises_a_typed_error(case, bases, tmp_path):
    root = tmp_path / "ds"
    shutil.copytree(bases[case.version], root)
    if case.corrupt is not None:
        case.corrupt(root)
    before = checksums(root)
    with pytest.raises(RobotempoError) as info:
        LeRobotDataset("bad", root=root, **case.kwargs)
    err = info.value
    assert isinstance(err, case.error), f"{type(err).__name__}: {err}"
    message = str(err)
    for needle in case.names:
        assert needle in message, f"{needle!r} not in {message!r}"
    if isinstance(err, DatasetFormatError):
        assert "Fix:" in message and str(err.path).startswith(str(root))
    assert checksums(root) == before
