"""The writer, checked on real files read back with pyarrow and PyAV (never through robotempo's reader)."""

from __future__ import annotations

import io
import json
import signal
import subprocess
import sys
import time

import av
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from conftest import (
    SYNTH_SPECS,
    check_consistent,
    check_video_identity,
    data_file,
    episode_rows,
    hidden_files,
    read_dataset,
    video_file,
    visible_files_are_complete,
)
from PIL import Image

from robotempo.errors import WriterError
from robotempo.synth import SynthSpec, decode_frame_identity, write_synthetic
from robotempo.writer import DatasetWriter
from robotempo.writer.stats import QUANTILES

CAMERA = "observation.images.top"
FEATURES = {
    "observation.state": {"dtype": "float32", "shape": [3], "names": None},
    "reward": {"dtype": "float32", "shape": [1], "names": None},
    "cam": {"dtype": "image", "shape": [8, 8, 3], "names": None},
}


def episode(length: int = 5, value: float = 0.0) -> dict:
    return {
        "observation.state": np.full((length, 3), value, np.float32),
        "reward": np.arange(length, dtype=np.float32),
        "cam": np.full((length, 8, 8, 3), 7, np.uint8),
    }


@pytest.mark.parametrize("name", ["v21_dataset", "v30_dataset", "v21_video_dataset", "v30_video_dataset"])
def test_fixture_datasets_are_consistent_and_clean(name, request):
    root = request.getfixturevalue(name)
    assert check_consistent(root, SYNTH_SPECS[name]) == SYNTH_SPECS[name].n_episodes
    assert hidden_files(root) == []


@pytest.mark.parametrize("name", ["v21_dataset", "v30_dataset"])
def test_rows_schema_images_and_hf_features(name, request):
    root, spec = request.getfixturevalue(name), SYNTH_SPECS[name]
    info, episodes, _ = read_dataset(root)
    assert list(info["features"])[-5:] == ["timestamp", "frame_index", "episode_index", "index", "task_index"]
    for row in episodes[:3]:
        rows = episode_rows(root, info, row)
        expected, _ = spec.episode(row["episode_index"])
        ts = rows.column("timestamp").to_numpy()
        assert ts.dtype == np.float32
        np.testing.assert_array_equal(ts, (np.arange(row["length"]) / spec.fps).astype(np.float32))
        action = np.stack(rows.column("action").to_numpy(zero_copy_only=False))
        np.testing.assert_array_equal(action, expected["action"])
        for i, cell in enumerate(rows.column(CAMERA).to_pylist()):
            img = np.asarray(Image.open(io.BytesIO(cell["bytes"])))
            np.testing.assert_array_equal(img, expected[CAMERA][i])  # PNG is lossless
            assert decode_frame_identity(img) == (row["episode_index"], i)
    path = root / data_file(info, episodes[0])
    schema = pq.read_schema(path)
    assert str(schema.field("observation.state").type) == "fixed_size_list<element: float>[6]"
    assert str(schema.field(CAMERA).type) == "struct<bytes: binary, path: string>"
    hf = json.loads(schema.metadata[b"huggingface"])["info"]["features"]
    assert hf["observation.state"] == {
        "feature": {"dtype": "float32", "_type": "Value"},
        "length": 6,
        "_type": "Sequence",
    }
    assert hf[CAMERA] == {"_type": "Image"} and hf["index"] == {"dtype": "int64", "_type": "Value"}


def _row_groups_by_episode(root, info, episodes) -> list[list[list[int]]]:
    """Per data file, per row group, the episode indices it holds; asserts every group holds whole episodes
    in metadata order, so that a group boundary is always an episode boundary."""
    by_file: dict[str, list[dict]] = {}
    for row in episodes:
        by_file.setdefault(data_file(info, row), []).append(row)
    layout = []
    for path, rows in by_file.items():
        f = pq.ParquetFile(root / path)
        groups, at = [], 0
        for g in range(f.metadata.num_row_groups):
            values = f.read_row_group(g, columns=["episode_index"]).column(0).to_pylist()
            held = []
            while values:
                row = rows[at]
                assert values[: row["length"]] == [row["episode_index"]] * row["length"], (path, g)
                values, at = values[row["length"] :], at + 1
                held.append(row["episode_index"])
            groups.append(held)
        assert at == len(rows), path
        layout.append(groups)
    return layout


