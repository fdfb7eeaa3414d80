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
import pyarrow.parquet as pq

from robotempo.errors import DatasetFormatError
from robotempo.io import read_json, read_jsonl
from robotempo.safepath import check_file

Stats = dict[str, dict[str, np.ndarray]]
STATS_FIX = "regenerate the statistics, or delete the file so robotempo aggregates the per-episode statistics"


def _arrays(stats: dict, path: Path) -> Stats:
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


def read_stats(root: str | Path, is_v3: bool) -> Stats:
    root = Path(root)
    path = root / "meta" / "stats.json"
    if path.is_file():
        return _arrays(read_json(path, "the statistics file", STATS_FIX, root), path)
    if not is_v3:
        path = root / "meta" / "episodes_stats.jsonl"
        rows = read_jsonl(path, "the per-episode statistics", STATS_FIX, root)
        return aggregate(_arrays(row.get("stats", {}), path) for _, row in rows)
    per_episode = []
    for path in sorted((root / "meta" / "episodes").glob("chunk-*/file-*.parquet")):
        check_file(root, path, "the v3.0 episode metadata", STATS_FIX)
        names = [c for c in pq.read_schema(path).names if c.startswith("stats/")]
        table = pq.read_table(path, columns=names).to_pylist()
        for row in table:
            stats: dict = {}
            for column, value in row.items():
                _, feature, stat = column.split("/", 2)
                stats.setdefault(feature, {})[stat] = np.asarray(value, dtype=np.float64)
            per_episode.append(stats)
    return aggregate(per_episode)
