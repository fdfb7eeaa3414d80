"""What the writer knows about features: validation, the parquet schema, and one episode as an Arrow table."""

from __future__ import annotations

import io
import json
from collections.abc import Mapping
from typing import Any

import numpy as np
import pyarrow as pa
from PIL import Image

from robotempo.errors import WriterError
from robotempo.format.info import DEFAULT_COLUMNS, FeatureSpec

# The five columns the writer fills itself, as LeRobot lists them in info.json.
DEFAULT_FEATURES: dict[str, dict] = {
    "timestamp": {"dtype": "float32", "shape": [1], "names": None},
    "frame_index": {"dtype": "int64", "shape": [1], "names": None},
    "episode_index": {"dtype": "int64", "shape": [1], "names": None},
    "index": {"dtype": "int64", "shape": [1], "names": None},
    "task_index": {"dtype": "int64", "shape": [1], "names": None},
}
CAMERA_NAMES = ["height", "width", "channels"]
IMAGE_TYPE = pa.struct([("bytes", pa.binary()), ("path", pa.string())])


# Keys readers fill in every item whatever the data holds: a feature of that name would never be read.
ITEM_KEYS = frozenset({"task", "speed", "speed_is_pad"})


def _fail(name: str, problem: str, fix: str) -> WriterError:
    return WriterError(f"feature {name!r}: {problem}. Fix: {fix}")


def _check_feature(name: str, d: Any) -> FeatureSpec:
    if not isinstance(name, str) or not name:
        raise WriterError(f"feature names must be non-empty strings, got {name!r}")
    if "/" in name:
        raise _fail(name, "the name contains '/' (stats are flattened with '/')", "rename it without '/'")
    if name in (".", "..") or "\\" in name or "\x00" in name:
        # a video feature's name is a folder of its MP4s: '..' wrote them outside videos/
        raise _fail(name, "the name is not a usable folder name", "rename it (letters, digits, '.', '_')")
    if name in DEFAULT_COLUMNS:
        raise _fail(name, "this column is written by the writer itself", "remove it from features")
    if name in ITEM_KEYS:
        raise _fail(
            name,
            "readers put another value under this key in every item (the task string, the speed label), so "
            "its values would never be read",
            "rename the feature",
        )
    if not isinstance(d, Mapping) or "dtype" not in d or "shape" not in d:
        raise _fail(
            name, f"expected a dict with 'dtype' and 'shape', got {d!r}", "give {'dtype':..., 'shape':...}"
        )
    dtype, names = d["dtype"], d.get("names")
    raw = d["shape"]
    whole = isinstance(raw, (list, tuple)) and all(
        isinstance(s, (int, np.integer)) and not isinstance(s, bool) for s in raw
    )
    if not whole:  # int(2.5) cut a shape of [2.5] to [2], silently
        raise _fail(name, f"bad shape {raw!r}", "use a list of positive ints")
    shape = tuple(int(s) for s in raw)
    if not shape or any(s <= 0 for s in shape):
        raise _fail(name, f"bad shape {list(shape)}", "use a non-empty list of positive ints")
    if dtype in ("image", "video"):
        if len(shape) != 3 or shape[2] != 3:
            raise _fail(
                name, f"camera shape must be [height, width, 3], got {list(shape)}", "store RGB frames HWC"
            )
        if dtype == "video" and (shape[0] % 2 or shape[1] % 2):
            raise _fail(
                name,
                f"video frames of {shape[0]}x{shape[1]}: the encoders' yuv420p needs even height and width",
                "crop or pad the frames to even sizes, or use dtype 'image'",
            )
        return FeatureSpec(name, dtype, shape, names if names is not None else list(CAMERA_NAMES))
    try:
        np_dtype = np.dtype(dtype)
    except TypeError:
        raise _fail(name, f"unknown dtype {dtype!r}", "use a numpy dtype name, 'image' or 'video'") from None
    if np_dtype.kind not in "biuf" or np_dtype.itemsize > 8:  # longdouble: no parquet type holds it
        raise _fail(name, f"dtype {dtype!r} is not supported by the writer", "use a bool, int or float dtype")
    if len(shape) != 1:
        raise _fail(name, f"shape {list(shape)} has {len(shape)} dimensions", "flatten it to one dimension")
    if names is not None and not isinstance(names, Mapping):  # LeRobot also writes {"motors": [...]}
        if isinstance(names, str) or not isinstance(names, (list, tuple)) or len(names) != shape[0]:
            raise _fail(
                name, f"names {names!r} do not name its {shape[0]} values", f"give {shape[0]} names, or None"
            )
    return FeatureSpec(name, np_dtype.name, shape, names)