def test_v30_row_groups_hold_whole_episodes_and_metadata_columns(v30_video_dataset):
    root = v30_video_dataset
    info, episodes, tasks = read_dataset(root)
    assert info["data_files_size_in_mb"] == 0.009 and info["video_files_size_in_mb"] == 0.02
    layout = _row_groups_by_episode(root, info, episodes)
    assert len(layout) > 2 and all(len(groups) == 1 for groups in layout)  # ~1 KB files: one group each
    meta = pq.read_schema(next((root / "meta" / "episodes").rglob("*.parquet")))
    for column in (
        "episode_index",
        "tasks",
        "length",
        "data/chunk_index",
        "data/file_index",
        "dataset_from_index",
        "dataset_to_index",
        f"videos/{CAMERA}/chunk_index",
        f"videos/{CAMERA}/file_index",
        f"videos/{CAMERA}/from_timestamp",
        f"videos/{CAMERA}/to_timestamp",
        "meta/episodes/chunk_index",
        "meta/episodes/file_index",
        "stats/observation.state/mean",
        f"stats/{CAMERA}/std",
        "stats/index/count",
    ):
        assert column in meta.names, column
    tasks_schema = pq.read_schema(root / "meta" / "tasks.parquet")
    assert (
        tasks_schema.pandas_metadata["index_columns"] == ["task"]
        and tasks == SYNTH_SPECS["v30_video_dataset"].tasks
    )


@pytest.mark.parametrize(("camera", "target"), [(None, 1), (None, 2500), ("image", 1), ("image", 40_000)])
def test_v30_row_group_closes_at_the_episode_that_passes_the_byte_target(
    tmp_path, monkeypatch, camera, target
):
    """`target=1` is LeRobot's layout (one group per episode). Tabular episodes weigh ~1 KB here and 32x32
    image ones ~15 KB, so the other targets make groups of several. Each kind of file uses its own target:
    the other one is set to 1, which would make one group per episode."""
    from robotempo.writer import v30

    monkeypatch.setattr(v30, "IMAGE_ROW_GROUP_BYTES" if camera else "ROW_GROUP_BYTES", target)
    monkeypatch.setattr(v30, "ROW_GROUP_BYTES" if camera else "IMAGE_ROW_GROUP_BYTES", 1)
    root = write_synthetic(
        tmp_path / "ds", version="v3.0", n_episodes=40, camera=camera, image_size=(32, 32), mean_length=9.0,
        seed=5, data_files_size_in_mb=0.02 if camera is None else 0.2,
    )  # fmt: skip
    info, episodes, _ = read_dataset(root)
    layout = _row_groups_by_episode(root, info, episodes)
    sizes = {}
    for row in episodes:
        sizes[row["episode_index"]] = episode_rows(root, info, row).nbytes
    assert len(layout) > 1
    for groups in layout:
        for held in groups[:-1]:  # a file's last group closes with the file
            before = sum(sizes[e] for e in held[:-1])
            assert before < target <= before + sizes[held[-1]], (held, before, target)
    counts = [len(held) for groups in layout for held in groups]
    assert max(counts) == 1 if target == 1 else max(counts) > 1


def test_v30_row_grouping_changes_no_value(tmp_path, monkeypatch):
    from robotempo.writer import v30

    tables, groups = {}, {}
    for target in (1, 40_000):
        monkeypatch.setattr(v30, "ROW_GROUP_BYTES", target)
        monkeypatch.setattr(v30, "IMAGE_ROW_GROUP_BYTES", target)
        for camera in ("image", None):
            root = write_synthetic(
                tmp_path / f"{camera}-{target}", version="v3.0", n_episodes=40, camera=camera,
                image_size=(32, 32), mean_length=9.0, seed=5, data_files_size_in_mb=0.3,
            )  # fmt: skip
            files = sorted((root / "data").rglob("*.parquet"))
            tables[camera, target] = pa.concat_tables(pq.read_table(f) for f in files)  # rollovers may differ
            groups[camera, target] = sum(pq.ParquetFile(f).metadata.num_row_groups for f in files)
            assert tables[camera, target].num_rows == sum(r["length"] for r in read_dataset(root)[1])
    for camera in ("image", None):
        assert groups[camera, 1] == 40 and groups[camera, 40_000] < 20, (camera, groups)
        assert tables[camera, 1].equals(tables[camera, 40_000]), camera


def test_v30_image_episodes_past_the_image_target_keep_a_group_each(tmp_path):
    """At the default targets, on data like P9's image datasets (64x64, ~60 frames): one group per episode."""
    from robotempo.writer import v30

    root = write_synthetic(
        tmp_path / "ds", version="v3.0", n_episodes=10, camera="image", image_size=(64, 64), mean_length=60.0,
        seed=5,
    )  # fmt: skip
    info, episodes, _ = read_dataset(root)
    sizes = [episode_rows(root, info, row).nbytes for row in episodes]
    assert min(sizes) >= v30.IMAGE_ROW_GROUP_BYTES, sizes  # what the layout below follows from
    layout = _row_groups_by_episode(root, info, episodes)
    assert [len(held) for groups in layout for held in groups] == [1] * 10


