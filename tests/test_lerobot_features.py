"""Features LeRobot 0.6 writes that the compatibility corpus did not hold: declared string features, depth
cameras (video: 12-bit gray12le codes dequantized; image: 16-bit / float pixels converted by depth_unit), a
one-offset window on a video camera. Each was served differently from LeRobot's reader."""

from __future__ import annotations

import io
import json
import math
import shutil

import av
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image

from robotempo import LeRobotDataset, Mixture, collate
from robotempo.errors import (
    ConfigError,
    DatasetFormatError,
    DeltaTimestampsError,
    UnsupportedFeatureError,
)
from robotempo.format import read_metadata
from robotempo.synth import write_synthetic


def _written(tmp_path_factory, camera: str, seed: int):
    root = tmp_path_factory.mktemp("lrfeat") / camera
    write_synthetic(root, version="v3.0", n_episodes=3, n_tasks=2, fps=10, seed=seed, mean_length=12.0,
                    camera=camera, image_size=(32, 48))  # fmt: skip
    return root


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    return _written(tmp_path_factory, "video", 8)


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    return _written(tmp_path_factory, "image", 9)


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


KEY = "observation.images.top"


def _write_depth_video(path, codes: np.ndarray, fps: int) -> None:
    """An HEVC gray12le video of 12-bit `codes` (N, H, W), lossless, as LeRobot 0.6.1's depth encoder
    (`DepthEncoderConfig`: hevc, gray12le, x265-params lossless=1) writes one."""
    with av.open(str(path), "w", format="mp4") as out:
        stream = out.add_stream("libx265", rate=fps)
        stream.width, stream.height, stream.pix_fmt = codes.shape[2], codes.shape[1], "gray12le"
        stream.options = {"x265-params": "lossless=1:log-level=error", "g": "2"}
        for plane in codes:
            out.mux(stream.encode(av.VideoFrame.from_ndarray(plane, format="gray12le")))
        out.mux(stream.encode())


def _make_depth_video(root, source, depth_info: dict) -> np.ndarray:
    """`source` (the video dataset) with its camera replaced by a depth camera of known 12-bit codes, one
    (H, W) plane per global frame index (the dataset's one video file holds its episodes back to back)."""
    shutil.copytree(source, root)
    (mp4,) = sorted(root.glob(f"videos/{KEY}/**/*.mp4"))
    with av.open(str(mp4)) as container:
        frames = container.streams.video[0].frames
    rng = np.random.default_rng(3)
    codes = rng.integers(0, 4096, (frames, 32, 48), dtype=np.uint16)
    codes[0].reshape(-1)[: 4096 % codes[0].size] = 0  # both ends of the code range appear
    codes[1].reshape(-1)[:2] = (0, 4095)
    _write_depth_video(mp4, codes, 10)

    def edit(info):
        feature = info["features"][KEY]
        feature["shape"], feature["names"] = [32, 48, 1], ["height", "width", "channels"]
        feature["info"] = {
            "video.fps": 10, "video.height": 32, "video.width": 48, "video.codec": "hevc",
            "video.pix_fmt": "gray12le", "video.channels": 1, "has_audio": False, "is_depth_map": True,
            **depth_info,
        }  # fmt: skip

    _edit_info(root, edit)
    return codes


def lerobot_depth(codes: np.ndarray, depth_min=0.01, depth_max=10.0, shift=3.5, use_log=True, unit="mm"):
    """LeRobot 0.6.1's `dequantize_depth` (torch path) on one item's codes (T, H, W): its ops, in its order,
    on a buffer of its shape; (T, 1, H, W) float32."""
    if use_log:
        log_min, log_max = math.log(depth_min + shift), math.log(depth_max + shift)
        scale, offset = (log_max - log_min) / 4095, log_min
    else:
        scale, offset = (depth_max - depth_min) / 4095, depth_min
    buf = torch.from_numpy(np.ascontiguousarray(codes)).to(dtype=torch.float32, copy=True)
    buf.mul_(scale).add_(offset)
    if use_log:
        buf.exp_().sub_(shift)
    buf.clamp_(depth_min, depth_max)
    buf.unsqueeze_(-3)
    if unit == "mm":
        buf.mul_(1000.0).round_().clamp_(0.0, 65535)
    return buf


