"""Feature statistics (min / max / mean / std / count and quantiles), as training scripts use them for
normalisation. Two sources:

- `ds.meta.stats` (`read_stats`): what the dataset ships, over ALL its episodes: `meta/stats.json` when
  present, else aggregated from the per-episode statistics (`meta/episodes_stats.jsonl` of v2.1, the
  `stats/<feature>/<stat>` columns of the v3.0 episode metadata). Aggregation over episodes i with counts n_i:
  mean = sum(n_i mean_i) / N, variance = sum(n_i (std_i^2 + (mean_i - mean)^2)) / N, min / max elementwise,
  count = N; quantiles are count-weighted means of the episodes' quantiles (an approximation, LeRobot's too).
- `compute_stats(ds or mixture)`: over exactly the frames the dataset selected (`episodes=` /
  `excluded_episodes=` respected), from the resident numeric columns (no second read of the data), exact:
  mean, std (population), min, max, count, q01 and q99 (numpy's linear interpolation) per dimension. For a
  mixture, per group of datasets the user names; a group's statistics are those of its datasets' frames
  concatenated (exact, not averaged). Cameras are not covered (they are not resident): use `meta.stats`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import numpy as np

from robotempo.errors import ArgumentError, DatasetFormatError, MixtureError
from robotempo.format.info import DEFAULT_COLUMNS
from robotempo.format.v30 import episode_metadata_files, open_parquet
from robotempo.fs import DatasetRoot, as_root
from robotempo.io import read_json, read_jsonl
from robotempo.store.parquet import typed_reads

Stats = dict[str, dict[str, np.ndarray]]
STATS_FIX = "regenerate the statistics, or delete the file so robotempo aggregates the per-episode statistics"


def _arrays(stats: dict, path: Path | str) -> Stats:
    out: Stats = {}
    for feature, values in stats.items():
        if not isinstance(values, dict):
            raise DatasetFormatError(
                path, f"stats of {feature!r} must be an object, got {values!r:.60}", STATS_FIX
            )
        out[feature] = {name: _stat_array(name, v) for name, v in values.items()}
    return out


def _stat_array(name: str, value) -> np.ndarray:
    """A statistic as numpy: float64, except `count` (int64, as LeRobot loads it)."""
    if name == "count":
        count = np.asarray(value)
        if count.dtype.kind == "f" and np.all(np.isfinite(count)) and np.all(count == np.round(count)):
            return count.astype(np.int64)
        return count
    return np.asarray(value, dtype=np.float64)


def aggregate(per_episode: Iterable[Stats]) -> Stats:
    """Combine per-episode statistics into statistics of their union."""
    groups: dict[str, list[dict[str, np.ndarray]]] = {}
    for stats in per_episode:
        for feature, values in stats.items():
            groups.setdefault(feature, []).append(values)
    out: Stats = {}
    for feature, items in groups.items():
        n = np.array([float(np.asarray(s["count"]).reshape(-1)[0]) for s in items])
        total = n.sum()
        w = (n / total).reshape(-1, *([1] * np.asarray(items[0]["mean"]).ndim))
        means = np.stack([s["mean"] for s in items])
        mean = (w * means).sum(axis=0)
        var = (w * (np.stack([s["std"] for s in items]) ** 2 + (means - mean) ** 2)).sum(axis=0)
        agg = {
            "min": np.min(np.stack([s["min"] for s in items]), axis=0),
            "max": np.max(np.stack([s["max"] for s in items]), axis=0),
            "mean": mean,
            "std": np.sqrt(var),
            "count": np.array([int(total)]),
        }
        for q in sorted(k for k in items[0] if k.startswith("q")):
            if all(q in s for s in items):
                agg[q] = (w * np.stack([s[q] for s in items])).sum(axis=0)
        out[feature] = agg
    return out


def read_stats(root: str | Path | DatasetRoot, is_v3: bool) -> Stats:
    root = as_root(root)
    if root.is_file("meta/stats.json"):
        return _arrays(
            read_json(root.file("meta/stats.json"), "the statistics file", STATS_FIX),
            root.where("meta/stats.json"),
        )
    if not is_v3:
        rel = "meta/episodes_stats.jsonl"
        rows = read_jsonl(root.file(rel), "the per-episode statistics", STATS_FIX)
        return aggregate(_arrays(row.get("stats", {}), root.where(rel)) for _, row in rows)
    per_episode = []
    for rel in episode_metadata_files(root):
        pf = open_parquet(root, rel, "the v3.0 episode metadata", STATS_FIX)
        names = [c for c in pf.schema_arrow.names if c.startswith("stats/")]
        with typed_reads(root.file(rel), "its statistics columns"):
            table = pf.read(columns=names, use_threads=False).to_pylist()
        for row in table:
            stats: dict = {}
            for column, value in row.items():
                _, feature, stat = column.split("/", 2)
                stats.setdefault(feature, {})[stat] = _stat_array(stat, value)
            per_episode.append(stats)
    return aggregate(per_episode)


QUANTILES = {"q01": 0.01, "q99": 0.99}


def column_stats(values: np.ndarray) -> dict[str, np.ndarray]:
    """Exact statistics of one column `(rows, *shape)` over its rows, per element of `shape` (float64)."""
    x = values.astype(np.float64, copy=False)
    x = x.reshape(len(x), 1) if x.ndim == 1 else x
    out = {
        "mean": x.mean(axis=0),
        "std": x.std(axis=0),
        "min": x.min(axis=0),
        "max": x.max(axis=0),
        "count": np.array([len(x)], dtype=np.int64),
    }
    for name, q in QUANTILES.items():
        out[name] = np.quantile(x, q, axis=0)
    return out


def _pooled(parts: list[np.ndarray]) -> dict[str, np.ndarray]:
    """Statistics of the rows of several columns together; vectors of different widths per dimension, over
    the parts that have the dimension (then `count` is per dimension)."""
    shapes = {p.shape[1:] for p in parts}
    if len(shapes) == 1:
        return column_stats(parts[0] if len(parts) == 1 else np.concatenate(parts))
    parts = [p.reshape(-1, 1) if p.ndim == 1 else p for p in parts]  # shape [1] (0-d per frame) among vectors
    width = max(p.shape[1] for p in parts)
    per_dim = [column_stats(np.concatenate([p[:, j] for p in parts if p.shape[1] > j])) for j in range(width)]
    out = {name: np.concatenate([s[name] for s in per_dim]) for name in per_dim[0]}
    out["count"] = out["count"].astype(np.int64)
    return out


def compute_stats(
    source,
    keys: Sequence[str] | None = None,
    group_by: str | Sequence[str] | Callable | None = None,
) -> dict:
    """Statistics of the selected frames of a `LeRobotDataset`, or of groups of a `Mixture`'s datasets.

    Args:
        source: a `LeRobotDataset` (returns `{key: {stat: array}}`) or a `Mixture` (returns
            `{group: {key: {stat: array}}}`, keys named as in the mixture's items).
        keys: the numeric features to cover; default every numeric feature except the five default columns.
        group_by (mixture only): None or "dataset" (one group per dataset, by its name), "robot_type" (the
            datasets' `meta.robot_type`), "all" (one group), a sequence of one group label per dataset, or a
            callable `(dataset_index, dataset) -> label`.
    """
    if not hasattr(source, "datasets"):
        columns = source.frames.columns
        keys = _checked_keys(keys, columns, source.camera_keys)
        return {k: column_stats(v) for k, v in columns.items() if _wanted(k, keys)}
    pairs = list(zip(source.key_maps, source.datasets))
    numeric = [m.get(k, k) for m, ds in pairs for k in ds.frames.columns]
    cameras = [m.get(k, k) for m, ds in pairs for k in ds.camera_keys]
    keys = _checked_keys(keys, numeric, cameras)
    labels = _group_labels(source, group_by)
    out: dict = {}
    for label in dict.fromkeys(labels):
        members = [d for d, g in enumerate(labels) if g == label]
        columns: dict[str, list[np.ndarray]] = {}
        for d in members:
            key_map = source.key_maps[d]
            for key, column in source.datasets[d].frames.columns.items():
                columns.setdefault(key_map.get(key, key), []).append(column)
        out[label] = {key: _pooled(parts) for key, parts in columns.items() if _wanted(key, keys)}
    return out


def _checked_keys(keys, numeric: Iterable[str], cameras: Iterable[str]) -> list[str] | None:
    """`keys` as a list, each a numeric feature some dataset has (a misspelt key once gave no statistics)."""
    if keys is None:
        return None
    keys = [keys] if isinstance(keys, str) else list(keys)
    have = set(numeric) - set(DEFAULT_COLUMNS)
    for key in keys:
        if key not in have:
            kind = (
                "a camera (statistics cover numeric features)"
                if key in set(cameras)
                else "a default column"
                if key in DEFAULT_COLUMNS
                else "not a feature of the data"
            )
            raise ArgumentError(
                f"compute_stats: keys has {key!r}, {kind}. Fix: pick from {sorted(have)} (mixture keys after "
                "key_maps)"
            )
    return keys


def _wanted(key: str, keys) -> bool:
    return key not in DEFAULT_COLUMNS and (keys is None or key in keys)


def _group_labels(mixture, group_by) -> list:
    n = len(mixture.datasets)
    if group_by is None or group_by == "dataset":
        return list(mixture.names)
    if group_by == "all":
        return ["all"] * n
    if group_by == "robot_type":
        return [ds.meta.robot_type for ds in mixture.datasets]
    if callable(group_by):
        return [group_by(d, ds) for d, ds in enumerate(mixture.datasets)]
    if isinstance(group_by, str) or len(group_by) != n:
        raise MixtureError(
            f"group_by={group_by!r:.100} is not a grouping of {n} datasets",
            "use 'dataset', 'robot_type', 'all', one label per dataset, or a callable "
            "(index, dataset) -> label",
        )
    return list(group_by)