def test_v30_files_roll_over_in_chunks_and_video_times_are_right(v30_video_dataset):
    root = v30_video_dataset
    info, episodes, _ = read_dataset(root)
    data = {(r["data/chunk_index"], r["data/file_index"]) for r in episodes}
    video = {(r[f"videos/{CAMERA}/chunk_index"], r[f"videos/{CAMERA}/file_index"]) for r in episodes}
    meta = {(r["meta/episodes/chunk_index"], r["meta/episodes/file_index"]) for r in episodes}
    assert {c for c, _ in data} == {0, 1} and len({c for c, _ in video}) >= 2 and len(meta) >= 2
    assert all(f < info["chunks_size"] for _, f in data | video)
    assert any(
        (r["data/file_index"], r["data/chunk_index"])
        != (r[f"videos/{CAMERA}/file_index"], r[f"videos/{CAMERA}/chunk_index"])
        for r in episodes
    )
    frames_before: dict[str, int] = {}
    decoded: dict[str, list[tuple[float, tuple[int, int]]]] = {}
    for row in episodes:
        path = video_file(info, row, CAMERA)
        before = frames_before.get(path, 0)
        assert row[f"videos/{CAMERA}/from_timestamp"] == before / info["fps"]
        assert row[f"videos/{CAMERA}/to_timestamp"] == (before + row["length"]) / info["fps"]
        frames_before[path] = before + row["length"]
        if path not in decoded:
            with av.open(str(root / path)) as c:
                decoded[path] = [
                    (float(f.pts * f.time_base), decode_frame_identity(f.to_ndarray(format="rgb24")))
                    for f in c.decode(video=0)
                ]
        for t in range(row["length"]):
            query = row[f"videos/{CAMERA}/from_timestamp"] + t / info["fps"]
            [ident] = [ident for pts, ident in decoded[path] if abs(pts - query) <= 1e-4]
            assert ident == (row["episode_index"], t)
    assert {p: len(d) for p, d in decoded.items()} == frames_before


def test_v21_one_mp4_per_episode(v21_video_dataset):
    root = v21_video_dataset
    info, episodes, _ = read_dataset(root)
    assert info["total_videos"] == len(episodes) and info["total_chunks"] == 1
    cam = info["features"][CAMERA]["info"]
    assert cam["video.codec"] == "h264" and cam["video.height"] == 32 and cam["has_audio"] is False
    for row in episodes:
        with av.open(str(root / video_file(info, row, CAMERA))) as c:
            ids = [decode_frame_identity(f.to_ndarray(format="rgb24")) for f in c.decode(video=0)]
        assert ids == [(row["episode_index"], t) for t in range(row["length"])]