DEPTH_CASES = {
    "defaults": ({}, {}, None),
    "linear-in-metres": (
        {"video.depth_min": 0.2, "video.depth_max": 4.5, "video.shift": 0.0, "video.use_log": False},
        {"depth_min": 0.2, "depth_max": 4.5, "shift": 0.0, "use_log": False, "unit": "m"},
        "m",
    ),
    "log-custom": (
        {"video.depth_min": 0.05, "video.depth_max": 3, "video.shift": 1.25, "video.use_log": True},
        {"depth_min": 0.05, "depth_max": 3.0, "shift": 1.25},
        "mm",
    ),
}


@pytest.fixture(scope="module", params=list(DEPTH_CASES))
def depth_video(request, tmp_path_factory, video):
    info, formula, unit = DEPTH_CASES[request.param]
    root = tmp_path_factory.mktemp("lrfeat") / f"depth-{request.param}"
    codes = _make_depth_video(root, video, info)
    return root, codes, formula, unit


def test_a_depth_video_is_served_as_lerobot_dequantizes_it(depth_video):
    """LeRobot 0.6.1 decodes a depth camera's 12-bit gray plane and dequantizes it to float32 (1, H, W)
    (millimetres by default); robotempo served an 8-bit RGB rendering (3, H, W) in [0, 1], then refused."""
    root, codes, formula, unit = depth_video
    ds = LeRobotDataset("d", root=root, speed_labels=False, depth_output_unit=unit, return_uint8=True)
    assert ds.meta.depth_keys == [KEY]
    for i in (0, 1, 7, 8, len(ds) - 1):
        item = ds[i]
        want = lerobot_depth(codes[int(item["index"])][None], **formula)[0]
        assert item[KEY].dtype == torch.float32 and item[KEY].shape == (1, 32, 48)
        assert torch.equal(item[KEY], want), i
    rows = [9, 2, 9, 30]
    batch = ds.__getitems__(rows).stacked[KEY]
    assert batch.shape == (4, 1, 32, 48)
    assert all(torch.equal(batch[j], ds[r][KEY]) for j, r in enumerate(rows))


def test_a_depth_video_window_is_dequantized_per_item(depth_video):
    root, codes, formula, unit = depth_video
    ds = LeRobotDataset(
        "d", root=root, speed_labels=False, depth_output_unit=unit, delta_timestamps={KEY: [-0.1, 0.0]}
    )
    for i, frames, pad in ((5, [4, 5], [False, False]), (8, [8, 8], [True, False])):
        item = ds[i]
        assert int(item["index"]) == i and item[KEY].shape == (2, 1, 32, 48)
        assert item[f"{KEY}_is_pad"].tolist() == pad
        assert torch.equal(item[KEY], lerobot_depth(codes[frames], **formula))
    assert ds.__getitems__([5, 8, 20]).stacked[KEY].shape == (3, 2, 1, 32, 48)
    one = LeRobotDataset(
        "d", root=root, speed_labels=False, depth_output_unit=unit, delta_timestamps={KEY: [0.0]}
    )
    assert torch.equal(one[5][KEY], lerobot_depth(codes[[5]], **formula)[0])


def test_a_depth_video_in_a_dataloader_with_workers(depth_video):
    root, codes, formula, unit = depth_video
    ds = LeRobotDataset("d", root=root, speed_labels=False, depth_output_unit=unit)
    loader = torch.utils.data.DataLoader(ds, batch_size=4, num_workers=2, collate_fn=collate)
    served = torch.cat([b[KEY] for b in loader])
    assert served.shape == (len(ds), 1, 32, 48)
    assert torch.equal(served, lerobot_depth(codes[: len(ds)], **formula))


