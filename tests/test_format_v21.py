"""The v2.1 episode table: the whole-file fast path gives exactly what the strict per-line parser gives."""

from __future__ import annotations

import json

import numpy as np
import pytest

from robotempo.format.v21 import _fast_episodes, _strict_episodes

ROWS = [
    {"episode_index": 0, "tasks": ["pick up the red block"], "length": 11},
    {"episode_index": 1, "tasks": ['say "hi"', "second task"], "length": 7},  # escaped quote, two tasks
    {"episode_index": 2, "tasks": ["ouvrir le tiroir \u00e9 \u2192"], "length": 3},  # \\u escapes
    {"length": 9, "episode_index": 3, "tasks": ["pick up the red block"]},  # another key order
    {"episode_index": 4, "tasks": ["pick up the red block"], "length": 5, "success": True, "quality": 4},
    {"episode_index": 5, "tasks": [], "length": 2},  # no task
]


def _decoded(parsed):
    episodes, lengths, codes, names = parsed
    return episodes.tolist(), lengths.tolist(), [names[c] if c >= 0 else None for c in codes]


@pytest.mark.parametrize("ensure_ascii", [True, False])
@pytest.mark.parametrize("trailing_newline", [True, False])
@pytest.mark.parametrize("rows", [ROWS, ROWS[:1], [r for r in ROWS if r["tasks"]]])
def test_fast_path_equals_the_strict_parser(tmp_path, rows, ensure_ascii, trailing_newline):
    text = "\n".join(json.dumps(r, ensure_ascii=ensure_ascii) for r in rows) + (
        "\n" if trailing_newline else ""
    )
    path = tmp_path / "episodes.jsonl"
    path.write_text(text, encoding="utf-8")
    strict = _decoded(_strict_episodes(path.read_bytes(), path))
    fast = _fast_episodes(path.read_bytes())
    if fast is not None:  # None means "unusual: let the strict parser decide", always allowed
        assert _decoded(fast) == strict
    assert strict[2][1 if len(rows) > 1 else 0] in ('say "hi"', "pick up the red block")


def test_canonical_files_take_the_fast_path(tmp_path):
    rows = [{"episode_index": i, "tasks": [f"task {i % 3}"], "length": 10 + i} for i in range(50)]
    data = "".join(json.dumps(r) + "\n" for r in rows).encode()
    episodes, lengths, codes, names = _fast_episodes(data)
    assert episodes.tolist() == list(range(50)) and lengths.tolist() == [10 + i for i in range(50)]
    assert [names[c] for c in codes] == [f"task {i % 3}" for i in range(50)]
    assert isinstance(codes, np.ndarray)


@pytest.mark.parametrize("bad", [b"not json\n", b"\n", b'{"episode_index": 9, "length": 3}\n'])
def test_anything_odd_falls_back(bad):
    good = b'{"episode_index": 0, "tasks": ["a"], "length": 4}\n'
    assert _fast_episodes(good + bad) is None