@pytest.mark.parametrize("name", ["v21_dataset", "v30_video_dataset"])
def test_stats_match_numpy(name, request):
    root, spec = request.getfixturevalue(name), SYNTH_SPECS[name]
    info, episodes, _ = read_dataset(root)
    states, quantiles = [], []
    for row in episodes:
        ep, _ = spec.episode(row["episode_index"])
        stats = (
            row["stats"]
            if "stats" in row
            else {
                k: {s: row[f"stats/{k}/{s}"] for s in ("min", "max", "mean", "std", "count", *QUANTILES)}
                for k in ("observation.state", CAMERA)
            }
        )
        s = stats["observation.state"]
        np.testing.assert_allclose(s["mean"], ep["observation.state"].astype(np.float64).mean(0), rtol=1e-12)
        np.testing.assert_allclose(s["std"], ep["observation.state"].astype(np.float64).std(0), atol=1e-12)
        assert s["count"] == [row["length"]]
        c = stats[CAMERA]
        pixels = ep[CAMERA].reshape(-1, 3) / 255.0
        assert np.asarray(c["mean"]).shape == (3, 1, 1) and c["count"] == [row["length"]]
        np.testing.assert_allclose(np.ravel(c["mean"]), pixels.mean(0), rtol=1e-9)
        np.testing.assert_allclose(np.ravel(c["std"]), pixels.std(0), rtol=1e-6)
        np.testing.assert_allclose(np.ravel(c["max"]), pixels.max(0))
        for name, q in QUANTILES.items():  # exact per episode (LeRobot's writer approximates them)
            np.testing.assert_allclose(s[name], np.quantile(ep["observation.state"].astype(np.float64), q, 0))
            np.testing.assert_allclose(np.ravel(c[name]), np.quantile(pixels, q, 0), atol=1e-12)
        states.append(ep["observation.state"])
        quantiles.append([np.asarray(s[name]) * row["length"] for name in QUANTILES])
    total = json.loads((root / "meta" / "stats.json").read_text())
    weighted = np.sum(quantiles, axis=0) / info["total_frames"]  # LeRobot's aggregate: count-weighted mean
    for i, name in enumerate(QUANTILES):
        np.testing.assert_allclose(total["observation.state"][name], weighted[i], rtol=1e-12)
    all_states = np.concatenate(states).astype(np.float64)
    np.testing.assert_allclose(total["observation.state"]["mean"], all_states.mean(0), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(total["observation.state"]["std"], all_states.std(0), rtol=1e-9, atol=1e-12)
    assert total["index"]["count"] == [info["total_frames"]] and total["index"]["max"] == [
        info["total_frames"] - 1
    ]


@pytest.mark.parametrize(
    ("version", "data_path", "video_path", "expected"),
    [
        (
            "v2.1",
            "data/{episode_chunk:03d}/ep{episode_index:06d}.parquet",
            "vid/{video_key}/{episode_chunk}/e{episode_index}.mp4",
            ["data/001/ep000002.parquet", "vid/v/1/e2.mp4"],
        ),
        (
            "v3.0",
            "tables/c{chunk_index}/f{file_index}.parquet",
            "mp4/{video_key}/c{chunk_index}-f{file_index}.mp4",
            ["tables/c0/f1.parquet", "mp4/v/c0-f1.mp4"],
        ),
    ],
)
def test_non_default_path_templates(tmp_path, version, data_path, video_path, expected):
    features = {**FEATURES, "v": {"dtype": "video", "shape": [32, 32, 3], "names": None}}
    with DatasetWriter(
        tmp_path,
        fps=5,
        features=features,
        version=version,
        data_path=data_path,
        video_path=video_path,
        chunks_size=2,
        commit_every=1,
    ) as w:
        for e in range(3):
            w.add_episode({**episode(4, e), "v": np.zeros((4, 32, 32, 3), np.uint8)}, task="t")
    for rel in expected:
        assert (tmp_path / rel).is_file(), rel
    info, _, _ = read_dataset(tmp_path)
    assert (info["data_path"], info["video_path"]) == (data_path, video_path)
    assert check_consistent(tmp_path) == 3


def test_tasks_in_order_of_first_appearance_and_multi_task_episodes(tmp_path):
    with DatasetWriter(tmp_path, fps=10, features=FEATURES, version="v2.1") as w:
        w.add_episode(episode(), task="b")
        w.add_episode(episode(), task=["a", "b", "c"])
        w.add_episode(episode(), task="c")
    info, episodes, tasks = read_dataset(tmp_path)
    assert tasks == ["b", "a", "c"] and info["total_tasks"] == 3
    assert [r["tasks"] for r in episodes] == [["b"], ["a", "b", "c"], ["c"]]
    assert [episode_rows(tmp_path, info, r).column("task_index")[0].as_py() for r in episodes] == [0, 1, 2]


def test_scalar_feature_is_a_plain_column_and_casts_are_same_kind(tmp_path):
    with DatasetWriter(tmp_path, fps=10, features=FEATURES, version="v3.0") as w:
        w.add_episode(
            {
                **episode(),
                "observation.state": np.zeros((5, 3), np.float64),
                "reward": np.zeros((5, 1), np.float16),
            },
            task="t",
        )
    schema = pq.read_schema(next((tmp_path / "data").rglob("*.parquet")))
    assert str(schema.field("reward").type) == "float"


BAD_INPUTS = [
    ({"observation.state": np.zeros((5, 4), np.float32)}, "expected shape"),
    ({"observation.state": np.zeros((5, 3), np.int64)}, None),  # int -> float is a same-kind cast: accepted
    # a same-kind cast must also keep the values: these were stored silently as 16777216 and inf
    (
        {"observation.state": np.full((5, 3), 16777217, np.int64)},
        "16777217 at \\(0, 0\\) does not fit float32",
    ),
    ({"reward": np.full(5, 1e300)}, "1e\\+300 at \\(0,\\) does not fit float32"),
    ({"reward": np.array(["a"] * 5)}, "cannot be stored"),
    ({"cam": np.zeros((5, 8, 8, 3), np.float32)}, "uint8 frames"),
    ({"cam": np.zeros((5, 8, 9, 3), np.uint8)}, "uint8 frames"),
    ({"reward": np.zeros(4, np.float32)}, "same number of frames"),
    ({"extra": np.zeros(5)}, "unknown \\['extra'\\]"),
    (
        {
            "observation.state": np.zeros((0, 3), np.float32),
            "reward": np.zeros(0, np.float32),
            "cam": np.zeros((0, 8, 8, 3), np.uint8),
        },
        "0 frames",
    ),
]


def test_narrow_integer_features_refuse_values_they_cannot_hold(tmp_path):
    """int64 300 into an int8 feature was stored as 44, 70000 into uint16 as 4464: wrapped, silently."""
    features = {
        "small": {"dtype": "int8", "shape": [2], "names": None},
        "count": {"dtype": "uint16", "shape": [1], "names": None},  # uint32 input: a same-kind cast
    }
    with DatasetWriter(tmp_path, fps=10, features=features, version="v3.0") as w:
        with pytest.raises(WriterError, match="300 at \\(0, 0\\) does not fit int8"):
            w.add_episode({"small": np.array([[300, -1000]] * 3), "count": np.ones(3)}, task="t")
        with pytest.raises(WriterError, match="70000 at \\(2,\\) does not fit uint16"):
            counts = np.array([1, 2, 70000], np.uint32)
            w.add_episode({"small": np.ones((3, 2), np.int64), "count": counts}, task="t")
        w.add_episode(
            {"small": np.array([[127, -128]] * 3), "count": np.array([0, 1, 65535], np.uint32)}, task="t"
        )
    table = pq.read_table(next((tmp_path / "data").rglob("*.parquet")))
    assert (
        table.column("small").to_pylist()[0] == [127, -128] and table.column("count").to_pylist()[2] == 65535
    )


@pytest.mark.parametrize(("patch", "match"), BAD_INPUTS)
def test_bad_episodes_are_rejected_and_the_writer_stays_usable(tmp_path, patch, match):
    with DatasetWriter(tmp_path, fps=10, features=FEATURES, version="v3.0") as w:
        if match is None:
            w.add_episode({**episode(), **patch}, task="t")
        else:
            with pytest.raises(WriterError, match=match):
                w.add_episode({**episode(), **patch}, task="t")
        w.add_episode(episode(), task="t")
        with pytest.raises(WriterError, match="missing \\['reward'\\]"):
            w.add_episode({k: v for k, v in episode().items() if k != "reward"}, task="t")
        with pytest.raises(WriterError, match="task must be"):
            w.add_episode(episode(), task="")
    assert check_consistent(tmp_path) == (2 if match is None else 1)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"features": {"a/b": {"dtype": "float32", "shape": [1]}}}, "contains '/'"),
        ({"features": {"index": {"dtype": "int64", "shape": [1]}}}, "written by the writer"),
        ({"features": {"x": {"dtype": "float32", "shape": [2, 2]}}}, "2 dimensions"),
        ({"features": {"x": {"dtype": "string", "shape": [1]}}}, "not supported|unknown dtype"),
        ({"features": {"x": {"dtype": "video", "shape": [3, 8, 8]}}}, "height, width, 3"),
        ({"features": {}}, "non-empty"),
        ({"version": "v2.0"}, "version"),
        ({"fps": 0}, "fps"),
        ({"data_path": "data/{chunk_index}.parquet", "version": "v2.1"}, "data_path template"),
        ({"video_codec": "vp9", "features": {"v": {"dtype": "video", "shape": [8, 8, 3]}}}, "vp9"),
        ({"chunks_size": 0}, "chunks_size"),
        ({"png_compress_level": 10}, "png_compress_level"),
        # found by an exploratory run: each was accepted, then lost data or wrote something no reader reads
        ({"fps": 1e7}, "fps must be a number in .*Fix: pass the frame rate"),  # not 'repair meta/info.json'
        ({"features": {"task": {"dtype": "float32", "shape": [2]}}}, "another value under this key"),
        ({"features": {"speed": {"dtype": "float32", "shape": [1]}}}, "another value under this key"),
        ({"features": {"..": {"dtype": "video", "shape": [8, 8, 3]}}}, "not a usable folder name"),
        ({"features": {"x": {"dtype": "float32", "shape": [2.5]}}}, "bad shape"),
        ({"features": {"x": {"dtype": "float32", "shape": [2], "names": ["a", "b", "c"]}}}, "do not name"),
        ({"features": {"x": {"dtype": "float32", "shape": [2], "names": "ab"}}}, "do not name"),
        ({"features": {"x": {"dtype": "longdouble", "shape": [1]}}}, "not supported"),
        ({"features": {"v": {"dtype": "video", "shape": [31, 48, 3]}}}, "even height and width"),
    ],
)
def test_bad_writer_options(tmp_path, kwargs, match):
    with pytest.raises(WriterError, match=match):
        DatasetWriter(tmp_path / "ds", **{"fps": 10, "features": FEATURES, **kwargs})
    assert not (tmp_path / "ds").exists()


