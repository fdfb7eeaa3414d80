"""Episode selection: `episodes=` / `excluded_episodes=` -> sorted positions in the EpisodeTable."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from robotempo.errors import SelectionError
from robotempo.format.episodes import EpisodeTable


def _as_indices(name: str, values: Iterable) -> np.ndarray:
    if isinstance(values, (str, bytes)) or not isinstance(values, Iterable):
        raise SelectionError(f"{name} must be a list of episode indices, got {values!r}")
    values = list(values)
    for v in values:
        if (
            isinstance(v, (bool, np.bool_))
            or not isinstance(v, (int, np.integer))
            or not -(2**62) < v < 2**62
        ):
            raise SelectionError(f"{name} must hold integer episode indices, got {v!r} in {values[:10]!r}")
    arr = np.asarray(values, dtype=np.int64).reshape(-1)
    uniq, counts = np.unique(arr, return_counts=True)
    if np.any(counts > 1):
        dup = uniq[counts > 1][:5].tolist()
        raise SelectionError(f"{name} lists episode(s) {dup} more than once; pass each episode once")
    return uniq


def _check_known(name: str, wanted: np.ndarray, table: EpisodeTable, root) -> None:
    known = np.isin(wanted, table.episode_index)
    if not known.all():
        missing = wanted[~known][:5].tolist()
        lo, hi = (int(table.episode_index[0]), int(table.episode_index[-1])) if len(table) else (0, -1)
        raise SelectionError(
            f"{name} has episode(s) {missing} that {root} does not contain ({len(table)} episodes, indices "
            f"{lo}..{hi}); pick existing episode indices"
        )


def select_episodes(
    table: EpisodeTable, episodes=None, excluded_episodes=None, root="the dataset"
) -> np.ndarray:
    """Sorted row positions of the selected episodes. Exclusion wins over inclusion; empty is an error."""
    if episodes is None:
        positions = np.arange(len(table))
    else:
        wanted = _as_indices("episodes", episodes)
        _check_known("episodes", wanted, table, root)
        positions = table.positions(wanted)
    if excluded_episodes is not None:
        excluded = _as_indices("excluded_episodes", excluded_episodes)
        _check_known("excluded_episodes", excluded, table, root)
        positions = positions[~np.isin(table.episode_index[positions], excluded)]
    if len(positions) == 0:
        raise SelectionError(
            f"the selection (episodes={episodes!r}, excluded_episodes={excluded_episodes!r}) "
            f"leaves no episode of "
            f"{root}; select at least one"
        )
    return positions
