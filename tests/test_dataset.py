"""LeRobotDataset on datasets written by our writer: selection, row alignment, deltas, batching, loaders."""

from __future__ import annotations

import json
import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from robotempo.dataset import LeRobotDataset, collate
from robotempo.errors import DeltaTimestampsError, RowAlignmentError, SelectionError, TimestampError
from robotempo.format import read_metadata
from robotempo.synth import decode_frame_identity, write_synthetic

FPS = 10
DELTAS = {"observation.state": [-0.1, 0.0], "action": [i / FPS for i in range(8)]}


def oracle(root):
    """Every row of the dataset, straight from the parquet files with pyarrow, keyed by global `index`."""
    meta = read_metadata(root)
    tables = [pq.read_table(root / f) for f in meta.episodes.data_files]
    table = pa.concat_tables(tables, promote_options="permissive")
    order = np.argsort(table.column("index").to_numpy())
    return {name: table.column(name).take(pa.array(order)) for name in table.column_names}


def value_at(column: pa.ChunkedArray, row: int) -> np.ndarray:
    return np.asarray(column[row].as_py())


@pytest.fixture(scope="module", params=["v2.1", "v3.0"])
def tabular(request, tmp_path_factory):
    root = tmp_path_factory.mktemp(f"tab-{request.param}") / "ds"
    write_synthetic(
        root,
        version=request.param,
        n_episodes=12,
        n_tasks=3,
        camera=None,
        fps=FPS,
        seed=3,
        state_dim=4,
        action_dim=3,
        data_files_size_in_mb=0.001,
    )
    return root


@pytest.fixture(scope="module")
def imaged(tmp_path_factory):
    root = tmp_path_factory.mktemp("img") / "ds"
    write_synthetic(
        root,
        version="v3.0",
        n_episodes=6,
        n_tasks=2,
        camera="image",
        image_size=(32, 32),
        fps=FPS,
        seed=4,
        state_dim=4,
        action_dim=3,
    )
    return root


def test_items_equal_the_parquet_rows(tabular):
    ds = LeRobotDataset("t", root=tabular, speed_labels=False)
    rows = oracle(tabular)
    assert len(ds) == len(rows["index"]) == ds.num_frames
    for i in range(0, len(ds), 7):
        item = ds[i]
        for key in (
            "observation.state",
            "action",
            "timestamp",
            "frame_index",
            "episode_index",
            "index",
            "task_index",
        ):
            np.testing.assert_array_equal(item[key].numpy(), value_at(rows[key], i), err_msg=key)
        assert item["task"] == ds.meta.tasks[int(item["task_index"])]
    assert ds[0]["observation.state"].dtype == torch.float32 and ds[0]["index"].dtype == torch.int64


@pytest.mark.parametrize("episodes", [[5, 2, 8], [3, 7], [11], np.array([9, 0, 4]), None])
def test_selection_keeps_the_callers_order_and_rows_align(tabular, episodes):
    """`episodes` and `episode_data_index` in the caller's order, as LeRobot keeps them (its training script
    holds out the last episodes per task in that order: QA saw other episodes held out when sorted); the
    items in the files' order, as LeRobot's."""
    ds = LeRobotDataset("t", root=tabular, episodes=episodes, speed_labels=False)
    expected = [int(e) for e in episodes] if episodes is not None else list(range(12))
    assert ds.episodes == expected
    served = ds.__getitems__(list(range(len(ds)))).stacked["episode_index"]
    assert served.tolist() == sorted(served.tolist())
    edi = ds.episode_data_index
    lengths = read_metadata(tabular).episodes.length
    for pos, ep in enumerate(expected):
        lo, hi = int(edi["from"][pos]), int(edi["to"][pos])
        assert hi - lo == lengths[ep]
        got = ds.__getitems__(list(range(lo, hi))).stacked
        assert (got["episode_index"] == ep).all()
        assert got["frame_index"].tolist() == list(range(hi - lo))


def test_excluded_episodes_win_over_inclusion(tabular):
    ds = LeRobotDataset("t", root=tabular, episodes=[1, 2, 3], excluded_episodes=[2], speed_labels=False)
    assert ds.episodes == [1, 3]
    ds = LeRobotDataset("t", root=tabular, excluded_episodes=[0, 11], speed_labels=False)
    assert ds.episodes == list(range(1, 11))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"episodes": [1, 1]}, "more than once"),
        ({"episodes": [99]}, "does not contain"),
        ({"episodes": [-1]}, "does not contain"),
        ({"episodes": [True]}, "integer"),
        ({"episodes": "3"}, "list of episode indices"),
        ({"excluded_episodes": [42]}, "does not contain"),
        ({"episodes": [2], "excluded_episodes": [2]}, "leaves no episode"),
    ],
)
def test_bad_selection_is_a_typed_error(tabular, kwargs, match):
    with pytest.raises(SelectionError, match=match):
        LeRobotDataset("t", root=tabular, speed_labels=False, **kwargs)


