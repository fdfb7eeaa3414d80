"""Camera frames: decode embedded images, straight into a batch's camera tensor, channels first."""

from __future__ import annotations

import io
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from robotempo.errors import DatasetFormatError, FeatureMismatchError, UnsupportedFeatureError
from robotempo.shm_pool import shared_tensor
from robotempo.video.pixels import store

# Image modes that are three colour channels as stored ("P" is a palette of RGB colours); a grey ("L") or
# RGBA image under a 3-channel declaration is a disagreement, not something to convert silently. So is a
# palette with a transparent entry (PNG's tRNS chunk, what PNG optimisers make of RGBA): `image_mode` names
# it apart, and RGB conversion would drop its alpha.
RGB_MODES = ("RGB", "P", "YCbCr")


def image_mode(img: Image.Image) -> str:
    """The image's mode, with a palette that carries transparency told apart (not one of `RGB_MODES`)."""
    if img.mode == "P" and "transparency" in img.info:
        return "P (palette with transparency)"
    return img.mode


def decode_image(value, path: Path | str, key: str, hwc: tuple[int, ...] | None = None) -> np.ndarray:
    """An embedded image cell (`{"bytes": ..., "path": ...}`) as uint8 (H, W, 3); `hwc` is the declared
    (height, width, channels), checked against what decodes."""
    with _rgb_image(value, path, key, hwc) as image:
        return np.asarray(image)


def decode_image_into(value, out: np.ndarray, path: Path | str, key: str, hwc: tuple[int, ...]) -> None:
    """Decode an embedded image cell into `out`, a (3, H, W) uint8 or float32 array (float32: value / 255,
    the same values as `decode_image`'s pixels `.to(torch.float32) / 255`); `hwc` is the declared
    (height, width, channels), checked against what decodes, and must be `(H, W, 3)`.

    One contiguous pass per channel: PIL packs each band of its decoded image on its own (`tobytes("raw",
    "R")`), and each band is written (and scaled) into its plane, with no packed (H, W, 3) copy and no
    strided transpose.
    """
    with _rgb_image(value, path, key, hwc) as image:
        for plane, band in zip(out, "RGB"):
            pixels = np.frombuffer(image.tobytes("raw", band), np.uint8).reshape(plane.shape)
            store(plane, pixels)


def decode_images(
    cells: Sequence,
    paths: Sequence[Path | str],
    key: str,
    hwc: tuple[int, ...],
    lead: Sequence[int],
    return_uint8: bool,
    shared: bool = True,
) -> torch.Tensor:
    """Embedded image cells (and the data file each comes from, for errors) decoded into one new camera
    tensor `(*lead, 3, H, W)` (`frames_tensor`; `prod(lead) == len(cells)`), uint8 or float32 in [0, 1]."""
    _check_rgb(cells, paths, key, hwc)
    out = frames_tensor(lead, 3, hwc[0], hwc[1], return_uint8, shared)
    flat = out.view(-1, 3, hwc[0], hwc[1]).numpy()
    decode_images_at(cells, paths, key, hwc, flat, range(len(flat)))
    return out


def decode_images_at(
    cells: Sequence,
    paths: Sequence[Path | str],
    key: str,
    hwc: tuple[int, ...],
    flat: np.ndarray,
    positions: Sequence[int],
) -> None:
    """Embedded image cells decoded into `flat[positions[i]]` (`flat`: `(N, 3, H, W)` uint8 or float32)."""
    _check_rgb(cells, paths, key, hwc)
    for value, path, p in zip(cells, paths, positions):
        decode_image_into(value, flat[p], path, key, hwc)


def _check_rgb(cells: Sequence, paths: Sequence[Path | str], key: str, hwc: tuple[int, ...]) -> None:
    if len(hwc) != 3 or hwc[2] != 3:  # no RGB image has this shape: the first cell's check names its file
        for value, path in zip(cells, paths):
            decode_image(value, path, key, hwc)


# PIL modes of a depth image LeRobot 0.6.1 serves as its pixel values in float32 (`pil_to_chw_tensor`:
# 16-bit modes as `np.array(img, dtype=np.float32)`, a float ("F") image through `ToTensor`, unscaled).
DEPTH_MODES = ("I;16", "I;16B", "I;16L", "F")


