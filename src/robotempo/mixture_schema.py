"""The one item schema of a `Mixture`: which keys every item carries, their shapes and dtypes, and how each
dataset's batch is padded onto it.

Rules (the same for every item, so batches always collate):

- A key is in the schema when any dataset has it (after its key map). Keys are features: numeric columns and
  cameras. The five default columns, `task`, `speed` and `speed_is_pad` come from every dataset as they are.
- A numeric vector (one dimension per frame) narrower than the widest one, or absent, is zero-padded to the
  widest; `<key>_dim_is_pad` (bool, `(D,)`) is True on the padded dimensions. It exists for a key exactly when
  some dataset pads it. A feature of shape [1] (a 0-d value per frame, as LeRobot serves it) is a vector of
  width 1 where another dataset has a vector under the key; where every dataset has it 0-d, it stays 0-d.
- A key a dataset lacks is zeros of the common shape and dtype, with `<key>_is_pad` all True (shape `(T,)`
  with a `delta_timestamps` window of T frames, else a 0-d bool). Where any dataset lacks a key, every item
  carries `<key>_is_pad` (False where the key is real).
- A camera with a `delta_timestamps` window of T frames is `(T, C, H, W)` in every item, T = 1 included (a
  dataset alone serves a video camera's one-frame window as `(C, H, W)`, as LeRobot does).
- Everything else must agree across the datasets that have a key: dtype, the per-frame shape of non-vector
  keys and cameras, and the window length. A disagreement is a `MixtureError` naming both datasets; the data
  layer never resizes or casts on its own.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import torch

from robotempo.errors import MixtureError
from robotempo.format.info import DEFAULT_COLUMNS


@dataclass
class Field:
    """One feature key of the mixture schema."""

    key: str
    camera: bool
    dtype: torch.dtype
    shape: tuple[int, ...]  # per frame, after padding (cameras: (C, H, W))
    window: int | None  # frames in the delta_timestamps window, None without deltas
    present: list[bool] = field(default_factory=list)  # per dataset
    widths: list[int] = field(default_factory=list)  # per dataset, vectors only (0 when absent)

    @cached_property  # read for every key of every dataset's part of every batch: not a scan each time
    def pads_dims(self) -> bool:
        return len(self.shape) == 1 and not self.camera and any(w < self.shape[0] for w in self.widths)

    @cached_property
    def has_is_pad(self) -> bool:
        return self.window is not None or not all(self.present)

    def item_shape(self) -> tuple[int, ...]:
        return self.shape if self.window is None else (self.window, *self.shape)


@dataclass
class _Seen:
    """What one dataset says about a key."""

    dataset: int
    camera: bool
    dtype: torch.dtype
    shape: tuple[int, ...]
    window: int | None


def describe(ds, key_map: dict[str, str]) -> dict[str, tuple[bool, torch.dtype, tuple[int, ...], int | None]]:
    """Mixture key -> (is camera, dtype, per-frame shape, window) of one opened `LeRobotDataset`."""
    windows = ds.delta_indices or {}
    out = {}
    for key, column in ds.frames.columns.items():
        if key in DEFAULT_COLUMNS:
            continue
        dtype = torch.from_numpy(column[:0]).dtype
        w = windows.get(key)
        out[key_map.get(key, key)] = (False, dtype, tuple(column.shape[1:]), None if w is None else len(w))
    transformed = ds._transformed()
    first = ds[0] if transformed else {}
    for key in ds.camera_keys:
        w = windows.get(key)
        if key in transformed:  # what the transforms make of item 0
            dtype, shape = first[key].dtype, tuple(first[key].shape[-3:])
        else:
            dtype, shape = _camera_dtype(ds, key), camera_shape(ds, key)
        out[key_map.get(key, key)] = (True, dtype, shape, None if w is None else len(w))
    return out


def _camera_dtype(ds, key: str) -> torch.dtype:
    depth = key in getattr(ds, "_depth_videos", {}) or key in getattr(ds, "_depth_images", {})
    return torch.uint8 if ds.return_uint8 and not depth else torch.float32  # depth: float32 values always


def camera_shape(ds, key: str) -> tuple[int, ...]:
    """(C, H, W) of an untransformed camera's item frames, from the metadata."""
    h, w, c = ds.meta.info.features[key].hwc
    return (c, h, w)


def build_schema(described: list[dict], names: list[str]) -> dict[str, Field]:
    """Merge every dataset's description into one schema; typed errors on what cannot be merged."""
    seen: dict[str, list[_Seen]] = {}
    for d, desc in enumerate(described):
        for key, (camera, dtype, shape, window) in desc.items():
            seen.setdefault(key, []).append(_Seen(d, camera, dtype, shape, window))
    schema = {}
    for key, items in seen.items():
        first = items[0]
        for other in items[1:]:
            _check_agree(key, first, other, names)
        vector = not first.camera and any(len(s.shape) == 1 for s in items)
        shape = (max(_width(s.shape) for s in items),) if vector else first.shape
        present = [False] * len(described)
        widths = [0] * len(described)
        for s in items:
            present[s.dataset] = True
            widths[s.dataset] = _width(s.shape) if vector else 0
        schema[key] = Field(
            key, first.camera, first.dtype, shape, first.window, present, widths if vector else []
        )
    return schema