def test_deltas_pad_at_both_episode_ends(tabular):
    ds = LeRobotDataset("t", root=tabular, episodes=[4], delta_timestamps=DELTAS, speed_labels=False)
    n = len(ds)
    first, last = ds[0], ds[n - 1]
    assert first["observation.state_is_pad"].tolist() == [True, False]
    np.testing.assert_array_equal(first["observation.state"][0], first["observation.state"][1])  # clamped
    assert first["action_is_pad"].tolist() == [False] * 8
    assert last["action_is_pad"].tolist() == [False] + [True] * 7
    assert (last["action"][1:] == last["action"][0]).all()
    mid = ds[3]
    plain = LeRobotDataset("t", root=tabular, episodes=[4], speed_labels=False)
    np.testing.assert_array_equal(mid["observation.state"][0], plain[2]["observation.state"])
    np.testing.assert_array_equal(mid["action"][5], plain[8]["action"])
    assert mid["action"].shape == (8, 3) and mid["observation.state"].shape == (2, 4)


def test_getitems_equals_getitem(tabular):
    ds = LeRobotDataset("t", root=tabular, delta_timestamps=DELTAS, speed_labels=False)
    idx = np.random.default_rng(0).integers(0, len(ds), 40).tolist()
    batch = ds.__getitems__(idx)
    assert len(batch) == len(idx)
    for j, i in enumerate(idx):
        single = ds[i]
        assert single.keys() == batch[j].keys()
        for key, value in single.items():
            if isinstance(value, torch.Tensor):
                assert torch.equal(value, batch[j][key]), key
                assert torch.equal(value, batch.stacked[key][j]), key
            else:
                assert value == batch[j][key] == batch.stacked[key][j]


@pytest.mark.parametrize("workers", [0, 2])
def test_dataloader_workers_give_the_same_batches(tabular, workers):
    ds = LeRobotDataset("t", root=tabular, delta_timestamps=DELTAS, speed_labels=False)
    loader = torch.utils.data.DataLoader(
        ds,
        batch_size=16,
        num_workers=workers,
        collate_fn=collate,
        multiprocessing_context="fork" if workers else None,
    )
    default = torch.utils.data.DataLoader(ds, batch_size=16, num_workers=0)
    count = 0
    for a, b in zip(loader, default, strict=True):
        for key, value in b.items():
            if isinstance(value, torch.Tensor):
                assert torch.equal(a[key], value), key
            else:
                assert list(a[key]) == list(value)
        count += len(b["index"])
    assert count == len(ds)


def test_image_camera_frames_are_the_right_ones(imaged):
    ds = LeRobotDataset(
        "i",
        root=imaged,
        delta_timestamps={"observation.images.top": [-0.1, 0.0]},
        speed_labels=False,
        heavy_cache_mb=0.01,
    )
    key = "observation.images.top"
    assert key in ds.camera_keys and key not in ds.frames.columns  # images are not held in memory
    for i in list(range(0, len(ds), 5)) + [len(ds) - 1]:
        item = ds[i]
        frames = item[key]
        assert frames.shape == (2, 3, 32, 32) and frames.dtype == torch.float32
        assert 0.0 <= float(frames.min()) and float(frames.max()) <= 1.0
        ep, fr = int(item["episode_index"]), int(item["frame_index"])
        assert decode_frame_identity(frames[1]) == (ep, fr)
        assert decode_frame_identity(frames[0]) == (ep, max(fr - 1, 0))
        assert item[f"{key}_is_pad"].tolist() == [fr == 0, False]
    assert ds.frames._heavy_cache.nbytes <= 0.01 * 2**20 + 200_000  # bound + the one entry kept


def test_image_transforms_and_uint8(imaged):
    key = "observation.images.top"
    ds = LeRobotDataset("i", root=imaged, speed_labels=False, image_transforms=lambda t: t.flip(-1))
    plain = LeRobotDataset("i", root=imaged, speed_labels=False, return_uint8=True)
    a, b = ds[3][key], plain[3][key]
    assert b.dtype == torch.uint8
    torch.testing.assert_close(a, b.flip(-1).float() / 255)
    stacked = ds.__getitems__([3, 4]).stacked
    assert torch.equal(stacked[key][0], a)


