"""`Mixture`: several LeRobot datasets served as one map-style torch Dataset, each item on one schema.

The global index space is the concatenation of the datasets in order: index `i` is frame
`i - offsets[d]` of dataset `d`, where `offsets[d] <= i < offsets[d + 1]`. Weights are not applied here
(every frame has one index); a sampler (`robotempo.Sampler`) draws from the datasets by `mix.weights`.

How items of different datasets are made alike (keys, padding, masks) is described in
`robotempo.mixture_schema`. Every item also carries `dataset_index` (int64) and `dataset_name` (str).
"""

from __future__ import annotations

import copy
import functools
import logging
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch

from robotempo.arrays import distinct
from robotempo.dataset import (
    OPENED_BY_MIXTURE,
    ItemBatch,
    LeRobotDataset,
    default_root,
    index_array,
    item_index,
)
from robotempo.env import env_int
from robotempo.errors import (
    DeltaTimestampsError,
    MissingFileError,
    MixtureError,
    RobotempoError,
    StorageError,
)
from robotempo.format.info import DEFAULT_COLUMNS, read_info
from robotempo.fs import as_root
from robotempo.fs.store import split_scheme
from robotempo.mixture_schema import Field, build_schema, conform, describe, output_keys
from robotempo.shm_pool import shared_tensor
from robotempo.store.shared import for_child_process, share_tables
from robotempo.temporal import grid_rows
from robotempo.video.cache import note_cover, video_union

logger = logging.getLogger(__name__)

RESAMPLE_CHOICES = (None, "nearest")
RESERVED_KEYS = frozenset({"task", "speed", "speed_is_pad", "dataset_index", "dataset_name"})
OPEN_THREADS_ENV = "ROBOTEMPO_MIXTURE_OPEN_THREADS"
DEFAULT_OPEN_THREADS = 8


def _check_spec_keys(d: int, spec: dict) -> None:
    """A spec's keys are LeRobotDataset's arguments: a misspelt one raised a bare TypeError naming no spec."""
    import difflib
    import inspect

    accepted = [name for name in inspect.signature(LeRobotDataset.__init__).parameters if name != "self"]
    unknown = [key for key in spec if key not in accepted]
    if unknown:
        near = {key: difflib.get_close_matches(str(key), accepted, n=1) for key in unknown}
        hints = ", ".join(f"{key!r} (did you mean {m[0]!r}?)" if m else repr(key) for key, m in near.items())
        raise MixtureError(
            f"dataset {d} ({spec['repo_id']!r}): the spec has keys LeRobotDataset does not take: {hints}",
            f"use LeRobotDataset's arguments: {', '.join(accepted)}",
        )


