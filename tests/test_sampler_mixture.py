"""Sampler over a real Mixture of real written datasets: weights honoured, zero weight never, the index space
and the items agree, 0 vs 2 workers identical, elastic resume through a prefetching DataLoader, splits."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest
import torch

from robotempo import LeRobotDataset, Mixture, Sampler, collate, split_episodes
from robotempo.errors import SamplerError
from robotempo.synth import write_synthetic

# name: (version, fps, state dim, action dim, camera)
SOURCES = {
    "a": ("v3.0", 10, 6, 5, None),
    "b": ("v2.1", 20, 8, 7, "image"),
    "c": ("v3.0", 15, 4, 3, None),
    "never": ("v3.0", 10, 4, 3, None),
}
WEIGHTS = [0.5, 0.3, 0.2, 0.0]


@pytest.fixture(scope="module")
def roots(tmp_path_factory) -> dict:
    out = {}
    for i, (name, (version, fps, state, action, camera)) in enumerate(SOURCES.items()):
        root = tmp_path_factory.mktemp(f"smix-{name}") / "ds"
        write_synthetic(root, version=version, n_episodes=6, n_tasks=2, camera=camera, image_size=(32, 32),
                        fps=fps, seed=20 + i, state_dim=state, action_dim=action, mean_length=15)  # fmt: skip
        out[name] = root
    return out


def _mixture(roots, weights=WEIGHTS, **kw) -> Mixture:
    specs = [{"repo_id": name, "root": root, **kw} for name, root in roots.items()]
    return Mixture(specs, weights=weights, key_maps=[None, {"observation.images.top": "cam"}, None, None])


@pytest.fixture(scope="module")
def mix(roots) -> Mixture:
    return _mixture(roots, speed_dropout=0.3, seed=2)


def _chi_square_p(observed, fractions) -> float:
    observed = np.asarray(observed, dtype=np.float64)
    expected = np.asarray(fractions) * observed.sum()
    stat = float(((observed - expected) ** 2 / expected).sum())
    return float(torch.special.gammaincc(torch.tensor((len(observed) - 1) / 2), torch.tensor(stat / 2)))


def test_weights_honoured_on_a_real_mixture(mix):
    s = Sampler(mix, seed=0, rank=0, world_size=1, num_samples=1000)
    assert s.counts.tolist() == [500, 300, 200, 0]
    window = np.zeros(4, dtype=np.int64)
    for epoch in range(12):
        s.set_epoch(epoch)
        which, _ = mix.locate(list(s))
        assert np.bincount(which, minlength=4).tolist() == [500, 300, 200, 0]  # exact; weight 0: never
        window += np.bincount(which[:120], minlength=4)  # a stretch of an epoch: multinomial-like
    assert window[3] == 0 and _chi_square_p(window[:3], [0.5, 0.3, 0.2]) > 1e-3


def test_items_come_from_the_dataset_the_sampler_chose(mix):
    s = Sampler(mix, seed=1, rank=0, world_size=1, num_samples=200)
    order = list(s)
    loader = torch.utils.data.DataLoader(mix, batch_size=32, sampler=s, collate_fn=collate)
    for b, batch in enumerate(loader):
        which, local = mix.locate(order[32 * b : 32 * (b + 1)])
        assert batch["dataset_index"].tolist() == which.tolist()
        # each item is its dataset's row `local`: the `index` column read straight from that dataset
        rows = [int(mix.datasets[d].frames.columns["index"][i]) for d, i in zip(which, local)]
        assert batch["index"].tolist() == rows
    assert b == 6


def _global(mix, batch) -> list[int]:
    """The global mixture index of each item, rebuilt from (dataset_index, its own row index)."""
    out = []
    for d, index in zip(batch["dataset_index"].tolist(), batch["index"].tolist()):
        rows = mix.datasets[d].frames.columns["index"]
        out.append(int(mix.offsets[d]) + int(np.searchsorted(rows, index)))
    return out


def _keys(loader) -> list:
    return [(b["dataset_index"].tolist(), b["index"].tolist(), b["speed_is_pad"].tolist(),
             float(b["action"].sum())) for b in loader]  # fmt: skip


def test_zero_and_two_workers_give_identical_batches(mix):
    runs = []
    for workers in (0, 2):
        s = Sampler(mix, seed=3, rank=0, world_size=1, num_samples=256)
        s.set_epoch(4)  # also the mixture's epoch: speed dropout = f(seed, epoch, index)
        loader = torch.utils.data.DataLoader(mix, batch_size=32, sampler=s, num_workers=workers,
                                             collate_fn=collate)  # fmt: skip
        runs.append(_keys(loader))
    assert runs[0] == runs[1]
    dropped = [d for r in runs[0] for d in r[2]]
    assert any(dropped) and not all(dropped)


def test_two_ranks_through_prefetching_loaders_resume_on_one(mix):
    """Two ranks consume 3 batches each (the loaders ran further ahead), save; one rank finishes the epoch."""
    n = 300
    order = Sampler(mix, seed=5, rank=0, world_size=1, num_samples=n)
    order.set_epoch(1)
    order = list(order)
    seen, states = [], []
    for rank in range(2):
        s = Sampler(mix, seed=5, rank=rank, world_size=2, num_samples=n)
        s.set_epoch(1)
        loader = torch.utils.data.DataLoader(mix, batch_size=16, sampler=s, num_workers=2, collate_fn=collate)
        consumed = 0
        for step, batch in enumerate(loader):
            seen += _global(mix, batch)
            consumed += len(batch["index"])
            if step == 2:
                break
        states.append(s.state_dict(consumed=consumed))
    assert states[0]["position"] == states[1]["position"] == 96
    alone = Sampler(mix, seed=5, rank=0, world_size=1, num_samples=n)
    alone.load_state_dict(json.loads(json.dumps(states[0])))
    loader = torch.utils.data.DataLoader(mix, batch_size=16, sampler=alone, collate_fn=collate)
    rest = [i for batch in loader for i in _global(mix, batch)]
    assert Counter(seen + rest) == Counter(order)


def test_default_weights_serve_every_frame_once_per_epoch(roots):
    mix = _mixture(roots, weights=None)
    s = Sampler(mix, seed=0, rank=0, world_size=1)
    assert sorted(s) == list(range(len(mix)))


def test_an_epoch_counts_only_the_datasets_it_draws_from(mix):
    """The default epoch was the sum of every length, weight-0 datasets included: with weights [0, 1] each
    frame of the drawn dataset came ~2.4 times per epoch."""
    s = Sampler(mix, seed=0, rank=0, world_size=1)
    assert s.num_samples == sum(mix.dataset_lengths[:3])  # "never" has weight 0
    only = Mixture(mix.datasets[2:], weights=[1, 0])
    s = Sampler(only, seed=0, rank=0, world_size=1)
    assert sorted(s) == list(range(mix.dataset_lengths[2]))  # every frame of the drawn dataset once


def test_split_of_a_mixture_is_each_dataset_alone(roots, mix):
    train, val = split_episodes(mix, val_fraction=0.34, seed=1)
    for d, root in enumerate(roots.values()):
        alone = split_episodes(LeRobotDataset("x", root=root), val_fraction=0.34, seed=1)
        assert (train[d], val[d]) == alone and len(val[d]) == 2


def test_resuming_on_a_changed_dataset_names_that_dataset(roots):
    """Day 3: one dataset's selection changed; the error names it (its repo_id) and the two lengths."""
    state = Sampler(_mixture(roots), seed=0, rank=0, world_size=1).state_dict()
    changed = Sampler(_mixture(roots, excluded_episodes=[0]), seed=0, rank=0, world_size=1)
    named = r"dataset_lengths: dataset 0 \(a:6:[0-9a-f]+\): saved \d+, now \d+, and 3 more"
    with pytest.raises(SamplerError, match=named):
        changed.load_state_dict(state)