def test_delta_timestamps_validation(tabular):
    with pytest.raises(DeltaTimestampsError, match="not a feature"):
        LeRobotDataset("t", root=tabular, delta_timestamps={"nope": [0.0]}, speed_labels=False)
    with pytest.raises(DeltaTimestampsError, match="frame"):
        LeRobotDataset("t", root=tabular, delta_timestamps={"action": [0.05]}, speed_labels=False)
    with pytest.raises(DeltaTimestampsError, match="non-empty"):
        LeRobotDataset("t", root=tabular, delta_timestamps={"action": []}, speed_labels=False)


def test_index_out_of_range(tabular):
    ds = LeRobotDataset("t", root=tabular, episodes=[0], speed_labels=False)
    with pytest.raises(IndexError):
        ds[len(ds)]
    with pytest.raises(IndexError):
        ds[-len(ds) - 1]
    with pytest.raises(IndexError, match=f"index {-len(ds) - 1} is out of range"):
        ds.__getitems__([0, -len(ds) - 1])


def test_a_batch_takes_negative_indices_as_single_items_do(tabular):
    """A DataLoader fetches a batch through `__getitems__`; LeRobot, which has none, fetched `ds[-1]` one by
    one and served it, where robotempo raised IndexError."""
    ds = LeRobotDataset("t", root=tabular, episodes=[0], speed_labels=False)
    batch = ds.__getitems__([3, -1, -len(ds)]).stacked
    assert batch["index"].tolist() == [ds[3]["index"], ds[-1]["index"], ds[0]["index"]]
    loader = torch.utils.data.DataLoader(ds, batch_size=2, sampler=[3, -1], collate_fn=collate)
    assert next(iter(loader))["index"].tolist() == [ds[3]["index"], ds[len(ds) - 1]["index"]]


def test_an_item_index_is_an_int_and_may_count_from_the_end(tabular):
    """2.7, "3", True and [1, 2] were cast to 2, 3, 1 and 1 and served those items; LeRobot refuses them.
    A negative index counts from the end, as in LeRobot (it was an IndexError)."""
    ds = LeRobotDataset("t", root=tabular, speed_labels=False)
    assert ds[-1]["index"] == ds[len(ds) - 1]["index"] and ds[-len(ds)]["index"] == ds[0]["index"]
    assert ds[np.int32(2)]["index"] == ds[torch.tensor(2)]["index"] == ds[2]["index"]
    for bad in (2.7, -0.5, "3", True, [1, 2], np.array([7, 8]), torch.tensor(1.0)):
        with pytest.raises(TypeError, match="an item index must be an int"):
            ds[bad]
    with pytest.raises(TypeError, match="item indices must be integers"):
        ds.__getitems__([0.0, 1.5])


def _copy(src, dst):
    import shutil

    shutil.copytree(src, dst)
    return dst


def test_metadata_lengths_that_lie_are_caught(tmp_path):
    root = tmp_path / "ds"
    write_synthetic(root, version="v2.1", n_episodes=4, n_tasks=1, camera=None, fps=FPS, seed=1)
    path = root / "meta" / "episodes.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    rows[2]["length"] += 1
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    LeRobotDataset("t", root=root, episodes=[0, 1], speed_labels=False)  # untouched episodes still open
    with pytest.raises(RowAlignmentError, match="episode_000002"):
        LeRobotDataset("t", root=root, episodes=[2], speed_labels=False)


def test_v30_episode_missing_from_its_file_is_caught(tmp_path):
    root = tmp_path / "ds"
    write_synthetic(root, version="v3.0", n_episodes=5, n_tasks=1, camera=None, fps=FPS, seed=2)
    [meta_file] = sorted((root / "meta" / "episodes").rglob("*.parquet"))
    table = pq.read_table(meta_file)
    shifted = pa.array(table.column("dataset_from_index").to_numpy() + 1)
    table = table.set_column(table.column_names.index("dataset_from_index"), "dataset_from_index", shifted)
    shifted_to = pa.array(table.column("dataset_to_index").to_numpy() + 1)
    table = table.set_column(table.column_names.index("dataset_to_index"), "dataset_to_index", shifted_to)
    pq.write_table(table, meta_file)
    with pytest.raises(RowAlignmentError, match="file-000.parquet"):
        LeRobotDataset("t", root=root, speed_labels=False)


