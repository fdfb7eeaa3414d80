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

from robotempo.errors import ArgumentError, DatasetFormatError, MissingFileError, MixtureError, RobotempoError
from robotempo.format.episodes import EpisodeTable
from robotempo.format.info import DEFAULT_COLUMNS, DatasetInfo
from robotempo.format.v30 import episode_metadata_files, open_parquet
from robotempo.fs import DatasetRoot, as_root
from robotempo.io import read_json, read_jsonl
from robotempo.store.parquet import typed_reads

Stats = dict[str, dict[str, np.ndarray]]
STATS_FIX = "regenerate the statistics, or delete the file so robotempo aggregates the per-episode statistics"
EPISODE_STATS_FIX = (
    "regenerate the per-episode statistics (one row per episode of the dataset), or recompute the dataset's "
    "statistics with LeRobot's tools"
)
STATS_JSON = "meta/stats.json"


class StatsSnapshot:
    """`meta/stats.json` as the open found it (its parsed JSON, None when absent, or the error reading it):
    statistics read later agree with the episodes the open read, even when a writer appends meanwhile."""

    def __init__(self, root: DatasetRoot):
        self.value, self.error = None, None
        try:
            self.value = read_json(root.file(STATS_JSON), "the statistics file", STATS_FIX)
        except MissingFileError:
            pass  # no stats.json: the per-episode statistics are aggregated when asked for
        except RobotempoError as error:  # raised where the statistics are used, not at open
            self.error = error


def read_stats(
    root: str | Path | DatasetRoot,
    info: DatasetInfo,
    catalog: EpisodeTable | None = None,
    snapshot: StatsSnapshot | None = None,
) -> Stats:
    """The dataset's statistics over all its episodes of `catalog` (the episode table the open read):

    - v2.1: the aggregate of `meta/episodes_stats.jsonl`, as LeRobot's v2.1 reader and OpenTau compute them
      (a `meta/stats.json` beside it is v2.0's file, which tools that keep only the per-episode file leave
      stale); `meta/stats.json` only when there is no per-episode file;
    - v3.0: `meta/stats.json` as the open found it (`snapshot`), else the aggregate of the episode
      metadata's `stats/<feature>/<stat>` columns (LeRobot has None there).

    Aggregates cover exactly the catalog's episodes (rows of episodes appended since the open are left out),
    one row each, and the features info.json declares; every value is checked: numbers (no nulls), a shape
    that fits the feature, counts that are the episodes' lengths for numeric features.
    """
    root = as_root(root)
    if not info.is_v3 and root.is_file("meta/episodes_stats.jsonl"):
        return _episode_stats_v21(root, info, catalog)
    if snapshot is None:
        snapshot = StatsSnapshot(root)
    if snapshot.error is not None:
        raise snapshot.error
    if snapshot.value is not None:
        return _arrays(snapshot.value, root.where(STATS_JSON), info)
    if not info.is_v3:
        rel = "meta/episodes_stats.jsonl"
        raise MissingFileError(root.where(rel), "the per-episode statistics", EPISODE_STATS_FIX)
    return _episode_stats_v30(root, info, catalog)


def _episode_stats_v21(root: DatasetRoot, info: DatasetInfo, catalog: EpisodeTable | None) -> Stats:
    rel = "meta/episodes_stats.jsonl"
    where = root.where(rel)
    by_episode: dict[int, tuple[int, dict]] = {}
    for line, row in read_jsonl(root.file(rel), "the per-episode statistics", EPISODE_STATS_FIX):
        episode = row.get("episode_index") if isinstance(row, dict) else None
        stats = row.get("stats") if isinstance(row, dict) else None
        if isinstance(episode, bool) or not isinstance(episode, int) or not isinstance(stats, dict):
            raise DatasetFormatError(
                where, f"a row must be an object with an integer 'episode_index' and a 'stats' object, got "
                f"{row!r:.80}", EPISODE_STATS_FIX, line=line,
            )  # fmt: skip
        if episode in by_episode:
            raise DatasetFormatError(
                where, f"episode {episode} has a second row (its first is line {by_episode[episode][0]})",
                EPISODE_STATS_FIX, line=line,
            )  # fmt: skip
        by_episode[episode] = (line, stats)
    return _aggregate_episodes(by_episode, where, info, catalog)


