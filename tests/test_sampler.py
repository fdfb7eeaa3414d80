"""Sampler: order a pure function of (seed, epoch, position), rank-disjoint, resumable, elastic (R4, R6)."""

from __future__ import annotations

import json
import random
from collections import Counter

import numpy as np
import pytest
import torch

from robotempo import LeRobotDataset, Sampler, collate
from robotempo.errors import SamplerError
from robotempo.synth import write_synthetic


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("sampler") / "ds"
    write_synthetic(root, version="v3.0", n_episodes=12, n_tasks=3, camera=None, seed=5, mean_length=20)
    return LeRobotDataset("sampler", root=root, speed_dropout=0.5, seed=3)


class Sized:
    def __init__(self, n: int):
        self.n = n

    def __len__(self) -> int:
        return self.n


def epoch_order(dataset, epoch: int, **kw) -> list[int]:
    s = Sampler(dataset, rank=0, world_size=1, **kw)
    s.set_epoch(epoch)
    return list(s)


def test_one_epoch_is_a_permutation_that_changes_with_epoch_and_seed(dataset):
    n = len(dataset)
    first = epoch_order(dataset, 0, seed=0)
    assert sorted(first) == list(range(n)) and first != list(range(n))
    assert epoch_order(dataset, 0, seed=0) == first
    assert epoch_order(dataset, 1, seed=0) != first
    assert epoch_order(dataset, 0, seed=1) != first
    assert epoch_order(dataset, 0, seed=0, shuffle=False) == list(range(n))


def test_order_ignores_and_leaves_alone_every_global_rng(dataset):
    torch.manual_seed(1), np.random.seed(1), random.seed(1)
    expected = epoch_order(dataset, 2, seed=4)
    torch.manual_seed(99), np.random.seed(99), random.seed(99)
    states = (torch.get_rng_state(), np.random.get_state()[1].copy(), random.getstate())
    assert epoch_order(dataset, 2, seed=4) == expected
    assert torch.equal(torch.get_rng_state(), states[0])
    assert np.array_equal(np.random.get_state()[1], states[1]) and random.getstate() == states[2]


