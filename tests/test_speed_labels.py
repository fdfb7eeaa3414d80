"""Edge semantics of the pure speed-label arithmetic, and the vectorised functions against the scalar rule."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from robotempo.speed.labels import (
    MIN_DISTINCT_LENGTHS,
    SPARSE_TASK_BUCKET,
    SPEED_BUCKET_LABELS,
    SPEED_PERCENTILES,
    bucket_episode_length,
    compute_percentiles_by_task,
    compute_task_percentiles,
    label_episodes,
)

BOUNDS = [10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0, 80.0, 90.0, 100.0]


def test_constants():
    assert SPEED_PERCENTILES == (5, 15, 25, 35, 45, 55, 65, 75, 85, 95)
    assert SPEED_BUCKET_LABELS == tuple(range(0, 101, 10))
    assert MIN_DISTINCT_LENGTHS == 10 and SPARSE_TASK_BUCKET == 50


@pytest.mark.parametrize(
    ("length", "label"),
    [
        (0, 0),
        (9, 0),
        (10, 10),
        (11, 10),
        (19, 10),
        (20, 20),
        (55, 50),
        (90, 90),
        (99, 90),
        (100, 100),
        (10**6, 100),
    ],
)
def test_bucket_walk_ties_go_up(length, label):
    assert bucket_episode_length(length, BOUNDS) == label


def test_fractional_boundaries_tie_and_below():
    bounds = [10.5 + i for i in range(10)]
    assert bucket_episode_length(10, bounds) == 0  # below p5
    assert bucket_episode_length(11, bounds) == 10
    assert bucket_episode_length(20, bounds) == 100  # at or above p95 (19.5)
    assert label_episodes(np.zeros(3, int), np.array([10, 11, 20]), {0: bounds}).tolist() == [0, 10, 100]


def test_repeated_boundaries_use_upper_bucket():
    bounds = [10.0, 10.0, 10.0, 20, 30, 40, 50, 60, 70, 80]
    assert bucket_episode_length(10, bounds) == 30
    assert bucket_episode_length(9, bounds) == 0


@pytest.mark.parametrize("length", [np.int64(55), np.int32(55), 55, 55.0])
def test_plain_int_return(length):
    label = bucket_episode_length(length, BOUNDS)
    assert type(label) is int and label == 50


@pytest.mark.parametrize("percentiles", [None, []])
def test_sparse_or_empty_boundaries_give_50(percentiles):
    assert bucket_episode_length(1, percentiles) == SPARSE_TASK_BUCKET
    assert bucket_episode_length(10**9, percentiles) == SPARSE_TASK_BUCKET


def test_sparse_is_decided_by_distinct_count():
    nine_distinct = [100 + (i % 9) for i in range(50)]  # 50 episodes, 9 distinct lengths
    assert compute_task_percentiles(nine_distinct) is None
    ten_distinct = [100 + (i % 10) for i in range(10)]
    assert compute_task_percentiles(ten_distinct) is not None
    assert compute_task_percentiles([120] * 500) is None  # all equal lengths
    assert compute_task_percentiles([]) is None


def test_percentiles_are_numpy_linear():
    lengths = [3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5, 8, 9, 7, 9, 3, 2, 3, 8, 4, 6, 2, 6, 4, 3, 10]
    got = compute_task_percentiles(lengths)
    assert got == np.percentile(lengths, SPEED_PERCENTILES).tolist()
    assert all(type(x) is float for x in got)


def test_vectorised_groups_tasks_and_marks_sparse():
    task = np.array([7] * 12 + [3] * 5 + [9] * 30)
    length = np.concatenate([np.arange(12) * 10, np.arange(5), np.full(30, 42)])
    out = compute_percentiles_by_task(task, length)
    assert set(out) == {3, 7, 9}
    assert out[3] is None and out[9] is None
    assert out[7] == compute_task_percentiles(np.arange(12) * 10)
    labels = label_episodes(task, length, out)
    assert labels.dtype == np.int64
    assert (labels[12:] == SPARSE_TASK_BUCKET).all()


def test_unknown_task_and_empty_inputs():
    out = label_episodes(np.array([0, 5]), np.array([15, 15]), {0: BOUNDS})
    assert out.tolist() == [10, SPARSE_TASK_BUCKET]
    assert label_episodes(np.array([], int), np.array([], int), {0: BOUNDS}).tolist() == []
    assert compute_percentiles_by_task(np.array([], int), np.array([], int)) == {}
    assert label_episodes(np.array([1]), np.array([15]), {}).tolist() == [SPARSE_TASK_BUCKET]


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="whole numbers"):
        label_episodes(np.array([0]), np.array([1.5]), {0: BOUNDS})
    with pytest.raises(ValueError, match="entries"):
        compute_percentiles_by_task(np.array([0, 1]), np.array([1]))
    with pytest.raises(ValueError, match="10 boundaries"):
        label_episodes(np.array([0]), np.array([1]), {0: [1.0, 2.0]})


def test_whole_float_lengths_are_accepted():
    assert label_episodes(np.array([0]), np.array([20.0]), {0: BOUNDS}).tolist() == [20]


def test_absurd_length_range_takes_exact_fallback():
    huge = 2**61
    bounds = [float(huge // 2 + i) for i in range(10)]
    out = label_episodes(np.array([0, 0, 1]), np.array([0, huge, 5]), {0: bounds, 1: BOUNDS})
    assert out.tolist() == [0, 100, 0]


def test_decile_buckets_are_roughly_uniform():
    lengths = np.arange(1000)
    labels = label_episodes(
        np.zeros(1000, int), lengths, compute_percentiles_by_task(np.zeros(1000, int), lengths)
    )
    counts = np.bincount(labels // 10, minlength=11)
    assert counts[0] == counts[10] == 50 and (counts[1:10] == 100).all()


# ---- property tests ----------------------------------------------------------------------------------------

populations = st.lists(st.tuples(st.integers(0, 6), st.integers(0, 400)), min_size=0, max_size=300).map(
    lambda pairs: (np.array([t for t, _ in pairs], dtype=np.int64), np.array([n for _, n in pairs], np.int64))
)


@settings(max_examples=200, deadline=None)
@given(populations)
def test_vectorised_equals_scalar(pop):
    task, length = pop
    by_task = compute_percentiles_by_task(task, length)
    for t, p in by_task.items():
        assert p == compute_task_percentiles(length[task == t])  # exact, not approximate
    labels = label_episodes(task, length, by_task)
    assert labels.tolist() == [bucket_episode_length(int(n), by_task[int(t)]) for t, n in zip(task, length)]


@settings(max_examples=100, deadline=None)
@given(populations, st.randoms(use_true_random=False))
def test_population_permutation_invariance(pop, rnd):
    task, length = pop
    order = list(range(len(task)))
    rnd.shuffle(order)
    assert compute_percentiles_by_task(task[order], length[order]) == compute_percentiles_by_task(
        task, length
    )


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.integers(0, 1000), min_size=10, max_size=200), st.lists(st.integers(-10, 1100), max_size=50)
)
def test_monotone_in_length_and_labels_in_set(lengths, queries):
    p = compute_task_percentiles(lengths)
    queries = sorted(queries)
    labels = [bucket_episode_length(q, p) for q in queries]
    assert all(label in SPEED_BUCKET_LABELS for label in labels)
    if p is not None:
        assert labels == sorted(labels)
    else:
        assert set(labels) <= {SPARSE_TASK_BUCKET}
