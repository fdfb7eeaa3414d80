"""Feature statistics (min / max / mean / std / count and optional quantiles), as LeRobot training scripts use
them for normalisation: `meta/stats.json` when present, else aggregated from the per-episode statistics
(`meta/episodes_stats.jsonl` of v2.1, the `stats/<feature>/<stat>` columns of the v3.0 episode metadata).

Aggregation over episodes i with counts n_i: mean = sum(n_i mean_i) / N, variance = sum(n_i (std_i^2 +
(mean_i - mean)^2)) / N, min / max elementwise, count = N; quantiles are count-weighted means of the episodes'
quantiles (an approximation, the one LeRobot makes too).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np

from robotempo.errors import DatasetFormatError
from robotempo.format.v30 import episode_metadata_files, open_parquet
from robotempo.fs import DatasetRoot, as_root
from robotempo.io import read_json, read_jsonl

Stats = dict[str, dict[str, np.ndarray]]
STATS_FIX = "regenerate the statistics, or delete the file so robotempo aggregates the per-episode statistics"


def _arrays(stats: dict, path: Path | str) -> Stats:
    out: Stats = {}
    for feature, values in stats.items():
        if not isinstance(values, dict):
            raise DatasetFormatError(
                path, f"stats of {feature!r} must be an object, got {values!r:.60}", STATS_FIX
            )
        out[feature] = {name: np.asarray(v, dtype=np.float64) for name, v in values.items()}
    return out


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
        table = pf.read(columns=names, use_threads=False).to_pylist()
        for row in table:
            stats: dict = {}
            for column, value in row.items():
                _, feature, stat = column.split("/", 2)
                stats.setdefault(feature, {})[stat] = np.asarray(value, dtype=np.float64)
            per_episode.append(stats)
    return aggregate(per_episode)
