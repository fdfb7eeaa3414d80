"""The LeRobot 0.6 API a training script touches besides items: `LeRobotDatasetMetadata`, `meta.episodes` as
a table of columns and rows, `meta.info` as a dict, features with tuple shapes, `episode_filter`,
`absolute_to_relative_idx`. Each was an AttributeError / TypeError / ImportError in a script moved over."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from robotempo import LeRobotDataset, LeRobotDatasetMetadata
from robotempo.errors import SelectionError
from robotempo.synth import write_synthetic


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return write_synthetic(
        tmp_path_factory.mktemp("api") / "ds", version="v3.0", n_episodes=6, n_tasks=2, camera="video",
        image_size=(32, 32), fps=10, seed=3, mean_length=20.0,
    )  # fmt: skip


def test_metadata_class_and_its_properties(root):
    meta = LeRobotDatasetMetadata("lab/x", root=root)
    ds = LeRobotDataset("lab/x", root=root, speed_labels=False)
    assert meta.repo_id == ds.meta.repo_id == "lab/x"
    assert meta.total_episodes == 6 and meta.fps == 10 and meta.camera_keys == ds.meta.camera_keys
    assert meta.shapes["action"] == ds.meta.info.features["action"].shape and isinstance(
        meta.shapes["action"], tuple
    )
    assert meta.names["action"] == meta.features["action"]["names"]
    assert meta.depth_keys == [] and meta.has_language_columns is False
    assert meta.chunks_size == 1000 and "{chunk_index" in meta.data_path and "{video_key}" in meta.video_path
    task = meta.tasks[1]
    assert meta.get_task_index(task) == 1 and meta.get_task_index("no such task") is None


def test_info_reads_as_a_dict_and_features_have_tuple_shapes(root):
    ds = LeRobotDataset("x", root=root, speed_labels=False)
    info = ds.meta.info
    assert info["fps"] == 10 and "features" in info and info.get("nope", 7) == 7
    assert info.features["action"]["shape"] == tuple(info.features["action"].shape)
    # through the dict view too, as LeRobot's info dict holds them (QA: a list there)
    assert isinstance(info["features"]["action"]["shape"], tuple)
    assert info.get("features")["action"]["shape"] == info.features["action"]["shape"]
    assert ds.meta.episodes.num_rows == len(ds.meta.episodes) == 6
    assert ds.revision == ds.meta.revision == "v3.0" == LeRobotDatasetMetadata("x", root=root).revision
    assert LeRobotDataset("x", root=root, speed_labels=False, revision="main").meta.revision == "main"
    assert ds.features is ds.meta.features  # one dict: a script's edit is what the next reader sees
    assert isinstance(ds.features["observation.state"]["shape"], tuple)
    del ds.meta.features["observation.images.top"]
    assert "observation.images.top" not in ds.features


def test_episodes_table_columns_and_rows(root):
    meta = LeRobotDatasetMetadata("x", root=root)
    table = meta.episodes
    from_index, to_index = table["dataset_from_index"], table["dataset_to_index"]
    assert isinstance(from_index, list) and len(from_index) == 6
    assert [b - a for a, b in zip(from_index, to_index)] == table["length"]
    row = table[2]
    assert row["episode_index"] == 2 and row["length"] == table["length"][2]
    assert row["videos/observation.images.top/from_timestamp"] >= 0
    assert table[-1]["episode_index"] == 5
    with pytest.raises(KeyError, match="no column 'data/chunk_index'.*dataset_from_index"):
        table["data/chunk_index"]
    with pytest.raises(IndexError):
        table[6]
    with pytest.raises(TypeError):
        table[1.5]


def test_stats_count_is_an_integer_and_stats_can_be_replaced(root):
    meta = LeRobotDatasetMetadata("x", root=root)
    count = meta.stats["action"]["count"]
    assert count.dtype == np.int64 and list(range(int(count[0])))[-1] == count[0] - 1
    meta.stats = {"action": {"mean": np.zeros(3)}}
    assert list(meta.stats) == ["action"]


def test_episode_filter_selects_by_metadata_rows(root):
    table = LeRobotDatasetMetadata("x", root=root).episodes
    lengths = dict(zip(table["episode_index"], table["length"]))
    cut = sorted(lengths.values())[3]
    ds = LeRobotDataset("x", root=root, episode_filter=lambda ep: ep["length"] >= cut, speed_labels=False)
    assert ds.episodes == sorted(e for e, n in lengths.items() if n >= cut)
    both = LeRobotDataset(
        "x",
        root=root,
        episodes=[0, 1, 2],
        episode_filter=lambda ep: ep["episode_index"] != 1,
        speed_labels=False,
    )
    assert both.episodes == [0, 2]
    with pytest.raises(SelectionError, match="episode_filter selects no episode"):
        LeRobotDataset("x", root=root, episode_filter=lambda ep: False)


def test_absolute_to_relative_idx(root):
    assert LeRobotDataset("x", root=root, speed_labels=False).absolute_to_relative_idx is None
    ds = LeRobotDataset("x", root=root, episodes=[1, 4], speed_labels=False)
    mapping = ds.absolute_to_relative_idx
    assert len(mapping) == len(ds)
    for absolute in (int(ds[0]["index"]), int(ds[len(ds) - 1]["index"])):
        assert int(ds[mapping[absolute]]["index"]) == absolute


def test_image_transform_setters_and_lerobot_arguments(root):
    ds = LeRobotDataset(
        "x", root=root, speed_labels=False, depth_output_unit="mm", token=None, batch_encoding_size=4
    )  # no depth maps: nothing to convert
    plain = ds[0]["observation.images.top"]
    ds.set_image_transforms(lambda x: x * 0)
    assert torch.count_nonzero(ds[0]["observation.images.top"]) == 0
    ds.clear_image_transforms()
    assert torch.equal(ds[0]["observation.images.top"], plain)


def test_torch_default_collate_takes_the_stacked_batch(root):
    """Without collate_fn=collate (the usual config of a script moved over), torch stacked every tensor
    again: 3.5-4x the CPU per sample at 480x640."""
    ds = LeRobotDataset("x", root=root, speed_labels=False)
    batch = ds.__getitems__([0, 5, 9])
    out = torch.utils.data.default_collate(batch)
    assert out["action"].data_ptr() == batch.stacked["action"].data_ptr()  # no second stack
    one_by_one = torch.utils.data.default_collate([ds[0], ds[5], ds[9]])  # items gathered by hand
    assert set(one_by_one) == set(out)
    for key, value in out.items():
        assert (
            torch.equal(value, one_by_one[key])
            if isinstance(value, torch.Tensor)
            else value == one_by_one[key]
        )
    assert isinstance(ds[0], dict)


def test_collate_passes_single_items_on_with_batch_size_none(root):
    """`DataLoader(batch_size=None, collate_fn=collate)` hands `collate` one item at a time: KeyError: 0."""
    from robotempo import collate

    ds = LeRobotDataset("x", root=root, speed_labels=False)
    for workers in (0, 1):
        loader = torch.utils.data.DataLoader(ds, batch_size=None, collate_fn=collate, num_workers=workers)
        for i, item in zip(range(3), loader):
            expected = ds[i]
            assert set(item) == set(expected)
            for key, value in expected.items():
                if isinstance(value, torch.Tensor):
                    assert torch.equal(item[key], value), key
                else:
                    assert item[key] == value, key


def test_transformed_cameras_are_stacked_again_in_order(root):
    ds = LeRobotDataset("x", root=root, speed_labels=False)
    plain = ds.__getitems__([3, 1, 7]).stacked["observation.images.top"]
    ds.set_image_transforms(lambda x: x.flip(-1))
    flipped = ds.__getitems__([3, 1, 7]).stacked["observation.images.top"]
    assert torch.equal(flipped, plain.flip(-1))
    ds.set_image_transforms(lambda x: x[:, :16])  # another shape: stacked all the same
    assert ds.__getitems__([3, 1]).stacked["observation.images.top"].shape == (2, 3, 16, 32)


def test_the_episode_tasks_and_the_task_index_lerobots_training_script_reads(root, tmp_path):
    """LeRobot 0.6.1's training script splits train / eval episodes by `meta.episodes["tasks"]` (each
    episode's task strings, indexed by episode) and its policy card lists `meta.tasks.index` (the tasks in
    task-index order): a KeyError and an AttributeError before (QA ran LeRobot's own training)."""
    import pyarrow.parquet as pq

    ds = LeRobotDataset("x", root=root, episodes=[5, 2, 0, 4, 1], speed_labels=False)
    written = pq.read_table(root / "meta" / "episodes").to_pylist()
    by_episode = {row["episode_index"]: row["tasks"] for row in written}
    table = ds.meta.episodes  # the whole table: that script indexes it by episode index
    assert "tasks" in table.column_names and table["episode_index"] == list(range(6))
    assert table["tasks"] == [by_episode[e] for e in range(6)]
    assert table[3]["tasks"] == by_episode[3] and len({t[0] for t in table["tasks"]}) == 2
    assert ds.meta.tasks.index == [ds.meta.tasks[i] for i in range(ds.meta.total_tasks)]
    assert ds._selected["tasks"] == [by_episode[e] for e in sorted(ds.episodes)]
    # v2.1 metadata keeps each episode's first task only: no "tasks" column (the error lists the columns)
    v21 = LeRobotDataset("v", root=write_synthetic(tmp_path / "v21", version="v2.1", n_episodes=3))
    with pytest.raises(KeyError, match="has no column 'tasks'.*episode_index"):
        v21.meta.episodes["tasks"]


def test_language_annotation_columns_are_refused_by_name(tmp_path):
    """LeRobot 0.6's language columns (features of dtype 'language', from `lerobot-annotate`) are not read:
    a typed error naming the feature and the way out, not "unknown dtype" (QA)."""
    import json

    from robotempo.errors import UnsupportedFeatureError

    root = write_synthetic(tmp_path / "lang", version="v3.0", n_episodes=2)
    info = json.loads((root / "meta" / "info.json").read_text())
    info["features"]["language_persistent"] = {"dtype": "language", "shape": [1], "names": None}
    (root / "meta" / "info.json").write_text(json.dumps(info))
    with pytest.raises(UnsupportedFeatureError, match="'language_persistent' is a LeRobot 0.6 language") as e:
        LeRobotDataset("lang", root=root)
    assert "info.json" in str(e.value) and "read it with LeRobot" in str(e.value)