def test_refuses_an_existing_dataset_and_a_closed_writer(v30_dataset, tmp_path):
    with pytest.raises(WriterError, match="already holds a dataset"):
        DatasetWriter(v30_dataset, fps=10, features=FEATURES)
    w = DatasetWriter(tmp_path, fps=10, features=FEATURES)
    w.finalize()
    w.finalize()
    with pytest.raises(WriterError, match="closed"):
        w.add_episode(episode(), task="t")
    assert read_dataset(tmp_path)[0]["total_episodes"] == 0


@pytest.mark.parametrize("version", ["v2.1", "v3.0"])
def test_commit_publishes_and_abort_keeps_the_last_commit(tmp_path, version):
    w = DatasetWriter(tmp_path, fps=10, features=FEATURES, version=version, commit_every=100)
    w.add_episode(episode(), task="t")
    assert not (tmp_path / "meta" / "info.json").exists()
    staged = [p.name for p in hidden_files(tmp_path)]
    assert not list(tmp_path.rglob("*.parquet")) and ".robotempo-writer.lock" in staged
    assert len(staged) == 2  # the writer's lock and the staged episode file
    w.commit()
    w.add_episode(episode(3), task="u")
    assert check_consistent(tmp_path) == 1 and read_dataset(tmp_path)[2] == ["t"]
    with pytest.raises(RuntimeError), w:
        w.add_episode(episode(4), task="u")
        raise RuntimeError("boom")
    assert check_consistent(tmp_path) == 1 and hidden_files(tmp_path) == []
    if version == "v3.0":  # the commit closed file-000; the aborted episodes never made file-001 visible
        assert [p.name for p in tmp_path.rglob("*.parquet") if "data" in p.parts] == ["file-000.parquet"]