def test_bad_timestamps_are_reported_with_the_row(tmp_path):
    root = tmp_path / "ds"
    write_synthetic(root, version="v2.1", n_episodes=3, n_tasks=1, camera=None, fps=FPS, seed=5)
    path = root / read_metadata(root).episodes.data_files[1]
    table = pq.read_table(path)
    ts = table.column("timestamp").to_numpy().copy()
    ts[4] += 0.03
    table = table.set_column(table.column_names.index("timestamp"), "timestamp", pa.array(ts))
    pq.write_table(table, path)
    with pytest.raises(TimestampError, match="episode 1 frame 4"):
        LeRobotDataset("t", root=root, speed_labels=False)
    LeRobotDataset("t", root=root, speed_labels=False, check_timestamps=False)


@pytest.mark.parametrize("row", [5, 2])  # the only frame of a one-frame episode; a frame inside an episode
def test_a_timestamp_that_is_not_a_number_is_an_error_in_any_episode(tmp_path, row):
    """A one-frame episode (an aborted recording) has no neighbour to compare its timestamp with: a NaN there
    was served as the item's timestamp, while the same NaN in a longer episode was an error."""
    from robotempo.writer import DatasetWriter

    root = tmp_path / "ds"
    features = {"observation.state": {"dtype": "float32", "shape": [2], "names": None}}
    with DatasetWriter(root, fps=FPS, features=features, version="v3.0") as w:
        for length in (5, 1, 4):
            w.add_episode({"observation.state": np.zeros((length, 2), np.float32)}, task="t")
        w.finalize()
    [path] = sorted(root.glob("data/*/*.parquet"))
    table = pq.read_table(path)
    ts = table.column("timestamp").to_numpy().copy()
    ts[row] = np.nan
    pq.write_table(table.set_column(table.column_names.index("timestamp"), "timestamp", pa.array(ts)), path)
    with pytest.raises(TimestampError, match="timestamp is nan, not a time"):
        LeRobotDataset("t", root=root, speed_labels=False)


def _v21_without_episode_one(root, lengths=(5, 3, 4, 6, *range(7, 14))):
    """A v2.1 dataset with episode 1 deleted by hand, as users do before uploading: its file and its lines
    in the episode metadata removed, the totals lowered; the others keep their episode_index and index."""
    from robotempo.writer import DatasetWriter

    features = {"observation.state": {"dtype": "float32", "shape": [2], "names": None}}
    with DatasetWriter(root, fps=FPS, features=features, version="v2.1") as w:
        for e, length in enumerate(lengths):
            w.add_episode({"observation.state": np.full((length, 2), e, np.float32)}, task="t")
        w.finalize()
    for path in root.glob("data/*/episode_000001.parquet"):
        path.unlink()
    for name in ("episodes.jsonl", "episodes_stats.jsonl"):
        path = root / "meta" / name
        kept = [line for line in path.read_text().splitlines(True) if json.loads(line)["episode_index"] != 1]
        path.write_text("".join(kept))
    info = json.loads((root / "meta/info.json").read_text())
    info["total_episodes"] -= 1
    info["total_frames"] -= lengths[1]
    (root / "meta/info.json").write_text(json.dumps(info, indent=4))


def test_v21_index_with_a_gap_from_a_deleted_episode_is_served(tmp_path):
    """v2.1 states no global index (no dataset_from_index): a gap left by a deleted episode disagrees with
    nothing. Items are served by position, each with its stored index, and speed labels are computed."""
    root = tmp_path / "ds"
    _v21_without_episode_one(root)
    ds = LeRobotDataset("t", root=root, delta_timestamps={"observation.state": [-0.1, 0.0, 0.1]})
    items = [ds[i] for i in range(len(ds))]
    lengths = [5, 4, 6, *range(7, 14)]  # episodes 0 and 2..10
    assert len(items) == sum(lengths)
    assert [int(it["episode_index"]) for it in items] == np.repeat([0, *range(2, 11)], lengths).tolist()
    assert [int(it["index"]) for it in items] == [*range(5), *range(8, 8 + sum(lengths) - 5)]
    for it in items:  # every window holds its own episode's rows only
        assert torch.all(it["observation.state"][:, 0] == it["episode_index"])
    assert ds.absolute_to_relative_idx == {int(it["index"]): i for i, it in enumerate(items)}
    speed = {int(it["episode_index"]): int(it["speed"]) for it in items}
    assert speed[2] == 0 and speed[10] == 100  # the population read from the files: shortest and longest
    (root / "meta" / "speed_percentiles.jsonl").unlink()  # one episode's open reads every file's task
    one = LeRobotDataset("t", root=root, episodes=[3])
    assert [int(one[i]["index"]) for i in range(len(one))] == list(range(12, 18))
    assert int(one[0]["speed"]) == speed[3]


