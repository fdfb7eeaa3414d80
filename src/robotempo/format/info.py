"""`meta/info.json`: the dataset card, as typed dataclasses. The one place that knows what info.json means."""

from __future__ import annotations

import math
import os
import re
import string
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from robotempo.errors import (
    DatasetFormatError,
    MissingFileError,
    UnsafePathError,
    UnsupportedFeatureError,
    UnsupportedVersionError,
)
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

# Bounds on numbers read from metadata: beyond them arithmetic on indices, times or sizes would overflow or
# lose precision (float64 holds integers exactly up to 2**53).
MAX_COUNT = 2**53
MAX_DIM = 2**31
MAX_CAMERA_SIDE = 16384  # 8K video is 7680 wide
MIN_FPS, MAX_FPS = 1e-3, 1e6

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

    @property
    def hwc(self) -> tuple[int, ...]:
        """(height, width, channels) of a camera feature: shapes are [H, W, C] unless `names` puts channels
        first (some LeRobot datasets declare [C, H, W] with names ["channels", "height", "width"]), or,
        without names, the first dimension is a channel count and the last is not (LeRobot's writer takes a
        depth camera's (1, H, W), or (3, H, W), with names None, and its reader serves it). A wrong reading
        is caught against the video stream or the image header, never served."""
        names = self.names if isinstance(self.names, list) else []
        if len(self.shape) == 3 and len(names) == 3 and str(names[0]).startswith("channel"):
            return (self.shape[1], self.shape[2], self.shape[0])
        channels = (1, 3, 4)
        if len(self.shape) == 3 and not names and self.shape[0] in channels and self.shape[2] not in channels:
            return (self.shape[1], self.shape[2], self.shape[0])
        return self.shape

    @classmethod
    def from_dict(cls, name: str, d: Any, path: Path) -> FeatureSpec:
        if not isinstance(d, dict) or "dtype" not in d or "shape" not in d:
            raise DatasetFormatError(
                path, f"feature {name!r} must be an object with 'dtype' and 'shape', got {d!r}", INFO_FIX
            )
        dtype = d["dtype"]
        if not isinstance(dtype, str):
            raise DatasetFormatError(path, f"feature {name!r} has a non-string dtype {dtype!r}", INFO_FIX)
        if dtype == "language":  # LeRobot 0.6's language annotation columns (`lerobot-annotate`)
            raise UnsupportedFeatureError(
                path,
                f"feature {name!r} is a LeRobot 0.6 language annotation column (dtype 'language'), which "
                "robotempo does not read yet (it would not serve the items LeRobot serves)",
                "open a copy of the dataset without the language columns (their features in meta/info.json "
                "and their parquet columns), or read it with LeRobot",
            )
        if dtype not in CAMERA_DTYPES and dtype != "string":
            try:
                if np.dtype(dtype).kind not in "biuf":
                    raise TypeError
            except TypeError:
                raise DatasetFormatError(
                    path,
                    f"feature {name!r} has unknown dtype {dtype!r}",
                    "use a numpy dtype, 'image', 'video' or 'string'",
                ) from None
        shape = d["shape"]
        if not isinstance(shape, (list, tuple)) or not all(is_int(s) and 1 <= s <= MAX_DIM for s in shape):
            raise DatasetFormatError(
                path,
                f"feature {name!r} has a bad shape {shape!r}",
                f"shape must be a list of integers in 1..{MAX_DIM}, e.g. [6] or [480, 640, 3]",
            )
        shape = tuple(int(s) for s in shape)
        if dtype in CAMERA_DTYPES and max(shape) > MAX_CAMERA_SIDE:  # batches are allocated from it
            raise DatasetFormatError(
                path,
                f"camera feature {name!r} has shape {list(shape)}, a side above {MAX_CAMERA_SIDE} pixels",
                "declare the frames' real [height, width, channels]",
            )
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

    def as_lerobot(self) -> dict:
        """The feature as LeRobot's metadata holds it: `to_dict` with the shape as a tuple."""
        return {**self.to_dict(), "shape": tuple(self.shape)}

    def __getitem__(self, key: str) -> Any:  # LeRobot scripts read `info.features[k]["shape"]`
        return self.as_lerobot()[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self.as_lerobot().get(key, default)


def is_int(v: Any) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


def _check_template(
    path: Path, key: str, template: Any, fields: dict, needs: str | None = None, default: str = V21_DATA_PATH
) -> None:
    """The template formats with exactly the format's fields and names a file inside the dataset root."""
    if not isinstance(template, str):
        raise DatasetFormatError(path, f"{key} must be a string template, got {template!r}", INFO_FIX)
    if not template.isprintable():  # NUL and other control characters, lone surrogates
        raise DatasetFormatError(
            path, f"{key} template {template!r} holds a control character or an invalid code point", INFO_FIX
        )
    for _, name, spec, conversion in string.Formatter().parse(template):
        if name is not None and (conversion or not _SPEC.fullmatch(spec or "")):
            how = "!" + conversion if conversion else repr(spec)
            raise DatasetFormatError(
                path,
                f"{key} template {template!r} formats {{{name}}} with {how}",
                "use plain fields or zero-padded widths such as {episode_index:06d}",
            )
    try:
        sample = template.format(**fields)
    except (KeyError, IndexError, ValueError, AttributeError) as e:
        names = sorted(fields)
        raise DatasetFormatError(
            path,
            f"{key} template {template!r} does not format ({type(e).__name__}: {e})",
            f"use only the fields {names} in {key}",
        ) from None
    if needs is not None and "{" + needs not in template:
        raise DatasetFormatError(
            path,
            f"{key} template {template!r} lacks {{{needs}}}, so every episode would name the same file",
            f"put {{{needs}}} in {key} (default {default!r})",
        )
    if os.path.isabs(sample) or os.path.normpath(sample).split(os.sep)[0] == "..":
        raise UnsafePathError(
            path,
            f"{key} template {template!r} names {sample!r}, outside the dataset root",
            f"use a relative path inside the dataset folder in {key} (no leading '/', no '..')",
        )


_SPEC = re.compile(r"(0?[1-9][0-9]?)?d?")  # '', '03d', '6d', 'd': what LeRobot's templates use


def _check_video_info(path: Path, spec: FeatureSpec, fps: float) -> None:
    """A video feature's shape is [H, W, C]-like and its `info` (video.fps, video.height, video.width), where
    present, agrees with the dataset's fps and the feature's shape."""
    if len(spec.shape) != 3:
        raise DatasetFormatError(
            path, f"video feature {spec.name!r} has shape {list(spec.shape)}", "use [height, width, channels]"
        )
    declared = spec.info if isinstance(spec.info, dict) else {}
    height, width = spec.hwc[:2]
    for key, want in (("video.fps", fps), ("video.height", height), ("video.width", width)):
        value = declared.get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or abs(value - want) > 1e-3 * want:
            fix = f"set {key} to {want:g} (or fix fps / the feature's shape if {value!r} is right)"
            if key == "video.fps":  # editing the number does not change the video (the stream check follows)
                fix = (
                    "robotempo serves one video frame per data frame, so a camera video runs at the "
                    f"dataset's fps: if the video's frames come at {want:g} per second, set video.fps to "
                    f"{want:g}; if they come at {value!r}, re-encode it at {want:g} fps (e.g. ffmpeg's -r "
                    f"{want:g})"
                )
            problem = f"video feature {spec.name!r} has info {key}={value!r}, but the dataset says {want:g}"
            raise DatasetFormatError(path, problem, fix)


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

    # LeRobot 0.6 keeps a read-only dict view of info.json (`meta.info["fps"]`), its features' shapes as
    # tuples (a script comparing `info["features"][k]["shape"] == (3, 96, 96)`): the same here.
    def _view(self) -> dict:
        view = self.to_dict()
        view["features"] = {k: f.as_lerobot() for k, f in self.features.items()}
        return view

    def __getitem__(self, key: str) -> Any:
        return self._view()[key]

    def __contains__(self, key: object) -> bool:
        return key in self.to_dict()

    def get(self, key: str, default: Any = None) -> Any:
        return self._view().get(key, default)

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
        if (
            isinstance(fps, bool)
            or not isinstance(fps, (int, float))
            or not math.isfinite(fps)
            or not MIN_FPS <= fps <= MAX_FPS
        ):
            raise DatasetFormatError(
                path, f"fps must be a number in [{MIN_FPS:g}, {MAX_FPS:g}], got {fps!r}", INFO_FIX
            )
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
            if not is_int(v) or not 0 <= v <= MAX_COUNT:
                raise DatasetFormatError(p, f"{key} must be an integer in 0..2**53, got {v!r}", INFO_FIX)
        if self.chunks_size == 0:
            raise DatasetFormatError(
                p, "chunks_size is 0", "set chunks_size to a positive integer (default 1000)"
            )
        fields = (
            {"chunk_index": 0, "file_index": 0} if self.is_v3 else {"episode_chunk": 0, "episode_index": 0}
        )
        _check_template(p, "data_path", self.data_path, fields, None if self.is_v3 else "episode_index")
        for key in self.video_keys:
            _check_video_info(p, self.features[key], self.fps)
        if self.video_keys:
            if not self.video_path:
                raise DatasetFormatError(
                    p,
                    f"video features {self.video_keys} but video_path is {self.video_path!r}",
                    "set video_path to the MP4 path template",
                )
            default = V30_VIDEO_PATH if self.is_v3 else V21_VIDEO_PATH
            for key in self.video_keys:
                _check_template(
                    p,
                    "video_path",
                    self.video_path,
                    {**fields, "video_key": key},
                    None if self.is_v3 else "episode_index",
                    default,
                )
            named = {self.video_path.format(**fields, video_key=key) for key in self.video_keys}
            if len(named) < len(self.video_keys):  # every camera would be served one file's frames
                raise DatasetFormatError(
                    p,
                    f"video_path template {self.video_path!r} names one file for the video features "
                    f"{self.video_keys}",
                    f"put {{video_key}} in video_path (default {default!r})",
                )

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


def read_info(root: str | Path | DatasetRoot, keep: bool = False) -> DatasetInfo:
    """`meta/info.json`, parsed and checked. `keep=True` leaves it on the `DatasetRoot` for the next
    `read_info` of that same object (which takes it instead of reading the file again)."""
    location = as_root(root)
    if location.info_for_next_read is not None:
        info, location.info_for_next_read = location.info_for_next_read, None
        return info
    info = _read_info(location)
    if keep:
        location.info_for_next_read = info
    return info


def _read_info(location: DatasetRoot) -> DatasetInfo:
    ref = location.file("meta/info.json")
    if location.is_local and os.path.exists(location.where()) and not os.path.isdir(location.where()):
        raise DatasetFormatError(
            location.where(),
            "is a file, not a dataset folder",
            "pass the folder that holds meta/info.json (a dataset's root), not a file in it",
        )
    if location.is_local and not os.path.isdir(location.where()):
        raise MissingFileError(
            location.where(), "the dataset folder", "check the path (a dataset's folder holds meta/info.json)"
        )
    fix = f"check that root names the dataset's folder (the one holding meta/), or {INFO_FIX}"
    try:
        data = read_json(ref, "the dataset card meta/info.json", fix)
    except MissingFileError:
        if not location.is_local:
            raise
        # the folder exists but is no dataset's root: its parent is, or it holds datasets
        raise MissingFileError(ref.where, "the dataset card", not_a_root_fix(location.where(), fix)) from None
    return DatasetInfo.from_dict(data, ref.where)


def not_a_root_fix(folder: str | os.PathLike, otherwise: str) -> str:
    """The fix for a folder that exists but is no dataset's root: its parent, or the datasets it holds;
    else `otherwise`."""
    folder = Path(folder)
    if (folder.parent / "meta" / "info.json").is_file():
        return f"pass the dataset's folder, {folder.parent} (the one holding meta/), not a folder inside it"
    try:
        held = sorted(p.name for p in folder.iterdir() if (p / "meta" / "info.json").is_file())
    except OSError:
        held = []
    if held:
        more = f" and {len(held) - 5} more" if len(held) > 5 else ""
        return (
            f"this folder holds datasets ({', '.join(held[:5])}{more}): pass one of them as root, or "
            "several to Mixture"
        )
    return otherwise