def _hf_feature(spec: FeatureSpec) -> dict:
    """The HF `datasets` feature JSON of one column (what LeRobot/OpenTau readers cast to)."""
    if spec.is_image:
        return {"_type": "Image"}
    value = {"dtype": spec.dtype, "_type": "Value"}
    if spec.shape == (1,):
        return value
    return {"feature": value, "length": spec.shape[0], "_type": "Sequence"}


def _arrow_type(spec: FeatureSpec) -> pa.DataType:
    if spec.is_image:
        return IMAGE_TYPE
    scalar = pa.from_numpy_dtype(np.dtype(spec.dtype))
    return scalar if spec.shape == (1,) else pa.list_(scalar, spec.shape[0])


def encode_png(frames: np.ndarray, compress_level: int) -> list[bytes]:
    """PNG bytes of each `(H, W, 3)` uint8 frame (threads do not help: PIL holds the GIL while encoding)."""
    out = []
    for img in frames:
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, format="PNG", compress_level=compress_level)
        out.append(buf.getvalue())
    return out


class FeatureSet:
    """The user features of a dataset (without the five default columns), validated once."""

    def __init__(self, features: Mapping[str, Mapping]):
        if not isinstance(features, Mapping) or not features:
            raise WriterError(f"features must be a non-empty dict of name -> spec, got {features!r}")
        self.specs: dict[str, FeatureSpec] = {k: _check_feature(k, v) for k, v in features.items()}
        self.video_keys = [k for k, s in self.specs.items() if s.is_video]
        self.image_keys = [k for k, s in self.specs.items() if s.is_image]
        self.column_keys = [k for k, s in self.specs.items() if not s.is_video]
        all_specs = {**{k: s for k, s in self.specs.items() if not s.is_video}, **self.default_specs()}
        hf = {"info": {"features": {k: _hf_feature(s) for k, s in all_specs.items()}}}
        self.schema = pa.schema(
            [pa.field(k, _arrow_type(s)) for k, s in all_specs.items()],
            metadata={b"huggingface": json.dumps(hf).encode()},
        )

    @staticmethod
    def default_specs() -> dict[str, FeatureSpec]:
        return {k: FeatureSpec(k, d["dtype"], tuple(d["shape"]), None) for k, d in DEFAULT_FEATURES.items()}

    def stats_specs(self) -> dict[str, FeatureSpec]:
        """Every feature that gets stats, in info.json order: user features, then the default columns."""
        return {**self.specs, **self.default_specs()}

    def check_episode(self, episode: Mapping[str, Any]) -> tuple[int, dict[str, np.ndarray]]:
        """Validate one episode; returns its length and the arrays cast to their feature dtype."""
        if not isinstance(episode, Mapping):
            raise WriterError(f"an episode must be a dict of feature -> array, got {type(episode).__name__}")
        missing = [k for k in self.specs if k not in episode]
        unknown = [k for k in episode if k not in self.specs]
        if missing or unknown:
            raise WriterError(
                f"episode keys do not match the features: missing {missing}, unknown {unknown}. "
                f"Fix: pass exactly {list(self.specs)} (the default columns are written by the writer)"
            )
        out, length = {}, None
        for k, spec in self.specs.items():
            arr = self._check_array(k, spec, episode[k])
            if length is None:
                length = len(arr)
            elif len(arr) != length:
                raise _fail(
                    k,
                    f"has {len(arr)} frames but {next(iter(self.specs))!r} has {length}",
                    "give every feature the same number of frames",
                )
            out[k] = arr
        if not length:
            raise WriterError("the episode has 0 frames. Fix: add at least one frame per episode")
        return length, out

    @staticmethod
    def _check_array(k: str, spec: FeatureSpec, value: Any) -> np.ndarray:
        try:
            arr = np.asarray(value)
        except ValueError as e:  # ragged lists
            raise _fail(
                k, f"the values do not form an array ({e})", "give every frame the same number of values"
            ) from None
        if spec.is_camera:
            if arr.dtype != np.uint8 or arr.ndim != 4 or arr.shape[1:] != spec.shape:
                raise _fail(
                    k,
                    f"expected uint8 frames (T, {', '.join(map(str, spec.shape))}), "
                    f"got {arr.dtype} {arr.shape}",
                    "pass RGB frames as a uint8 array (T, H, W, 3)",
                )
            return arr
        target = np.dtype(spec.dtype)
        if spec.shape == (1,) and arr.ndim == 2 and arr.shape[1] == 1:
            arr = arr[:, 0]
        want = (None,) if spec.shape == (1,) else (None, spec.shape[0])
        if arr.ndim != len(want) or (len(want) == 2 and arr.shape[1] != want[1]):
            shape = "(T,)" if spec.shape == (1,) else f"(T, {spec.shape[0]})"
            raise _fail(k, f"expected shape {shape}, got {arr.shape}", "pass one row per frame")
        if arr.dtype != target:
            if not np.can_cast(arr.dtype, target, casting="same_kind"):
                raise _fail(
                    k,
                    f"dtype {arr.dtype} cannot be stored as {target}",
                    f"pass {target} values (same-kind casts such as float64 -> float32 are accepted)",
                )
            with np.errstate(over="ignore", invalid="ignore"):
                cast = arr.astype(target)
                if arr.dtype.kind in "biu" or target.kind in "biu":
                    lost = cast.astype(arr.dtype) != arr  # integers survive exactly or not at all
                else:
                    lost = np.isfinite(arr) & ~np.isfinite(cast)  # float narrowing rounds, never overflows
            if lost.any():
                at = np.argwhere(lost)[0]
                raise _fail(
                    k,
                    f"value {arr[tuple(at)].item()!r} at {tuple(int(i) for i in at)} does not fit {target} "
                    f"(it would be stored as {cast[tuple(at)].item()!r})",
                    f"declare the feature with a dtype that holds the values, or pass {target} values",
                )
            arr = cast
        return arr

    def episode_table(
        self, arrays: Mapping[str, np.ndarray], defaults: Mapping[str, np.ndarray], png_level: int
    ) -> pa.Table:
        """One episode's rows (video features excluded) in the writer's schema."""
        columns = []
        for k in self.column_keys:
            spec, arr = self.specs[k], arrays[k]
            if spec.is_image:
                paths = [f"frame_{i:06d}.png" for i in range(len(arr))]
                columns.append(
                    pa.StructArray.from_arrays(
                        [pa.array(encode_png(arr, png_level), pa.binary()), pa.array(paths, pa.string())],
                        fields=list(IMAGE_TYPE),
                    )
                )
            elif spec.shape == (1,):
                columns.append(pa.array(arr))
            else:
                flat = pa.array(np.ascontiguousarray(arr).reshape(-1))
                columns.append(pa.FixedSizeListArray.from_arrays(flat, spec.shape[0]))
        columns += [pa.array(defaults[k]) for k in DEFAULT_FEATURES]
        return pa.Table.from_arrays(columns, schema=self.schema)

    @staticmethod
    def default_values(
        length: int, *, episode_index: int, first_index: int, task_index: int, fps: float
    ) -> dict[str, np.ndarray]:
        """The five default columns of one episode; `timestamp` is float32 `frame_index / fps`."""
        frame_index = np.arange(length, dtype=np.int64)
        return {
            "timestamp": (frame_index / fps).astype(np.float32),
            "frame_index": frame_index,
            "episode_index": np.full(length, episode_index, dtype=np.int64),
            "index": frame_index + first_index,
            "task_index": np.full(length, task_index, dtype=np.int64),
        }