def test_v21_index_ranges_that_overlap_are_refused(tmp_path):
    """An index restarting in every file (some converters) gives two frames one index: refused, also when the
    episode is opened alone and by `validate` (QA: `episodes=[k]` served index 0..n-1, and validate, which
    checks each v2.1 file alone, passed the dataset)."""
    from robotempo.validation import validate_dataset

    root = tmp_path / "ds"
    _v21_without_episode_one(root)
    path = next(root.glob("data/*/episode_000002.parquet"))
    table = pq.read_table(path)
    restarted = pa.array(np.arange(table.num_rows, dtype=np.int64))
    pq.write_table(table.set_column(table.column_names.index("index"), "index", restarted), path)
    for episodes in (None, [2], [2, 3]):
        with pytest.raises(RowAlignmentError, match="episode 2's rows start at index 0, but the episodes "):
            LeRobotDataset("t", root=root, episodes=episodes, speed_labels=False)
    failed = [f for f in validate_dataset(root) if f.status == "failed"]
    assert any("episode 2's rows start at index 0" in f.details for f in failed), failed
    for episodes in ([0], [3]):  # the episodes whose own rows are right still open alone
        assert len(LeRobotDataset("t", root=root, episodes=episodes, speed_labels=False)) > 0


def test_a_task_string_listed_twice_is_one_task_for_the_episode_check(tmp_path):
    """An episode's metadata task must be among its frames' (TaskMismatchError otherwise), compared as task
    strings: a table that lists one string under two indices (a merge) resolves the metadata's string to one
    of them, and that is not a disagreement."""
    root = tmp_path / "ds"
    write_synthetic(root, version="v2.1", n_episodes=4, n_tasks=2, camera=None, fps=FPS, seed=5)
    path = root / "meta" / "tasks.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    rows[1]["task"] = rows[0]["task"]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    ds = LeRobotDataset("t", root=root, speed_labels=False)
    assert len(ds) == int(ds.meta.episodes["length"][-1]) + int(ds.meta.episodes["dataset_from_index"][-1])


def test_v21_index_ranges_that_overlap_without_starting_low_are_refused(tmp_path):
    root = tmp_path / "ds"
    _v21_without_episode_one(root)
    first = next(root.glob("data/*/episode_000000.parquet"))
    table = pq.read_table(first)
    shifted = pa.array(table.column("index").to_numpy() + 100)  # episode 0 starts at 100: 2 runs into it
    pq.write_table(table.set_column(table.column_names.index("index"), "index", shifted), first)
    with pytest.raises(RowAlignmentError, match="episode 2's rows start at index .*inside episode 0's range"):
        LeRobotDataset("t", root=root, speed_labels=False)


def test_timestamps_may_start_anywhere_without_video(tmp_path):
    """Without video nothing is looked up by timestamp: an episode's timestamps starting late are served as
    stored (LeRobot checks only their spacing too); with video they must start at 0
    (tests/test_dataset_video.py)."""
    root = tmp_path / "ds"
    write_synthetic(root, version="v2.1", n_episodes=3, n_tasks=1, camera=None, fps=FPS, seed=5)
    path = root / read_metadata(root).episodes.data_files[1]
    table = pq.read_table(path)
    ts = table.column("timestamp").to_numpy() + np.float32(0.5)
    table = table.set_column(table.column_names.index("timestamp"), "timestamp", pa.array(ts))
    pq.write_table(table, path)
    ds = LeRobotDataset("t", root=root, speed_labels=False, episodes=[1])
    assert float(ds[0]["timestamp"]) == pytest.approx(0.5)


@pytest.mark.parametrize("version", ["v2.1", "v3.0"])
def test_a_wrong_total_in_info_json_is_a_warning_naming_both_counts(tmp_path, version, caplog):
    """info.json's totals are a summary; the episode metadata decides. A summary that disagrees is said."""
    import json
    import logging

    root = tmp_path / "ds"
    write_synthetic(root, version=version, n_episodes=3, n_tasks=1, camera=None, fps=FPS, seed=5)
    info = json.loads((root / "meta" / "info.json").read_text())
    frames = info["total_frames"]
    info["total_frames"] = frames + 5
    (root / "meta" / "info.json").write_text(json.dumps(info))
    with caplog.at_level(logging.WARNING, logger="robotempo"):
        ds = LeRobotDataset("t", root=root, speed_labels=False)
    assert len(ds) == frames
    assert f"{frames} frames in all" in caplog.text and f"total_frames={frames + 5}" in caplog.text