_KILLED_SPEC = {
    "n_episodes": 20,
    "n_tasks": 3,
    "camera": "video",
    "image_size": (32, 32),
    "mean_length": 20,
    "state_dim": 4,
    "action_dim": 4,
    "seed": 9,
}
_KILLED_WRITER = {
    "fps": 10,
    "commit_every": 3,
    "data_files_size_in_mb": 0.004,
    "video_files_size_in_mb": 0.003,
}
_CHILD = f"""
import json, sys
from robotempo.synth import SynthSpec
from robotempo.writer import DatasetWriter, v30
spec = SynthSpec(**{_KILLED_SPEC!r})
writer_args = {{**{_KILLED_WRITER!r}, **json.loads(sys.argv[3])}}
v30.ROW_GROUP_BYTES = writer_args.pop("row_group_bytes", v30.ROW_GROUP_BYTES)
with DatasetWriter(sys.argv[1], features=spec.features(), version=sys.argv[2], **writer_args) as w:
    for e in range(spec.n_episodes):
        w.add_episode(*spec.episode(e))
        print(e, flush=True)
"""


# v3.0 with row groups of several episodes still buffered when the kill comes (commits every 6 episodes
# into data files of up to 50 KB, groups closed past 2 KB: 2 episodes of ~20 rows, 1.4 KB each).
_GROUPED = {"row_group_bytes": 2000, "commit_every": 6, "data_files_size_in_mb": 0.05}


@pytest.mark.parametrize(("version", "extra"), [("v2.1", {}), ("v3.0", {}), ("v3.0", _GROUPED)])
def test_sigkill_leaves_the_last_commit_and_resume_finishes_the_job(tmp_path, version, extra):
    spec = SynthSpec(**_KILLED_SPEC)
    for i, (after, delay) in enumerate([(1, 0.0), (5, 0.004), (11, 0.015)]):
        root = tmp_path / f"kill{i}"
        child = subprocess.Popen(
            [sys.executable, "-c", _CHILD, str(root), version, json.dumps(extra)],
            stdout=subprocess.PIPE,
            text=True,
        )
        for line in child.stdout:
            if int(line) >= after:
                break
        time.sleep(delay)
        child.send_signal(signal.SIGKILL)
        child.wait()
        visible_files_are_complete(root)
        assert (root / "meta" / "info.json").exists() or after < 3  # the first commit is after episode 2
        if not (root / "meta" / "info.json").exists():
            continue
        every = extra.get("commit_every", 3)
        # add_episode(after) returned: at most every - 1 episodes wait uncommitted (a data file's rollover
        # also commits, so commit points need not be multiples of `every`)
        assert check_consistent(root, spec) >= after + 2 - every
        with DatasetWriter.resume(root, commit_every=every) as w:
            for e in range(w.num_episodes, spec.n_episodes):
                w.add_episode(*spec.episode(e))
        assert check_consistent(root, spec) == spec.n_episodes and hidden_files(root) == []
        check_video_identity(root)
        if extra:  # the layout under test was made: row groups of several episodes
            layout = _row_groups_by_episode(root, *read_dataset(root)[:2])
            assert max(len(held) for groups in layout for held in groups) > 1


