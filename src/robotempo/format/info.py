"""`meta/info.json`: the dataset card, as typed dataclasses. The one place that knows what info.json means."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from robotempo.errors import DatasetFormatError, UnsupportedVersionError
from robotempo.fs import DatasetRoot, as_root
from robotempo.io import read_json

SUPPORTED_VERSIONS = ("v2.0", "v2.1", "v3.0")
DEFAULT_COLUMNS = ("timestamp", "frame_index", "episode_index", "index", "task_index")
CAMERA_DTYPES = ("image", "video")

V21_DATA_PATH = "data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet"
V21_VIDEO_PATH = "videos/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.mp4"
V30_DATA_PATH = "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
V30_VIDEO_PATH = "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
V30_EPISODES_PATH = "meta/episodes/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"

INFO_FIX = (
    "repair meta/info.json (see the LeRobot format description in docs/formats.md) or re-export the dataset"
)


@dataclass(frozen=True)
class FeatureSpec:
    """One entry of `info["features"]`."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    names: Any = None
    info: dict | None = None

    @property
    def is_camera(self) -> bool:
        return self.dtype in CAMERA_DTYPES

    @property
    def is_video(self) -> bool:
        return self.dtype == "video"

    @property
    def is_image(self) -> bool:
        return self.dtype == "image"

    @property
    def is_numeric(self) -> bool:
        return self.dtype not in CAMERA_DTYPES and self.dtype != "string"

    @classmethod
    def from_dict(cls, name: str, d: Any, path: Path) -> FeatureSpec:
        if not isinstance(d, dict) or "dtype" not in d or "shape" not in d:
            raise DatasetFormatError(
                path, f"feature {name!r} must be an object with 'dtype' and 'shape', got {d!r}", INFO_FIX
            )
        dtype = d["dtype"]
        if dtype not in CAMERA_DTYPES and dtype != "string":
            try:
                np.dtype(dtype)
            except TypeError:
                raise DatasetFormatError(
                    path,
                    f"feature {name!r} has unknown dtype {dtype!r}",
                    "use a numpy dtype, 'image', 'video' or 'string'",
                ) from None
        try:
            shape = tuple(int(s) for s in d["shape"])
        except (TypeError, ValueError):
            raise DatasetFormatError(
                path, f"feature {name!r} has a bad shape {d['shape']!r}", INFO_FIX
            ) from None
        if "/" in name:
            raise DatasetFormatError(
                path, f"feature name {name!r} contains '/'", "rename the feature without '/'"
            )
        return cls(name=name, dtype=dtype, shape=shape, names=d.get("names"), info=d.get("info"))

    def to_dict(self) -> dict:
        d: dict[str, Any] = {"dtype": self.dtype, "shape": list(self.shape), "names": self.names}
        if self.info is not None:
            d["info"] = self.info
        return d


def _check_template(path: Path, key: str, template: str, fields: dict) -> None:
    try:
        template.format(**fields)
    except (KeyError, IndexError, ValueError) as e:
        names = sorted(fields)
        raise DatasetFormatError(
            path,
            f"{key} template {template!r} does not format ({type(e).__name__}: {e})",
            f"use only the fields {names} in {key}",
        ) from None


