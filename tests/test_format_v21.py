"""The v2.1 episode table: the whole-file fast path gives exactly what the strict per-line parser gives."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from robotempo.errors import DatasetFormatError
from robotempo.format import v21_columnar
from robotempo.format.v21 import _fast_episodes, _strict_episodes
from robotempo.format.v21_columnar import parse_canonical

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
    assert parse_canonical(data) is not None
    episodes, lengths, codes, names = _fast_episodes(data)
    assert episodes.tolist() == list(range(50)) and lengths.tolist() == [10 + i for i in range(50)]
    assert [names[c] for c in codes] == [f"task {i % 3}" for i in range(50)]
    assert isinstance(codes, np.ndarray)


@pytest.mark.parametrize("bad", [b"not json\n", b"\n", b'{"episode_index": 9, "length": 3}\n'])
def test_anything_odd_falls_back(bad):
    good = b'{"episode_index": 0, "tasks": ["a"], "length": 4}\n'
    assert _fast_episodes(good + bad) is None


def _canonical(rows) -> bytes:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode()


@pytest.mark.parametrize("trailing_newline", [True, False])
def test_columnar_parse_equals_the_strict_parser(tmp_path, trailing_newline):
    rng = np.random.default_rng(0)
    tasks = ["pick up the red block", "", "ouvrir le tiroir é →", "a" * 70, "x,y: {z}"]
    episodes = np.concatenate([np.arange(12), rng.integers(0, 10**7, 300), [9_999_999]])
    rows = [
        {"episode_index": int(e), "tasks": [tasks[i % len(tasks)]], "length": int(rng.integers(1, 10**7))}
        for i, e in enumerate(np.unique(episodes))
    ]
    rows[0]["length"], rows[1]["length"] = 1, 9_999_999
    data = _canonical(rows)
    data = data if trailing_newline else data[:-1]
    columnar = parse_canonical(data)
    assert columnar is not None
    assert _decoded(columnar) == _decoded(_strict_episodes(data, tmp_path / "episodes.jsonl"))
    assert sorted(columnar[3]) == sorted(tasks)


LINE = '{"episode_index": 7, "tasks": ["open the drawer"], "length": 42}'


@pytest.mark.parametrize(
    "odd",
    [
        LINE.replace("drawer", 'dr\\"awer'),  # an escape
        LINE + "\r",  # CRLF
        LINE.replace(": 42", ":\t42"),  # a tab
        LINE.replace("}", ', "success": true}'),  # another key
        LINE.replace('"]', '", "close it"]'),  # two tasks
        LINE.replace("42", "012"),  # a leading zero (not JSON)
        LINE.replace("7", "12345678"),  # 8 digits: the regular expressions take it
        LINE.replace("42", "-4"),
        '{"length": 42, "episode_index": 7, "tasks": ["open the drawer"]}',  # another key order
        LINE.replace('["open the drawer"]', "[]"),  # no task
        "",  # a blank line
    ],
)
def test_anything_not_canonical_leaves_the_columnar_parse(tmp_path, odd):
    data = (LINE.replace("7", "6") + "\n" + odd + "\n" + LINE.replace("7", "8") + "\n").encode()
    assert parse_canonical(data) is None
    strict = None
    try:
        strict = _decoded(_strict_episodes(data, tmp_path / "episodes.jsonl"))
    except DatasetFormatError:
        pass
    fast = _fast_episodes(data)
    if fast is not None:  # the regular expressions may still take it, and must agree with the strict parser
        assert _decoded(fast) == strict


def test_two_tasks_with_one_hash_are_never_merged(monkeypatch):
    rows = [{"episode_index": i, "tasks": [f"task {i % 3}"], "length": 5} for i in range(9)]
    monkeypatch.setattr(v21_columnar, "_digest", lambda parts: np.zeros(len(parts[0]), dtype=np.uint64))
    assert parse_canonical(_canonical(rows)) is None  # every string collides: refused, not merged
    same = [{"episode_index": i, "tasks": ["one task"], "length": 5} for i in range(9)]
    assert [t for t in parse_canonical(_canonical(same))[3]] == ["one task"]


@pytest.mark.parametrize("slice_bytes", [64, 100, 257, 1 << 18])
@pytest.mark.parametrize("trailing_newline", [True, False])
def test_reading_in_slices_equals_the_whole_file(tmp_path, monkeypatch, slice_bytes, trailing_newline):
    """A local file is parsed slice by slice (its lines cut anywhere); a line longer than a slice makes the
    slice parse give up, never misread."""
    rows = [
        {"episode_index": i, "tasks": [["pick", "place it", "ouvrir é"][i % 3]], "length": 1 + i * 7}
        for i in range(200)
    ]
    data = _canonical(rows)
    data = data if trailing_newline else data[:-1]
    path = tmp_path / "episodes.jsonl"
    path.write_bytes(data)
    monkeypatch.setattr(v21_columnar, "_SLICE", slice_bytes)
    with path.open("rb") as f:
        sliced = parse_canonical(f)
    if slice_bytes < max(len(line) + 1 for line in data.splitlines()):
        assert sliced is None
    else:
        assert _decoded(sliced) == _decoded(parse_canonical(data)) == _decoded(_strict_episodes(data, path))


def test_a_file_of_exactly_one_slice(tmp_path, monkeypatch):
    line = b'{"episode_index": 0, "tasks": ["a task"], "length": 12}\n'
    path = tmp_path / "episodes.jsonl"
    path.write_bytes(line * 4)
    monkeypatch.setattr(v21_columnar, "_SLICE", len(line) * 2)  # the file ends on a slice's last byte
    with path.open("rb") as f:
        assert _decoded(parse_canonical(f)) == ([0, 0, 0, 0], [12] * 4, ["a task"] * 4)


def test_the_shortest_canonical_line_ends_the_file(tmp_path):
    shortest = b'{"episode_index": 1, "tasks": [""], "length": 1}'
    data = b'{"episode_index": 0, "tasks": ["a"], "length": 2}\n' + shortest
    assert len(shortest) == v21_columnar._SHORTEST
    assert _decoded(parse_canonical(data)) == ([0, 1], [2, 1], ["a", ""])
    assert _decoded(parse_canonical(data)) == _decoded(_strict_episodes(data, tmp_path / "episodes.jsonl"))


_TASKS = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters='"\\'), max_size=12)
_ROWS = st.lists(
    st.tuples(st.integers(0, 10**8), st.sampled_from([0, 1, 9, 10**7 - 1, 10**7, 10**9]), _TASKS),
    min_size=1,
    max_size=12,
)


_BYTES = st.one_of(st.sampled_from(list(b'0123456789 {}[]",:-\n\t\\')), st.integers(0, 255))


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    rows=_ROWS,
    cut=st.integers(0, 2000),
    byte=_BYTES,
    action=st.sampled_from(["keep", "drop", "put", "lead"]),
)
def test_the_columnar_parse_never_misreads(rows, cut, byte, action):
    """Canonical text, then maybe one byte dropped or overwritten anywhere: the columnar parse either gives
    up (None) or gives exactly what `json.loads` reads from every line; it never reads something else."""
    data = bytearray(_canonical([{"episode_index": e, "tasks": [t], "length": n} for e, n, t in rows]))
    at = cut % len(data)
    numbers = [i for i in range(2, len(data)) if data[i - 2 : i] == b": " and chr(data[i]).isdigit()]
    if action == "drop":
        del data[at]
    elif action == "put":
        data[at] = byte
    elif action == "lead":  # a number's first digit: a leading zero, a sign, a space, another digit
        data[numbers[cut % len(numbers)]] = b"0- 7"[byte % 4]
    parsed = parse_canonical(bytes(data))
    plain = all(n < 10**7 and e < 10**7 and min(t, default=" ") >= " " for e, n, t in rows)
    if action == "keep" and plain:  # up to 7 digits, nothing JSON escapes: the columnar parse's to take
        assert parsed is not None
    if parsed is None:
        return
    lines = [json.loads(line) for line in bytes(data).decode().split("\n") if line]  # raises if not JSON
    assert all(list(line) == ["episode_index", "tasks", "length"] for line in lines)
    assert _decoded(parsed) == (
        [line["episode_index"] for line in lines],
        [line["length"] for line in lines],
        [line["tasks"][0] for line in lines],
    )


def test_json_lines_break_at_newlines_only(tmp_path):
    """A task string may hold U+2028, U+0085 or U+001C raw (OpenTau's jsonlines writes non-ASCII raw):
    str.splitlines() cut such a line in two and a valid file was refused. A dataset whose tasks.jsonl,
    episodes.jsonl and speed file hold one opens and serves the string whole."""

    from robotempo import LeRobotDataset
    from robotempo.io import parse_jsonl
    from robotempo.synth import write_synthetic

    odd = "wipe\u2028the\u0085table\u001c now"
    text = json.dumps({"task_index": 0, "task": odd}, ensure_ascii=False) + "\r\n\n"
    assert parse_jsonl(text.encode(), "t", "fix") == [(1, {"task_index": 0, "task": odd})]
    root = tmp_path / "ds"
    write_synthetic(root, version="v2.1", n_episodes=12, n_tasks=1, camera=None, seed=3)
    meta = root / "meta"
    (meta / "tasks.jsonl").write_text(json.dumps({"task_index": 0, "task": odd}, ensure_ascii=False) + "\n")
    rows = [json.loads(line) for line in (meta / "episodes.jsonl").read_text().splitlines()]
    (meta / "episodes.jsonl").write_text(
        "".join(json.dumps({**r, "tasks": [odd]}, ensure_ascii=False) + "\n" for r in rows)
    )
    first = LeRobotDataset("t", root=root)
    assert first[0]["task"] == odd
    written = (meta / "speed_percentiles.jsonl").read_text(encoding="utf-8")
    row = json.loads(written.split("\n")[0])
    row["task"] = odd  # as OpenTau writes it: raw, not \u-escaped
    (meta / "speed_percentiles.jsonl").write_text(json.dumps(row, ensure_ascii=False) + "\n")
    again = LeRobotDataset("t", root=root)
    assert again[0]["speed"] == first[0]["speed"] and again[0]["task"] == odd


def test_a_byte_order_mark_is_not_content(tmp_path):
    """A JSON-lines file saved by a Windows editor starts with a UTF-8 byte-order mark: its first line was an
    invalid JSON line, while info.json with one was read (json.loads of bytes skips it)."""
    from robotempo import LeRobotDataset
    from robotempo.synth import write_synthetic

    root = tmp_path / "ds"
    write_synthetic(root, version="v2.1", n_episodes=4, n_tasks=2, camera=None, seed=3)
    plain = LeRobotDataset("t", root=root, speed_labels=False)
    for name in ("episodes.jsonl", "tasks.jsonl", "info.json"):
        path = root / "meta" / name
        path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    marked = LeRobotDataset("t", root=root, speed_labels=False)
    assert len(marked) == len(plain) and marked[5]["task"] == plain[5]["task"]
