"""Embedded images decoded straight into a batch's camera tensor (`decode_image_into`, `decode_images`): the
same pixels as `decode_image` followed by `.to(torch.float32) / 255` (the item layout before the change),
bit for bit, for every level and every image mode PNG has; and through the dataset and DataLoader workers."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from robotempo.cameras import decode_image, decode_image_into, decode_images
from robotempo.dataset import LeRobotDataset, collate
from robotempo.errors import DatasetFormatError, FeatureMismatchError
from robotempo.writer import DatasetWriter

KEY = "cam"
H, W = 16, 48


def levels_rgb() -> np.ndarray:
    """(16, 48, 3) uint8: every level 0-255 in every channel, in a different order per channel."""
    levels = np.arange(256, dtype=np.uint8)
    r = np.tile(levels, 3)
    return np.stack([r, r[::-1], np.roll(r, 77)], axis=-1).reshape(H, W, 3)


def png(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def expected_float(hwc: np.ndarray) -> torch.Tensor:
    """The float32 item layout as it was computed before images were decoded in place."""
    return torch.from_numpy(np.array(hwc)).movedim(-1, -3).to(torch.float32).div_(255.0)


def same_bits(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.dtype == b.dtype and a.shape == b.shape and torch.equal(a.view(torch.int32), b.view(torch.int32))


def test_every_level_is_bit_identical_to_the_division_in_torch():
    pixels = levels_rgb()
    cell = {"bytes": png(Image.fromarray(pixels)), "path": None}
    as_float = np.full((3, H, W), np.nan, np.float32)
    decode_image_into(cell, as_float, "f.parquet", KEY, (H, W, 3))
    assert same_bits(torch.from_numpy(as_float), expected_float(pixels))
    as_uint8 = np.zeros((3, H, W), np.uint8)
    decode_image_into(cell, as_uint8, "f.parquet", KEY, (H, W, 3))
    assert np.array_equal(as_uint8, pixels.transpose(2, 0, 1))


def _modes() -> dict[str, Image.Image]:
    rgb = Image.fromarray(levels_rgb())
    grey16 = Image.fromarray((np.arange(H * W, dtype=np.uint16) * 85).reshape(H, W))
    return {
        "RGB": rgb,
        "P": rgb.quantize(64),
        "L": rgb.convert("L"),
        "LA": rgb.convert("LA"),
        "RGBA": rgb.convert("RGBA"),
        "1": rgb.convert("1"),
        "I;16": grey16,
    }


@pytest.mark.parametrize("mode", list(_modes()))
def test_every_png_mode_is_served_or_refused_as_decode_image_does(mode):
    image = _modes()[mode]
    cell = {"bytes": png(image), "path": None}
    assert Image.open(io.BytesIO(cell["bytes"])).mode == mode
    # without a declared shape decode_image converts anything to RGB; with one, only the RGB modes pass
    converted = decode_image(cell, "f.parquet", KEY)
    assert np.array_equal(converted, np.asarray(image.convert("RGB")))
    out = np.zeros((3, H, W), np.float32)
    if mode in ("RGB", "P"):
        decode_image_into(cell, out, "f.parquet", KEY, (H, W, 3))
        served = decode_image(cell, "f.parquet", KEY, (H, W, 3))
        assert same_bits(torch.from_numpy(out), expected_float(served))
        return
    for decode in (
        lambda: decode_image(cell, "f.parquet", KEY, (H, W, 3)),
        lambda: decode_image_into(cell, out, "f.parquet", KEY, (H, W, 3)),
    ):
        with pytest.raises(FeatureMismatchError, match=rf"f\.parquet.*{H}x{W} {mode} image.*\[{H}, {W}, 3\]"):
            decode()


def test_a_palette_with_transparency_is_refused_like_rgba():
    """A PNG optimiser turns an RGBA image into a palette with a transparent entry (tRNS): RGB conversion
    would drop its alpha as silently as converting the RGBA image, which is refused."""
    rgba = np.asarray(Image.fromarray(levels_rgb()).convert("RGBA")).copy()
    rgba[: H // 2, : W // 2, 3] = 0
    cell = {"bytes": png(Image.fromarray(rgba).quantize(64)), "path": None}
    with Image.open(io.BytesIO(cell["bytes"])) as img:
        assert img.mode == "P" and "transparency" in img.info
    out = np.zeros((3, H, W), np.uint8)
    for decode in (
        lambda: decode_image(cell, "f.parquet", KEY, (H, W, 3)),
        lambda: decode_image_into(cell, out, "f.parquet", KEY, (H, W, 3)),
    ):
        with pytest.raises(FeatureMismatchError, match=r"f\.parquet.* P \(palette with transparency\) image"):
            decode()


def test_bad_cells_are_typed_errors_naming_the_file():
    good = {"bytes": png(Image.fromarray(levels_rgb())), "path": None}
    out = np.zeros((3, H, W), np.uint8)
    with pytest.raises(DatasetFormatError, match=r"d\.parquet.*empty cell"):
        decode_image_into({"bytes": b"", "path": None}, out, "d.parquet", KEY, (H, W, 3))
    with pytest.raises(DatasetFormatError, match=r"d\.parquet.*do not decode"):
        decode_image_into({"bytes": b"\x89PNG not really", "path": None}, out, "d.parquet", KEY, (H, W, 3))
    truncated = {"bytes": good["bytes"][: len(good["bytes"]) // 2], "path": None}
    with pytest.raises(DatasetFormatError, match=r"d\.parquet.*do not decode"):
        decode_image_into(truncated, out, "d.parquet", KEY, (H, W, 3))
    with pytest.raises(FeatureMismatchError, match=rf"d\.parquet.*{H}x{W} RGB.*\[{W}, {H}, 3\]"):
        decode_image_into(good, np.zeros((3, W, H), np.uint8), "d.parquet", KEY, (W, H, 3))
    # a declared shape no RGB image has is refused before anything is allocated for it
    with pytest.raises(FeatureMismatchError, match=rf"e\.parquet.*\[{H}, {W}, 1\]"):
        decode_images([good, good], ["e.parquet", "e.parquet"], KEY, (H, W, 1), (2,), False)


def test_decode_images_fills_every_slot_of_the_batch_tensor():
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (6, H, W, 3), dtype=np.uint8)
    cells = [{"bytes": png(Image.fromarray(f)), "path": None} for f in frames]
    out = decode_images(cells, ["f.parquet"] * 6, KEY, (H, W, 3), (3, 2), False)
    assert out.is_contiguous() and same_bits(out, expected_float(frames.reshape(3, 2, H, W, 3)))
    as_uint8 = decode_images(cells, ["f.parquet"] * 6, KEY, (H, W, 3), (3, 2), True)
    assert torch.equal(as_uint8, torch.from_numpy(frames.reshape(3, 2, H, W, 3)).movedim(-1, -3))


@pytest.fixture(scope="module", params=["v2.1", "v3.0"])
def noisy_images(request, tmp_path_factory):
    """Two episodes of full-range noise images written by robotempo's writer, and the frames written."""
    root = tmp_path_factory.mktemp("noise") / "ds"
    rng = np.random.default_rng(7)
    frames = rng.integers(0, 256, (2, 9, H, W, 3), dtype=np.uint8)
    frames[0, 0] = levels_rgb()
    features = {
        "observation.state": {"dtype": "float32", "shape": [2], "names": None},
        KEY: {"dtype": "image", "shape": [H, W, 3], "names": ["height", "width", "channels"]},
    }
    with DatasetWriter(root, fps=10, features=features, version=request.param) as w:
        for e in range(2):
            w.add_episode({"observation.state": np.zeros((9, 2), np.float32), KEY: frames[e]}, task="t")
    return root, frames.reshape(18, H, W, 3)


@pytest.mark.parametrize("workers", [0, 2])
def test_items_through_the_dataloader_are_bit_identical(noisy_images, workers):
    root, frames = noisy_images
    deltas = {KEY: [-0.1, 0.0]}
    ds = LeRobotDataset("n", root=root, delta_timestamps=deltas, speed_labels=False)
    as_uint8 = LeRobotDataset("n", root=root, delta_timestamps=deltas, speed_labels=False, return_uint8=True)
    order = [17, 0, 9, 3, 10, 8]
    for dataset, convert in ((ds, expected_float), (as_uint8, lambda f: torch.from_numpy(f).movedim(-1, -3))):
        loader = torch.utils.data.DataLoader(
            dataset, batch_size=3, sampler=order, num_workers=workers, collate_fn=collate
        )
        got = torch.cat([batch[KEY] for batch in loader])
        previous = [i - 1 if i % 9 else i for i in order]  # the first frame of an episode pads with itself
        want = convert(np.stack([frames[previous], frames[order]], axis=1))
        assert same_bits(got, want) if got.dtype == torch.float32 else torch.equal(got, want)