@pytest.mark.parametrize("world", [2, 3, 5])
def test_ranks_are_disjoint_and_their_union_is_the_epoch(world):
    n = 101
    epoch = Sampler(Sized(n), seed=2, rank=0, world_size=1)
    epoch.set_epoch(3)
    order = list(epoch)
    per_rank = []
    for rank in range(world):
        s = Sampler(Sized(n), seed=2, rank=rank, world_size=world)
        s.set_epoch(3)
        assert len(s) == -(-n // world)
        per_rank.append(list(s))
        assert per_rank[-1] == [order[p % n] for p in range(rank, len(s) * world, world)]
    served = Counter(i for r in per_rank for i in r)
    pad = len(per_rank[0]) * world - n  # the last round wraps to the epoch's first positions
    assert set(served) == set(range(n))
    assert sorted(i for i, c in served.items() if c == 2) == sorted(order[:pad])
    assert sum(served.values()) == n + pad


def test_state_reflects_what_the_iterator_yielded_and_survives_json(dataset):
    s = Sampler(dataset, seed=0, rank=0, world_size=1)
    s.set_epoch(1)
    it = iter(s)
    head = [next(it) for _ in range(17)]
    state = json.loads(json.dumps(s.state_dict()))
    assert (state["epoch"], state["position"]) == (1, 17)
    s2 = Sampler(dataset, seed=0, rank=0, world_size=1)
    s2.load_state_dict(state)
    assert len(s2) == len(dataset) - 17
    assert head + list(s2) == epoch_order(dataset, 1, seed=0)
    # One-shot: the pass after the resumed one is a whole epoch again.
    assert len(list(s2)) == len(dataset)


def test_set_epoch_of_the_loaded_epoch_keeps_the_position(dataset):
    s = Sampler(dataset, seed=0, rank=0, world_size=1)
    s.load_state_dict({**s.state_dict(), "epoch": 2, "position": 30})
    s.set_epoch(2)  # the usual `for epoch in range(start, n): set_epoch(epoch)` loop
    assert list(s) == epoch_order(dataset, 2, seed=0)[30:]
    s.load_state_dict({**s.state_dict(), "epoch": 2, "position": 30})
    s.set_epoch(3)
    assert list(s) == epoch_order(dataset, 3, seed=0)


@pytest.mark.parametrize("before", [1, 2, 3])
@pytest.mark.parametrize("after", [1, 2, 3])
def test_elastic_resume_serves_the_rest_of_the_epoch_exactly(before, after):
    """R6: N ranks consume k steps in lockstep, save; M ranks resume. Every position is served once; the
    only repeats are the wrap of the resumed pass's last round: the epoch's first positions, fewer than M."""
    n, batch, steps = 103, 4, 5
    order = Sampler(Sized(n), seed=9, rank=0, world_size=1)
    order.set_epoch(4)
    order = list(order)
    seen, states = [], []
    for rank in range(before):
        s = Sampler(Sized(n), seed=9, rank=rank, world_size=before)
        s.set_epoch(4)
        it = iter(s)
        seen += [next(it) for _ in range(batch * steps + 3)]  # the loader ran ahead by 3 indices...
        del seen[len(seen) - 3 :]
        states.append(s.state_dict(consumed=batch * steps))  # ...the loop consumed `steps` batches
    assert all(st == {**states[0], "world_size": before} for st in states)
    assert states[0]["position"] == batch * steps * before
    rest = []
    for rank in range(after):
        s = Sampler(Sized(n), seed=9, rank=rank, world_size=after)
        s.load_state_dict(json.loads(json.dumps(states[0])))
        rest += list(s)
    position = batch * steps * before
    pad = -(-(n - position) // after) * after - (n - position)
    assert Counter(seen + rest) == Counter(order + order[:pad])
    assert pad < after


def test_consumed_argument_is_checked(dataset):
    s = Sampler(dataset, seed=0, rank=0, world_size=2)
    with pytest.raises(SamplerError, match="no pass has started"):
        s.state_dict(consumed=3)
    it = iter(s)
    next(it)
    with pytest.raises(SamplerError, match="exceeds"):
        s.state_dict(consumed=len(s) + 1)
    assert s.state_dict(consumed=len(s))["position"] == len(dataset)  # a finished epoch
    assert s.state_dict()["position"] == 2


def test_finished_epoch_state_resumes_to_nothing(dataset):
    s = Sampler(dataset, seed=0, rank=1, world_size=2)
    list(s)
    state = s.state_dict()
    assert state["position"] == len(dataset)
    s3 = Sampler(dataset, seed=0, rank=0, world_size=3)
    s3.load_state_dict(state)
    assert len(s3) == 0 and list(s3) == []


def test_load_rejects_a_state_from_another_setup(dataset):
    state = Sampler(dataset, seed=0, rank=0, world_size=1).state_dict()
    for kwargs, field in [
        ({"seed": 1}, "seed"),
        ({"shuffle": False}, "shuffle"),
        ({"num_samples": 50}, "num_samples"),
        ({"shuffle": "locality"}, "shuffle"),
    ]:
        with pytest.raises(SamplerError, match=field):
            Sampler(dataset, rank=0, world_size=1, **{"seed": 0, **kwargs}).load_state_dict(state)
    with pytest.raises(SamplerError, match="dataset_lengths"):
        Sampler(Sized(len(dataset) + 1), seed=0, rank=0, world_size=1).load_state_dict(state)
    with pytest.raises(SamplerError, match="not a robotempo Sampler state"):
        Sampler(dataset, rank=0, world_size=1).load_state_dict({"epoch": 0})
    with pytest.raises(SamplerError, match="position"):
        Sampler(dataset, rank=0, world_size=1).load_state_dict({**state, "position": len(dataset) + 1})


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"seed": 1.5}, "seed must be an int"),
        ({"shuffle": "yes"}, "shuffle must be"),
        ({"shuffle": 0}, "shuffle must be"),  # 0 == False, but it was taken for a shuffled order
        ({"shuffle": 1}, "shuffle must be"),
        ({"rank": 2, "world_size": 2}, "out of range"),
        ({"world_size": 0, "rank": 0}, "world_size must be >= 1"),
        ({"num_samples": 0}, "num_samples must be >= 1"),
        ({"block_size": 0}, "block_size must be >= 1"),
        ({"rank": True, "world_size": 2}, "rank must be an int"),
    ],
)
def test_bad_arguments_are_typed_errors(dataset, kwargs, match):
    with pytest.raises(SamplerError, match=match):
        Sampler(dataset, **{"rank": 0, "world_size": 1, **kwargs})
    with pytest.raises(SamplerError, match="epoch must be >= 0"):
        Sampler(dataset, rank=0, world_size=1).set_epoch(-1)


