"""`LeRobotDataset`: a map-style torch Dataset over a LeRobot v2.1 / v3.0 dataset, read in place.

A drop-in for LeRobot's class of the same name: the same constructor arguments and item keys (every parquet
feature and the five default columns as tensors, camera frames as float32 (C, H, W) in [0, 1], `task`, and
`<key>_is_pad` for each key with deltas), plus `speed` / `speed_is_pad`. Nothing is written except the speed
percentile file when it is absent; memory holds only the selected rows' numeric columns.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data._utils.collate import default_collate_fn_map

from robotempo import depth
from robotempo.arguments import check_size, check_tolerance
from robotempo.arrays import distinct
from robotempo.cameras import (
    decode_depth_images,
    decode_image,
    decode_images,
    decode_images_at,
    frames_tensor,
)
from robotempo.errors import (
    ArgumentError,
    DeltaTimestampsError,
    MissingFileError,
    MixtureError,
    SelectionError,
    VideoDecodeError,
    VideoMismatchError,
)
from robotempo.format import DatasetMeta, read_metadata
from robotempo.fs import FileRef, as_root
from robotempo.fs.blockfile import process_budget
from robotempo.selection import select_episodes
from robotempo.shm_pool import pack_batch, shared_tensor
from robotempo.store.frames import FrameTable
from robotempo.store.shared import SharedInts, for_child_process
from robotempo.temporal import check_timestamps, plan_deltas, query_rows
from robotempo.video.cache import VideoFiles, decoder_bytes, note_cover, video_identity, video_union
from robotempo.video.stream import VideoExpectation, check_stream

logger = logging.getLogger(__name__)
# Set while a Mixture opens its specs: the mixture, not each dataset, says what the decoder cache can hold.
OPENED_BY_MIXTURE: contextvars.ContextVar[bool] = contextvars.ContextVar("opened_by_mixture", default=False)


LEROBOT_REVISION = "v3.0"  # LeRobot 0.6.1's CODEBASE_VERSION: its `revision` when none is given


def default_root(repo_id: str, revision: str | None = None) -> Path:
    """Where LeRobot keeps `repo_id` when no root is given: `$HF_LEROBOT_HOME/<repo_id>`, else the snapshot
    LeRobot 0.6.1 downloaded into its hub cache (`$HF_LEROBOT_HOME/hub/datasets--<org>--<name>/snapshots/
    <sha>`, found read-only through `refs/<revision>`, then `refs/v3.0`, `refs/v2.1`, `refs/main`, or the
    only snapshot). Nothing is downloaded."""
    home = Path(
        os.environ.get("HF_LEROBOT_HOME")
        or os.path.join(os.environ.get("HF_HOME", os.path.expanduser("~/.cache/huggingface")), "lerobot")
    )
    plain = home / repo_id
    if not plain.exists():
        snapshot = _hub_snapshot(home / "hub" / f"datasets--{repo_id.replace('/', '--')}", revision)
        if snapshot is not None:
            return snapshot
    return plain


def _hub_snapshot(repo: Path, revision: str | None) -> Path | None:
    snapshots = repo / "snapshots"
    if not snapshots.is_dir():
        return None
    for ref in ([revision] if revision else []) + ["v3.0", "v2.1", "main"]:
        try:
            sha = (repo / "refs" / ref).read_text().strip()
        except (OSError, ValueError):
            continue
        if sha and (snapshots / sha).is_dir():
            return snapshots / sha
    if revision and (snapshots / revision).is_dir():  # a commit hash given as the revision
        return snapshots / revision
    found = [p for p in snapshots.iterdir() if p.is_dir()]
    return found[0] if len(found) == 1 else None


class ItemBatch(Sequence):
    """What `__getitems__` returns: a sequence of item dicts that holds the batch already stacked.

    Items are split out of the stacked tensors only when first indexed, so a DataLoader using `collate`
    never pays for per-item tensors; torch's `default_collate` (or any code that indexes) still sees items.
    """

    def __init__(self, stacked: dict, n: int, items: list[dict] | None = None):
        self.stacked = stacked
        self._n = n
        self._items = items

    def __len__(self) -> int:
        return self._n

    def __getitem__(self, i):
        if self._items is None:
            self._items = _split(self.stacked, self._n)
        return self._items[i]


def item_index(idx, n: int) -> int:
    """One item's index as a sequence takes it: an int (numpy integers, a 0-d integer tensor), negative from
    the end. Anything else is a TypeError: `np.asarray(..., int64)` turned 2.7 into 2, "3" into 3, True into
    1 and [1, 2] into 1, and served those items."""
    if (
        isinstance(idx, torch.Tensor)
        and idx.ndim == 0
        and not idx.is_floating_point()
        and not idx.is_complex()
    ):
        idx = idx.item() if idx.dtype != torch.bool else idx
    if isinstance(idx, (bool, np.bool_)) or not isinstance(idx, (int, np.integer)):
        raise TypeError(
            f"an item index must be an int, got {idx!r} ({type(idx).__name__}); for several items use "
            "__getitems__(indices)"
        )
    i = int(idx)
    if not -n <= i < n:
        raise IndexError(f"index {i} is out of range for a dataset of {n} frames")
    return i + n if i < 0 else i


def index_array(indices) -> np.ndarray:
    """A batch's indices as int64 (integers only: floats and strings were cast to other items' indices)."""
    rows = np.asarray(indices)
    if rows.size and rows.dtype.kind not in "iu":
        raise TypeError(
            f"item indices must be integers, got {rows.dtype} values ({rows.reshape(-1)[:3]!r}...)"
        )
    return rows.astype(np.int64, copy=False).reshape(-1)


def collate(samples):
    """A DataLoader `collate_fn`: the batch `__getitems__` already stacked, else torch's default collate.

    In a worker, the stacked batch's numeric tensors are packed into one shared storage
    (`robotempo.shm_pool.pack_batch`): one descriptor to hand over instead of one per column. With
    `batch_size=None` the DataLoader passes single items: each is returned as it is."""
    if isinstance(samples, ItemBatch):
        return pack_batch(samples.stacked)
    if isinstance(samples, Mapping):  # `batch_size=None`: one item, passed on as torch's default_convert does
        return samples
    return torch.utils.data.default_collate(samples)


class LeRobotDataset(torch.utils.data.Dataset):
    def __init__(
        self,
        repo_id: str,
        root: str | Path | None = None,
        episodes: Sequence[int] | None = None,
        image_transforms: Callable | None = None,
        delta_timestamps: dict[str, list[float]] | None = None,
        tolerance_s: float = 1e-4,
        revision: str | None = None,
        force_cache_sync: bool = False,
        download_videos: bool = True,
        video_backend: str | None = None,
        *,
        excluded_episodes: Sequence[int] | None = None,
        return_uint8: bool = False,
        check_timestamps: bool = True,
        speed_labels: bool = True,
        speed_dropout: float = 0.0,
        seed: int = 0,
        speed_cache_dir: str | Path | None = None,
        heavy_cache_mb: float | None = None,
        video_cache_size: int | None = None,
        storage_options: Mapping[str, Any] | None = None,
        check_finite: bool = False,
        episode_filter: Callable[[dict], bool] | None = None,
        depth_output_unit: str | None = None,
        token: str | bool | None = None,
        batch_encoding_size: int = 1,
    ):
        """Open the dataset `repo_id` stored at `root` (a local folder or an object-store URL), in place.

        `storage_options` configures an object-store root such as `s3://bucket/prefix` (`endpoint_override`,
        `region`, `anonymous`, `access_key`, `secret_key`, ...; see `robotempo.fs.DatasetRoot`); without it
        the standard AWS environment applies. Nothing is ever written to an object-store root: speed
        percentiles computed for it are kept in the user cache.

        `heavy_cache_mb` and `video_cache_size` give this dataset caches of its own of that size (embedded
        image row groups in MB, open video files) instead of the process's shared ones (one budget for every
        dataset; the decoders' default keeps every video file the process's datasets select as far as they
        fit 1 GiB and a quarter of the open-file limit, when that covers 3/4 of them, else 8 per camera:
        `robotempo.video.cache.fitted_size`, docs/architecture.md "Memory").

        `check_finite=True` refuses float features holding NaN or infinity (`NonFiniteValueError` at open,
        naming the file, column and row); by default they are served as they are (a sensor may report NaN on
        purpose), and `robotempo validate` counts them.

        LeRobot 0.6's `episode_filter` (a predicate over `meta.episodes` rows, intersected with `episodes`) is
        applied the same way; `token` and `batch_encoding_size` (Hub and writer settings) have no effect on
        reading. Depth cameras (`is_depth_map`) are served as LeRobot 0.6.1 serves them (`robotempo.depth`):
        float32 `(1, H, W)` in `depth_output_unit` ("mm", the default, or "m"); `return_uint8` and
        `image_transforms` do not apply to them.
        """
        super().__init__()
        if not isinstance(repo_id, str) or (root is None and not repo_id.strip()):
            raise ArgumentError(
                f"repo_id must be a string naming the dataset, got {repo_id!r:.80}. Fix: "
                "LeRobotDataset('org/name', root=...)"
            )
        flags = {
            "return_uint8": return_uint8,
            "check_timestamps": check_timestamps,
            "check_finite": check_finite,
        }
        for flag, value in flags.items():  # "no" is truthy: it would have meant yes
            if not isinstance(value, (bool, np.bool_)):
                raise ArgumentError(f"{flag} must be True or False, got {value!r:.40}")
        if image_transforms is not None and not callable(image_transforms):
            raise ArgumentError(f"image_transforms must be a callable or None, got {image_transforms!r:.60}")
        if delta_timestamps is not None and not isinstance(delta_timestamps, Mapping):
            raise DeltaTimestampsError(
                f"delta_timestamps must be a dict of feature -> offsets in seconds, got "
                f"{delta_timestamps!r:.60}. Fix: pass e.g. {{'action': [0.0, 0.1]}}, or None"
            )
        self.repo_id = repo_id
        where = root if root is not None else default_root(repo_id, revision)
        self.location = as_root(where, storage_options)
        self.root = self.location.where()
        if video_backend not in (None, "pyav"):
            logger.info("video_backend=%r ignored: robotempo decodes video with PyAV", video_backend)
        self.image_transforms = image_transforms
        self.return_uint8 = return_uint8
        check_size("heavy_cache_mb", heavy_cache_mb, float, 0, 2**40)
        check_size("video_cache_size", video_cache_size, int, 1, 2**20)
        try:
            self.meta: DatasetMeta = read_metadata(self.location)
        except MissingFileError as e:
            if e.path not in (self.location.where("meta/info.json"), self.location.where()):
                raise  # another missing file; the dataset itself (its folder or card) gets the hint below
            if root is not None or (self.location.is_local and os.path.isdir(self.location.where())):
                raise  # read_metadata's own words: the folder or prefix given does not exist, check it
            raise MissingFileError(
                e.path,
                f"the dataset {repo_id!r}",
                "pass root= pointing at a local copy or an object-store URL (robotempo never downloads while "
                "loading; fetch it first, e.g. with huggingface_hub.snapshot_download(repo_id, "
                "repo_type='dataset', local_dir=...))",
            ) from None
        self.meta.repo_id = repo_id
        # LeRobot 0.6.1 names its codebase version when no revision is given ("v3.0", whatever the dataset's)
        self.revision = self.meta.revision = revision if revision else LEROBOT_REVISION
        info = self.meta.info
        self.depth_output_unit = depth.output_unit(depth_output_unit)
        self._depth_videos, self._depth_images = self._depth_cameras()
        depth.rescale_stats(self.meta, self.depth_output_unit)
        self.tolerance_s = check_tolerance(tolerance_s, info.fps)
        given = episodes
        if episode_filter is not None:
            episodes = _filtered(self.meta, episode_filter, episodes, self.root)
        self._selection_given = episodes is not None or excluded_episodes is not None
        positions = select_episodes(self.meta.episodes, episodes, excluded_episodes, self.root)
        self._selected = self.meta.episodes.take(positions)
        # `episodes` and `episode_data_index` in the caller's order, as LeRobot keeps them (its training
        # script's eval split holds out the last episodes of each task in that order); items stay in the
        # files' order, as LeRobot's
        self._episode_order = _caller_order(self._selected.episode_index, given)
        self.episodes = self._selected.episode_index[self._episode_order].tolist()
        self.frames = FrameTable(
            self.location,
            info,
            self._selected,
            catalog=self.meta.episodes,
            tasks=self.meta.tasks,
            heavy_cache_mb=heavy_cache_mb,
        )
        if check_finite:
            self.frames.check_finite()
        self.image_keys = [k for k in info.image_keys if k in self.frames.heavy_keys]
        self.video_keys = info.video_keys
        # in the features' order, as LeRobot's `meta.camera_keys`: random image transforms draw their
        # parameters camera by camera in this order (image cameras first changed a training run's losses)
        self.camera_keys = [k for k in info.camera_keys if k in self.image_keys or k in self.video_keys]
        self.string_keys = [
            k
            for k in self.frames.heavy_keys
            if k not in info.image_keys and info.features[k].dtype == "string"
        ]
        self.delta_timestamps = delta_timestamps
        asked = delta_timestamps if isinstance(delta_timestamps, dict) else {}
        windowed = [k for k in self.string_keys if k in asked]
        if windowed:
            raise DeltaTimestampsError(
                f"delta_timestamps has key {windowed[0]!r}, a string feature: it is served as the frame's "
                "own value, without a window (LeRobot fails on one). Fix: drop that key from delta_timestamps"
            )
        self._deltas = plan_deltas(
            delta_timestamps, info.fps, list(self.frames.columns) + self.camera_keys, tolerance_s
        )
        self.delta_indices = {k: v.tolist() for k, v in self._deltas.items()} or None
        if check_timestamps:
            self._check_timestamps()
        self._video_from = {k: self._snapped_offsets(k) for k in self.video_keys}
        self._fetcher = None
        self._checked_videos: dict[tuple[str, int], tuple[FileRef, tuple]] = {}
        # Each video file's identity as the first process of this job to use it saw it, in memory every
        # DataLoader worker shares: a worker started after the file was replaced (a new epoch's, a spawned
        # one) compares with it instead of taking the new file for the one the metadata describes.
        counts = [len(self._selected.videos[k].files) for k in self.video_keys]
        self._video_id_row = dict(zip(self.video_keys, np.cumsum([0, *counts[:-1]]).tolist()))
        self._video_ids = SharedInts((sum(counts), 4)) if sum(counts) else None
        self._video_by_file: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self._video_cache_size = None if video_cache_size is None else int(video_cache_size)
        # The video files this selection reads, and what one costs open (its largest frame's, and a store's
        # blocks): what the process's decoder cache sizes itself for, with every other dataset reading
        # through it (`VideoDecoderCache.join`; a Mixture's note counts all its datasets' files).
        pixels = max((int(np.prod(self.meta.info.features[k].hwc[:2])) for k in self.video_keys), default=0)
        self._video_codes = {k: np.unique(self._selected.videos[k].file) for k in self.video_keys}
        self._video_files = sum(len(codes) for codes in self._video_codes.values())
        self._video_file_bytes = decoder_bytes(pixels)
        self._video_remote = not self.location.is_local  # its files hold blocks too (`cache.open_bytes`)
        if self._video_remote and self.video_keys:
            process_budget()  # a bad ROBOTEMPO_REMOTE_CACHE_MB fails here, not inside a worker's first read
        if self._video_cache_size is not None or not OPENED_BY_MIXTURE.get():
            note_cover(len(self.video_keys), *video_union(self._video_parts()), size=self._video_cache_size)
        self._speed, self._speed_is_pad = self._speed_labels(speed_labels, speed_cache_dir)
        self._speed_dropout = _make_dropout(speed_dropout, seed)
        # With dropout on, items depend on the epoch: it lives in shared memory, so DataLoader workers (also
        # persistent ones, which keep the dataset copy they started with) read what set_epoch wrote here.
        self._epoch_cell = (
            torch.zeros(1, dtype=torch.int64).share_memory_() if self._speed_dropout is not None else None
        )
        self._epoch = 0

    @property
    def epoch(self) -> int:
        """The epoch of the seeded speed-label dropout (`set_epoch`)."""
        return int(self._epoch_cell[0]) if self._epoch_cell is not None else self._epoch

    @epoch.setter
    def epoch(self, value: int) -> None:
        self.set_epoch(value)

    def set_epoch(self, epoch: int) -> None:
        """The epoch the seeded speed-label dropout uses (call it like `DistributedSampler.set_epoch`); seen
        by this dataset's DataLoader workers too, persistent ones included."""
        if isinstance(epoch, (bool, np.bool_)) or not isinstance(epoch, (int, np.integer)) or epoch < 0:
            raise ArgumentError(f"set_epoch: epoch must be an int >= 0, got {epoch!r}")
        self._epoch = int(epoch)
        if self._epoch_cell is not None:
            self._epoch_cell[0] = self._epoch

    # -- LeRobot-compatible attributes -------------------------------------------------------------------
    @property
    def fps(self) -> float:
        return self.meta.info.fps

    @property
    def features(self) -> dict:
        return self.meta.features

    @property
    def absolute_to_relative_idx(self) -> dict[int, int] | None:
        """LeRobot's map from a frame's global `index` to its item position: None when every episode is
        selected and the index has no gap (they are the same), else built on each call (one entry per selected
        frame). A v2.1 dataset whose index skips values (an episode deleted by hand) has a map."""
        index = self.frames.columns["index"]
        same = not len(index) or (int(index[0]) == 0 and int(index[-1]) == len(index) - 1)
        if not self._selection_given and same:
            return None
        return dict(zip(index.tolist(), range(len(index))))

    def set_image_transforms(self, transforms: Callable | None) -> None:
        self.image_transforms = transforms

    def clear_image_transforms(self) -> None:
        self.image_transforms = None

    @property
    def num_frames(self) -> int:
        return self.frames.num_rows

    @property
    def num_episodes(self) -> int:
        return len(self.episodes)

    @property
    def episode_data_index(self) -> dict[str, torch.Tensor]:
        return {
            "from": torch.from_numpy(self.frames.ep_from[self._episode_order]),
            "to": torch.from_numpy(self.frames.ep_to[self._episode_order]),
        }

    def __len__(self) -> int:
        return self.frames.num_rows

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(repo_id={self.repo_id!r}, root={str(self.root)!r}, version="
            f"{self.meta.info.codebase_version}, episodes={self.num_episodes}, frames={self.num_frames}, "
            f"cameras={self.camera_keys})"
        )

    # -- open-time work ----------------------------------------------------------------------------------
    def _where(self, row: int) -> tuple[Path | str, str]:
        e = int(self.frames.episode_of(np.array([row]))[0])
        path = self.location.where(self._selected.data_files[int(self._selected.data_file[e])])
        return path, f"episode {self._selected.episode_index[e]} frame {row - self.frames.ep_from[e]}"

    def _check_timestamps(self) -> None:
        cols = self.frames.columns
        check_timestamps(
            cols["timestamp"],
            cols["frame_index"],
            self.frames.ep_from,
            self.frames.ep_to,
            self.fps,
            self.tolerance_s,
            self._where,
            starts_at_zero=bool(self.video_keys),
        )

    def _depth_cameras(self) -> tuple[dict[str, depth.Dequantizer], dict[str, str | None]]:
        """The depth cameras (LeRobot's `depth_keys`): each video one's dequantization, and each image one's
        recorded `depth_unit` (None: served as stored)."""
        info, where = self.meta.info, self.location.where("meta/info.json")
        videos, images = {}, {}
        for key, feature in self.meta.features.items():
            if not depth.is_depth_feature(feature):
                continue
            details = feature.get("info") or {}
            if key in info.video_keys:
                videos[key] = depth.Dequantizer.of(key, details, self.depth_output_unit, where)
            elif key in info.image_keys:
                images[key] = details.get("depth_unit")
        return videos, images

    def _snapped_offsets(self, key: str) -> np.ndarray:
        """`from_timestamp` per episode, snapped onto the 1/fps grid when within a tenth of a frame of it.

        Merged datasets carry offsets that drift off the grid by float error; the frames themselves are on it.
        """
        raw = self._selected.videos[key].from_timestamp
        grid = np.round(raw * self.fps) / self.fps
        return np.where(np.abs(raw - grid) <= 0.1 / self.fps, grid, raw)

    def _speed_labels(self, enabled: bool, cache_dir) -> tuple[np.ndarray, bool]:
        n = len(self.episodes)
        if not enabled:
            return np.full(n, 50, dtype=np.int64), True
        from robotempo.speed.dataset_labels import selected_speed_labels

        first_rows = self.frames.ep_from
        labels = selected_speed_labels(
            self.meta, self._selected, self.frames.columns["task_index"][first_rows], cache_dir=cache_dir
        )
        return labels, False

    # -- items -------------------------------------------------------------------------------------------
    def __getitem__(self, idx: int) -> dict:
        return self.__getitems__([item_index(idx, len(self))])[0]

    def __getitems__(self, indices: Sequence[int]) -> ItemBatch:
        rows = index_array(indices)
        n = len(self)
        if len(rows) and (rows.min() < -n or rows.max() >= n):
            bad = int(rows[(rows < -n) | (rows >= n)][0])
            raise IndexError(f"index {bad} is out of range for a dataset of {n} frames")
        if len(rows) and rows.min() < 0:  # from the end, as `ds[-1]` and a one-by-one DataLoader fetch do
            rows = np.where(rows < 0, rows + n, rows)
        return self._batch(rows, {})

    def _fills(self, key: str) -> bool:
        """Whether `_batch` can write a camera's item frames into a caller's batch: RGB video and image
        cameras (decoded there, or transformed there with image_transforms); depth cameras are converted
        after decoding, in a tensor of their own."""
        return key in self.camera_keys and key not in self._depth_videos and key not in self._depth_images

    def _transformed(self) -> list[str]:
        """The cameras image_transforms apply to (LeRobot leaves depth cameras untransformed)."""
        if self.image_transforms is None:
            return []
        return [k for k in self.camera_keys if k not in self._depth_videos and k not in self._depth_images]

    def _batch(self, rows: np.ndarray, into: dict[str, tuple[np.ndarray, np.ndarray]]) -> ItemBatch:
        """The items at table rows (in range, not negative). `into`: camera key -> (flat frames `(N, C, H,
        W)` of a caller's batch, the position there of each of this batch's frames in `(row, window)`
        order); those cameras (each one that `_fills`) are written there and left out of the items."""
        frames = self.frames
        ep = frames.episode_of(rows)
        ep_from, ep_to = frames.ep_from[ep], frames.ep_to[ep]
        stacked: dict = {}
        for key, column in frames.columns.items():
            offsets = self._deltas.get(key)
            if offsets is None:
                stacked[key] = torch.from_numpy(column[rows])
            else:
                where, pad = query_rows(rows, offsets, ep_from, ep_to)
                stacked[key] = torch.from_numpy(column[where])
                stacked[f"{key}_is_pad"] = torch.from_numpy(pad)
        for key in self.string_keys:  # LeRobot serves a declared "string" feature as the row's str
            stacked[key] = frames.read_heavy(key, rows)
        if self.camera_keys:
            self._add_cameras(stacked, rows, ep_from, ep_to, into)
        task_index = frames.columns["task_index"][rows]
        stacked["task"] = [self.meta.tasks.get(int(t), "") for t in task_index]
        stacked["speed"] = torch.from_numpy(self._speed[ep])
        if self._speed_dropout is None:
            drop = np.full(len(rows), self._speed_is_pad)
        else:
            drop = self._speed_dropout.drop_many(rows, self.epoch) | self._speed_is_pad
        stacked["speed_is_pad"] = torch.from_numpy(drop)
        transformed = self._transformed()
        if not transformed:
            return ItemBatch(stacked, len(rows))
        items = _split(stacked, len(rows))
        # LeRobot's `return_uint8` leaves embedded images float32 in [0, 1]: its transforms see them so (on
        # uint8 they gave other values and another loss); the transformed camera is float32, as in LeRobot
        as_float = {k for k in transformed if self.return_uint8 and k in self.image_keys}
        for item in items:
            for key in transformed:
                pixels = item[key]
                if key in as_float:
                    pixels = pixels.to(torch.float32) / 255
                item[key] = self.image_transforms(pixels)
        for key in [k for k in transformed if k in into]:
            self._place(key, items, *into[key])
            del stacked[key]
            for item in items:
                del item[key]
        restack = [k for k in transformed if k not in into]
        return ItemBatch(_restacked(stacked, items, restack), len(items), items)

    def _place(self, key: str, items: list[dict], flat: np.ndarray, positions: np.ndarray) -> None:
        """Each item's transformed frames of a camera written into a caller's batch (`_batch`'s `into`)."""
        per_item = len(positions) // max(len(items), 1)
        dtype = torch.from_numpy(flat[:0]).dtype
        for i, item in enumerate(items):
            value = item[key]
            tensor = isinstance(value, torch.Tensor)
            good = tensor and value.dtype == dtype and value.device.type == "cpu"
            if not good or value.shape[-3:] != flat.shape[1:] or value.numel() != per_item * flat[0].size:
                what = f"{value.dtype} {tuple(value.shape)}" if tensor else type(value).__name__
                raise MixtureError(
                    f"image_transforms of {self.repo_id!r} made {key!r} {what} on one item and the batch "
                    f"holds {dtype} frames of {tuple(flat.shape[1:])} ({per_item} per item)",
                    "make the image_transforms return one shape and dtype for every item",
                )
            rows = positions[i * per_item : (i + 1) * per_item]
            flat[rows] = value.reshape(per_item, *flat.shape[1:]).numpy()

    def _add_cameras(
        self,
        stacked: dict,
        rows: np.ndarray,
        ep_from: np.ndarray,
        ep_to: np.ndarray,
        into: dict[str, tuple[np.ndarray, np.ndarray]],
    ) -> None:
        """Camera frames (and pad masks) of a batch, each frame written straight into the batch's tensor
        (`frames_tensor`), or into the caller's (`into`, see `_batch`); the video files of all cameras are
        decoded in one parallel fetch."""
        where = {}
        for key in self.camera_keys:
            offsets = self._deltas.get(key)
            if offsets is None:
                where[key] = rows[:, None]
            else:
                where[key], pad = query_rows(rows, offsets, ep_from, ep_to)
                stacked[f"{key}_is_pad"] = torch.from_numpy(pad)
        requests, depth_videos = [], []
        for key in self.camera_keys:
            shared = key not in into  # transformed into a caller's batch: these frames are scratch
            if key in into and self.image_transforms is None:
                flat, positions = into[key]
                if key in self.image_keys:
                    cells, paths = self._image_cells(key, where[key].reshape(-1))
                    hwc = self.meta.info.features[key].hwc
                    decode_images_at(cells, paths, key, hwc, flat, positions)
                else:
                    requests += [
                        (ref, times, flat, positions[sel])
                        for ref, times, sel in self._video_requests(key, where[key].reshape(-1))
                    ]
                continue
            if key in self.image_keys:
                cells, paths = self._image_cells(key, where[key].reshape(-1))
                hwc = self.meta.info.features[key].hwc
                if key in self._depth_images:
                    out = decode_depth_images(cells, paths, key, hwc, where[key].shape)
                    depth.convert_image_units_(out, self._depth_images[key], self.depth_output_unit)
                else:
                    out = decode_images(cells, paths, key, hwc, where[key].shape, self.return_uint8, shared)
            else:
                height, width = self.meta.info.features[key].hwc[:2]
                channels = 1 if key in self._depth_videos else 3  # depth: 12-bit codes, then dequantized
                uint8 = self.return_uint8 and channels == 3
                out = frames_tensor(where[key].shape, channels, height, width, uint8, shared)
                if channels == 1:
                    depth_videos.append((self._depth_videos[key], out))
                flat = out.view(-1, channels, height, width).numpy()
                requests += [
                    (ref, times, flat, sel)
                    for ref, times, sel in self._video_requests(key, where[key].reshape(-1))
                ]
            # LeRobot squeezes a video camera's time axis when it holds one frame, a one-offset window
            # included (`frames.squeeze(0)`); an image camera's one-offset window keeps it.
            single = key not in self._deltas or (key in self.video_keys and len(self._deltas[key]) == 1)
            stacked[key] = out[:, 0] if single else out
        if requests:
            with self._rewrites_named():
                self._video().fetch_into(requests, self.tolerance_s)
        for dequantizer, out in depth_videos:
            dequantizer.apply_(out)

    @contextlib.contextmanager
    def _rewrites_named(self):
        """A video of an object store that fails to decode is checked against its first open (one HEAD): a
        rewritten object read through a kept handle looks damaged, and the error should say it changed."""
        try:
            yield
        except VideoDecodeError as e:
            where, prefix = str(e.path), f"{self.location.url}/"
            if self.location.is_local or not where.startswith(prefix):
                raise
            raise self.location.changed_error(where[len(prefix) :]) or e from None

    def _image_cells(self, key: str, rows: np.ndarray) -> tuple[list, list[Path | str]]:
        """An image column's cells at table rows, and each one's data file (for errors)."""
        worker = torch.utils.data.get_worker_info()
        if worker is not None:  # the loader's workers hold one heavy-cache budget together, not one each
            self.frames.heavy_cache.share(worker.num_workers)
        cells = self.frames.read_heavy(key, rows)
        codes = self._selected.data_file[self.frames.episode_of(rows)]
        files = {int(c): self.location.where(self._selected.data_files[int(c)]) for c in distinct(codes)}
        return cells, [files[int(c)] for c in codes]

    def camera_frames(self, rows_by_key: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """uint8 frames (n, H, W, 3) of each camera at the given table rows (a depth image camera: its float32
        values (n, H, W, 1); a depth video: an RGB rendering of its gray plane, to check it decodes)."""
        out = {}
        requests, slots = [], []
        for key, rows in rows_by_key.items():
            if key in self.image_keys:
                hwc = self.meta.info.features[key].hwc
                cells, paths = self._image_cells(key, rows)
                if key in self._depth_images:
                    depth_values = decode_depth_images(cells, paths, key, hwc, (len(rows),))
                    out[key] = depth_values.numpy().transpose(0, 2, 3, 1)
                    continue
                out[key] = np.stack([decode_image(v, p, key, hwc) for v, p in zip(cells, paths)])
                continue
            for ref, times, sel in self._video_requests(key, rows):
                requests.append((ref, times))
                slots.append((key, sel, len(rows)))
        with self._rewrites_named():
            fetched = self._video().fetch(requests, self.tolerance_s)
        for (key, sel, n), decoded in zip(slots, fetched):
            if key not in out:
                out[key] = np.empty((n, *decoded.shape[1:]), dtype=np.uint8)
            out[key][sel] = decoded
        return out

    def _video_requests(self, key: str, rows: np.ndarray) -> list[tuple[FileRef, np.ndarray, np.ndarray]]:
        """A camera's frames at table rows, per video file: (file, times in the file, positions in `rows`)."""
        ep = self.frames.episode_of(rows)
        files = self._selected.videos[key].file[ep]
        codes = distinct(files)
        refs = [self.video_file(key, int(code)) for code in codes]  # first: settles the files' offsets
        times = self._video_from[key][ep] + self.frames.columns["timestamp"][rows].astype(np.float64)
        requests = []
        for code, ref in zip(codes, refs):
            sel = np.flatnonzero(files == code)
            requests.append((ref, times[sel], sel))
        return requests

    def video_file(self, key: str, code: int) -> FileRef:
        """A camera's video file, checked the first time this process uses it: its stream (fps, frame size,
        frames) agrees with the metadata's windows for that file (`robotempo.video.stream.check_stream`)."""
        checked = self._checked_videos.get((key, code))
        if checked is not None:
            ref, identity = checked
            now = video_identity(ref)
            if now == identity or now is None:  # None: unreadable now, and the reader raises why
                return ref
            raise VideoMismatchError(
                ref.where,
                "the file changed on disk after this dataset checked it (inode, size or mtime differ)",
                "open the dataset again to read the new file",
            )
        ref = self.location.file(self._selected.videos[key].files[code])
        identity = video_identity(ref)  # before the reader opens: a change in between is seen next time
        with self._video().cache.reader(ref) as reader:
            self._same_as_first_use(key, code, ref, identity)
            check_stream(ref.where, reader.info, self._video_expectation(key, code))
            self._settle_offsets(key, code, reader)
        self._checked_videos[(key, code)] = (ref, identity)
        return ref

    def _same_as_first_use(self, key: str, code: int, ref: FileRef, identity: tuple | None) -> None:
        """Compare a video file with what the first process of this job to use it saw (`_video_ids`: a local
        file's inode, size and mtime; an object's size and version, recorded by its first open here), or
        record it when this process is the first."""
        if self._video_ids is None:
            return
        if not ref.root.is_local:
            version = ref.root._versions.get(ref.rel)
            identity = None if version is None else (int(version[0]), _version_hash(version[1]), 0)
        if identity is None or len(identity) != 3:
            return
        cells = self._video_ids.array[self._video_id_row[key] + code]
        if not cells[0]:
            cells[1:] = identity
            cells[0] = 1  # written last: a process reading the row sees it whole or not at all
        elif tuple(int(v) for v in cells[1:]) != tuple(identity):
            raise VideoMismatchError(
                ref.where,
                "the file changed after this job first used it (it was replaced or rewritten since: "
                f"{'inode, size or mtime' if ref.root.is_local else 'size or version'} differ), so its "
                "frames may not be the ones the metadata read at open describes",
                "do not replace a dataset's files while a job reads it; open the dataset again to read the "
                "new files",
            )

    def _settle_offsets(self, key: str, code: int, reader) -> None:
        """Episodes of this file whose `from_timestamp` was snapped onto the grid (`_snapped_offsets`) keep
        their stored offset instead when the video has its first frame there and not on the grid: frames
        may really sit off the grid (LeRobot's rule, offset + timestamp), or the offset may have drifted off
        a grid the frames are on (merged datasets); the container's index tells which, before any decode."""
        loc = self._selected.videos[key]
        mine = np.flatnonzero(loc.file == code)
        raw, used = loc.from_timestamp[mine], self._video_from[key][mine]
        for i in np.flatnonzero(np.abs(raw - used) > self.tolerance_s).tolist():
            at_raw = reader.has_frame_near(float(raw[i]), self.tolerance_s)
            if at_raw and not reader.has_frame_near(float(used[i]), self.tolerance_s):
                self._video_from[key][mine[i]] = raw[i]

    def _video_expectation(self, key: str, code: int) -> VideoExpectation:
        """Every window the metadata (the whole dataset, not only the selection) puts in one video file."""
        catalog = self.meta.episodes
        loc = catalog.videos[key]
        if key not in self._video_by_file:
            order = np.argsort(loc.file, kind="stable")
            self._video_by_file[key] = order, loc.file[order]
        order, sorted_codes = self._video_by_file[key]
        lo, hi = np.searchsorted(sorted_codes, [code, code + 1])
        mine = order[lo:hi]
        start = loc.from_timestamp[mine]
        end = start + catalog.length[mine] / self.fps if loc.to_timestamp is None else loc.to_timestamp[mine]
        height, width = self.meta.info.features[key].hwc[:2]
        return VideoExpectation(key, self.fps, height, width, catalog.episode_index[mine], start, end)

    def _video(self):
        if self._fetcher is None:
            from robotempo.video.decoder import FrameFetcher, default_fetcher

            private = self._video_cache_size is not None
            self._fetcher = FrameFetcher(cache_size=self._video_cache_size) if private else default_fetcher()
            self._fetch_fit()
        return self._fetcher

    def _fetch_fit(self) -> None:
        """Size the process's decoder cache for this dataset's files with those of every other dataset
        reading through it; a private one is as the user sized it."""
        if self._video_cache_size is None:
            self._fetcher.cache.join(self, len(self.video_keys), self._video_parts())

    def _video_parts(self) -> list[VideoFiles]:
        """The video files this selection reads, camera by camera (`robotempo.video.cache.VideoFiles`)."""
        root = str(self.root)
        return [
            VideoFiles(f"{root}\0{key}", codes, self._video_file_bytes, self._video_remote)
            for key, codes in self._video_codes.items()
        ]

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_fetcher"] = None  # decoders and threads never cross a process boundary
        if not for_child_process():  # to another machine maybe (`open_once`): its files have their own inodes
            state["_checked_videos"] = {}
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        cell = self._epoch_cell
        if cell is not None and not cell.is_shared():  # a plain pickle copied it: workers must see set_epoch
            self._epoch_cell = cell.share_memory_()


class Item(dict):
    """One item of a batch (a dict): its type tells torch's `default_collate` that the batch it came in is an
    `ItemBatch`, already stacked (see `_collate_items`)."""

    __slots__ = ()


def _split(stacked: dict, n: int) -> list[dict]:
    columns = {k: (v if isinstance(v, list) else v.unbind(0)) for k, v in stacked.items()}
    keys = list(columns)
    return [Item(zip(keys, values)) for values in zip(*(columns[k] for k in keys))] if n else []


def _restacked(stacked: dict, items: list[dict], keys: list[str]) -> dict:
    """The batch with the transformed cameras of `items` stacked again, in shared memory inside a DataLoader
    worker (its reused pool): torch's `default_collate` took fresh shared memory for every batch, 3.4-4x the
    CPU per sample at 480x640. What does not stack as tensors of one shape goes to `default_collate`."""
    if not items:
        return stacked
    out = dict(stacked)
    worker = torch.utils.data.get_worker_info() is not None
    for key in keys:
        values = [item[key] for item in items]
        first = values[0]
        if not all(
            isinstance(v, torch.Tensor) and v.shape == first.shape and v.dtype == first.dtype for v in values
        ):
            return torch.utils.data.default_collate(items)
        shape = (len(values), *first.shape)
        out[key] = torch.stack(
            values, out=shared_tensor(shape, first.dtype) if worker else torch.empty(shape, dtype=first.dtype)
        )
    return out


def _collate_items(batch, *, collate_fn_map=None):
    """torch's `default_collate` on robotempo items: the stacked batch of an `ItemBatch` (as `collate`), so a
    DataLoader without `collate_fn=collate` does not stack every tensor again (3.5-4x the CPU per sample at
    480x640); a list of items gathered one by one is collated as dicts."""
    if isinstance(batch, ItemBatch):
        return collate(batch)
    return torch.utils.data.default_collate([dict(item) for item in batch])


# torch documents this map as the way to teach `default_collate` a type (torch.utils.data._utils.collate).
default_collate_fn_map[Item] = _collate_items


def _make_dropout(p: float, seed: int):
    from robotempo.prompt import SpeedDropout

    return SpeedDropout(p, seed) if p else None


def _caller_order(selected: np.ndarray, given) -> np.ndarray:
    """Positions of the selected episodes (sorted) in the order `given` lists them (None: sorted)."""
    if given is None:
        return np.arange(len(selected))
    rank: dict[int, int] = {}
    try:
        for i, e in enumerate(given):
            rank.setdefault(int(e), i)
    except TypeError:  # not a sequence of ints (select_episodes took it): sorted
        return np.arange(len(selected))
    order = [rank.get(int(e), -1) for e in selected]
    if -1 in order:  # an iterator the selection consumed: sorted
        return np.arange(len(selected))
    return np.argsort(np.array(order, dtype=np.int64), kind="stable")


def _filtered(meta: DatasetMeta, predicate: Callable[[dict], bool], episodes, root) -> list[int]:
    """The episodes (of `episodes`, else all) whose `meta.episodes` row the predicate accepts (LeRobot 0.6's
    `episode_filter`); none is a `SelectionError`."""
    table = meta.episodes
    candidates = None if episodes is None else set(int(e) for e in episodes)
    chosen = [
        int(row["episode_index"])
        for row in (table[i] for i in range(len(table)))
        if (candidates is None or row["episode_index"] in candidates) and predicate(row)
    ]
    if not chosen:
        among = "" if episodes is None else f" among episodes={list(episodes)!r:.200}"
        raise SelectionError(
            f"episode_filter selects no episode of {root}{among}. Fix: check the predicate against "
            f"meta.episodes rows, which have the keys {table.column_names} (e.g. lambda ep: ep['length'] > 9)"
        )
    return chosen


class LeRobotDatasetMetadata(DatasetMeta):
    """LeRobot's metadata class: `meta/` of the dataset at `root` (default `$HF_LEROBOT_HOME/<repo_id>`),
    read in place as `LeRobotDataset(...).meta` is. Nothing is downloaded: `revision`, `force_cache_sync` and
    the Hub arguments are accepted and have no effect."""

    def __init__(
        self,
        repo_id: str,
        root: str | Path | None = None,
        revision: str | None = None,
        force_cache_sync: bool = False,
        metadata_buffer_size: int = 10,
        *,
        repo_type: str = "dataset",
        token: str | bool | None = None,
        storage_options: Mapping[str, Any] | None = None,
    ):
        location = as_root(root if root is not None else default_root(repo_id, revision), storage_options)
        meta = read_metadata(location)
        super().__init__(
            root=meta.root,
            info=meta.info,
            tasks=meta.tasks,
            episodes=meta.episodes,
            location=meta.location,
            repo_id=repo_id,
            revision=revision if revision else LEROBOT_REVISION,
        )


def _version_hash(version: str | None) -> int:
    """An object's version (ETag, else Last-Modified) as a signed 64-bit integer; 0 for none."""
    if not version:
        return 0
    import hashlib

    return int.from_bytes(hashlib.blake2b(version.encode(), digest_size=8).digest(), "little", signed=True)
