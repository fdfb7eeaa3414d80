"""Deterministic episode plans and frame values shared by the two peer dataset generators.

Runs inside the peer virtual environments; only numpy is needed. Nothing in robotempo imports it.

Every numeric feature carries its own identity so a reader comparison can see *which* row it got:
``observation.state = [episode_index, frame_index, task_index, r, r, r]`` (r: seeded noise) and
``action = 6 seeded normal values``. Everything is float32 and exactly reproducible from the seed.
"""

from __future__ import annotations

import numpy as np

TASKS = ("pick up the red block", "open the top drawer", "push the blue cup to the left")
STATE_DIM = 6
ACTION_DIM = 6


def episode_plan(n_episodes: int, min_len: int, max_len: int, seed: int, n_tasks: int = len(TASKS)):
    """[(episode_index, length, task_string), ...].

    Lengths are distinct while the range allows it (so every task has >= 10 distinct lengths and OpenTau's
    speed percentiles are not null); tasks go round-robin (episode e -> task e % n_tasks).
    """
    rng = np.random.default_rng(seed)
    span = np.arange(min_len, max_len + 1)
    if n_episodes <= len(span):
        lengths = rng.choice(span, size=n_episodes, replace=False)
    else:
        lengths = rng.integers(min_len, max_len + 1, size=n_episodes)
    return [(e, int(lengths[e]), TASKS[e % n_tasks]) for e in range(n_episodes)]


def episode_values(episode_index: int, length: int, task_index: int, seed: int):
    """(state[length, 6], action[length, 6], reward[length]) float32 for one episode."""
    rng = np.random.default_rng([seed, episode_index])
    state = np.empty((length, STATE_DIM), dtype=np.float32)
    state[:, 0] = episode_index
    state[:, 1] = np.arange(length)
    state[:, 2] = task_index
    state[:, 3:] = rng.standard_normal((length, STATE_DIM - 3)).astype(np.float32)
    action = rng.standard_normal((length, ACTION_DIM)).astype(np.float32)
    reward = (np.arange(length) == length - 1).astype(np.float32) + rng.random(
        length, dtype=np.float32
    ) * 0.01
    return state, action, reward.astype(np.float32)