@pytest.mark.parametrize("version", ["v2.1", "v3.0"])
def test_resume_grows_a_dataset_and_removes_leftovers(tmp_path, version):
    with DatasetWriter(tmp_path, fps=10, features=FEATURES, version=version) as w:
        w.add_episode(episode(4, 0), task="a")
        w.add_episode(episode(5, 1), task="b")
    stale = tmp_path / "data" / "chunk-000" / ".leftover.parquet.0123.tmp"
    stale.write_bytes(b"partial")
    orphan = tmp_path / (
        "data/chunk-000/episode_000007.parquet" if version == "v2.1" else "data/chunk-000/file-009.parquet"
    )
    orphan.write_bytes(b"not referenced")
    w = DatasetWriter.resume(tmp_path)
    assert not stale.exists() and not orphan.exists()
    assert (w.num_episodes, w.num_frames, w.tasks) == (2, 9, ["a", "b"])
    w.add_episode(episode(3, 2), task="c")
    w.add_episode(episode(2, 3), task="a")
    w.finalize()
    info, episodes, tasks = read_dataset(tmp_path)
    assert check_consistent(tmp_path) == 4 and tasks == ["a", "b", "c"] and info["total_frames"] == 14
    stats = json.loads((tmp_path / "meta" / "stats.json").read_text())
    assert stats["index"]["count"] == [14] and stats["reward"]["max"] == [4.0]
    if version == "v3.0":
        assert [r["data/file_index"] for r in episodes] == [0, 0, 1, 1]
        assert [r["meta/episodes/file_index"] for r in episodes] == [0, 0, 1, 1]


def test_resume_refuses_what_it_cannot_continue(tmp_path):
    with pytest.raises(WriterError, match="cannot resume"):
        DatasetWriter.resume(tmp_path)
    with DatasetWriter(tmp_path, fps=10, features=FEATURES, version="v2.1") as w:
        w.add_episode(episode(), task="t")
        w.add_episode(episode(), task="t")
    path = tmp_path / "meta" / "episodes_stats.jsonl"
    path.write_text(path.read_text().splitlines(keepends=True)[0])
    with pytest.raises(WriterError, match="incomplete metadata"):
        DatasetWriter.resume(tmp_path)


def test_a_task_that_is_not_text_is_refused_before_anything_is_lost(tmp_path):
    """A lone surrogate passed add_episode; the commit's tasks file then raised UnicodeEncodeError and the
    abort dropped every uncommitted episode. A ragged list raised numpy's ValueError."""
    with DatasetWriter(tmp_path, fps=10, features=FEATURES, version="v3.0", commit_every=2) as w:
        w.add_episode(episode(), task="fine")
        with pytest.raises(WriterError, match="not valid text"):
            w.add_episode(episode(), task="bad \ud800 task")
        with pytest.raises(WriterError, match="do not form an array"):
            w.add_episode(
                {**episode(3), "observation.state": [[1.0, 2.0, 3.0], [1.0], [1.0, 2.0, 3.0]]}, task="t"
            )
        w.add_episode(episode(), task="fine")
    assert check_consistent(tmp_path) == 2


@pytest.mark.parametrize("version", ["v2.1", "v3.0"])
def test_a_commit_that_fails_after_publishing_takes_its_files_back(tmp_path, version, monkeypatch):
    """The disk fills while a commit writes its metadata: the data files it had published stayed, no
    metadata named them, and LeRobot (which reads every data/*/*.parquet) served their rows."""
    from robotempo.writer import v21, v30

    layout = v21.V21Layout if version == "v2.1" else v30.V30Layout
    real = layout.write_tasks
    calls = {"n": 0}

    def failing(self, tasks):
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError(28, "No space left on device")
        return real(self, tasks)

    monkeypatch.setattr(layout, "write_tasks", failing)
    w = DatasetWriter(tmp_path / "ds", fps=10, features=FEATURES, version=version, commit_every=2)
    for _ in range(2):
        w.add_episode(episode(), task="t")  # the first commit
    w.add_episode(episode(), task="t")
    with pytest.raises(OSError, match="No space"):
        w.add_episode(episode(), task="t")  # the second commit fails after publishing
    rows = sum(pq.read_metadata(p).num_rows for p in (tmp_path / "ds" / "data").rglob("*.parquet"))
    assert rows == 10 and check_consistent(tmp_path / "ds") == 2