def test_rank_and_world_size_come_from_the_launcher_env(dataset, monkeypatch):
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "3")
    s = Sampler(dataset, seed=0)
    assert (s.rank, s.world_size) == (1, 3)
    order = epoch_order(dataset, 0, seed=0)
    assert list(s) == [order[p % len(order)] for p in range(1, len(s) * 3, 3)]


def test_num_samples_cycles_a_dataset_without_repeats_before_coverage():
    n = 10
    s = Sampler(Sized(n), seed=0, rank=0, world_size=1, num_samples=4)
    stream = []
    for epoch in range(5):  # 20 draws = two full cycles over 10 frames, epochs of 4
        s.set_epoch(epoch)
        stream += list(s)
    assert sorted(stream[:10]) == list(range(n)) and sorted(stream[10:]) == list(range(n))
    assert stream[:10] != stream[10:]


def test_locality_shuffle_is_a_permutation_touching_few_episodes_per_batch(dataset):
    n = len(dataset)
    local = epoch_order(dataset, 1, seed=0, shuffle="locality", block_size=8, window=32)
    assert sorted(local) == list(range(n))
    assert local != epoch_order(dataset, 2, seed=0, shuffle="locality", block_size=8, window=32)
    full = epoch_order(dataset, 1, seed=0)
    episode = dataset.frames.episode_of(np.arange(n))

    def episodes_per_batch(order):
        return np.mean([len(set(episode[order[i : i + 16]])) for i in range(0, n - 15, 16)])

    assert episodes_per_batch(local) < 0.75 * episodes_per_batch(full)


def _batches(dataset, sampler, workers: int, **kw):
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=8, sampler=sampler, num_workers=workers, collate_fn=collate, **kw
    )
    return loader


def _key(batch) -> list:
    return [batch["index"].tolist(), batch["observation.state"].sum().item(), batch["speed_is_pad"].tolist()]


def test_zero_and_two_workers_give_the_same_batches_including_speed_dropout(dataset):
    runs = []
    for workers in (0, 2):
        s = Sampler(dataset, seed=1, rank=0, world_size=1)
        s.set_epoch(2)  # also the dataset's epoch: dropout is a function of (seed, epoch, index)
        runs.append([_key(b) for b in _batches(dataset, s, workers)])
    assert runs[0] == runs[1]
    assert any(any(k[2]) for k in runs[0]) and not all(all(k[2]) for k in runs[0])


def test_consumed_position_with_a_prefetching_loader_resumes_exactly(dataset):
    """The loader's sampler runs ahead (2 workers x prefetch 2); `consumed` saves what the loop used."""
    s = Sampler(dataset, seed=0, rank=0, world_size=1)
    s.set_epoch(1)
    full = [_key(b) for b in _batches(dataset, s, 2)]
    s = Sampler(dataset, seed=0, rank=0, world_size=1)
    s.set_epoch(1)
    loader = _batches(dataset, s, 2, prefetch_factor=2)
    consumed, head = 0, []
    for batch in loader:
        head.append(_key(batch))
        consumed += len(batch["index"])
        if len(head) == 5:
            state = s.state_dict(consumed=consumed)
            assert s.state_dict()["position"] > state["position"]  # the sampler ran ahead
            break
    del loader
    resumed = Sampler(dataset, seed=0, rank=0, world_size=1)
    resumed.load_state_dict(json.loads(json.dumps(state)))
    resumed.set_epoch(1)
    rest = [_key(b) for b in _batches(dataset, resumed, 2)]
    assert head + rest == full


class WeightedSources:
    """The Mixture attributes the Sampler reads (index space = the sources concatenated in order)."""

    def __init__(self, lengths, weights):
        self.dataset_lengths = list(lengths)
        self.offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        self.weights = None if weights is None else np.asarray(weights, dtype=np.float64)

    def __len__(self) -> int:
        return int(self.offsets[-1])


def chi_square_p(observed, expected_fraction) -> float:
    observed = np.asarray(observed, dtype=np.float64)
    expected = np.asarray(expected_fraction) * observed.sum()
    stat = float(((observed - expected) ** 2 / expected).sum())
    df = len(observed) - 1
    return float(torch.special.gammaincc(torch.tensor(df / 2.0), torch.tensor(stat / 2.0)))


