"""`split_episodes`: train / validation episode lists, by episode (never by frame), stratified per task.

The split is a pure function of the seed and the data: the selected episodes and their tasks (the
`task_index` of each episode's first frame, as the dataset's speed labels define it), never the rank, the
world size or a global random state. Within each task, the episodes with the smallest
keyed hash of (seed, episode_index) go to validation, so adding episodes to a dataset moves few others.
"""

from __future__ import annotations

import math

import numpy as np

from robotempo.errors import SplitError
from robotempo.hashing import derive_key
from robotempo.sampling import apportion


def _check_fraction(val_fraction) -> float:
    if isinstance(val_fraction, bool) or not isinstance(val_fraction, (int, float, np.floating, np.integer)):
        raise SplitError(f"val_fraction must be a number in [0, 1), got {val_fraction!r}")
    value = float(val_fraction)
    if not math.isfinite(value) or not 0.0 <= value < 1.0:
        raise SplitError(f"val_fraction must be in [0, 1) (1 would leave no training episode), got {value}")
    return value


def _episode_tasks(dataset) -> tuple[np.ndarray, np.ndarray]:
    """(selected episode indices, task_index of each one's first frame) of a LeRobotDataset."""
    episodes = np.asarray(dataset.episodes, dtype=np.int64)
    first_rows = dataset.episode_data_index["from"].numpy()  # in the order of `episodes`
    return episodes, np.asarray(dataset.frames.columns["task_index"][first_rows], dtype=np.int64)


def split_task_episodes(
    episodes: np.ndarray, tasks: np.ndarray, val_fraction: float, seed: int
) -> tuple[list[int], list[int]]:
    """The pure split: `episodes` (unique ints) with their `tasks` -> (train, validation), both sorted.

    The validation size is `round(val_fraction * n)` (at least 1 when `val_fraction > 0`, at most n - 1),
    apportioned over tasks by largest remainder of their sizes, so each task gives its share within one.
    """
    n = len(episodes)
    if val_fraction == 0.0:
        return sorted(episodes.tolist()), []
    if n < 2:
        raise SplitError(f"cannot split {n} episode(s) into train and validation; select at least 2 episodes")
    n_val = min(n - 1, max(1, round(val_fraction * n)))
    task_ids, task_of, sizes = np.unique(tasks, return_inverse=True, return_counts=True)
    per_task = apportion(sizes.astype(np.float64), n_val)
    rank = derive_key(seed, episodes)  # uint64 hash per episode; ties are impossible in practice
    val = []
    for t in range(len(task_ids)):
        members = np.flatnonzero(task_of == t)
        order = members[np.lexsort((episodes[members], rank[members]))]
        val.extend(episodes[order[: per_task[t]]].tolist())
    val_set = set(val)
    train = [e for e in episodes.tolist() if e not in val_set]
    return sorted(train), sorted(val)


def split_episodes(dataset, val_fraction: float = 0.1, seed: int = 0):
    """Train and validation episode indices of a dataset's selection (or of each dataset of a Mixture).

    Args:
        dataset: a `LeRobotDataset` (its `episodes=` / `excluded_episodes=` selection is what gets split) or
            a `Mixture`, split dataset by dataset exactly as each would be alone.
        val_fraction: share of the selected episodes that goes to validation, in [0, 1); per task it is
            apportioned by largest remainder (validation holds at least one episode when > 0).
        seed: the split is a pure function of (seed, selected episodes, their tasks).

    Returns:
        `(train, val)`: two sorted lists of `episode_index` for a dataset; for a Mixture, two lists with one
        such list per dataset, in the mixture's order.
    """
    fraction = _check_fraction(val_fraction)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise SplitError(f"seed must be an int, got {seed!r}")
    if hasattr(dataset, "datasets") and hasattr(dataset, "dataset_lengths"):
        pairs = [split_episodes(ds, fraction, seed) for ds in dataset.datasets]
        return [p[0] for p in pairs], [p[1] for p in pairs]
    if not (hasattr(dataset, "episodes") and hasattr(dataset, "frames")):
        raise SplitError(
            f"split_episodes needs a robotempo LeRobotDataset or Mixture, got {type(dataset).__name__}"
        )
    episodes, tasks = _episode_tasks(dataset)
    try:
        return split_task_episodes(episodes, tasks, fraction, int(seed))
    except SplitError as err:
        raise SplitError(f"{dataset.root}: {err}") from None
