"""Depth cameras as LeRobot 0.6.1 serves them: float32 `(1, H, W)` depth in the requested unit.

A depth video (a feature whose `info` has `is_depth_map`, or the legacy `video.is_depth_map`) holds 12-bit
codes in a `gray12le` plane; LeRobot dequantizes each item's window `(T, 1, H, W)` with the feature's
`video.depth_min` / `video.depth_max` / `video.shift` / `video.use_log` (metres; missing ones take
`DepthEncoderConfig`'s defaults) to float32 millimetres (or metres). `Dequantizer` runs LeRobot's torch ops
(`depth_utils.dequantize_depth`, torch path) in the same order, dtype and scalars on a buffer of the same
shape, one item at a time: an elementwise op may round differently in torch's vectorised loop and in its
scalar tail (`exp`), so the values are bit-identical only when each element sits where LeRobot's buffer has
it. A depth image (16-bit PNG / TIFF, or float TIFF, in the parquet) is its pixels as float32 `(1, H, W)`,
converted by the feature's `depth_unit` (when recorded and not the output unit) with LeRobot's own op.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch

from robotempo.errors import ConfigError, DatasetFormatError, RobotempoError

# LeRobot 0.6.1 lerobot/configs/video.py and datasets/depth_utils.py
DEPTH_QMAX = 4095  # 12-bit codes
DEFAULT_DEPTH_MIN = 0.01
DEFAULT_DEPTH_MAX = 10.0
DEFAULT_DEPTH_SHIFT = 3.5
DEFAULT_DEPTH_USE_LOG = True
MM_PER_METRE = 1000.0
UINT16_MAX = 65535
UNITS = ("mm", "m")
DEFAULT_UNIT = "mm"


def output_unit(value: str | None) -> str:
    """`depth_output_unit` checked: "mm" (LeRobot's default, also for None) or "m"."""
    if value is None:
        return DEFAULT_UNIT
    if value not in UNITS:
        raise ConfigError(f"depth_output_unit must be 'mm' or 'm' (LeRobot's choices), got {value!r}")
    return value


def is_depth_feature(feature: dict) -> bool:
    """LeRobot's `depth_keys` test on one `meta.features` entry."""
    info = feature.get("info") or {}
    video = feature.get("video_info") or {}
    return bool(info.get("is_depth_map") or info.get("video.is_depth_map") or video.get("video.is_depth_map"))


@dataclass(frozen=True)
class Dequantizer:
    """A depth video camera's dequantization (LeRobot's `DepthEncoderConfig.from_video_info` fields)."""

    depth_min: float
    depth_max: float
    shift: float
    use_log: bool
    unit: str

    @classmethod
    def of(cls, key: str, info: dict | None, unit: str, where: Path | str) -> Dequantizer:
        info = info or {}
        values = {}
        for name, default in (
            ("depth_min", DEFAULT_DEPTH_MIN),
            ("depth_max", DEFAULT_DEPTH_MAX),
            ("shift", DEFAULT_DEPTH_SHIFT),
        ):
            value = info.get(f"video.{name}")
            if value is None:
                value = default
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise DatasetFormatError(
                    where,
                    f"depth camera {key!r} has video.{name} = {value!r}, not a finite number (metres)",
                    "correct the feature's info in meta/info.json",
                )
            values[name] = float(value)
        use_log = info.get("video.use_log")
        use_log = DEFAULT_DEPTH_USE_LOG if use_log is None else bool(use_log)
        if use_log and values["depth_min"] + values["shift"] <= 0:  # LeRobot raises at every item
            raise DatasetFormatError(
                where,
                f"depth camera {key!r} has video.depth_min + video.shift = "
                f"{values['depth_min'] + values['shift']} <= 0, which log quantization cannot invert",
                "correct the feature's info in meta/info.json",
            )
        return cls(values["depth_min"], values["depth_max"], values["shift"], use_log, unit)

    def scale_offset(self) -> tuple[float, float]:
        """LeRobot's Python-float scale and offset (computed in float64, as there)."""
        if self.use_log:
            log_min = math.log(self.depth_min + self.shift)
            log_max = math.log(self.depth_max + self.shift)
            return (log_max - log_min) / DEPTH_QMAX, log_min
        return (self.depth_max - self.depth_min) / DEPTH_QMAX, self.depth_min

    def apply_(self, batch: torch.Tensor) -> None:
        """Dequantize in place a camera tensor `(B, ..., 1, H, W)` of float32 codes, item by item: each item
        `batch[i]` is one contiguous buffer the shape of LeRobot's (its `(T, H, W)`, or `(H, W)` for one
        frame, as the same number of elements in the same order)."""
        scale, offset = self.scale_offset()
        for item in batch:
            buf = item.view(-1)
            buf.mul_(scale).add_(offset)
            if self.use_log:
                buf.exp_().sub_(self.shift)
            buf.clamp_(self.depth_min, self.depth_max)
            if self.unit == "mm":
                buf.mul_(MM_PER_METRE).round_().clamp_(0.0, UINT16_MAX)


def convert_image_units_(batch: torch.Tensor, stored: str | None, unit: str) -> None:
    """A depth image camera `(B, ..., 1, H, W)` converted item by item from its recorded `depth_unit` to
    `unit`, with LeRobot's op (`item * 1000.0` or `item / 1000.0`); unchanged when no unit is recorded or it
    is already `unit` (LeRobot's `get_item`)."""
    if stored is None or stored == unit:
        return
    for item in batch:
        if stored == "m":
            torch.mul(item, MM_PER_METRE, out=item)
        else:
            torch.div(item, MM_PER_METRE, out=item)


def rescale_stats(meta, unit: str) -> None:
    """LeRobot's `rescale_depth_stats` on `meta.stats`: each depth feature's statistics (but `count`) times
    1000 (recorded in "m") or / 1000 (recorded otherwise) when its `depth_unit` is recorded and is not `unit`.
    Reads the statistics at open only for such a feature; statistics that cannot be read are left to raise
    where they are used."""
    factors = {}
    for key, feature in meta.features.items():
        stored = (feature.get("info") or {}).get("depth_unit")
        if is_depth_feature(feature) and stored is not None and stored != unit:
            factors[key] = MM_PER_METRE if stored == "m" else 1.0 / MM_PER_METRE
    if not factors:
        return
    try:
        stats = meta.stats
    except RobotempoError:
        return
    if stats is None:
        return
    for key, factor in factors.items():
        if key in stats:
            stats[key] = {name: v if name == "count" else v * factor for name, v in stats[key].items()}