def test_image_transforms_and_return_uint8_leave_a_depth_camera_alone(tmp_path, video):
    codes = _make_depth_video(tmp_path / "d", video, {})
    ds = LeRobotDataset(
        "d", root=tmp_path / "d", speed_labels=False, return_uint8=True, image_transforms=lambda x: x * 0
    )
    assert torch.equal(ds[3][KEY], lerobot_depth(codes[[3]])[0])
    assert torch.equal(ds.__getitems__([3, 4]).stacked[KEY], lerobot_depth(codes[[3, 4]]))


def test_a_bad_depth_output_unit_or_quantization_is_refused(tmp_path, video):
    _make_depth_video(tmp_path / "d", video, {"video.depth_min": 0.0, "video.shift": 0.0})
    with pytest.raises(ConfigError, match="depth_output_unit"):
        LeRobotDataset("d", root=tmp_path / "d", speed_labels=False, depth_output_unit="cm")
    with pytest.raises(DatasetFormatError, match="depth_min \\+ video.shift"):
        LeRobotDataset("d", root=tmp_path / "d", speed_labels=False)


def _make_depth_images(root, source, mode: str, depth_unit: str | None) -> dict[int, np.ndarray]:
    """`source` (the image dataset) with its camera's cells replaced by single-channel depth images (16-bit
    PNG, or float32 TIFF), as LeRobot 0.6.1's writer embeds them; returns each global index's pixels."""
    shutil.copytree(source, root)
    rng = np.random.default_rng(5)
    pixels = {}
    for path in sorted(root.glob("data/**/*.parquet")):
        table = pq.read_table(path)
        cells = []
        for index in table.column("index").to_pylist():
            if mode == "F":
                value = rng.uniform(0.1, 9.0, (32, 48)).astype(np.float32)
                fmt = "TIFF"
            else:
                value = rng.integers(0, 65536, (32, 48), dtype=np.uint16)
                fmt = "PNG"
            buffer = io.BytesIO()
            Image.fromarray(value).save(buffer, format=fmt)
            cells.append({"bytes": buffer.getvalue(), "path": f"frame-{index:06d}.png"})
            pixels[index] = value
        column = pa.array(cells, table.schema.field(KEY).type)
        pq.write_table(table.set_column(table.schema.get_field_index(KEY), KEY, column), path)

    def edit(info):
        feature = info["features"][KEY]
        feature["shape"], feature["names"] = [32, 48, 1], ["height", "width", "channels"]
        feature["info"] = {"is_depth_map": True, **({"depth_unit": depth_unit} if depth_unit else {})}

    _edit_info(root, edit)
    return pixels


@pytest.mark.parametrize(
    ("mode", "stored", "unit"),
    [("I;16", "mm", None), ("I;16", None, "m"), ("I;16", "mm", "m"), ("F", "m", "mm"), ("F", "m", "m")],
)
def test_a_depth_image_is_served_as_float32_values_converted_by_its_depth_unit(
    tmp_path, image, mode, stored, unit
):
    """LeRobot 0.6.1: a 16-bit (or float) depth image is its pixels as float32 (1, H, W), times 1000 from
    "m" or / 1000 otherwise when its recorded depth_unit is not the output unit; no unit: as stored."""
    pixels = _make_depth_images(tmp_path / "d", image, mode, stored)
    ds = LeRobotDataset("d", root=tmp_path / "d", speed_labels=False, depth_output_unit=unit)

    def want(index):
        value = torch.from_numpy(np.array(pixels[index], dtype=np.float32))[None]
        target = unit or "mm"
        if stored is None or stored == target:
            return value
        return value * 1000.0 if stored == "m" else value / 1000.0

    for i in (0, 9, len(ds) - 1):
        item = ds[i]
        assert item[KEY].dtype == torch.float32 and item[KEY].shape == (1, 32, 48)
        assert torch.equal(item[KEY], want(int(item["index"])))
    raw = read_metadata(tmp_path / "d").stats[KEY]  # LeRobot's rescale_depth_stats: count kept
    factor = 1.0 if stored in (None, unit or "mm") else 1000.0 if stored == "m" else 1 / 1000.0
    for name, value in ds.meta.stats[KEY].items():
        assert np.array_equal(value, raw[name] if name == "count" or factor == 1.0 else raw[name] * factor)
    windowed = LeRobotDataset(
        "d",
        root=tmp_path / "d",
        speed_labels=False,
        depth_output_unit=unit,
        delta_timestamps={KEY: [-0.1, 0.0]},
    )
    assert torch.equal(windowed[5][KEY], torch.stack([want(4), want(5)]))
    loader = torch.utils.data.DataLoader(ds, batch_size=5, num_workers=2, collate_fn=collate)
    served = torch.cat([b[KEY] for b in loader])
    assert torch.equal(served, torch.stack([want(i) for i in range(len(ds))]))


