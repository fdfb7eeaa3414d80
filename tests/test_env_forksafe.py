"""The strict environment-knob parser and the per-process state helper."""

from __future__ import annotations

import multiprocessing as mp
import pickle

import pytest

from robotempo.env import env_float, env_int
from robotempo.errors import ConfigError
from robotempo.forksafe import ProcessLocal
from robotempo.store import heavy
from robotempo.store.parquet import ParquetFiles
from robotempo.video.cache import VideoDecoderCache


def test_env_int_and_float(monkeypatch):
    monkeypatch.delenv("ROBOTEMPO_X", raising=False)
    assert env_int("ROBOTEMPO_X", 7) == 7
    monkeypatch.setenv("ROBOTEMPO_X", " 12 ")
    assert env_int("ROBOTEMPO_X", 7) == 12
    monkeypatch.setenv("ROBOTEMPO_X", "")
    assert env_int("ROBOTEMPO_X", 7) == 7
    monkeypatch.setenv("ROBOTEMPO_X", "2.5")
    assert env_float("ROBOTEMPO_X", 1.0) == 2.5


@pytest.mark.parametrize("value", ["zero", "0", "-3", "1.5"])
def test_env_int_rejects_with_name_value_and_fix(monkeypatch, value):
    monkeypatch.setenv("ROBOTEMPO_X", value)
    with pytest.raises(ConfigError) as e:
        env_int("ROBOTEMPO_X", 8)
    assert "ROBOTEMPO_X" in str(e.value) and repr(value) in str(e.value) and "Fix:" in str(e.value)


@pytest.mark.parametrize("value", ["lots", "nan", "inf", "-1"])
def test_env_float_rejects(monkeypatch, value):
    monkeypatch.setenv("ROBOTEMPO_X", value)
    with pytest.raises(ConfigError, match="ROBOTEMPO_X"):
        env_float("ROBOTEMPO_X", 256.0)


@pytest.mark.parametrize(
    ("name", "make"),
    [
        ("ROBOTEMPO_PARQUET_HANDLES", lambda: ParquetFiles()),
        ("ROBOTEMPO_VIDEO_CACHE_SIZE", lambda: VideoDecoderCache()),
    ],
)
def test_cache_knobs_fail_loudly(monkeypatch, name, make):
    monkeypatch.setenv(name, "many")
    with pytest.raises(ConfigError, match=name):
        make()


def test_heavy_cache_knob_fails_loudly(monkeypatch):
    monkeypatch.setattr(heavy, "_default_heavy_cache", None)  # the process-wide cache, built on first use
    monkeypatch.setenv("ROBOTEMPO_HEAVY_CACHE_MB", "big")
    with pytest.raises(ConfigError, match="ROBOTEMPO_HEAVY_CACHE_MB"):
        heavy.default_heavy_cache()


def _child(local: ProcessLocal, parent_value_id: int, queue) -> None:
    value = local.get()
    queue.put((id(value) != parent_value_id, local.mine() is value, value == []))


def test_process_local_is_fresh_in_a_forked_child():
    local: ProcessLocal[list] = ProcessLocal(list)
    assert local.mine() is None  # built on first use only
    value = local.get()
    value.append("parent's")
    assert local.get() is value and local.mine() is value
    ctx = mp.get_context("fork")
    queue = ctx.Queue()
    proc = ctx.Process(target=_child, args=(local, id(value), queue))
    proc.start()
    fresh, mine, empty = queue.get(timeout=30)
    proc.join(30)
    assert fresh and mine and empty
    assert local.get() == ["parent's"]


def test_process_local_does_not_pickle():
    with pytest.raises(TypeError, match="process"):
        pickle.dumps(ProcessLocal(list))