def test_an_unselected_episode_of_an_undefined_task_is_warned_about_and_labelled_50(tmp_path, caplog):
    """The speed-label contract: "A task_index that the task table does not define: warn once per distinct
    index, and those episodes get 50." The population read used to raise instead, so a selection that never
    touches the episode failed to open. Serving a frame of it stays an UnknownTaskError."""
    import logging

    from robotempo.errors import UnknownTaskError

    root = tmp_path / "ds"
    write_synthetic(root, version="v2.1", n_episodes=6, n_tasks=2, camera=None, fps=FPS, seed=5)
    meta = read_metadata(root)
    path = root / meta.episodes.data_files[5]
    table = pq.read_table(path)
    table = table.set_column(
        table.column_names.index("task_index"), "task_index", pa.array(np.full(table.num_rows, 99))
    )
    pq.write_table(table, path)
    (root / "meta" / "speed_percentiles.jsonl").unlink(missing_ok=True)
    with caplog.at_level(logging.WARNING, logger="robotempo"):
        ds = LeRobotDataset("t", root=root, episodes=[0, 1])
    assert ds.num_episodes == 2
    said = [r.getMessage() for r in caplog.records if "task_index 99" in r.getMessage()]
    assert len(said) == 1 and "speed 50" in said[0], said
    with pytest.raises(UnknownTaskError, match="task_index 99"):
        LeRobotDataset("t", root=root, episodes=[5])


def test_a_folder_that_is_not_a_dataset_root_says_which_folder_is(tmp_path):
    """root= naming a dataset's meta/ folder, or the folder holding several datasets, was answered with "the
    dataset does not exist" and a download hint; the folder exists, and the fix is another path."""
    from robotempo.errors import MissingFileError

    for name in ("a", "b"):
        write_synthetic(tmp_path / name, version="v3.0", n_episodes=2, n_tasks=1, camera=None, seed=1)
    with pytest.raises(
        MissingFileError, match=rf"pass the dataset's folder, {tmp_path / 'a'} \(the one holding"
    ):
        LeRobotDataset("x", root=tmp_path / "a" / "meta")
    with pytest.raises(MissingFileError, match=r"this folder holds datasets \(a, b\): pass one of them"):
        LeRobotDataset("x", root=tmp_path)
    # a root= that is not there (a typo, a wrong prefix): check the path given, not "pass root=" (QA)
    with pytest.raises(
        MissingFileError, match="absent: the dataset folder does not exist. Fix: check the path"
    ):
        LeRobotDataset("x", root=tmp_path / "absent")
    # the CLI and the metadata reader give the same fixes as the dataset (they said "check that root ...")
    from robotempo.format import read_metadata

    with pytest.raises(MissingFileError, match=r"this folder holds datasets \(a, b\): pass one of them"):
        read_metadata(tmp_path)
    with pytest.raises(
        MissingFileError, match=rf"pass the dataset's folder, {tmp_path / 'a'} \(the one holding"
    ):
        read_metadata(tmp_path / "a" / "meta")


@pytest.mark.parametrize("garbage", [True, False])
def test_an_image_file_replaced_after_the_open_is_named_changed(tmp_path, garbage):
    """A data file replaced after the open (images are read from it later) is "changed since the open",
    whether the new file parses or not: one that does not parse was reported as a damaged download to
    re-download (QA)."""
    import shutil

    from robotempo.errors import DatasetFormatError

    root = tmp_path / "ds"
    write_synthetic(
        root, version="v3.0", n_episodes=3, n_tasks=1, camera="image", image_size=(32, 32), seed=2
    )
    ds = LeRobotDataset("t", root=root, speed_labels=False)
    path = root / ds.meta.episodes.data_files[0]
    fresh = path.with_suffix(".new")
    if garbage:
        fresh.write_bytes(b"\0" * path.stat().st_size)
    else:
        shutil.copy(path, fresh)
    os.replace(fresh, path)  # a new file at the path, as a re-export or a copy in place writes one
    with pytest.raises(DatasetFormatError, match="changed on disk after the dataset was opened"):
        ds[0]