def _episode_stats_v30(root: DatasetRoot, info: DatasetInfo, catalog: EpisodeTable | None) -> Stats:
    by_episode: dict[int, tuple[int | None, dict]] = {}
    for rel in episode_metadata_files(root):
        pf = open_parquet(root, rel, "the v3.0 episode metadata", STATS_FIX)
        names = [c for c in pf.schema_arrow.names if c.startswith("stats/")]
        with typed_reads(root.file(rel), "its statistics columns"):
            table = pf.read(columns=["episode_index", *names], use_threads=False).to_pylist()
        for row in table:
            episode = row.pop("episode_index")
            stats: dict = {}
            for column, value in row.items():
                _, feature, stat = column.split("/", 2)
                stats.setdefault(feature, {})[stat] = value
            by_episode.setdefault(
                int(episode), (None, stats)
            )  # duplicates: refused when the catalog was read
    return _aggregate_episodes(by_episode, root.where("meta/episodes"), info, catalog)


def _aggregate_episodes(
    by_episode: dict, where: Path | str, info: DatasetInfo, catalog: EpisodeTable | None
) -> Stats:
    """The aggregate over the catalog's episodes (every one must have its row); each episode's statistics
    checked, numeric features' counts against the episode's length."""
    if catalog is None:
        episodes, lengths = sorted(by_episode), [None] * len(by_episode)
    else:
        episodes, lengths = catalog.episode_index.tolist(), catalog.length.tolist()
    per_episode = []
    for episode, length in zip(episodes, lengths):
        if episode not in by_episode:
            raise DatasetFormatError(
                where, f"episode {episode} of the dataset has no statistics row", EPISODE_STATS_FIX
            )
        line, raw = by_episode[episode]
        stats = _arrays(raw, where, info, declared_only=True, line=line, episode=episode)
        for feature, values in stats.items():
            spec = info.features.get(feature)
            counted = int(values["count"].reshape(-1)[0]) if "count" in values else None
            if length is not None and spec is not None and spec.is_numeric and counted != length:
                raise DatasetFormatError(
                    where, f"episode {episode}: the statistics of {feature!r} count {counted} frames, the "
                    f"episode has {length}", EPISODE_STATS_FIX, line=line,
                )  # fmt: skip
        per_episode.append(stats)
    return aggregate(per_episode, where)


def _arrays(
    stats,
    path: Path | str,
    info: DatasetInfo | None = None,
    declared_only: bool = False,
    line: int | None = None,
    episode: int | None = None,
) -> Stats:
    """Parsed statistics as arrays, each checked (`_stat_array`); `declared_only` drops features info.json
    does not declare (LeRobot's `remove_feature` leaves their per-episode columns behind)."""
    of = "" if episode is None else f"episode {episode}: "
    if not isinstance(stats, dict):
        raise DatasetFormatError(
            path, f"{of}statistics must be an object of features, got {stats!r:.60}", STATS_FIX, line=line
        )
    out: Stats = {}
    for feature, values in stats.items():
        spec = info.features.get(feature) if info is not None else None
        if declared_only and info is not None and spec is None:
            continue
        if not isinstance(values, dict):
            raise DatasetFormatError(
                path, f"{of}stats of {feature!r} must be an object, got {values!r:.60}", STATS_FIX, line=line
            )
        out[feature] = {
            name: _stat_array(name, v, path, f"{of}{feature!r} {name}", spec, line)
            for name, v in values.items()
        }
    return out


def _stat_array(
    name: str, value, path=None, what: str = "", spec=None, line: int | None = None
) -> np.ndarray:
    """A statistic as numpy, at least 1-d as LeRobot loads it: float64, except `count` (int64). A null, a
    non-number, a ragged list or a shape that does not fit the feature is a `DatasetFormatError`."""

    def bad(problem: str) -> DatasetFormatError:
        return DatasetFormatError(path or "statistics", f"{what or name} {problem}", STATS_FIX, line=line)

    if _has_null(value):
        raise bad("holds a null where a number belongs")
    try:
        array = np.atleast_1d(np.asarray(value, dtype=np.float64))
    except (TypeError, ValueError):
        raise bad(f"is not a number or a regular array of numbers: {value!r:.60}") from None
    if name == "count":
        if not (np.all(np.isfinite(array)) and np.all(array == np.round(array)) and np.all(array >= 0)):
            raise bad(f"must be a whole number of frames, got {value!r:.60}")
        return array.astype(np.int64)
    if spec is not None and not _fits(array.shape, spec):
        raise bad(f"has shape {array.shape}, which does not fit the feature's shape {tuple(spec.shape)}")
    return array