def _width(shape: tuple[int, ...]) -> int:
    """Dimensions of a vector per frame; a 0-d value (a feature of shape [1]) is one."""
    return shape[0] if shape else 1


def _check_agree(key: str, a: _Seen, b: _Seen, names: list[str]) -> None:
    first = f"dataset {a.dataset} ({names[a.dataset]!r})"
    second = f"dataset {b.dataset} ({names[b.dataset]!r})"
    pair = f"{first} and {second}"
    if a.camera != b.camera:
        raise MixtureError(
            f"{key!r} is a camera in one and a numeric feature in the other of {pair}",
            "map one of them to another mixture key with key_maps",
        )
    if a.dtype != b.dtype:
        raise MixtureError(
            f"{key!r} has dtype {a.dtype} in {first} and {b.dtype} in {second}",
            "store the feature with one dtype in every dataset (for cameras: the same return_uint8), or map "
            "them to different mixture keys with key_maps",
        )
    vector = len(a.shape) <= 1 and len(b.shape) <= 1 and not a.camera
    if not vector and a.shape != b.shape:
        fix = (
            "give the datasets image_transforms that produce one shape (robotempo never resizes on its own), "
            "or map the cameras to different mixture keys with key_maps"
            if a.camera
            else "map them to different mixture keys with key_maps"
        )
        raise MixtureError(f"{key!r} has per-frame shape {a.shape} vs {b.shape} in {pair}", fix)
    if a.window != b.window:
        raise MixtureError(
            f"{key!r} has a delta_timestamps window of {a.window} frames vs {b.window} in {pair}",
            "give every dataset the same delta_timestamps (seconds) for the key, e.g. through "
            "Mixture(delta_timestamps=...) with dataset specs",
        )


def output_keys(schema: dict[str, Field]) -> list[str]:
    keys = []
    for f in schema.values():
        keys.append(f.key)
        if f.has_is_pad:
            keys.append(f"{f.key}_is_pad")
        if f.pads_dims:
            keys.append(f"{f.key}_dim_is_pad")
    return keys


def conform(
    stacked: dict,
    n: int,
    d: int,
    schema: dict[str, Field],
    key_map: dict[str, str],
    name: str,
    filled: frozenset[str] = frozenset(),
) -> dict:
    """One dataset's stacked batch, renamed by its key map and padded onto the schema. Keys in `filled`
    (mixture keys) are already in the merged batch, written there by the dataset or zeroed by the mixture
    where the dataset lacks them: they get their masks here and no value."""
    out = {}
    for key, value in stacked.items():
        base, suffix = (key[: -len("_is_pad")], "_is_pad") if key.endswith("_is_pad") else (key, "")
        out[key_map.get(base, base) + suffix] = value
    for f in schema.values():
        if not f.present[d]:
            if f.key not in filled:
                out[f.key] = torch.zeros((n, *f.item_shape()), dtype=f.dtype)
            out[f"{f.key}_is_pad"] = torch.ones((n,) if f.window is None else (n, f.window), dtype=torch.bool)
        elif f.key in filled:
            if f.window is None and not all(f.present):
                out[f"{f.key}_is_pad"] = torch.zeros(n, dtype=torch.bool)
        else:
            value = out[f.key]
            if f.camera and f.window == 1 and value.dim() == len(f.item_shape()):
                # a dataset serves a video camera's one-frame window without its time axis, as LeRobot does;
                # in a mixture every camera window keeps it, whichever kind of camera holds the key
                value = out[f.key] = value.unsqueeze(1)
            if len(f.shape) == 1 and not f.camera and value.dim() == len(f.item_shape()):
                value = out[f.key] = value.unsqueeze(-1)  # a 0-d value per frame among vectors: width 1
            if f.pads_dims and f.widths[d] < f.shape[0]:
                padded = torch.zeros((n, *f.item_shape()), dtype=f.dtype)
                padded[..., : f.widths[d]] = value
                out[f.key] = padded
            elif tuple(value.shape[1:]) != f.item_shape():
                raise MixtureError(
                    f"dataset {d} ({name!r}) returned {f.key!r} with item shape {tuple(value.shape[1:])}, "
                    f"expected {f.item_shape()}",
                    "make its image_transforms produce one fixed shape",
                )
            if f.window is None and not all(f.present):
                out[f"{f.key}_is_pad"] = torch.zeros(n, dtype=torch.bool)
        if f.pads_dims:
            mask = np.arange(f.shape[0]) >= (f.widths[d] if f.present[d] else 0)
            out[f"{f.key}_dim_is_pad"] = torch.from_numpy(mask).expand(n, -1).clone()
    return out
