"""Per-episode feature stats (min, max, mean, std, count, and LeRobot's quantiles q01-q99) and their running
aggregate, vectorised with numpy.

Vectors get stats of shape `(D,)`; cameras get per-channel stats of shape `(3, 1, 1)` over pixels scaled to
[0, 1], computed exactly from a 256-bin histogram per channel; `count` is `[frames]`. `std` is the population
standard deviation, as LeRobot computes it. Quantiles are exact per episode (numpy's linear interpolation;
LeRobot's writer approximates them from a histogram) and aggregated as LeRobot aggregates them: the mean of
the episodes' quantiles weighted by their frame counts (pi0.5's quantile normaliser reads q01 / q99).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from robotempo.format.info import FeatureSpec

QUANTILES = {"q01": 0.01, "q10": 0.10, "q50": 0.50, "q90": 0.90, "q99": 0.99}  # LeRobot's DEFAULT_QUANTILES
STAT_NAMES = ("min", "max", "mean", "std", "count", *QUANTILES)
Stats = dict[str, np.ndarray]


def numeric_stats(values: np.ndarray, quantiles: bool = True) -> Stats:
    v = values.reshape(len(values), -1).astype(np.float64)
    out = {
        "min": v.min(axis=0),
        "max": v.max(axis=0),
        "mean": v.mean(axis=0),
        "std": v.std(axis=0),
        "count": np.array([len(values)], dtype=np.int64),
    }
    if quantiles:
        qs = np.quantile(v, list(QUANTILES.values()), axis=0)
        out.update(zip(QUANTILES, qs))
    return out


def _histogram_quantile(hist: np.ndarray, q: float) -> np.ndarray:
    """`np.quantile` (linear) of the pixel levels / 255 that per-channel histograms `(C, 256)` count."""
    cum = np.cumsum(hist, axis=1)
    n = cum[:, -1]
    pos = q * (n - 1)
    lo = np.floor(pos)
    below = np.array([np.searchsorted(c, k, side="right") for c, k in zip(cum, lo)])
    above = np.array([np.searchsorted(c, min(k + 1, m - 1), side="right") for c, k, m in zip(cum, lo, n)])
    return (below + (pos - lo) * (above - below)) / 255.0


def camera_stats(frames: np.ndarray, quantiles: bool = True) -> Stats:
    """Stats of uint8 frames `(T, H, W, C)` in [0, 1], shape `(C, 1, 1)`."""
    channels = frames.shape[-1]
    hist = np.stack([np.bincount(frames[..., c].ravel(), minlength=256) for c in range(channels)])
    hist = hist.astype(np.float64)
    levels = np.arange(256, dtype=np.float64) / 255.0
    n = hist.sum(axis=1)
    mean = hist @ levels / n
    var = np.maximum(hist @ (levels**2) / n - mean**2, 0.0)
    nonzero = hist > 0
    lo = np.argmax(nonzero, axis=1)
    hi = 255 - np.argmax(nonzero[:, ::-1], axis=1)
    shape = (channels, 1, 1)
    out = {
        "min": levels[lo].reshape(shape),
        "max": levels[hi].reshape(shape),
        "mean": mean.reshape(shape),
        "std": np.sqrt(var).reshape(shape),
        "count": np.array([len(frames)], dtype=np.int64),
    }
    if quantiles:
        out.update({name: _histogram_quantile(hist, q).reshape(shape) for name, q in QUANTILES.items()})
    return out


def episode_stats(
    specs: Mapping[str, FeatureSpec], values: Mapping[str, np.ndarray], quantiles: bool = True
) -> dict[str, Stats]:
    return {
        k: camera_stats(values[k], quantiles) if spec.is_camera else numeric_stats(values[k], quantiles)
        for k, spec in specs.items()
    }


def stats_to_json(stats: Mapping[str, Stats]) -> dict:
    return {k: {s: v.tolist() for s, v in feature.items()} for k, feature in stats.items()}


class RunningStats:
    """The aggregate of many episodes' stats, merged one episode at a time (Chan et al.'s parallel update)."""

    def __init__(self) -> None:
        self._agg: dict[str, dict[str, np.ndarray]] = {}

    def add(self, stats: Mapping[str, Stats]) -> None:
        for k, s in stats.items():
            n_b = float(s["count"][0])
            var_b = s["std"] ** 2
            a = self._agg.get(k)
            if a is None:
                self._agg[k] = {
                    "min": s["min"].copy(),
                    "max": s["max"].copy(),
                    "mean": s["mean"].copy(),
                    "m2": var_b * n_b,
                    "n": np.array(n_b),
                    "q": {q: s[q] * n_b for q in QUANTILES if q in s},  # count-weighted sums
                }
                continue
            a["q"] = {q: total + s[q] * n_b for q, total in a["q"].items() if q in s}  # all episodes have it
            n_a = float(a["n"])
            n = n_a + n_b
            delta = s["mean"] - a["mean"]
            a["mean"] = a["mean"] + delta * (n_b / n)
            a["m2"] = a["m2"] + var_b * n_b + delta**2 * (n_a * n_b / n)
            a["n"] = np.array(n)
            a["min"] = np.minimum(a["min"], s["min"])
            a["max"] = np.maximum(a["max"], s["max"])

    def result(self) -> dict[str, Stats]:
        return {
            k: {
                "min": a["min"],
                "max": a["max"],
                "mean": a["mean"],
                "std": np.sqrt(np.maximum(a["m2"] / a["n"], 0)),
                "count": np.array([int(a["n"])], dtype=np.int64),
                **{q: total / a["n"] for q, total in a["q"].items()},
            }
            for k, a in self._agg.items()
        }