def test_a_depth_image_in_another_mode_is_a_typed_error(tmp_path, image):
    """An 8-bit grey depth image: LeRobot serves ToTensor's (1, H, W) / 255, not reproduced here."""
    _make_depth_images(tmp_path / "d", image, "I;16", None)
    for path in sorted((tmp_path / "d").glob("data/**/*.parquet")):
        table = pq.read_table(path)
        buffer = io.BytesIO()
        Image.fromarray(np.zeros((32, 48), np.uint8)).save(buffer, format="PNG")
        cells = [{"bytes": buffer.getvalue(), "path": "x.png"}] * table.num_rows
        column = pa.array(cells, table.schema.field(KEY).type)
        pq.write_table(table.set_column(table.schema.get_field_index(KEY), KEY, column), path)
    ds = LeRobotDataset("d", root=tmp_path / "d", speed_labels=False)
    with pytest.raises(UnsupportedFeatureError, match="holds a L image"):
        ds[0]


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


def test_validate_accepts_depth_cameras(tmp_path, video, image):
    """`robotempo validate` checked depth images as RGB (a 16-bit image was a size/mode mismatch)."""
    from robotempo.validation import validate_dataset

    _make_depth_video(tmp_path / "v", video, {})
    _make_depth_images(tmp_path / "i", image, "I;16", "mm")
    for root in (tmp_path / "v", tmp_path / "i"):
        findings = [f for f in validate_dataset(root) if f.check.startswith("camera")]
        assert findings and all(f.status == "ok" for f in findings), findings


def test_a_mixture_with_a_depth_camera_keeps_it_float32_under_return_uint8(tmp_path, video):
    """A depth camera is float32 values whatever return_uint8 says; the mixture's schema said uint8, so the
    zeros it pads a dataset without the camera with could not be merged with the depth values."""
    codes = _make_depth_video(tmp_path / "d", video, {})
    specs = [
        {"repo_id": "depth", "root": tmp_path / "d", "return_uint8": True},
        {"repo_id": "plain", "root": video, "return_uint8": True},
    ]
    mix = Mixture(specs, key_maps=[None, {KEY: "observation.images.rgb"}])
    batch = mix.__getitems__([3, len(mix) - 1]).stacked
    assert batch[KEY].dtype == torch.float32 and batch["observation.images.rgb"].dtype == torch.uint8
    assert torch.equal(batch[KEY][0], lerobot_depth(codes[[3]])[0])
    assert batch[f"{KEY}_is_pad"].tolist() == [False, True]


def test_a_channels_first_camera_without_names_is_read(tmp_path, video):
    """LeRobot 0.6.1's writer takes a depth camera declared (1, H, W), or an RGB one (3, H, W), with names
    None, and its reader serves it; robotempo read the shape as H x W x C and refused the dataset."""
    rgb = tmp_path / "rgb"
    shutil.copytree(video, rgb)
    _edit_info(rgb, lambda info: info["features"][KEY].update(shape=[3, 32, 48], names=None))
    plain, chw = (LeRobotDataset(n, root=r, speed_labels=False) for n, r in (("p", video), ("c", rgb)))
    assert torch.equal(chw[5][KEY], plain[5][KEY]) and chw[5][KEY].shape == (3, 32, 48)
    codes = _make_depth_video(tmp_path / "depth", video, {})
    _edit_info(tmp_path / "depth", lambda info: info["features"][KEY].update(shape=[1, 32, 48], names=None))
    depth = LeRobotDataset("d", root=tmp_path / "depth", speed_labels=False)
    assert torch.equal(depth[5][KEY], lerobot_depth(codes[[5]])[0])