class Mixture(torch.utils.data.Dataset):
    """Several datasets as one: concatenated index space, one item schema, sampling weights.

    Args:
        datasets: `LeRobotDataset`s, or specs the mixture opens itself: dicts of `LeRobotDataset` keyword
            arguments (`{"repo_id": ..., "root": ..., "episodes": ...}`). Specs get the mixture's
            `delta_timestamps`; opened datasets keep their own, which must equal what the mixture's resolve
            to for them.
        weights: sampling weight of each dataset (finite, >= 0, not all 0; a 0 weight is allowed and never
            sampled), normalised to sum to 1. None: proportional to the number of frames of each dataset,
            i.e. every frame of the mixture equally likely.
        key_maps: one dict (or None) per dataset renaming its feature keys onto the mixture's keys, e.g.
            `{"observation.images.top": "observation.images.cam0"}`. Keys not mapped keep their name. There is
            no global registry: each mixture says how its datasets line up.
        names: the name each item's `dataset_name` carries, one per dataset; default the datasets'
            `repo_id`s, which must then be distinct.
        delta_timestamps: `{mixture key: [seconds, ...]}`, passed to every dataset opened from a spec and
            mapped onto its own frame grid (its key names through its key map). A dataset lacking a key gets
            the window as padding. An offset off a dataset's 1/fps grid (beyond its `tolerance_s`) is a
            `DeltaTimestampsError` naming the dataset, the key and the offset, unless `resample` says what to
            do.
        resample: None (off-grid offsets are errors) or "nearest": each dataset uses its frame nearest to
            the requested offset (the offsets it really uses are in `mix.datasets[d].delta_timestamps`).
    """

    def __init__(
        self,
        datasets: Sequence[LeRobotDataset | Mapping[str, Any]],
        weights: Sequence[float] | None = None,
        key_maps: Sequence[Mapping[str, str] | None] | None = None,
        *,
        names: Sequence[str] | None = None,
        delta_timestamps: Mapping[str, Sequence[float]] | None = None,
        resample: str | None = None,
    ):
        super().__init__()
        if isinstance(datasets, (str, bytes, Path, Mapping, torch.utils.data.Dataset)):
            # list() of a dataset would read every item of it before this could say so
            raise MixtureError(
                f"Mixture takes a list of datasets, got {type(datasets).__name__} {_short(datasets)}",
                "pass a list: Mixture([ds_a, ds_b]) or Mixture([{'repo_id': ..., 'root': ...}, ...])",
            )
        try:
            datasets = list(datasets)
        except TypeError:
            raise MixtureError(
                f"Mixture takes a list of datasets, got {type(datasets).__name__}",
                "pass a list: Mixture([ds_a, ds_b]) or Mixture([{'repo_id': ..., 'root': ...}, ...])",
            ) from None
        if not datasets:
            raise MixtureError("Mixture got no datasets", "pass at least one LeRobotDataset or dataset spec")
        if resample not in RESAMPLE_CHOICES:
            raise MixtureError(f"resample={resample!r} is not a choice", f"use one of {RESAMPLE_CHOICES}")
        self.key_maps = _key_maps(key_maps, len(datasets))
        self.delta_timestamps = dict(delta_timestamps) if delta_timestamps else None
        self.resample = resample
        self.datasets: list[LeRobotDataset] = self._open_all(datasets)
        self.names = _names(names, self.datasets)
        for d, ds in enumerate(self.datasets):
            _check_key_map(d, self.names[d], ds, self.key_maps[d])
        self.dataset_lengths = [len(ds) for ds in self.datasets]
        # The datasets share the process's video decoders, sized for all their files together as each joins
        # the cache at its first read (`VideoDecoderCache.join`; sized for one dataset's cameras, 10 datasets
        # of 4 cameras reopened ~39 MP4s per random batch, 4x the CPU per sample). One note for them all.
        sharing = [ds for ds in self.datasets if ds._video_cache_size is None]
        if sharing:
            parts = [part for ds in sharing for part in ds._video_parts()]
            note_cover(max(len(ds.video_keys) for ds in sharing), *video_union(parts))
        self.offsets = np.concatenate([[0], np.cumsum(self.dataset_lengths)]).astype(np.int64)
        self.weights = _weights(weights, self.dataset_lengths, self.names)
        _check_default_columns(self.datasets, self.names)
        self.schema: dict[str, Field] = build_schema(
            [describe(ds, m) for ds, m in zip(self.datasets, self.key_maps)], self.names
        )
        unknown = sorted(set(self.delta_timestamps or ()) - set(self.schema))
        if unknown:
            raise DeltaTimestampsError(
                f"Mixture delta_timestamps has keys {unknown} that no dataset has (after key_maps); use "
                f"some of {sorted(self.schema)}"
            )
        # declared string features (after key maps): each frame's str; "" where a dataset lacks the key
        self.string_keys: list[str] = []
        for d, (ds, m) in enumerate(zip(self.datasets, self.key_maps)):
            for key in ds.string_keys:
                name = m.get(key, key)
                if name in self.schema:
                    raise MixtureError(
                        f"{name!r} is a string feature in dataset {d} ({self.names[d]!r}) and a numeric or "
                        "camera key in another",
                        "rename one of them with key_maps",
                    )
                if name not in self.string_keys:
                    self.string_keys.append(name)
        strings = [self._strings_of(d) for d in range(len(self.datasets))]
        self._string_pads = [k for k in self.string_keys if not all(k in mine for mine in strings)]
        self.keys = [
            *DEFAULT_COLUMNS,
            *output_keys(self.schema),
            *self.string_keys,
            *(f"{k}_is_pad" for k in self._string_pads),
            "task",
            "speed",
            "speed_is_pad",
            "dataset_index",
            "dataset_name",
        ]  # every item's keys, in this order

    def _strings_of(self, d: int) -> set[str]:
        """Dataset `d`'s string features, named as in the mixture."""
        m = self.key_maps[d]
        return {m.get(k, k) for k in self.datasets[d].string_keys}

    # -- open --------------------------------------------------------------------------------------------
    def _open_all(self, datasets: list) -> list[LeRobotDataset]:
        """Open the specs, 8 at a time in threads when some root is in an object store: such an open waits on
        ~15-30 requests one after another, so 100 datasets in a bucket would open one round trip at a time.
        Local opens are CPU work under the GIL: in threads, P9's 100 local datasets opened 1.39x slower than
        one by one, so by default they open one by one. `ROBOTEMPO_MIXTURE_OPEN_THREADS`, when set, applies
        to every mixture.

        The error raised is the first in the datasets' order, as when opened one by one. A dataset that fails
        with a robotempo error does not stop the others' opens: when several fail, the first one's message
        lists the others, so a job over 100 datasets with three broken ones is fixed in one round, not three
        restarts. A `StorageError` (a store that does not answer: each open would wait out its deadline) and
        an error that is not robotempo's stop the opens at once (still listed after an earlier failure)."""
        specs = [x for x in datasets if not isinstance(x, LeRobotDataset)]
        default = DEFAULT_OPEN_THREADS if any(_is_remote(x) for x in specs) else 1
        threads = min(len(specs), env_int(OPEN_THREADS_ENV, default))
        opened: list[LeRobotDataset] = []
        failed: list[tuple[int, Exception]] = []

        def collect(results) -> None:  # each dataset's open, in the datasets' order
            for d, result in enumerate(results):
                try:
                    opened.append(result())
                except Exception as e:
                    failed.append((d, e))
                    if _stops_the_opens(e):
                        return

        if threads <= 1:
            collect(functools.partial(self._open, d, x) for d, x in enumerate(datasets))
        else:
            pool = ThreadPoolExecutor(threads, thread_name_prefix="robotempo-mixture-open")
            try:
                collect([pool.submit(self._open, d, x).result for d, x in enumerate(datasets)])
            finally:
                pool.shutdown(wait=True, cancel_futures=True)  # after an error: no new opens, the running end
        if failed:
            raise _with_the_others(failed, datasets)
        return opened

    def _open(self, d: int, source: LeRobotDataset | Mapping[str, Any]) -> LeRobotDataset:
        if isinstance(source, LeRobotDataset):
            if self.delta_timestamps is not None:
                keys = [*source.frames.columns, *source.camera_keys]
                want = self._dataset_deltas(
                    d, source.repo_id, source.root, source.fps, keys, source.tolerance_s
                )
                have = {k: [float(x) for x in v] for k, v in (source.delta_timestamps or {}).items()}
                if have != want:
                    raise MixtureError(
                        f"dataset {d} ({source.repo_id!r}) was opened with delta_timestamps={have}, but the "
                        f"mixture's delta_timestamps resolve to {want} for it",
                        "pass it as a spec (a dict of LeRobotDataset arguments) so the mixture opens it, or "
                        "open it with those delta_timestamps",
                    )
            return source
        if not isinstance(source, Mapping) or "repo_id" not in source:
            raise MixtureError(
                f"dataset {d} is {source!r:.80}, neither a LeRobotDataset nor a spec dict with 'repo_id'",
                "pass LeRobotDataset objects or dicts of LeRobotDataset arguments, e.g. "
                "{'repo_id': 'lab/pick', 'root': '/data/pick'}",
            )
        kwargs = dict(source)
        _check_spec_keys(d, kwargs)
        if self.delta_timestamps is not None:
            if kwargs.get("delta_timestamps") is not None:
                raise MixtureError(
                    f"dataset {d} ({kwargs['repo_id']!r}) and the mixture both have delta_timestamps",
                    "give delta_timestamps in one place: the Mixture's (seconds, mapped onto each dataset)",
                )
            root = as_root(
                kwargs.get("root") or default_root(kwargs["repo_id"], kwargs.get("revision")),
                kwargs.get("storage_options"),
            )
            try:
                info = read_info(root, keep=True)  # kept on `root` for the dataset's own open below
            except MissingFileError:
                info = None  # LeRobotDataset raises its own error (with its hint for a repo_id)
            if info is not None:
                kwargs["root"] = root
                keys = [k for k, f in info.features.items() if f.dtype != "string"]
                tolerance = kwargs.get("tolerance_s", 1e-4)
                kwargs["delta_timestamps"] = self._dataset_deltas(
                    d, kwargs["repo_id"], root.where(), info.fps, keys, tolerance
                )
        token = OPENED_BY_MIXTURE.set(True)
        try:
            return LeRobotDataset(**kwargs)
        finally:
            OPENED_BY_MIXTURE.reset(token)

    def _dataset_deltas(
        self, d: int, name: str, root: Path | str, fps: float, keys: list[str], tolerance_s: float
    ) -> dict[str, list[float]]:
        """The mixture's delta_timestamps for one dataset: its key names, its frame grid."""
        key_map = self.key_maps[d]
        inverse = {v: k for k, v in key_map.items()}
        out = {}
        for key, seconds in (self.delta_timestamps or {}).items():
            if key in inverse:
                own = inverse[key]
            elif key in key_map:
                continue  # this dataset's own `key` is renamed to another mixture key
            else:
                own = key
            if own not in keys:
                continue
            try:
                values = np.asarray(list(seconds), dtype=np.float64).reshape(-1)
            except (TypeError, ValueError):
                raise DeltaTimestampsError(
                    f"delta_timestamps[{key!r}] must be a list of numbers (seconds), got {seconds!r}"
                ) from None
            if not np.isfinite(values).all():
                bad_value = float(values[~np.isfinite(values)][0])
                raise DeltaTimestampsError(
                    f"delta_timestamps[{key!r}] has {bad_value:g}: offsets must be finite numbers of seconds"
                )
            rows, off = grid_rows(values, fps)
            bad = np.flatnonzero(~(off <= tolerance_s))
            if len(bad) and self.resample is None:
                v, nearest = float(values[bad[0]]), float(rows[bad[0]] / fps)
                raise DeltaTimestampsError(
                    f"dataset {d} ({name!r} at {root}, {fps:g} fps): delta_timestamps[{key!r}] has {v:g} s, "
                    f"{off[bad[0]]:.3g} s off its 1/{fps:g} s frame grid (tolerance_s={tolerance_s:g}). Fix: "
                    f"pass resample='nearest' to Mixture to use each dataset's nearest frame "
                    f"({nearest:.6g} s here), or use offsets on every dataset's frame grid"
                )
            out[own] = (rows / fps).tolist() if len(bad) else values.tolist()
        return out

    # -- LeRobot-like attributes ---------------------------------------------------------------------------
    def __len__(self) -> int:
        return int(self.offsets[-1])

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({len(self.datasets)} datasets, frames={len(self)}, "
            f"names={self.names[:3]}{'...' if len(self.names) > 3 else ''})"
        )

    @property
    def num_frames(self) -> int:
        return len(self)

    @property
    def num_episodes(self) -> int:
        return sum(ds.num_episodes for ds in self.datasets)

    def set_epoch(self, epoch: int) -> None:
        """Forwarded to every dataset (the epoch of their seeded speed-label dropout)."""
        for ds in self.datasets:
            ds.set_epoch(epoch)

    def locate(self, indices: Sequence[int] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(dataset index, index inside that dataset) of each global index (negative: from the end)."""
        idx = index_array(indices)
        n = len(self)
        if len(idx) and (idx.min() < -n or idx.max() >= n):
            bad = int(idx[(idx < -n) | (idx >= n)][0])
            raise IndexError(f"index {bad} is out of range for a mixture of {n} frames")
        if len(idx) and idx.min() < 0:
            idx = np.where(idx < 0, idx + n, idx)
        which = np.searchsorted(self.offsets, idx, side="right") - 1
        return which, idx - self.offsets[which]

    def __getstate__(self) -> dict:
        if for_child_process():  # all datasets' columns in one shared segment: one descriptor per mixture
            share_tables([ds.frames for ds in self.datasets])
        return self.__dict__.copy()

    # -- items -------------------------------------------------------------------------------------------
    def __getitem__(self, idx: int) -> dict:
        return self.__getitems__([item_index(idx, len(self))])[0]

    def __getitems__(self, indices: Sequence[int]) -> ItemBatch:
        """Items of the mixture: one `__getitems__` call per source dataset, put back in request order."""
        which, local = self.locate(indices)
        n = len(which)
        # An empty request still gets every key (empty, typed as in any batch), through the first dataset.
        groups = [(int(d), np.flatnonzero(which == d)) for d in distinct(which)] if n else [(0, local)]
        # Cameras of a batch from several datasets: one tensor, each dataset's frames decoded at its rows
        # (decoded in each dataset's shape, then copied, a worker's pool took ~20 storages per batch in as
        # many sizes, and 6% of the camera bytes were fresh shared memory; QA soak, 30 datasets x 3 cameras).
        cameras = self._cameras(n) if len(groups) > 1 else {}
        parts = []
        for d, sel in groups:
            into, filled = self._into(d, sel, cameras)
            batch = self.datasets[d]._batch(local[sel], into)
            part = conform(batch.stacked, len(sel), d, self.schema, self.key_maps[d], self.names[d], filled)
            part["dataset_index"] = torch.full((len(sel),), d, dtype=torch.int64)
            part["dataset_name"] = [self.names[d]] * len(sel)
            mine = self._strings_of(d)
            for key in self.string_keys:
                if key not in mine:
                    part[key] = [""] * len(sel)
                if key in self._string_pads:
                    part[f"{key}_is_pad"] = torch.full((len(sel),), key not in mine, dtype=torch.bool)
            parts.append((sel, {key: part[key] for key in self.keys if key not in filled}))
        merged = _merge(parts, n, self.names, cameras)
        return ItemBatch({key: merged[key] for key in self.keys}, n)

    def _cameras(self, n: int) -> dict[str, torch.Tensor]:
        """An uninitialised merged tensor for each camera key, `(n, *item shape)` (in a worker: from its
        shared-memory pool, as `frames_tensor`); `__getitems__` writes every row of each."""
        in_worker = torch.utils.data.get_worker_info() is not None
        out = {}
        for f in self.schema.values():
            if f.camera:
                shape = (n, *f.item_shape())
                out[f.key] = shared_tensor(shape, f.dtype) if in_worker else torch.empty(shape, dtype=f.dtype)
        return out

    def _into(
        self, d: int, sel: np.ndarray, cameras: dict[str, torch.Tensor]
    ) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], frozenset[str]]:
        """For dataset `d`'s rows `sel` of the batch: which of its cameras it decodes straight into the
        merged tensors (its key -> (flat frames, positions)), and the mixture keys filled so (a camera it
        lacks is zeroed here); its other cameras are served as parts and copied in by `_merge`."""
        into, filled = {}, set()
        ds, key_map = self.datasets[d], self.key_maps[d]
        own = {key_map.get(k, k): k for k in ds.camera_keys}
        for key, merged in cameras.items():
            f = self.schema[key]
            if not f.present[d]:
                merged.numpy()[sel] = 0
                filled.add(key)
            elif ds._fills(own[key]):
                t = f.window or 1
                positions = (sel[:, None] * t + np.arange(t)).reshape(-1)
                into[own[key]] = (merged.view(-1, *f.shape).numpy(), positions)
                filled.add(key)
        return into, frozenset(filled)


def _is_remote(spec: Any) -> bool:
    """Whether a spec's root names an object store (`s3://...`); specs without a root open the local cache."""
    root = spec.get("root") if isinstance(spec, Mapping) else None
    return root is not None and split_scheme(str(root))[0] not in ("", "file")


def _merge(
    parts: list[tuple[np.ndarray, dict]], n: int, names: list[str], cameras: dict[str, torch.Tensor]
) -> dict:
    """Per-dataset stacked parts -> one stacked batch in request order. `cameras`: merged camera tensors
    some parts' rows are already in (a part that carries the key is copied in at its rows)."""
    if len(parts) == 1 and not cameras:
        return parts[0][1]  # one dataset: its rows are already in request order
    order = np.concatenate([sel for sel, _ in parts])
    out = {}
    for key, merged in cameras.items():
        for sel, part in parts:
            if key in part:
                value = part.pop(key)
                _check_part(
                    key, value, part, merged, names, "make its image_transforms produce one fixed shape"
                )
                merged.numpy()[sel] = value.numpy()
        out[key] = merged
    for key, first in parts[0][1].items():
        if isinstance(first, list):
            values: list = [None] * n
            for i, v in zip(order.tolist(), (v for _, part in parts for v in part[key])):
                values[i] = v
            out[key] = values
            continue
        for _, part in parts:
            _check_part(key, part[key], part, first, names, "store the column with one dtype and shape")
        # Camera batches a worker built in shared memory (its reused pool) are merged into shared memory too:
        # a fresh private tensor cost a page fault per page and one more copy when the batch was packed.
        shape = (n, *first.shape[1:])
        shared = first.is_shared()
        merged = shared_tensor(shape, first.dtype) if shared else torch.empty(shape, dtype=first.dtype)
        if first.dtype == torch.bfloat16:  # numpy has no bfloat16
            for sel, part in parts:
                merged[torch.from_numpy(sel)] = part[key]
        elif shared or first[:1].nbytes > 4096:  # large rows: each part straight into place
            target = merged.numpy()
            for sel, part in parts:
                target[sel] = part[key].numpy()
        else:  # small rows: one concatenation, one scatter (torch's indexed assignment of each part took
            # 0.75-8 ms with 2 threads, and a call per part and key made 50-dataset batches 15x slower)
            merged.numpy()[order] = torch.cat([part[key] for _, part in parts]).numpy()
        out[key] = merged
    return out


def _check_part(
    key: str, value: torch.Tensor, part: dict, like: torch.Tensor, names: list[str], fix: str
) -> None:
    """A dataset's part of a batch must have the dtype and per-item shape of the batch's tensor `like`."""
    if value.dtype != like.dtype or value.shape[1:] != like.shape[1:]:
        d = int(part["dataset_index"][0])
        raise MixtureError(
            f"{key!r} comes as {value.dtype} {tuple(value.shape[1:])} from dataset {d} ({names[d]!r}) and as "
            f"{like.dtype} {tuple(like.shape[1:])} from another",
            f"{fix} in every dataset",
        )


def _check_default_columns(datasets: list[LeRobotDataset], names: list[str]) -> None:
    first = datasets[0].frames.columns
    for d, ds in enumerate(datasets[1:], start=1):
        for key in DEFAULT_COLUMNS:
            a, b = first[key], ds.frames.columns[key]
            if a.dtype != b.dtype or a.shape[1:] != b.shape[1:]:
                raise MixtureError(
                    f"column {key!r} is {b.dtype} {b.shape[1:]} in dataset {d} ({names[d]!r}) but {a.dtype} "
                    f"{a.shape[1:]} in dataset 0 ({names[0]!r})",
                    "re-export the datasets with the LeRobot default column types",
                )


def _key_maps(key_maps, n: int) -> list[dict[str, str]]:
    if key_maps is None:
        return [{} for _ in range(n)]
    if isinstance(key_maps, (Mapping, str, bytes)):
        raise MixtureError(
            f"key_maps is a {type(key_maps).__name__}, not a list",
            "pass a list with one dict (or None) per dataset, in order",
        )
    key_maps = list(key_maps)
    if len(key_maps) != n:
        raise MixtureError(
            f"got {len(key_maps)} key_maps for {n} datasets", "pass one dict (or None) per dataset, in order"
        )
    out = []
    for d, m in enumerate(key_maps):
        if m is not None and not isinstance(m, Mapping):
            raise MixtureError(
                f"key_maps[{d}] is a {type(m).__name__}",
                "pass one dict (feature name -> mixture key) or None per dataset",
            )
        m = dict(m or {})
        bad = [(k, v) for k, v in m.items() if not (isinstance(k, str) and isinstance(v, str) and v)]
        if bad:
            raise MixtureError(
                f"key_maps[{d}] has {bad[0]!r}", "map feature names (str) to mixture keys (str)"
            )
        out.append(m)
    return out


def _check_key_map(d: int, name: str, ds: LeRobotDataset, key_map: dict[str, str]) -> None:
    features = [k for k in (*ds.frames.columns, *ds.camera_keys) if k not in DEFAULT_COLUMNS]
    for key, target in key_map.items():
        if key not in features:
            raise MixtureError(
                f"key_maps[{d}] maps {key!r}, which dataset {d} ({name!r}) does not have",
                f"map some of its features {sorted(features)}",
            )
        if target in DEFAULT_COLUMNS or target in RESERVED_KEYS:
            raise MixtureError(
                f"key_maps[{d}] maps {key!r} onto the reserved key {target!r}", "pick another name"
            )
    mapped = [key_map.get(k, k) for k in features]
    dup = sorted({k for k in mapped if mapped.count(k) > 1})
    if dup:
        raise MixtureError(
            f"key_maps[{d}] maps several features of dataset {d} ({name!r}) onto {dup}",
            "map each feature to its own mixture key",
        )


def _names(names, datasets: list[LeRobotDataset]) -> list[str]:
    if names is None:
        out = [ds.repo_id for ds in datasets]
        dup = sorted({x for x in out if out.count(x) > 1})
        if dup:
            raise MixtureError(
                f"several datasets have the repo_id {dup[0]!r}",
                "pass names=[...] with one distinct name each",
            )
        return out
    if isinstance(names, (Mapping, str, bytes)):
        raise MixtureError(
            f"names={names!r:.200} is not a list", "pass a list of one distinct name per dataset"
        )
    out = [str(x) for x in names]
    if len(out) != len(datasets) or len(set(out)) != len(out):
        raise MixtureError(
            f"names={out!r:.200} for {len(datasets)} datasets", "pass one distinct name per dataset, in order"
        )
    return out


def _weights(weights, lengths: list[int], names: list[str]) -> np.ndarray:
    if weights is None:
        w = np.asarray(lengths, dtype=np.float64)
        return w / w.sum()
    if isinstance(weights, (Mapping, str, bytes)):
        raise MixtureError(
            f"weights={weights!r:.200} is a {type(weights).__name__}",
            "pass a list of one number >= 0 per dataset, in the datasets' order",
        )
    try:
        w = np.asarray(list(weights), dtype=np.float64)
    except (TypeError, ValueError):
        raise MixtureError(
            f"weights={weights!r:.200} are not numbers", "pass one number >= 0 per dataset"
        ) from None
    if w.shape != (len(lengths),):
        what = f"weights of shape {w.shape}" if w.ndim != 1 else f"{w.size} weights"
        raise MixtureError(
            f"got {what} for {len(lengths)} datasets", "pass a flat list of one weight per dataset, in order"
        )
    bad = np.flatnonzero(~np.isfinite(w) | (w < 0))
    if len(bad):
        d = int(bad[0])
        raise MixtureError(
            f"weights[{d}] (dataset {names[d]!r}) is {float(w[d]):g}",
            "weights must be finite and >= 0 (0 never samples the dataset)",
        )
    if w.sum() <= 0:
        raise MixtureError(f"all weights are 0 ({w.tolist()})", "give at least one dataset a weight > 0")
    return w / w.sum()


def _short(value: Any) -> str:
    text = repr(value) if isinstance(value, (str, bytes, Path)) else ""
    return text if len(text) <= 80 else text[:77] + "..."


def _stops_the_opens(error: Exception) -> bool:
    """A store that does not answer (each open would wait out its deadline) or an error that is not
    robotempo's (not about one dataset's files) ends a mixture's opens; other failures let the rest open."""
    return isinstance(error, StorageError) or not isinstance(error, RobotempoError)


def _with_the_others(failed: list[tuple[int, Exception]], datasets: list) -> Exception:
    """The first failed open's error, its message followed by the other failures (at most 10 listed); an
    error that is not robotempo's is raised as it is."""
    first = failed[0][1]
    if len(failed) == 1 or not isinstance(first, RobotempoError):
        return first

    def name(d: int) -> str:
        x = datasets[d]
        if isinstance(x, LeRobotDataset):
            return f"dataset {d} ({x.repo_id!r})"
        if isinstance(x, Mapping) and "repo_id" in x:
            return f"dataset {d} ({x['repo_id']!r})"
        return f"dataset {d}"

    lines = [f"  {name(d)}: {type(e).__name__}: {e}" for d, e in failed[1:11]]
    if len(failed) > 11:
        lines.append(f"  and {len(failed) - 11} more")
    combined = copy.copy(first)  # a new error (its type, its attributes): the first one is left as it was
    head = str(first)
    if not head.startswith(f"dataset {failed[0][0]} "):  # a MixtureError names its dataset already
        head = f"{name(failed[0][0])}: {head}"
    combined.args = (
        f"{head}\n{len(failed) - 1} more of the mixture's {len(datasets)} datasets "
        "failed to open (fix them all before the next run):\n" + "\n".join(lines),
    )
    return combined.with_traceback(first.__traceback__)
