"""A catalog of corrupted datasets and bad arguments (R3). Used by tests/test_bad_input.py and timed by
benchmarks/bench_bad_input.py. Each case corrupts a fresh copy of a small dataset written by our writer."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from robotempo import errors as E


@dataclass
class Case:
    name: str
    version: str  # "v2.1" or "v3.0": which base dataset to copy
    corrupt: (
        Callable[[Path], None] | None
    )  # edits the copy (None: the dataset is fine, the arguments are bad)
    error: type
    names: list[str]  # substrings the message must contain (the file and/or the value)
    kwargs: dict = field(default_factory=dict)


def _json(path: Path, edit: Callable[[dict], None]) -> None:
    d = json.loads(path.read_text())
    edit(d)
    path.write_text(json.dumps(d))


def info(edit: Callable[[dict], None]) -> Callable[[Path], None]:
    return lambda root: _json(root / "meta/info.json", edit)


def jsonl_line(rel: str, line: int, text: str) -> Callable[[Path], None]:
    def corrupt(root: Path) -> None:
        path = root / rel
        lines = path.read_text().splitlines()
        lines[line - 1] = text
        path.write_text("\n".join(lines) + "\n")

    return corrupt


def jsonl_edit(rel: str, line: int, edit: Callable[[dict], None]) -> Callable[[Path], None]:
    def corrupt(root: Path) -> None:
        path = root / rel
        lines = path.read_text().splitlines()
        row = json.loads(lines[line - 1])
        edit(row)
        lines[line - 1] = json.dumps(row)
        path.write_text("\n".join(lines) + "\n")

    return corrupt


def remove(rel: str) -> Callable[[Path], None]:
    def corrupt(root: Path) -> None:
        target = root / rel
        if target.is_dir():
            import shutil

            shutil.rmtree(target)
        else:
            target.unlink()

    return corrupt


def copy(source: Path, target: Path) -> None:
    target.write_bytes(source.read_bytes())


def truncate(rel: str, keep: int = 100) -> Callable[[Path], None]:
    def corrupt(root: Path) -> None:
        path = root / rel
        path.write_bytes(path.read_bytes()[:keep])

    return corrupt


def parquet_edit(rel: str, edit: Callable[[pa.Table], pa.Table]) -> Callable[[Path], None]:
    def corrupt(root: Path) -> None:
        path = root / rel
        pq.write_table(edit(pq.read_table(path)), path)

    return corrupt


def set_column(name: str, fn) -> Callable[[pa.Table], pa.Table]:
    def edit(t: pa.Table) -> pa.Table:
        return t.set_column(t.column_names.index(name), name, pa.array(fn(t.column(name).to_numpy())))

    return edit


def speed_file(text: str) -> Callable[[Path], None]:
    def corrupt(root: Path) -> None:
        (root / "meta/speed_percentiles.jsonl").write_text(text)

    return corrupt


V21_EP = "data/chunk-000/episode_000001.parquet"
V30_DATA = "data/chunk-000/file-000.parquet"
V30_META = "meta/episodes/chunk-000/file-000.parquet"
GOOD_ROW = {"task_index": 0, "task": "t", "n_episodes": 3, "percentiles": [float(i) for i in range(10)]}

CASES = [
    # meta/info.json
    Case("info.json missing", "v2.1", remove("meta/info.json"), E.MissingFileError, ["info.json"]),
    Case(
        "info.json not JSON",
        "v2.1",
        lambda r: (r / "meta/info.json").write_text('{\n  "fps": 10,\n  oops'),
        E.DatasetFormatError,
        ["info.json:3", "invalid JSON"],
    ),
    Case(
        "info.json is a list",
        "v3.0",
        lambda r: (r / "meta/info.json").write_text("[1, 2]"),
        E.DatasetFormatError,
        ["info.json", "JSON object"],
    ),
    Case(
        "unknown codebase_version",
        "v2.1",
        info(lambda d: d.update(codebase_version="v1.6")),
        E.UnsupportedVersionError,
        ["info.json", "'v1.6'", "convert"],
    ),
    Case("fps missing", "v3.0", info(lambda d: d.pop("fps")), E.DatasetFormatError, ["info.json", "'fps'"]),
    Case(
        "fps negative", "v3.0", info(lambda d: d.update(fps=-30)), E.DatasetFormatError, ["info.json", "-30"]
    ),
    Case(
        "fps is a string",
        "v2.1",
        info(lambda d: d.update(fps="30")),
        E.DatasetFormatError,
        ["info.json", "'30'"],
    ),
    Case(
        "features empty",
        "v2.1",
        info(lambda d: d.update(features={})),
        E.DatasetFormatError,
        ["info.json", "features"],
    ),
    Case(
        "feature without dtype",
        "v3.0",
        info(lambda d: d["features"]["action"].pop("dtype")),
        E.DatasetFormatError,
        ["info.json", "'action'"],
    ),
    Case(
        "feature with unknown dtype",
        "v3.0",
        info(lambda d: d["features"]["action"].update(dtype="float33")),
        E.DatasetFormatError,
        ["info.json", "'float33'"],
    ),
    Case(
        "feature with bad shape",
        "v2.1",
        info(lambda d: d["features"]["action"].update(shape=["x"])),
        E.DatasetFormatError,
        ["info.json", "'action'"],
    ),
    Case(
        "data_path with unknown field",
        "v2.1",
        info(lambda d: d.update(data_path="data/{foo}/{episode_index}.pq")),
        E.DatasetFormatError,
        ["info.json", "{foo}", "data_path"],
    ),
    Case(
        "data_path with bad format spec",
        "v3.0",
        info(lambda d: d.update(data_path="data/{chunk_index:03q}/{file_index}.parquet")),
        E.DatasetFormatError,
        ["info.json", "data_path"],
    ),
    Case(
        "video feature, video_path null",
        "v2.1",
        info(
            lambda d: (
                d.update(video_path=None) or d["features"]["observation.images.top"].update(dtype="video")
            )
        ),
        E.DatasetFormatError,
        ["info.json", "video_path"],
    ),
    Case(
        "chunks_size 0",
        "v2.1",
        info(lambda d: d.update(chunks_size=0)),
        E.DatasetFormatError,
        ["info.json", "chunks_size"],
    ),
    Case(
        "total_episodes negative",
        "v3.0",
        info(lambda d: d.update(total_episodes=-1)),
        E.DatasetFormatError,
        ["info.json", "total_episodes", "-1"],
    ),
    # v2.1 tables
    Case("tasks.jsonl missing", "v2.1", remove("meta/tasks.jsonl"), E.MissingFileError, ["tasks.jsonl"]),
    Case(
        "tasks.jsonl bad line",
        "v2.1",
        jsonl_line("meta/tasks.jsonl", 2, '{"task_index": 1, '),
        E.DatasetFormatError,
        ["tasks.jsonl:2"],
    ),
    Case(
        "tasks.jsonl duplicate task_index",
        "v2.1",
        jsonl_edit("meta/tasks.jsonl", 2, lambda r: r.update(task_index=0)),
        E.DatasetFormatError,
        ["tasks.jsonl:2", "task_index 0"],
    ),
    Case(
        "episodes.jsonl missing",
        "v2.1",
        remove("meta/episodes.jsonl"),
        E.MissingFileError,
        ["episodes.jsonl"],
    ),
    Case(
        "episodes.jsonl cut short of total_episodes",
        "v2.1",
        lambda root: (root / "meta/episodes.jsonl").write_text(
            "".join((root / "meta/episodes.jsonl").read_text().splitlines(keepends=True)[:-2])
        ),
        E.DatasetFormatError,
        ["episodes.jsonl", "total_episodes=", "2 are missing", "set total_episodes to"],
    ),
    Case(
        "meta/episodes cut short of total_episodes",
        "v3.0",
        parquet_edit(V30_META, lambda t: t.slice(0, t.num_rows - 3)),
        E.DatasetFormatError,
        ["meta/episodes", "total_episodes=", "3 are missing", "still writing", "restore the whole meta/"],
    ),
    Case(
        "episodes.jsonl bad line",
        "v2.1",
        jsonl_line("meta/episodes.jsonl", 3, "not json"),
        E.DatasetFormatError,
        ["episodes.jsonl:3", "not json"],
    ),
    Case(
        "episodes.jsonl length is a string",
        "v2.1",
        jsonl_edit("meta/episodes.jsonl", 2, lambda r: r.update(length="12")),
        E.DatasetFormatError,
        ["episodes.jsonl:2", "'12'"],
    ),
    Case(
        "episodes.jsonl length zero",
        "v2.1",
        jsonl_edit("meta/episodes.jsonl", 1, lambda r: r.update(length=0)),
        E.DatasetFormatError,
        ["episodes.jsonl:1", "length"],
    ),
    Case(
        "episodes.jsonl duplicate episode",
        "v2.1",
        jsonl_edit("meta/episodes.jsonl", 2, lambda r: r.update(episode_index=0)),
        E.DatasetFormatError,
        ["episodes.jsonl", "episode_index 0"],
    ),
    Case(
        "episodes.jsonl tasks not a list",
        "v2.1",
        jsonl_edit("meta/episodes.jsonl", 1, lambda r: r.update(tasks=[3])),
        E.DatasetFormatError,
        ["episodes.jsonl:1", "tasks"],
    ),
    Case("episode data file missing", "v2.1", remove(V21_EP), E.MissingFileError, ["episode_000001.parquet"]),
    Case(
        "episode data file truncated",
        "v2.1",
        truncate(V21_EP),
        E.DatasetFormatError,
        ["episode_000001.parquet"],
    ),
    Case(
        "metadata length lies",
        "v2.1",
        jsonl_edit("meta/episodes.jsonl", 2, lambda r: r.update(length=r["length"] + 2)),
        E.RowAlignmentError,
        ["episode_000001.parquet", "episode 1"],
    ),
    Case(
        "frame_index not contiguous",
        "v2.1",
        parquet_edit(V21_EP, set_column("frame_index", lambda a: a * 2)),
        E.TimestampError,
        ["episode_000001.parquet", "frame_index"],
    ),
    Case(
        "timestamps off the frame grid",
        "v2.1",
        parquet_edit(V21_EP, set_column("timestamp", lambda a: a * 1.5)),
        E.TimestampError,
        ["episode_000001.parquet", "timestamp"],
    ),
    Case(
        "episode_index column wrong",
        "v2.1",
        parquet_edit(V21_EP, set_column("episode_index", lambda a: a + 1)),
        E.RowAlignmentError,
        ["episode_000001.parquet", "episode_index 2"],
    ),
    Case(
        "data file lacks a default column",
        "v2.1",
        parquet_edit(V21_EP, lambda t: t.drop(["task_index"])),
        E.RowAlignmentError,
        ["episode_000001.parquet", "task_index"],
    ),
    # v3.0 tables
    Case(
        "tasks.parquet missing", "v3.0", remove("meta/tasks.parquet"), E.MissingFileError, ["tasks.parquet"]
    ),
    Case(
        "tasks.parquet lacks task_index",
        "v3.0",
        parquet_edit("meta/tasks.parquet", lambda t: t.drop(["task_index"])),
        E.DatasetFormatError,
        ["tasks.parquet", "task_index"],
    ),
    Case("episode metadata missing", "v3.0", remove("meta/episodes"), E.MissingFileError, ["meta/episodes"]),
    Case(
        "episode metadata lacks a column",
        "v3.0",
        parquet_edit(V30_META, lambda t: t.drop(["length"])),
        E.DatasetFormatError,
        [V30_META, "length"],
    ),
    Case(
        "episode metadata range disagrees with length",
        "v3.0",
        parquet_edit(V30_META, set_column("dataset_to_index", lambda a: a + 1)),
        E.DatasetFormatError,
        ["meta/episodes", "dataset_to_index"],
    ),
    Case("episode metadata truncated", "v3.0", truncate(V30_META, 50), E.DatasetFormatError, [V30_META]),
    Case(
        "episode metadata file copied beside itself",  # a file manager's copy, a second download
        "v3.0",
        lambda root: copy(root / V30_META, root / V30_META.replace("file-000", "file-000 (1)")),
        E.DatasetFormatError,
        [V30_META, "file-000 (1).parquet", "stray copy"],
    ),
    Case("v3.0 data file missing", "v3.0", remove(V30_DATA), E.MissingFileError, [V30_DATA]),
    Case(
        "v3.0 data rows shifted",
        "v3.0",
        parquet_edit(V30_DATA, set_column("index", lambda a: a + 5)),
        E.RowAlignmentError,
        [V30_DATA],
    ),
    Case(
        "v3.0 data has nulls",
        "v3.0",
        parquet_edit(
            V30_DATA,
            lambda t: t.set_column(
                t.column_names.index("observation.state"),
                "observation.state",
                pa.nulls(t.num_rows, t.schema.field("observation.state").type),
            ),
        ),
        E.DatasetFormatError,
        [V30_DATA, "null"],
    ),
    # meta/speed_percentiles.jsonl
    Case(
        "speed file bad JSON",
        "v3.0",
        speed_file(json.dumps(GOOD_ROW) + "\n{oops\n"),
        E.SpeedLabelError,
        ["speed_percentiles.jsonl", ":2"],
    ),
    Case(
        "speed file 9 boundaries",
        "v2.1",
        speed_file(json.dumps({**GOOD_ROW, "percentiles": list(range(9))}) + "\n"),
        E.SpeedLabelError,
        ["speed_percentiles.jsonl", ":1"],
    ),
    Case(
        "speed file unsorted boundaries",
        "v2.1",
        speed_file(json.dumps({**GOOD_ROW, "percentiles": [9.0] + list(range(9))}) + "\n"),
        E.SpeedLabelError,
        ["speed_percentiles.jsonl", ":1"],
    ),
    Case(
        "speed file negative boundary",
        "v3.0",
        speed_file(json.dumps({**GOOD_ROW, "percentiles": [-1.0] + list(range(1, 10))}) + "\n"),
        E.SpeedLabelError,
        ["speed_percentiles.jsonl"],
    ),
    # bad arguments on a good dataset
    Case(
        "episodes duplicated", "v3.0", None, E.SelectionError, ["[1]", "more than once"], {"episodes": [1, 1]}
    ),
    Case("episodes unknown", "v2.1", None, E.SelectionError, ["[77]"], {"episodes": [0, 77]}),
    Case("episodes not integers", "v2.1", None, E.SelectionError, ["1.5"], {"episodes": [1.5]}),
    Case("excluded unknown", "v3.0", None, E.SelectionError, ["[-4]"], {"excluded_episodes": [-4]}),
    Case(
        "selection empty",
        "v3.0",
        None,
        E.SelectionError,
        ["leaves no episode"],
        {"episodes": [0], "excluded_episodes": [0]},
    ),
    Case(
        "delta key unknown",
        "v2.1",
        None,
        E.DeltaTimestampsError,
        ["'observation.speed'"],
        {"delta_timestamps": {"observation.speed": [0.0]}},
    ),
    Case(
        "delta off the frame grid",
        "v3.0",
        None,
        E.DeltaTimestampsError,
        ["0.033"],
        {"delta_timestamps": {"action": [0.0, 0.033]}},
    ),
    Case(
        "delta not a list of numbers",
        "v3.0",
        None,
        E.DeltaTimestampsError,
        ["'soon'"],
        {"delta_timestamps": {"action": ["soon"]}},
    ),
]
