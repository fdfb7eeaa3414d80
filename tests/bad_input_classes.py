"""Bad-input catalog, part 2: the eight classes of issue 9 (metadata, data and video that disagree).

Each case corrupts a fresh copy of a small dataset written by robotempo's writer; `tests/test_bad_input.py`
opens it AND reads every item, and asserts the typed error, its message (file, value, fix) and that no file
changed. Bases: "v2.1" / "v3.0" (embedded 32x32 images), "v2.1-video" / "v3.0-video" (H.264 32x32).
`CORRECT_CASES` are disagreements robotempo resolves exactly (lossless casts): the items must equal the
pristine dataset's.
"""

from __future__ import annotations

import io
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import av
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from bad_input_catalog import Case, info, jsonl_edit, parquet_edit, speed_file
from PIL import Image

from robotempo import errors as E

V21_EP0 = "data/chunk-000/episode_000000.parquet"
V21_EP = "data/chunk-000/episode_000001.parquet"
V21_LAST = "data/chunk-000/episode_000003.parquet"
V30_DATA = "data/chunk-000/file-000.parquet"
V30_META = "meta/episodes/chunk-000/file-000.parquet"
V21_VIDEO = "videos/chunk-000/observation.images.top/episode_000001.mp4"
V30_VIDEO = "videos/observation.images.top/chunk-000/file-000.mp4"
CAM = "observation.images.top"
WIN = f"videos/{CAM}"


def column(name: str, fn: Callable[[pa.ChunkedArray], pa.Array]) -> Callable[[pa.Table], pa.Table]:
    def edit(t: pa.Table) -> pa.Table:
        return t.set_column(t.column_names.index(name), name, fn(t.column(name)))

    return edit


def rows_of(name: str, fn: Callable[[list], list], type_: pa.DataType | None = None):
    return column(name, lambda c: pa.array(fn(c.to_pylist()), type_))


def uneven(rows: list) -> list:
    rows[0] = [*rows[0], 0.5]  # one value too many in row 0, one too few in row 1: the total still matches
    rows[1] = rows[1][:-1]
    return rows


def as_float64(c: pa.ChunkedArray) -> pa.Array:
    return c.cast(pa.list_(pa.float64(), c.type.list_size))


def as_float16(c: pa.ChunkedArray) -> pa.Array:
    return c.cast(pa.list_(pa.float16(), c.type.list_size))


def more_precise(c: pa.ChunkedArray) -> pa.Array:
    """float64 values 1e-9 off the float32 grid: what a float32 column cannot hold."""
    flat = pc.add(c.combine_chunks().flatten().cast(pa.float64()), 1e-9)
    return pa.FixedSizeListArray.from_arrays(flat, c.type.list_size)


def symlink_outside(rel: str) -> Callable[[Path], None]:
    """Replace a file by a symlink to a valid copy of it outside the root (readable: only the path is wrong)."""

    def corrupt(root: Path) -> None:
        path = root / rel
        stolen = root.parent / "stolen.parquet"
        shutil.copy(path, stolen)
        path.unlink()
        path.symlink_to(stolen)

    return corrupt


def meta30(fn: Callable[[dict[str, np.ndarray]], None]) -> Callable[[Path], None]:
    """Edit v3.0 episode-metadata columns as numpy arrays (in place), written back with their types."""

    def corrupt(root: Path) -> None:
        path = root / V30_META
        t = pq.read_table(path)
        cols = {n: t.column(n).to_numpy().copy() for n in t.column_names if not n.endswith("tasks")}
        fn(cols)
        for n, values in cols.items():
            t = t.set_column(t.column_names.index(n), n, pa.array(values, t.schema.field(n).type))
        pq.write_table(t, path)

    return corrupt


def meta30_rows(keep: slice) -> Callable[[Path], None]:
    """Only the `keep` rows of the episode metadata, and info.json's total_episodes set to their count (a
    table shorter than info.json's count is its own error, caught before the data files are read)."""

    def corrupt(root: Path) -> None:
        path = root / V30_META
        t = pq.read_table(path)
        idx = np.arange(t.num_rows)[keep]
        pq.write_table(t.take(pa.array(idx)), path)
        info(lambda d: d.update(total_episodes=len(idx)))(root)

    return corrupt


