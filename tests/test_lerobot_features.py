"""Features LeRobot 0.6 writes that the compatibility corpus did not hold: declared string features, depth
cameras, a one-offset window on a video camera. Each was served differently from LeRobot's reader."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from robotempo import LeRobotDataset, Mixture, collate
from robotempo.errors import DeltaTimestampsError, UnsupportedFeatureError
from robotempo.synth import write_synthetic


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    root = tmp_path_factory.mktemp("lrfeat") / "video"
    write_synthetic(root, version="v3.0", n_episodes=3, n_tasks=2, fps=10, seed=8, mean_length=12.0,
                    camera="video", image_size=(32, 48))  # fmt: skip
    return root


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    root = tmp_path_factory.mktemp("lrfeat") / "image"
    write_synthetic(root, version="v3.0", n_episodes=3, n_tasks=2, fps=10, seed=9, mean_length=12.0,
                    camera="image", image_size=(32, 48))  # fmt: skip
    return root


def _edit_info(root, edit) -> None:
    path = root / "meta/info.json"
    info = json.loads(path.read_text())
    edit(info)
    path.write_text(json.dumps(info, indent=4))


def _note(episode: int, frame: int) -> str:
    return f"ep{episode}-f{frame}" + "!" * (frame % 3)


@pytest.fixture(scope="module")
def with_string(tmp_path_factory, video):
    """The video dataset plus a declared string feature 'note', as LeRobot 0.6.1's writer stores one: a
    `string` column and {"dtype": "string", "shape": [1]} in info.json."""
    root = tmp_path_factory.mktemp("lrfeat") / "string"
    shutil.copytree(video, root)
    for path in sorted(root.glob("data/**/*.parquet")):
        table = pq.read_table(path)
        episodes = table.column("episode_index").to_pylist()
        frames = table.column("frame_index").to_pylist()
        notes = pa.array([_note(e, f) for e, f in zip(episodes, frames)], pa.string())
        pq.write_table(table.append_column("note", notes), path)
    note = {"dtype": "string", "shape": [1], "names": None}
    _edit_info(root, lambda info: info["features"].update(note=note))
    return root


def test_a_declared_string_feature_is_served_as_each_frame_s_str(with_string):
    """LeRobot serves item["note"] == "ep0-f3"; robotempo left the key out, with no error."""
    ds = LeRobotDataset("s", root=with_string, speed_labels=False)
    for i in (0, 5, len(ds) - 1):
        item = ds[i]
        assert item["note"] == _note(int(item["episode_index"]), int(item["frame_index"]))
    batch = ds.__getitems__([7, 2, 7])
    assert batch.stacked["note"] == [ds[7]["note"], ds[2]["note"], ds[7]["note"]]
    loader = torch.utils.data.DataLoader(ds, batch_size=4, num_workers=2, collate_fn=collate)
    notes = [n for b in loader for n in b["note"]]
    assert notes == [ds[i]["note"] for i in range(len(ds))]
    picked = LeRobotDataset("s", root=with_string, episodes=[2], speed_labels=False)
    assert picked[0]["note"] == _note(2, 0)


def test_a_window_on_a_string_feature_is_a_typed_error(with_string):
    with pytest.raises(DeltaTimestampsError, match="'note', a string feature"):
        LeRobotDataset("s", root=with_string, delta_timestamps={"note": [0.0]}, speed_labels=False)


@pytest.mark.parametrize("kind", ["video", "image"])
def test_a_depth_camera_is_refused_not_served_as_rgb(request, tmp_path, kind):
    """LeRobot 0.6.1 decodes a depth camera's 12-bit plane to float32 millimetres (1, H, W); robotempo served
    an 8-bit RGB rendering of it (3, H, W) in [0, 1], silently."""
    root = tmp_path / "ds"
    shutil.copytree(request.getfixturevalue(kind), root)
    key = "observation.images.top"
    _edit_info(root, lambda info: info["features"][key].setdefault("info", {}).update(is_depth_map=True))
    with pytest.raises(UnsupportedFeatureError, match=r"\['observation.images.top'\] are depth maps"):
        LeRobotDataset("d", root=root, speed_labels=False)


def test_a_one_offset_window_on_a_video_camera_has_no_time_axis(video, image):
    """LeRobot squeezes a video camera's single frame (`frames.squeeze(0)`), also for a one-offset window;
    robotempo served (1, 3, H, W). An image camera's one-offset window keeps its axis in LeRobot too."""
    key = "observation.images.top"
    plain = LeRobotDataset("v", root=video, speed_labels=False)
    for offsets, shift in (([0.0], 0), ([-0.1], -1)):
        ds = LeRobotDataset("v", root=video, delta_timestamps={key: offsets}, speed_labels=False)
        item = ds[5]
        assert item[key].shape == (3, 32, 48) and item[f"{key}_is_pad"].shape == (1,)
        assert torch.equal(item[key], plain[5 + shift][key])
        assert ds.__getitems__([5, 6]).stacked[key].shape == (2, 3, 32, 48)
    two = LeRobotDataset("v", root=video, delta_timestamps={key: [-0.1, 0.0]}, speed_labels=False)
    assert two[5][key].shape == (2, 3, 32, 48)
    images = LeRobotDataset("i", root=image, delta_timestamps={key: [0.0]}, speed_labels=False)
    assert images[5][key].shape == (1, 3, 32, 48)


def test_a_mixture_takes_negative_indices_as_a_dataset_does(video, image):
    mix = Mixture([{"repo_id": "v", "root": video}, {"repo_id": "i", "root": image}])
    batch = mix.__getitems__([-1, 0, -len(mix)]).stacked
    last, first = int(mix[len(mix) - 1]["index"]), int(mix[0]["index"])
    assert batch["index"].tolist() == [last, first, first]
    assert np.array_equal(batch["dataset_index"].numpy(), [1, 0, 0])


def test_a_mixture_keeps_the_time_axis_of_a_one_frame_camera_window(video, image):
    """A video dataset alone squeezes it (LeRobot); a mixture of a video and an image camera under one key
    gives both (1, 3, H, W), so its batches collate."""
    key = "observation.images.top"
    mix = Mixture(
        [{"repo_id": "v", "root": video}, {"repo_id": "i", "root": image}], delta_timestamps={key: [0.0]}
    )
    batch = mix.__getitems__([0, len(mix) - 1]).stacked
    assert batch[key].shape == (2, 1, 3, 32, 48) and batch[f"{key}_is_pad"].shape == (2, 1)
    alone = LeRobotDataset("v", root=video, speed_labels=False)
    assert torch.equal(batch[key][0, 0], alone[0][key])


def test_a_mixture_serves_string_features_and_pads_where_a_dataset_lacks_one(with_string, video):
    mix = Mixture([{"repo_id": "s", "root": with_string}, {"repo_id": "v", "root": video}])
    first, last = mix[0], mix[len(mix) - 1]
    assert first["note"] == _note(0, 0) and not first["note_is_pad"]
    assert last["note"] == "" and last["note_is_pad"]
    batch = mix.__getitems__([len(mix) - 1, 1]).stacked
    assert batch["note"] == ["", _note(0, 1)] and batch["note_is_pad"].tolist() == [True, False]
    both = Mixture([{"repo_id": "a", "root": with_string}, {"repo_id": "b", "root": with_string}])
    assert "note_is_pad" not in both[0] and both[len(both) - 1]["note"] == mix[len(both) // 2 - 1]["note"]