def test_a_second_writer_on_one_folder_is_refused_while_the_first_writes(tmp_path):
    """Two writers on one folder produced one dataset mixing their rows under one metadata, accepted by
    every reader (found by an exploratory run). The first writer holds a lock for its lifetime; another
    process (or writer) is refused, and the lock goes with the first writer's finalize."""
    root = tmp_path / "ds"
    child = subprocess.Popen(
        [sys.executable, "-c", (
            "import sys, numpy as np\n"
            "from robotempo.writer import DatasetWriter\n"
            "f = {'s': {'dtype': 'float32', 'shape': [1], 'names': None}}\n"
            f"w = DatasetWriter({str(root)!r}, fps=10, features=f, version='v3.0')\n"
            "w.add_episode({'s': np.ones(3, np.float32)}, task='one')\n"
            "print('writing', flush=True)\n"
            "sys.stdin.readline()\n"
            "w.finalize()\n"
        )],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert child.stdout.readline().strip() == "writing"
        features = {"s": {"dtype": "float32", "shape": [1], "names": None}}
        with pytest.raises(WriterError, match="another DatasetWriter is writing this dataset"):
            DatasetWriter(root, fps=10, features=features, version="v3.0")
    finally:
        child.communicate("go\n", timeout=60)
    assert child.returncode == 0
    with DatasetWriter.resume(root) as w:  # the first one finished: free again
        w.add_episode({"s": np.full(2, 2.0, np.float32)}, task="two")
    assert check_consistent(root) == 2 and hidden_files(root) == []


def test_an_empty_v30_dataset_says_it_is_empty(tmp_path):
    """It said the episode metadata was missing and to re-export with LeRobot >= 0.4."""
    from robotempo import LeRobotDataset
    from robotempo.errors import DatasetFormatError

    DatasetWriter(tmp_path / "ds", fps=10, features=FEATURES, version="v3.0").finalize()
    with pytest.raises(DatasetFormatError, match="holds no episodes"):
        LeRobotDataset("x", root=tmp_path / "ds")


@pytest.mark.parametrize("fps", [7.0001, 30000 / 1001])
def test_a_fractional_frame_rate_is_encoded_exactly(tmp_path, fps):
    """The stream's rate was limit_denominator(1000) of fps: 7.0001 became 7, 30000/1001 became 19001/634,
    and frames drifted from start / fps until no reader found one within tolerance (at 7.0001 fps from
    about frame 49). Three 100-frame episodes in one v3.0 video file read back, each its own frames."""
    from robotempo import LeRobotDataset

    features = {"cam": {"dtype": "video", "shape": [16, 16, 3], "names": None}}
    with DatasetWriter(tmp_path / "ds", fps=fps, features=features, version="v3.0") as w:
        for e in range(3):
            w.add_episode({"cam": np.full((100, 16, 16, 3), 40 + 80 * e, np.uint8)}, task="t")
    ds = LeRobotDataset("x", root=tmp_path / "ds", return_uint8=True, speed_labels=False)
    levels = ds.__getitems__(list(range(len(ds)))).stacked["cam"].float().mean(dim=(1, 2, 3))
    want = torch.tensor([40.0, 120.0, 200.0]).repeat_interleave(100)
    assert torch.allclose(levels, want, atol=3)  # codec loss on a flat frame: a level or two


def test_resuming_a_dataset_written_without_quantiles_keeps_one_schema(tmp_path):
    """Datasets written before the quantiles have none: resumed, new episodes get none either, so every
    meta/episodes file has one schema (LeRobot concatenates them) and stats.json stays consistent."""
    root = tmp_path / "ds"
    with DatasetWriter(root, fps=10, features=FEATURES, version="v3.0") as w:
        w.add_episode(episode(5), task="t")
    for f in (root / "meta" / "episodes").rglob("*.parquet"):
        table = pq.read_table(f)
        pq.write_table(table.drop([c for c in table.column_names if c.split("/")[-1] in QUANTILES]), f)
    stats = json.loads((root / "meta" / "stats.json").read_text())
    (root / "meta" / "stats.json").write_text(
        json.dumps({k: {s: v for s, v in f.items() if s not in QUANTILES} for k, f in stats.items()})
    )
    with DatasetWriter.resume(root) as w:
        w.add_episode(episode(4, 1.0), task="t")
    schemas = {pq.read_schema(f).names.__repr__() for f in (root / "meta" / "episodes").rglob("*.parquet")}
    assert len(list((root / "meta" / "episodes").rglob("*.parquet"))) == 2 and len(schemas) == 1
    assert "q01" not in json.loads((root / "meta" / "stats.json").read_text())["observation.state"]
    with DatasetWriter(tmp_path / "new", fps=10, features=FEATURES, version="v3.0") as w:
        w.add_episode(episode(5), task="t")
    with DatasetWriter.resume(tmp_path / "new") as w:
        w.add_episode(episode(4, 1.0), task="t")
    total = json.loads((tmp_path / "new" / "meta" / "stats.json").read_text())["observation.state"]
    assert total["q50"] == pytest.approx([(5 * 0.0 + 4 * 1.0) / 9] * 3)