def test_weights_are_honoured_exactly_per_epoch_and_at_random_positions():
    mix = WeightedSources([300, 500, 1000, 50], [0.5, 0.3, 0.2, 0.0])
    s = Sampler(mix, seed=0, rank=0, world_size=1, num_samples=2000)
    assert s.counts.tolist() == [1000, 600, 400, 0]
    window = Counter()
    for epoch in range(20):
        s.set_epoch(epoch)
        order = np.array(list(s))
        source = np.searchsorted(mix.offsets, order, side="right") - 1
        assert np.bincount(source, minlength=4).tolist() == [1000, 600, 400, 0]  # zero weight: never
        window.update(source[:150].tolist())  # a window of the epoch: a multinomial draw, chi-square
    assert chi_square_p([window[d] for d in range(3)], [0.5, 0.3, 0.2]) > 1e-3
    # The test has power: the unshuffled order (dataset after dataset) fails it.
    s = Sampler(mix, seed=0, rank=0, world_size=1, num_samples=2000, shuffle=False)
    head = np.searchsorted(mix.offsets, np.array(list(s))[:150], side="right") - 1
    assert chi_square_p(np.bincount(head, minlength=3)[:3] + 1, [0.5, 0.3, 0.2]) < 1e-6


def test_each_source_is_drawn_evenly_across_epochs():
    """After E epochs every frame of a source was drawn floor(E c / L) or ceil(E c / L) times."""
    mix = WeightedSources([300, 500, 1000], [0.5, 0.3, 0.2])
    s = Sampler(mix, seed=3, rank=0, world_size=1, num_samples=2000)
    drawn = np.zeros(len(mix), dtype=np.int64)
    subsets = []
    for epoch in range(5):
        s.set_epoch(epoch)
        order = np.array(list(s))
        np.add.at(drawn, order, 1)
        for d, (lo, hi) in enumerate(zip(mix.offsets[:-1], mix.offsets[1:])):
            expected = (epoch + 1) * s.counts[d] / (hi - lo)
            assert set(drawn[lo:hi].tolist()) <= {int(np.floor(expected)), int(np.ceil(expected))}
        subsets.append(set(order[order >= 800].tolist()))  # the undersampled source: 400 of 1000 per epoch
    assert len(subsets[0] | subsets[1]) == 800 and subsets[0] != subsets[2]