def _has_null(value) -> bool:
    if value is None:
        return True
    if isinstance(value, (list, tuple)):
        return any(_has_null(v) for v in value)
    return False


def _fits(shape: tuple[int, ...], spec) -> bool:
    """A statistic's shape for a feature: the feature's own shape, or per last dimension (LeRobot's writer
    for a (2, 3) feature); for a camera, one value per channel: (C, 1, 1) as LeRobot has them, with C up to
    4 (LeRobot gives a one-channel depth video's statistics three channels)."""
    if spec.is_camera:
        return len(shape) <= 3 and sorted(shape)[:-1] == [1] * (len(shape) - 1) and max(shape) <= 4
    if not spec.is_numeric:
        return True
    feature = tuple(spec.shape) or (1,)
    return (
        shape == feature or shape == feature[-1:] or (int(np.prod(feature)) == 1 and int(np.prod(shape)) == 1)
    )


def aggregate(per_episode: Iterable[Stats], where: Path | str = "statistics") -> Stats:
    """Combine per-episode statistics into statistics of their union."""
    groups: dict[str, list[dict[str, np.ndarray]]] = {}
    for stats in per_episode:
        for feature, values in stats.items():
            groups.setdefault(feature, []).append(values)
    out: Stats = {}
    for feature, items in groups.items():
        for stat in ("count", "mean", "std", "min", "max"):
            if any(stat not in s for s in items):
                raise DatasetFormatError(
                    where, f"an episode's statistics of {feature!r} have no {stat!r}", EPISODE_STATS_FIX
                )
            if len({np.asarray(s[stat]).shape for s in items}) > 1:
                raise DatasetFormatError(
                    where, f"the episodes' {feature!r} {stat} have different shapes", EPISODE_STATS_FIX
                )
        n = np.array([float(np.asarray(s["count"]).reshape(-1)[0]) for s in items])
        total = n.sum()
        if total <= 0:
            raise DatasetFormatError(
                where, f"the episodes' statistics of {feature!r} count no frames", EPISODE_STATS_FIX
            )
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
            if all(q in s for s in items) and len({np.asarray(s[q]).shape for s in items}) == 1:
                agg[q] = (w * np.stack([s[q] for s in items])).sum(axis=0)
        out[feature] = agg
    return out


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
        if not hasattr(getattr(source, "frames", None), "columns"):
            raise ArgumentError(
                f"compute_stats takes a LeRobotDataset or a Mixture, got {type(source).__name__}. Fix: pass "
                "the dataset itself (several datasets: Mixture(datasets))"
            )
        if group_by is not None:
            raise ArgumentError(
                f"compute_stats: group_by={group_by!r:.60} groups a Mixture's datasets; a LeRobotDataset is "
                "one group. Fix: drop group_by, or pass a Mixture"
            )
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
        return _hashable([group_by(d, ds) for d, ds in enumerate(mixture.datasets)])
    if isinstance(group_by, str) or not isinstance(group_by, Sequence) or len(group_by) != n:
        raise MixtureError(
            f"group_by={group_by!r:.100} is not a grouping of {n} datasets",
            "use 'dataset', 'robot_type', 'all', one label per dataset, or a callable "
            "(index, dataset) -> label",
        )
    return _hashable(list(group_by))


def _hashable(labels: list) -> list:
    """Group labels, each usable as a dict key (a list label failed deep inside as a bare TypeError)."""
    for d, label in enumerate(labels):
        try:
            hash(label)
        except TypeError:
            raise MixtureError(
                f"group_by gives dataset {d} the label {label!r:.60}, which cannot name a group",
                "use strings, numbers or tuples as group labels",
            ) from None
    return labels