@dataclass
class DatasetInfo:
    """Typed `meta/info.json`. Unknown keys are kept in `extra` and written back unchanged."""

    codebase_version: str
    fps: float
    features: dict[str, FeatureSpec]
    total_episodes: int = 0
    total_frames: int = 0
    total_tasks: int = 0
    chunks_size: int = 1000
    data_path: str = V30_DATA_PATH
    video_path: str | None = None
    robot_type: str | None = None
    splits: dict = field(default_factory=dict)
    extra: dict = field(default_factory=dict)
    path: Path = Path("meta/info.json")

    @property
    def is_v3(self) -> bool:
        return self.codebase_version.startswith("v3")

    @property
    def camera_keys(self) -> list[str]:
        return [k for k, f in self.features.items() if f.is_camera]

    @property
    def video_keys(self) -> list[str]:
        return [k for k, f in self.features.items() if f.is_video]

    @property
    def image_keys(self) -> list[str]:
        return [k for k, f in self.features.items() if f.is_image]

    def data_file(self, **fields: int) -> str:
        return self.data_path.format(**fields)

    def video_file(self, video_key: str, **fields: int) -> str:
        if self.video_path is None:
            raise DatasetFormatError(
                self.path, f"video feature {video_key!r} but video_path is null", INFO_FIX
            )
        return self.video_path.format(video_key=video_key, **fields)

    @classmethod
    def from_dict(cls, d: Any, path: Path = Path("meta/info.json")) -> DatasetInfo:
        if not isinstance(d, dict):
            raise DatasetFormatError(path, f"expected a JSON object, got {type(d).__name__}", INFO_FIX)
        version = d.get("codebase_version")
        if version not in SUPPORTED_VERSIONS:
            raise UnsupportedVersionError(
                path,
                f"codebase_version {version!r} is not supported "
                f"(robotempo reads {', '.join(SUPPORTED_VERSIONS)})",
                "convert the dataset with LeRobot's conversion script to v2.1 or v3.0",
            )
        for key in ("fps", "features", "data_path"):
            if key not in d:
                raise DatasetFormatError(path, f"required key {key!r} is missing", INFO_FIX)
        fps = d["fps"]
        if isinstance(fps, bool) or not isinstance(fps, (int, float)) or fps <= 0:
            raise DatasetFormatError(path, f"fps must be a positive number, got {fps!r}", INFO_FIX)
        if not isinstance(d["features"], dict) or not d["features"]:
            raise DatasetFormatError(
                path, f"features must be a non-empty object, got {d['features']!r}", INFO_FIX
            )
        features = {k: FeatureSpec.from_dict(k, v, path) for k, v in d["features"].items()}
        known = {f.name for f in cls.__dataclass_fields__.values()} - {"extra", "path", "features"}
        info = cls(
            codebase_version=version,
            fps=float(fps) if not float(fps).is_integer() else int(fps),
            features=features,
            extra={k: v for k, v in d.items() if k not in known and k != "features"},
            path=path,
            **{k: d[k] for k in known if k in d and k not in ("codebase_version", "fps")},
        )
        info._validate()
        return info

    def _validate(self) -> None:
        p = self.path
        for key in ("total_episodes", "total_frames", "total_tasks", "chunks_size"):
            v = getattr(self, key)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise DatasetFormatError(p, f"{key} must be a non-negative integer, got {v!r}", INFO_FIX)
        if self.chunks_size == 0:
            raise DatasetFormatError(
                p, "chunks_size is 0", "set chunks_size to a positive integer (default 1000)"
            )
        fields = (
            {"chunk_index": 0, "file_index": 0} if self.is_v3 else {"episode_chunk": 0, "episode_index": 0}
        )
        _check_template(p, "data_path", str(self.data_path), fields)
        if self.video_keys:
            if not self.video_path:
                raise DatasetFormatError(
                    p,
                    f"video features {self.video_keys} but video_path is {self.video_path!r}",
                    "set video_path to the MP4 path template",
                )
            _check_template(p, "video_path", self.video_path, {**fields, "video_key": self.video_keys[0]})

    def to_dict(self) -> dict:
        d = {
            "codebase_version": self.codebase_version,
            "robot_type": self.robot_type,
            "total_episodes": self.total_episodes,
            "total_frames": self.total_frames,
            "total_tasks": self.total_tasks,
            "chunks_size": self.chunks_size,
            "fps": self.fps,
            "splits": self.splits,
            "data_path": self.data_path,
            "video_path": self.video_path,
            "features": {k: f.to_dict() for k, f in self.features.items()},
        }
        d.update(self.extra)
        return d


def read_info(root: str | Path | DatasetRoot) -> DatasetInfo:
    ref = as_root(root).file("meta/info.json")
    return DatasetInfo.from_dict(read_json(ref, "the dataset card meta/info.json", INFO_FIX), ref.where)
