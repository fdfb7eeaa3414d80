"""Camera frames: decode embedded images, and convert uint8 HWC frames to the item layout."""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from robotempo.errors import DatasetFormatError, FeatureMismatchError
from robotempo.shm_pool import shared_tensor

# Image modes that are three colour channels as stored ("P" is a palette of RGB colours); a grey ("L") or
# RGBA image under a 3-channel declaration is a disagreement, not something to convert silently.
RGB_MODES = ("RGB", "P", "YCbCr")


def decode_image(value, path: Path | str, key: str, hwc: tuple[int, ...] | None = None) -> np.ndarray:
    """An embedded image cell (`{"bytes": ..., "path": ...}`) as uint8 (H, W, 3); `hwc` is the declared
    (height, width, channels), checked against what decodes."""
    data = value.get("bytes") if isinstance(value, dict) else value
    if not data:
        raise DatasetFormatError(
            path,
            f"image column {key!r} has an empty cell ({value!r:.80})",
            "re-export the dataset with the images embedded",
        )
    try:
        with Image.open(io.BytesIO(data)) as img:
            mode = img.mode
            image = np.asarray(img if mode == "RGB" else img.convert("RGB"))  # convert would copy an RGB one
    except (OSError, ValueError) as e:
        raise DatasetFormatError(
            path,
            f"image column {key!r} holds bytes that do not decode ({e})",
            "re-export the dataset; the image bytes are corrupt",
        ) from None
    if hwc is not None and (mode not in RGB_MODES or image.shape != tuple(hwc)):
        raise FeatureMismatchError(
            path,
            f"image column {key!r} holds a {image.shape[0]}x{image.shape[1]} {mode} image but "
            f"meta/info.json declares height x width x channels {list(hwc)} (served as RGB)",
            "re-export the images as RGB at the declared size, or correct the feature's shape in info.json",
        )
    return image


def to_item_layout(frames: np.ndarray, return_uint8: bool) -> torch.Tensor:
    """uint8 (..., H, W, C) -> (..., C, H, W): float32 in [0, 1], or uint8 if asked (`frames_tensor`)."""
    *lead, height, width, channels = frames.shape
    out = frames_tensor(lead, channels, height, width, return_uint8)
    out.copy_(torch.from_numpy(np.ascontiguousarray(frames)).movedim(-1, -3))
    return out if return_uint8 else out.div_(255.0)


def frames_tensor(
    lead: Sequence[int], channels: int, height: int, width: int, return_uint8: bool
) -> torch.Tensor:
    """An uninitialised contiguous `(*lead, channels, height, width)` camera tensor, uint8 or float32.

    In a DataLoader worker it is allocated in shared memory, as `default_collate` does for its batches:
    handing the batch to the main process then copies nothing (a private tensor would be copied into fresh
    shared memory, and every fresh page costs a page fault and a clear: at 480x640 float32 that copy cost
    more CPU than decoding the frames). The worker takes it from its pool of storages that no process uses
    any more (`robotempo.shm_pool`), so pages are reused from batch to batch. Every element must be written.
    """
    shape = (*lead, channels, height, width)
    dtype = torch.uint8 if return_uint8 else torch.float32
    if torch.utils.data.get_worker_info() is None:
        return torch.empty(shape, dtype=dtype)
    return shared_tensor(shape, dtype)