def shift(name: str, rows: list[int], delta: float) -> Callable[[dict], None]:
    def edit(cols: dict) -> None:
        cols[name][rows] += delta

    return edit


def both(*edits: Callable[[dict], None]) -> Callable[[dict], None]:
    def edit(cols: dict) -> None:
        for e in edits:
            e(cols)

    return edit


def last_episode_shorter(cols: dict) -> None:
    cols["length"][-1] -= 2
    cols["dataset_to_index"][-1] -= 2
    if f"{WIN}/to_timestamp" in cols:
        cols[f"{WIN}/to_timestamp"][-1] -= 0.2


def reencode(rel: str, fps: int = 10, size: int | None = None, drop: int = 0) -> Callable[[Path], None]:
    """Re-encode a video (another fps, frame size or fewer frames), as another tool would."""

    def corrupt(root: Path) -> None:
        path = root / rel
        with av.open(str(path)) as src:
            frames = [f.to_ndarray(format="rgb24") for f in src.decode(video=0)]
        frames = frames[: len(frames) - drop]
        height, width = (size, size) if size else frames[0].shape[:2]
        tmp = path.with_name("tmp.mp4")
        with av.open(str(tmp), "w") as out:
            stream = out.add_stream("libx264", rate=fps)
            stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
            for img in frames:
                frame = av.VideoFrame.from_ndarray(img, format="rgb24").reformat(width=width, height=height)
                out.mux(stream.encode(frame))
            out.mux(stream.encode())
        os.replace(tmp, path)

    return corrupt


def resize_images(rows: slice, size: int) -> Callable[[pa.Table], pa.Table]:
    def fn(cells: list) -> list:
        for cell in cells[rows]:
            buf = io.BytesIO()
            Image.open(io.BytesIO(cell["bytes"])).resize((size, size)).save(buf, format="PNG")
            cell["bytes"] = buf.getvalue()
        return cells

    return lambda t: rows_of(CAM, fn, t.schema.field(CAM).type)(t)


def recolour_images(rows: slice, mode: str) -> Callable[[pa.Table], pa.Table]:
    def fn(cells: list) -> list:
        for cell in cells[rows]:
            buf = io.BytesIO()
            Image.open(io.BytesIO(cell["bytes"])).convert(mode).save(buf, format="PNG")
            cell["bytes"] = buf.getvalue()
        return cells

    return lambda t: rows_of(CAM, fn, t.schema.field(CAM).type)(t)


def replace_with(rel: str, make: Callable[[Path], None]) -> Callable[[Path], None]:
    def corrupt(root: Path) -> None:
        path = root / rel
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
        make(path)

    return corrupt


def raw_info(old: str, new: str) -> Callable[[Path], None]:
    def corrupt(root: Path) -> None:
        path = root / "meta/info.json"
        text = json.dumps(json.loads(path.read_text()))
        assert old in text, old
        path.write_text(text.replace(old, new))

    return corrupt


def outside_data_path(root: Path) -> None:
    """A data_path template that climbs out of the root, to a copy of the real files (readable, valid)."""
    shutil.copytree(root / "data", root.parent / "elsewhere")
    info(
        lambda d: d.update(
            data_path="../elsewhere/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet"
        )
    )(root)


def v21_episode_names_another_task(root: Path) -> None:
    """Episode 1's task in meta/episodes.jsonl: another task of the table (its frames unchanged)."""
    tasks = [json.loads(x)["task"] for x in (root / "meta/tasks.jsonl").read_text().splitlines()]
    path = root / "meta/episodes.jsonl"
    rows = [json.loads(x) for x in path.read_text().splitlines()]
    rows[1]["tasks"] = [next(t for t in tasks if t not in rows[1]["tasks"])]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def v30_episode_names_another_task(root: Path) -> None:
    table = pq.read_table(root / "meta/tasks.parquet")
    names = table.column("task" if "task" in table.column_names else "__index_level_0__").to_pylist()
    path = root / V30_META
    t = pq.read_table(path)
    rows = t.column("tasks").to_pylist()
    rows[1] = [next(x for x in names if x not in rows[1])]
    t = t.set_column(
        t.column_names.index("tasks"), t.schema.field("tasks"), pa.array(rows, t.schema.field("tasks").type)
    )
    pq.write_table(t, path)