def decode_depth_images(
    cells: Sequence, paths: Sequence[Path | str], key: str, hwc: tuple[int, ...], lead: Sequence[int]
) -> torch.Tensor:
    """Embedded depth image cells decoded into one new float32 camera tensor `(*lead, 1, H, W)`: each
    image's pixels as float32, as LeRobot serves a depth image (unit conversion aside: `robotempo.depth`)."""
    height, width = hwc[0], hwc[1]
    out = frames_tensor(lead, 1, height, width, False)
    for value, path, slot in zip(cells, paths, out.view(-1, 1, height, width).numpy()):
        with _opened(value, path, key) as img:
            if img.mode not in DEPTH_MODES:
                raise UnsupportedFeatureError(
                    path,
                    f"depth image column {key!r} holds a {img.mode} image: LeRobot 0.6.1 serves only 16-bit "
                    f"({', '.join(DEPTH_MODES[:3])}) and float (F) depth images as depth values, and "
                    "robotempo does not reproduce what it serves for others",
                    "re-export the depth images as 16-bit or float single-channel images, or read the "
                    "dataset with LeRobot",
                )
            if img.size != (width, height):
                raise _size_mismatch(path, key, img.size[1], img.size[0], img.mode, hwc)
            try:
                pixels = np.asarray(img, dtype=np.float32)
            except (OSError, ValueError) as e:
                raise _undecodable(path, key, e) from None
            np.copyto(slot[0], pixels)
    return out


@contextmanager
def _opened(value, path: Path | str, key: str) -> Iterator[Image.Image]:
    """The cell's image, opened (not yet decoded), valid inside the `with`."""
    data = value.get("bytes") if isinstance(value, dict) else value
    if not data:
        raise DatasetFormatError(
            path,
            f"image column {key!r} has an empty cell ({value!r:.80})",
            "re-export the dataset with the images embedded",
        )
    try:
        img = Image.open(io.BytesIO(data), formats=IMAGE_FORMATS)
    except (OSError, ValueError, Image.DecompressionBombError) as e:
        raise _undecodable(path, key, e) from None
    with img:
        yield img


# Raster formats an image cell may hold (HF datasets' Image feature stores PNG; JPEG and WebP are seen): not
# every format Pillow opens, some of which hand the bytes to other programs (EPS runs Ghostscript).
IMAGE_FORMATS = ("PNG", "JPEG", "WEBP", "BMP", "TIFF", "GIF")


@contextmanager
def _rgb_image(value, path: Path | str, key: str, hwc: tuple[int, ...] | None) -> Iterator[Image.Image]:
    """The cell's image decoded as an RGB PIL image, valid inside the `with` (closing it frees its pixels)."""
    with _opened(value, path, key) as img:
        mode = image_mode(img)
        width, height = img.size  # from the header: a 12000x12000 image in a 32x32 feature is not decoded
        if hwc is not None and ((height, width) != tuple(hwc[:2]) or mode not in RGB_MODES):
            raise _size_mismatch(path, key, height, width, mode, hwc)
        try:
            if mode == "RGB":  # convert would copy an RGB one
                img.load()
                image = img
            else:
                image = img.convert("RGB")
        except (OSError, ValueError) as e:
            raise _undecodable(path, key, e) from None
        width, height = image.size
        if hwc is not None and (mode not in RGB_MODES or (height, width, 3) != tuple(hwc)):
            raise _size_mismatch(path, key, height, width, mode, hwc)
        yield image


def _size_mismatch(path, key: str, height: int, width: int, mode: str, hwc) -> FeatureMismatchError:
    return FeatureMismatchError(
        path,
        f"image column {key!r} holds a {height}x{width} {mode} image but "
        f"meta/info.json's shape and names make it height x width x channels {list(hwc)} (served "
        "as RGB; names such as ['channels', 'height', 'width'] put the channels first)",
        "re-export the images as RGB at the declared size, or correct the feature's shape or names "
        "in info.json",
    )


def _undecodable(path: Path | str, key: str, e: Exception) -> DatasetFormatError:
    return DatasetFormatError(
        path,
        f"image column {key!r} holds bytes that do not decode ({e})",
        "re-export the dataset; the image bytes are corrupt",
    )


def frames_tensor(
    lead: Sequence[int], channels: int, height: int, width: int, return_uint8: bool, shared: bool = True
) -> torch.Tensor:
    """An uninitialised contiguous `(*lead, channels, height, width)` camera tensor, uint8 or float32.

    In a DataLoader worker it is allocated in shared memory, as `default_collate` does for its batches:
    handing the batch to the main process then copies nothing (a private tensor would be copied into fresh
    shared memory, and every fresh page costs a page fault and a clear: at 480x640 float32 that copy cost
    more CPU than decoding the frames). The worker takes it from its pool of storages that no process uses
    any more (`robotempo.shm_pool`), so pages are reused from batch to batch. Every element must be written.
    `shared=False`: private memory, for frames that never leave the process (transformed, then dropped).
    """
    shape = (*lead, channels, height, width)
    dtype = torch.uint8 if return_uint8 else torch.float32
    if not shared or torch.utils.data.get_worker_info() is None:
        return torch.empty(shape, dtype=dtype)
    return shared_tensor(shape, dtype)