def test_weighted_elastic_resume_2_to_3_ranks():
    mix = WeightedSources([30, 50, 100], [0.2, 0.0, 0.8])
    order = Sampler(mix, seed=1, rank=0, world_size=1, num_samples=97)
    order.set_epoch(2)
    order = list(order)
    seen = []
    for rank in range(2):
        s = Sampler(mix, seed=1, rank=rank, world_size=2, num_samples=97)
        s.set_epoch(2)
        it = iter(s)
        seen += [next(it) for _ in range(20)]
    state = s.state_dict(consumed=20)
    rest = []
    for rank in range(3):
        s = Sampler(mix, seed=1, rank=rank, world_size=3, num_samples=97)
        s.load_state_dict(state)
        rest += list(s)
    pad = -(-(97 - 40) // 3) * 3 - (97 - 40)
    assert Counter(seen + rest) == Counter(order + order[:pad])
    assert not any(30 <= i < 80 for i in order)


def test_weights_that_cannot_be_served_are_typed_errors():
    with pytest.raises(SamplerError, match="dataset 1 of the mixture .* never be sampled"):
        Sampler(WeightedSources([10, 10], [0.999, 0.001]), rank=0, world_size=1)
    with pytest.raises(SamplerError, match="sum to 0"):
        Sampler(WeightedSources([10, 10], [0.0, 0.0]), rank=0, world_size=1)
    with pytest.raises(SamplerError, match="finite non-negative"):
        Sampler(WeightedSources([10, 10], [1.0, -1.0]), rank=0, world_size=1)


def test_locality_on_a_weighted_mixture_is_exact_per_epoch_and_local():
    mix = WeightedSources([300, 500, 1000], [0.5, 0.3, 0.2])
    kw = {"seed": 0, "rank": 0, "world_size": 1, "num_samples": 2000, "shuffle": "locality", "block_size": 8}
    in_sequence = Sampler(mix, window=0, **kw)
    order = np.array(list(in_sequence))
    assert np.bincount(np.searchsorted(mix.offsets, order, side="right") - 1).tolist() == [1000, 600, 400]
    assert (np.diff(order) == 1).mean() > 0.6  # runs of consecutive frames survive
    windowed = np.array(list(Sampler(mix, window=64, **kw)))
    full = np.array(list(Sampler(mix, seed=0, rank=0, world_size=1, num_samples=2000)))
    assert sorted(windowed.tolist()) == sorted(order.tolist())  # the window only moves positions
    blocks = [len(set((windowed[i : i + 64] // 8).tolist())) for i in range(0, 1984, 64)]
    random_blocks = [len(set((full[i : i + 64] // 8).tolist())) for i in range(0, 1984, 64)]
    assert max(blocks) <= 2 * (64 // 8 + 1) < min(random_blocks)


def test_numpy_bools_are_the_python_bools_and_states_stay_json(dataset):
    for value in (np.False_, np.True_):
        s = Sampler(dataset, seed=0, rank=0, world_size=1, shuffle=value)
        assert s.shuffle is bool(value)
        assert list(s) == epoch_order(dataset, 0, seed=0, shuffle=bool(value))
        json.dumps(s.state_dict())


def test_a_state_from_other_episodes_of_the_same_length_is_refused(tmp_path):
    """The lengths alone matched: a state saved on one episode selection loaded on another of the same
    frame count, and the resumed epoch served other frames than the ones it skipped."""
    root = tmp_path / "ds"
    write_synthetic(root, version="v3.0", n_episodes=6, n_tasks=1, camera=None, seed=1, mean_length=10)
    lengths = LeRobotDataset("d", root=root, speed_labels=False).meta.episodes.length.tolist()
    pairs = [(a, b) for a in range(6) for b in range(6) if a != b and lengths[a] == lengths[b]]
    assert pairs, lengths  # this seed gives two episodes of one length
    a, b = pairs[0]
    first = LeRobotDataset("d", root=root, episodes=[a], speed_labels=False)
    other = LeRobotDataset("d", root=root, episodes=[b], speed_labels=False)
    assert len(first) == len(other)
    s = Sampler(first, seed=0, rank=0, world_size=1)
    it = iter(s)
    next(it)
    with pytest.raises(SamplerError, match="sources"):
        Sampler(other, seed=0, rank=0, world_size=1).load_state_dict(s.state_dict())
    same = LeRobotDataset("d", root=root, episodes=[a], speed_labels=False)
    Sampler(same, seed=0, rank=0, world_size=1).load_state_dict(s.state_dict())  # the same selection resumes
    legacy = {k: v for k, v in s.state_dict().items() if k not in ("sources", "contents")}  # saved before
    Sampler(other, seed=0, rank=0, world_size=1).load_state_dict(legacy)


def _write_recordings(root, order: list[int], lengths: dict[int, int]) -> None:
    """A v3.0 dataset of the recordings `order` (a recording's uid and frame number in its state)."""
    from robotempo.writer import DatasetWriter

    features = {"observation.state": {"dtype": "float32", "shape": [2], "names": ["uid", "frame"]}}
    with DatasetWriter(root, fps=10, features=features, version="v3.0") as writer:
        for uid in order:
            n = lengths[uid]
            state = np.stack([np.full(n, uid), np.arange(n)], 1).astype(np.float32)
            writer.add_episode({"observation.state": state}, task="pick")


def test_a_state_saved_on_data_rewritten_since_is_refused(tmp_path):
    """Re-converted with the recordings in another order: the same name, episode numbers and total frames,
    so the state loaded, and the resumed epoch served 26 of 100 frames twice and 26 never (QA)."""
    import shutil

    from robotempo import Mixture

    lengths = {0: 30, 1: 20, 2: 40, 3: 10}
    root, other = tmp_path / "ds", tmp_path / "other"
    _write_recordings(root, [0, 1, 2, 3], lengths)
    _write_recordings(other, [0, 1, 2, 3], lengths)
    specs = [{"repo_id": "lab/ds", "root": str(root)}, {"repo_id": "lab/other", "root": str(other)}]

    def states():
        ds = LeRobotDataset("lab/ds", root=root, speed_labels=False)
        one = Sampler(ds, seed=0, rank=0, world_size=1)
        mix = Sampler(Mixture(specs, weights=[1, 1]), seed=0, rank=0, world_size=1)
        for s in (one, mix):
            it = iter(s)
            [next(it) for _ in range(50)]
        return one, mix

    one, mix = states()
    saved = one.state_dict(consumed=50), mix.state_dict(consumed=50)
    again = states()  # the same data: both states resume
    again[0].load_state_dict(saved[0])
    again[1].load_state_dict(saved[1])
    shutil.rmtree(root)
    _write_recordings(root, [2, 0, 3, 1], lengths)
    now = states()
    assert now[0].lengths.tolist() == one.lengths.tolist() and now[0]._sources_names == one._sources_names
    for sampler, state in zip(now, saved):
        with pytest.raises(SamplerError, match=r"contents: dataset 0 \(lab/ds.*rewritten since"):
            sampler.load_state_dict(state)
    now[0].load_state_dict({k: v for k, v in saved[0].items() if k != "contents"})  # saved before: lengths


@pytest.mark.parametrize("workers", [0, 2])
def test_resume_holds_with_batch_size_none_and_workers(dataset, workers):
    """torch's loader with workers and batch_size=None calls iter(sampler) twice and draws from the second:
    the loaded position must survive the first call."""
    order = epoch_order(dataset, 0, seed=0)
    s = Sampler(dataset, seed=0, rank=0, world_size=1)
    it = iter(s)
    head = [next(it) for _ in range(8)]
    resumed = Sampler(dataset, seed=0, rank=0, world_size=1)
    resumed.load_state_dict(s.state_dict())
    loader = torch.utils.data.DataLoader(
        range(len(dataset)), batch_size=None, sampler=resumed, num_workers=workers
    )
    rest = [int(x) for x in loader]
    assert head + rest == order


@pytest.mark.parametrize("method", ["fork", "spawn", "fork-after-pickle"])
def test_persistent_workers_follow_set_epoch_in_the_main_process(dataset, method):
    """Persistent workers keep the dataset copy they started with; the speed-label dropout of epochs 1 and 2
    was epoch 0's. The epoch now lives in shared memory: every epoch's batches equal those of no workers.
    Also for a dataset that came through a plain pickle (`open_once` hands one to every rank), which copied
    the shared cell into private memory."""
    if method == "fork-after-pickle":
        import pickle

        dataset, method = pickle.loads(pickle.dumps(dataset)), "fork"
    s = Sampler(dataset, seed=1, rank=0, world_size=1)
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=8, sampler=s, num_workers=2, collate_fn=collate, persistent_workers=True,
        multiprocessing_context=method,
    )  # fmt: skip
    masks = []
    for epoch in range(3):
        s.set_epoch(epoch)
        got = [_key(b) for b in loader]
        s.set_epoch(epoch)
        want = [_key(b) for b in _batches(dataset, s, 0)]
        assert got == want, epoch
        masks.append([k[2] for k in got])
    assert masks[0] != masks[1] != masks[2]


def test_a_changed_source_of_a_large_mixture_is_named_in_the_error():
    """Thirty sources: the error named both whole lists cut at 77 characters, which then read the same."""
    lengths = [20 + (i * 7) % 13 for i in range(30)]
    state = Sampler(WeightedSources(lengths, None), seed=0, rank=0, world_size=1).state_dict()
    changed = lengths[:27] + [lengths[27] + 5] + lengths[28:]
    with pytest.raises(SamplerError) as info:
        Sampler(WeightedSources(changed, None), seed=0, rank=0, world_size=1).load_state_dict(state)
    assert f"dataset 27: saved {lengths[27]}, now {lengths[27] + 5}" in str(info.value)
    with pytest.raises(SamplerError, match=r"saved for 30 datasets, now 31; now only: \[9\]"):
        Sampler(WeightedSources(lengths + [9], None), seed=0, rank=0, world_size=1).load_state_dict(state)


def test_a_peek_before_the_loop_does_not_use_up_a_resume(dataset):
    """`next(iter(loader))` to see the shapes, then the loop: the peek's pass took the loaded position and
    the loop started the epoch again at 0 (a third of the epoch trained twice after a restart)."""
    s = Sampler(dataset, seed=0, rank=0, world_size=1)
    s.set_epoch(1)
    full = [_key(b) for b in _batches(dataset, s, 2)]
    s.set_epoch(1)
    state = s.state_dict()
    state["position"] = 5 * 8  # five batches of 8 consumed before the restart
    resumed = Sampler(dataset, seed=0, rank=0, world_size=1)
    resumed.load_state_dict(state)
    loader = _batches(dataset, resumed, 2)
    assert len(loader) == len(full) - 5
    assert _key(next(iter(loader))) == full[5]  # the peek
    resumed.set_epoch(1)
    assert len(loader) == len(full) - 5
    assert [_key(b) for b in loader] == full[5:]
    assert len(loader) == len(full)  # the resumed pass ran to its end: the next pass is a whole epoch
    assert [_key(b) for b in loader] == full