def tasks_jsonl_first_only(root: Path) -> None:
    path = root / "meta/tasks.jsonl"
    path.write_text(path.read_text().splitlines()[0] + "\n")


PERCENTILES = {"task_index": 0, "task": "pick up the red block", "n_episodes": 2}
F = E.FeatureMismatchError
R = E.RowAlignmentError
V = E.VideoMismatchError
D = E.DatasetFormatError
U = E.UnsafePathError
A = E.ArgumentError

CLASS_CASES = [
    # 1. types and shapes against info.json
    Case("1 list rows of uneven length", "v3.0", parquet_edit(V30_DATA, rows_of("action", uneven, pa.list_(pa.float32()))), F, [V30_DATA, "'action'", "row 0", "15 values", "[14]"]),
    Case("1 string column where float declared", "v2.1", parquet_edit(V21_EP, rows_of("observation.state", lambda r: [str(x) for x in r])), F, [V21_EP, "'observation.state'", "string", "float32"]),
    Case("1 declared feature absent from the data", "v3.0", parquet_edit(V30_DATA, lambda t: t.drop(["action"])), F, [V30_DATA, "['action']", "declared"]),
    Case("1 declared int64, data holds fractions", "v2.1", info(lambda d: d["features"]["action"].update(dtype="int64")), F, [V21_EP0, "'action'", "float32", "int64"]),
    Case("1 float64 values that float32 cannot hold", "v3.0", parquet_edit(V30_DATA, column("observation.state", more_precise)), F, [V30_DATA, "'observation.state'", "float64", "row 0"]),
    Case("1 state rewritten as float16 (narrower than declared)", "v3.0", parquet_edit(V30_DATA, column("observation.state", as_float16)), F, [V30_DATA, "'observation.state'", "float16", "narrower"]),
    Case("1 declared shape wider than the data", "v2.1", info(lambda d: d["features"]["observation.state"].update(shape=[7])), F, [V21_EP0, "'observation.state'", "[7]"]),
    Case("1 declared 2-d shape, 1-d data", "v3.0", info(lambda d: d["features"]["action"].update(shape=[2, 3])), F, [V30_DATA, "'action'", "[2, 3]"]),
    Case("1 image column holds numbers", "v2.1", parquet_edit(V21_EP, column(CAM, lambda c: pa.array(np.zeros(len(c))))), F, [V21_EP, CAM, "double"]),
    Case("1 task_index stored as strings", "v3.0", parquet_edit(V30_DATA, rows_of("task_index", lambda r: [str(x) for x in r])), F, [V30_DATA, "'task_index'", "string"]),
    # 2. lengths and offsets
    Case("2 v2.1 metadata lists fewer rows than the last file", "v2.1", jsonl_edit("meta/episodes.jsonl", 4, lambda r: r.update(length=r["length"] - 2)), R, [V21_LAST, "rows", "file holds"]),
    Case("2 v3.0 last episode of a file shortened", "v3.0", meta30(last_episode_shorter), R, [V30_DATA, "file holds"]),
    Case("2 v3.0 episode the metadata does not list", "v3.0", meta30_rows(slice(0, -1)), R, [V30_DATA, "3 episode(s)", "the file holds"]),
    Case("2 v3.0 first episode not listed", "v3.0", meta30_rows(slice(1, None)), R, [V30_DATA, "episodes [1, 2, 3]", "the file holds"]),
    Case("2 v3.0 episode boundary moved, lengths consistent", "v3.0", meta30(both(shift("length", [1], -2), shift("dataset_from_index", [1], 2))), R, [V30_DATA, "the file holds"]),
    Case("2 v3.0 boundary moved, row count kept", "v3.0", meta30(both(shift("length", [1], -2), shift("dataset_to_index", [1], -2), shift("length", [2], 2), shift("dataset_from_index", [2], -2))), R, [V30_DATA, "episode 1", "shifted"], {"episodes": [1]}),
    Case("2 v3.0 video window start shifted a frame", "v3.0-video", meta30(shift(f"{WIN}/from_timestamp", [1], 0.1)), D, ["meta/episodes", "episode 1", "from_timestamp"]),
    Case("2 v3.0 video window shifted a frame (overlap)", "v3.0-video", meta30(both(shift(f"{WIN}/from_timestamp", [1], 0.1), shift(f"{WIN}/to_timestamp", [1], 0.1))), D, ["meta/episodes", "overlaps"]),
    Case("2 v3.0 video window beyond the video's end", "v3.0-video", meta30(both(shift(f"{WIN}/from_timestamp", [-1], 0.5), shift(f"{WIN}/to_timestamp", [-1], 0.5))), V, [CAM, "ends before", "episode 3"]),
    # 3. camera frames against the declaration
    Case("3 v2.1 video re-encoded at 20 fps", "v2.1-video", reencode(V21_VIDEO, fps=20), V, [V21_VIDEO, "20 fps", "10"]),
    Case("3 v2.1 video 3 frames short", "v2.1-video", reencode(V21_VIDEO, drop=3), V, [V21_VIDEO, "ends before"]),
    Case("3 v2.1 video re-encoded at 48x48", "v2.1-video", reencode(V21_VIDEO, size=48), V, [V21_VIDEO, "48x48", "32x32"]),
    Case("3 v3.0 video re-encoded at 48x48", "v3.0-video", reencode(V30_VIDEO, size=48), V, [V30_VIDEO, "48x48"]),
    Case("3 v3.0 video re-encoded at 5 fps", "v3.0-video", reencode(V30_VIDEO, fps=5), V, [V30_VIDEO, "5 fps"]),
    Case("3 one embedded image of another size", "v3.0", parquet_edit(V30_DATA, resize_images(slice(5, 6), 16)), F, [V30_DATA, "16x16", "[32, 32, 3]"]),
    Case("3 grey image where RGB is declared", "v2.1", parquet_edit(V21_EP, recolour_images(slice(2, 3), "L")), F, [V21_EP, "32x32 L image", "[32, 32, 3]"]),
    Case("3 RGBA image where RGB is declared", "v3.0", parquet_edit(V30_DATA, recolour_images(slice(9, 10), "RGBA")), F, [V30_DATA, "RGBA", "[32, 32, 3]"]),
    Case("3 declared video shape disagrees", "v2.1-video", info(lambda d: d["features"][CAM].update(shape=[64, 64, 3])), D, ["info.json", "video.height"]),
    Case("3 declared image shape disagrees", "v3.0", info(lambda d: d["features"][CAM].update(shape=[64, 64, 3])), F, [V30_DATA, "32x32", "[64, 64, 3]"]),
    # 4. data that points at things that do not exist
    Case("4 task_index not in the task table", "v2.1", parquet_edit(V21_EP, column("task_index", lambda c: pa.array(np.full(len(c), 99)))), E.UnknownTaskError, [V21_EP, "task_index 99", "tasks.jsonl"]),
    Case("4 task table lacks a task the data uses", "v2.1", tasks_jsonl_first_only, E.UnknownTaskError, ["task_index 1", "tasks.jsonl"]),
    Case("4 v3.0 tasks.parquet lacks a task", "v3.0", parquet_edit("meta/tasks.parquet", lambda t: t.slice(0, 1)), E.UnknownTaskError, ["task_index 1", "tasks.parquet"]),
    Case("4 episode metadata names another task than its frames", "v2.1", v21_episode_names_another_task, E.TaskMismatchError, [V21_EP, "episode 1's task in meta/episodes.jsonl", "frames have task_index", "Fix:"]),
    Case("4 v3.0 episode metadata names another task than its frames", "v3.0", v30_episode_names_another_task, E.TaskMismatchError, [V30_DATA, "episode 1's task in meta/episodes/*.parquet", "frames have task_index"]),
    Case("4 episode_index the metadata does not list", "v2.1", parquet_edit(V21_EP, column("episode_index", lambda c: pa.array(np.full(len(c), 7)))), R, [V21_EP, "episode_index 7"]),
    # 5. values that overflow or are not numbers
    Case("5 fps NaN", "v2.1", raw_info('"fps": 10', '"fps": NaN'), D, ["info.json", "fps", "nan"]),
    Case("5 fps 1e300", "v3.0", info(lambda d: d.update(fps=1e300)), D, ["info.json", "1e+300"]),
    Case("5 fps 10**25", "v3.0", info(lambda d: d.update(fps=10**25)), D, ["info.json", "10000000000000000000000000"]),
    Case("5 episode length 10**25", "v2.1", jsonl_edit("meta/episodes.jsonl", 2, lambda r: r.update(length=10**25)), D, ["episodes.jsonl:2", "length"]),
    Case("5 episode_index 10**25", "v2.1", jsonl_edit("meta/episodes.jsonl", 2, lambda r: r.update(episode_index=10**25)), D, ["episodes.jsonl:2", "episode_index"]),
    Case("5 feature shape 10**25", "v2.1", info(lambda d: d["features"]["action"].update(shape=[10**25])), D, ["info.json", "'action'", "shape"]),
    Case("5 feature shape a string", "v3.0", info(lambda d: d["features"]["action"].update(shape="5")), D, ["info.json", "'action'", "'5'"]),
    Case("5 speed percentiles 1e300", "v2.1", speed_file(json.dumps({**PERCENTILES, "percentiles": [1e300] * 10}) + "\n"), E.SpeedLabelError, ["speed_percentiles.jsonl:1", "1e+300"]),
    Case("5 v3.0 episode lengths stored as strings", "v3.0", parquet_edit(V30_META, rows_of("length", lambda r: [str(x) for x in r])), D, ["meta/episodes", "'length'", "string"]),
    Case("5 v3.0 from_timestamp NaN", "v3.0-video", meta30(shift(f"{WIN}/from_timestamp", [0], float("nan"))), D, ["meta/episodes", "nan"]),
    Case("5 info.json not UTF-8", "v2.1", lambda r: (r / "meta/info.json").write_bytes(b'{"fps": "\xff"}'), D, ["info.json", "UTF-8"]),
    Case("5 video.fps in info disagrees", "v2.1-video", info(lambda d: d["features"][CAM]["info"].update({"video.fps": 1e300})), D, ["info.json", "video.fps"]),
    Case("5 tolerance_s NaN", "v2.1", None, A, ["tolerance_s", "nan"], {"tolerance_s": float("nan")}),
    Case("5 tolerance_s a string", "v3.0", None, A, ["tolerance_s", "'1e-4'"], {"tolerance_s": "1e-4"}),
    Case("5 tolerance_s a whole frame", "v2.1", None, A, ["tolerance_s", "0.1"], {"tolerance_s": 0.1}),
    Case("5 delta 1e300", "v2.1", None, E.DeltaTimestampsError, ["'action'", "1e+300"], {"delta_timestamps": {"action": [1e300]}}),
    Case("5 delta 10**25", "v3.0", None, E.DeltaTimestampsError, ["'action'", "10000000000000000000000000"], {"delta_timestamps": {"action": [10**25]}}),
    Case("5 delta string number", "v2.1", None, E.DeltaTimestampsError, ["'action'", "'0.1'"], {"delta_timestamps": {"action": ["0.1"]}}),
    Case("5 delta a string, not a list", "v3.0", None, E.DeltaTimestampsError, ["'action'", "'0.1'"], {"delta_timestamps": {"action": "0.1"}}),
    Case("5 heavy_cache_mb NaN", "v2.1", None, A, ["heavy_cache_mb", "nan"], {"heavy_cache_mb": float("nan")}),
    Case("5 video_cache_size a string", "v2.1", None, A, ["video_cache_size", "'8'"], {"video_cache_size": "8"}),
    Case("5 episodes 10**25", "v3.0", None, E.SelectionError, ["10000000000000000000000000"], {"episodes": [10**25]}),
    Case("5 return_uint8 a string", "v2.1", None, A, ["return_uint8", "'no'"], {"return_uint8": "no"}),
    Case("5 image_transforms not callable", "v3.0", None, A, ["image_transforms", "5"], {"image_transforms": 5}),
    Case("5 delta_timestamps a list", "v2.1", None, E.DeltaTimestampsError, ["delta_timestamps", "[]"], {"delta_timestamps": []}),
    Case("5 storage_options a string", "v3.0", None, E.ConfigError, ["storage_options", "'x'", "Fix:"], {"storage_options": "x"}),
    # 6. paths
    Case("6 data_path climbs out of the root", "v2.1", outside_data_path, U, ["info.json", "../elsewhere", "outside"]),
    Case("6 data_path absolute", "v2.1", info(lambda d: d.update(data_path="/etc/{episode_chunk}/{episode_index}.parquet")), U, ["info.json", "/etc/0/0.parquet"]),
    Case("6 video_path climbs out of the root", "v2.1-video", info(lambda d: d.update(video_path="../../{video_key}/{episode_chunk}/{episode_index}.mp4")), U, ["info.json", "video_path"]),
    Case("6 data file symlinked out of the root", "v2.1", symlink_outside(V21_EP), U, [V21_EP, "stolen.parquet", "outside"]),
    Case("6 video symlinked to /dev/zero", "v2.1-video", replace_with(V21_VIDEO, lambda p: p.symlink_to("/dev/zero")), U, [V21_VIDEO, "/dev/zero"]),
    Case("6 data file is a FIFO", "v2.1", replace_with(V21_EP, os.mkfifo), U, [V21_EP, "FIFO"]),
    Case("6 episodes.jsonl is a FIFO", "v2.1", replace_with("meta/episodes.jsonl", os.mkfifo), U, ["episodes.jsonl", "FIFO"]),
    Case("6 v3.0 episode metadata is a FIFO", "v3.0", replace_with(V30_META, os.mkfifo), U, [V30_META, "FIFO"]),
    Case("6 video is a FIFO", "v3.0-video", replace_with(V30_VIDEO, os.mkfifo), U, [V30_VIDEO, "FIFO"]),
    Case("6 info.json is a directory", "v3.0", replace_with("meta/info.json", os.mkdir), U, ["info.json", "directory"]),
    Case("6 data file is a directory", "v3.0", replace_with(V30_DATA, os.mkdir), U, [V30_DATA, "directory"]),
    Case("6 data file is a symlink loop", "v2.1", replace_with(V21_EP, lambda p: p.symlink_to(p.name)), U, [V21_EP, "symlink loop"]),
    Case("6 tasks.jsonl is a symlink loop", "v2.1", replace_with("meta/tasks.jsonl", lambda p: p.symlink_to(p.name)), U, ["tasks.jsonl", "symlink loop"]),
    Case("6 speed file is a FIFO", "v3.0", replace_with("meta/speed_percentiles.jsonl", os.mkfifo), U, ["speed_percentiles.jsonl", "FIFO"]),
]  # fmt: skip

CORRECT_CASES = [
    Case("state stored as float64 (exact float32 values)", "v3.0", parquet_edit(V30_DATA, column("observation.state", as_float64)), type(None), []),
    Case("one file's frame_index stored as int32", "v2.1", parquet_edit(V21_EP, column("frame_index", lambda c: c.cast(pa.int32()))), type(None), []),
    Case("first file's action stored as float64", "v2.1", parquet_edit(V21_EP0, column("action", as_float64)), type(None), []),
    Case("task_index stored as uint8", "v3.0", parquet_edit(V30_DATA, column("task_index", lambda c: c.cast(pa.uint8()))), type(None), []),
    Case("state stored as variable-length lists of 14", "v2.1", parquet_edit(V21_EP, rows_of("observation.state", list, pa.list_(pa.float32()))), type(None), []),
]  # fmt: skip
