"""`open_once`: rank 0 opens, every rank gets the same dataset (real torchrun, gloo, a bucket on moto)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from robotempo import Mixture, open_once
from robotempo.errors import ConfigError
from robotempo.synth import write_synthetic

sys.path.insert(0, str(Path(__file__).parent))
from s3_server import CLEAN_ENV, Store, free_port  # noqa: E402

WORKER = Path(__file__).parent / "distributed" / "open_once_worker.py"
RANKS = 3


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    base = tmp_path_factory.mktemp("open-once")
    roots = [
        write_synthetic(
            base / f"ds{i}", version=version, n_episodes=6, n_tasks=2, camera=camera, image_size=(32, 32),
            seed=40 + i, fps=10, state_dim=3 + i, action_dim=3, mean_length=10.0,
        )
        for i, (version, camera) in enumerate([("v3.0", "video"), ("v2.1", "image"), ("v3.0", None)])
    ]  # fmt: skip
    return roots


@pytest.fixture(scope="module")
def store():
    s = Store("robotempo-open-once")
    yield s
    s.close()


def _run(spec: dict, out: Path, env_extra: dict | None = None, gate=None) -> tuple[subprocess.Popen, int]:
    """torchrun with RANKS ranks; returns the process and the requests the store saw until the open ended."""
    out.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in CLEAN_ENV}
    env.update(env_extra or {}, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(RANKS), "--master_addr",
        "127.0.0.1", "--master_port", str(free_port()), str(WORKER), json.dumps(spec), str(out),
    ]  # fmt: skip
    if gate is not None:
        gate.reset_counts()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    requests = 0
    if spec["go"]:
        deadline = time.monotonic() + 240
        while not (out / "opened").exists():
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[0][-4000:]
            time.sleep(0.05)
        requests = gate.reset_counts()[0]
        Path(spec["go"]).write_text("")
    log, _ = proc.communicate(timeout=240)
    assert proc.returncode == 0, log[-4000:]
    return proc, requests


def _results(out: Path) -> list[dict]:
    return [torch.load(out / f"rank{r}.pt", weights_only=False) for r in range(RANKS)]


def _same_items(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        if isinstance(a[key], torch.Tensor):
            assert a[key].dtype == b[key].dtype and torch.equal(a[key], b[key]), key
        else:
            assert a[key] == b[key], key


def test_without_a_process_group_it_is_the_factory(corpus):
    mix = open_once(lambda: Mixture([{"repo_id": "a", "root": str(corpus[2])}]))
    assert isinstance(mix, Mixture) and len(mix) > 0
    with pytest.raises(ConfigError, match="open_once takes a factory"):
        open_once(mix)  # the dataset itself, not a function that opens it


def test_rank0_opens_a_bucket_for_every_rank_and_every_rank_serves_the_same_items(corpus, store, tmp_path):
    urls = [store.upload(root, root.name) for root in corpus]
    specs = [{"repo_id": Path(u).name, "root": u} for u in urls]
    local = Mixture([{"repo_id": r.name, "root": str(r)} for r in corpus])
    indices = [0, 7, len(local) // 2, len(local) - 1]
    env = store.aws_environment()
    counts = {}
    for mode in ("each", "once"):
        spec = {"mode": mode, "specs": specs, "indices": indices, "go": str(tmp_path / f"go-{mode}")}
        _, counts[mode] = _run(spec, tmp_path / mode, env, store.gate)
        results = _results(tmp_path / mode)
        for r, result in enumerate(results):
            assert "error" not in result, (r, result)
            assert result["length"] == len(local)
            for i, item in zip(indices, result["items"]):
                _same_items(item, local[i])
    # One open instead of one per rank: a third of the requests, within the few the hand-over does not save.
    assert counts["once"] * (RANKS - 0.5) < counts["each"], counts


def test_an_error_of_rank0s_open_is_raised_on_every_rank_as_the_same_typed_error(corpus, tmp_path):
    specs = [{"repo_id": "a", "root": str(corpus[0])}, {"repo_id": "gone", "root": str(tmp_path / "gone")}]
    _run({"mode": "once", "specs": specs, "indices": [], "go": None}, tmp_path / "out")
    errors = [(r["error"], r["message"]) for r in _results(tmp_path / "out")]
    assert errors[0][0] in {"MissingFileError", "DatasetFormatError", "MixtureError"}, errors
    assert str(tmp_path / "gone") in errors[0][1]
    assert len(set(errors)) == 1, errors


def test_ranks_that_open_under_different_keys_raise_instead_of_swapping_datasets(corpus, tmp_path):
    specs = [{"repo_id": "a", "root": str(corpus[2])}]
    _run({"mode": "apart", "specs": specs, "indices": [0], "go": None}, tmp_path / "out")
    results = _results(tmp_path / "out")
    assert [r.get("error") for r in results] == ["DistributedError"] * RANKS, results
    assert "key=" in results[1]["message"]


def test_ranks_that_find_other_files_than_rank_0_opened_all_raise(corpus, tmp_path):
    """Per-node copies of the data at one path: rank 0's columns with another copy's files. Here rank 0's
    factory replaces the data file by a copy (a new inode) before the hand-over."""
    import shutil

    root = shutil.copytree(corpus[2], tmp_path / "copy")
    _run(
        {"mode": "moved", "specs": [{"repo_id": "a", "root": str(root)}], "indices": [0], "go": None},
        tmp_path / "out",
    )
    results = _results(tmp_path / "out")
    assert [r.get("error") for r in results] == ["DistributedError"] * RANKS, results
    assert (
        "is not the file rank 0 opened" in results[1]["message"]
        and "shared file system" in results[1]["message"]
    )


@pytest.mark.parametrize(
    "mode, match",
    [
        ("loop", "with a factory of other values"),  # a loop over a set: ranks iterate in other orders
        ("sampler", "returned a sampler"),  # it would hold rank 0's place on every rank
        ("unpicklable", "does not pickle.*module-level function"),
        ("wrapped-moved", "is not the file rank 0 opened"),  # a Subset hid the dataset from the check
        ("config", "with a factory of other values"),  # a helper reading a nested module-level config
        ("args", "with a factory of other values"),  # args.episodes of a Namespace passed to a helper
    ],
)
def test_hand_overs_that_would_serve_wrong_data_raise_on_every_rank(corpus, tmp_path, mode, match):
    """QA of open_once: a loop opening datasets at one line in another order on another rank swapped them
    silently; a sampler built in the factory drew rank 0's samples on every rank; a wrapped dataset skipped
    the files check; a lambda image transform failed as a bare AttributeError; a rank whose configuration
    (a nested module-level dict read by a helper, an argparse Namespace passed to one) selected other
    episodes got rank 0's silently."""
    import shutil

    roots = [shutil.copytree(r, tmp_path / r.name) for r in corpus[1:]]
    specs = [{"repo_id": r.name, "root": str(r)} for r in roots]
    _run({"mode": mode, "specs": specs, "indices": [0], "go": None}, tmp_path / "out")
    results = _results(tmp_path / "out")
    assert [r.get("error") for r in results] == ["DistributedError"] * RANKS, results
    assert re.search(match, results[RANKS - 1]["message"]), results[RANKS - 1]["message"]


@pytest.mark.parametrize("mode", ["config-same", "args-same"])
def test_the_same_configuration_on_every_rank_is_handed_over(corpus, tmp_path, mode):
    """The values compared are the ones the factory reads: a Namespace's local_rank, which differs on every
    rank but which the factory never reads, does not stop the hand-over."""
    specs = [{"repo_id": "a", "root": str(corpus[1])}]
    _run({"mode": mode, "specs": specs, "indices": [0], "go": None}, tmp_path / "out")
    results = _results(tmp_path / "out")
    assert all("error" not in r for r in results), results
    assert len({r["length"] for r in results}) == 1


@pytest.mark.parametrize("timeout_s", [0, -1, float("inf"), None, True])
def test_timeout_s_is_checked(timeout_s):
    with pytest.raises(ConfigError, match="timeout_s"):
        open_once(lambda: None, timeout_s=timeout_s)
