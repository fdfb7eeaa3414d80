"""`meta/speed_percentiles.jsonl` on real files: absent, present, OpenTau's format, stale, partial, malformed,
read-only roots and the cache copy, ranks that must not write or warn."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent / "distributed"))

from speed_support import (  # noqa: E402
    checksums,
    make_population,
    make_root,
    read_only_dir,
    task_names_for,
    temp_files,
    view_of,
)

from robotempo.errors import MissingFileError, SpeedLabelError  # noqa: E402
from robotempo.speed import (  # noqa: E402
    SPEED_PERCENTILES_FILE,
    MetadataView,
    PercentileRow,
    SpeedPopulation,
    Warner,
    cache_file_for,
    compute_percentiles_by_task,
    label_episodes,
    load_or_compute_percentiles,
    read_percentiles_file,
    write_percentiles_file,
)

N_TASKS = 4


@pytest.fixture(autouse=True)
def _alone(monkeypatch):
    for name in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "ROBOTEMPO_CACHE", "XDG_CACHE_HOME"):
        monkeypatch.delenv(name, raising=False)


class Counted:
    """A population callable that counts how often the (expensive) frame data is read."""

    def __init__(self, population: SpeedPopulation):
        self.population = population
        self.calls = 0

    def __call__(self) -> SpeedPopulation:
        self.calls += 1
        return self.population


@pytest.fixture
def ds(tmp_path):
    pop = make_population(N_TASKS, 40)
    names = task_names_for(N_TASKS)
    root = make_root(tmp_path / "root", names)
    return root, pop, names, tmp_path / "cache"


def load(root, pop, names, cache, view=None, **kw):
    counted = Counted(pop)
    sp = load_or_compute_percentiles(
        root, names, counted, view if view is not None else view_of(pop), cache_dir=cache, **kw
    )
    return sp, counted.calls


def warnings_of(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


def expected_labels(pop):
    return label_episodes(pop.task_index, pop.length, compute_percentiles_by_task(pop.task_index, pop.length))


def opentau_rows(pop, names) -> list[dict]:
    """The four keys OpenTau writes, nothing else."""
    by_task = compute_percentiles_by_task(pop.task_index, pop.length)
    return [
        {"task_index": t, "task": names[t], "n_episodes": int((pop.task_index == t).sum()), "percentiles": p}
        for t, p in sorted(by_task.items())
    ]


def test_absent_computes_writes_then_reads(ds, caplog):
    root, pop, names, cache = ds
    before = checksums(root)
    sp, calls = load(root, pop, names, cache)
    assert (sp.source, calls, sp.path) == ("computed", 1, root / SPEED_PERCENTILES_FILE)
    assert not warnings_of(caplog) and not temp_files(root)
    after = checksums(root)
    assert {k: v for k, v in after.items() if k != SPEED_PERCENTILES_FILE} == before  # nothing else touched
    lines = (root / SPEED_PERCENTILES_FILE).read_text().splitlines()
    rows = [json.loads(line) for line in lines]
    assert [r["task_index"] for r in rows] == list(range(N_TASKS))
    assert all(
        set(r) == {"task_index", "task", "n_episodes", "percentiles", "version", "fingerprint", "population"}
        for r in rows
    )
    assert rows[1]["task"] == names[1] and rows[1]["n_episodes"] == 40
    np.testing.assert_array_equal(sp.labels(pop.task_index, pop.length), expected_labels(pop))

    again, calls = load(root, pop, names, cache)
    assert (again.source, calls) == ("file", 0)  # present and fresh: no frame data read
    assert again.by_task == sp.by_task  # floats survive the JSON round trip exactly
    assert not warnings_of(caplog)
    assert checksums(root) == after


def test_labels_do_not_depend_on_the_selection(ds):
    root, pop, names, cache = ds
    sp, _ = load(root, pop, names, cache)
    selected = np.array([3, 17, 42, 99])
    full = sp.labels(pop.task_index, pop.length)
    assert sp.labels(pop.task_index[selected], pop.length[selected]).tolist() == full[selected].tolist()


def test_opentau_four_key_file_is_read_as_is(ds, caplog):
    root, pop, names, cache = ds
    path = root / SPEED_PERCENTILES_FILE
    rows = opentau_rows(pop, names)
    rows = rows[:1] + rows[2:] + rows[1:2]  # OpenTau appends rows for new tasks: order is not guaranteed
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    before = path.read_bytes()
    sp, calls = load(root, pop, names, cache)
    assert (sp.source, calls) == ("file", 0)
    assert not warnings_of(caplog)
    np.testing.assert_array_equal(sp.labels(pop.task_index, pop.length), expected_labels(pop))
    assert path.read_bytes() == before


def test_opentau_file_stale_by_count(ds, caplog):
    root, pop, names, cache = ds
    rows = opentau_rows(pop, names)
    rows[2]["n_episodes"] -= 3  # written from a filtered selection
    (root / SPEED_PERCENTILES_FILE).write_text("".join(json.dumps(r) + "\n" for r in rows))
    sp, calls = load(root, pop, names, cache)
    assert sp.stale_tasks == (2,) and calls == 0
    [msg] = warnings_of(caplog)
    assert str(root / SPEED_PERCENTILES_FILE) in msg and "--recompute" in msg and "[2]" in msg


def test_a_row_naming_another_task_than_the_table_is_stale(ds, caplog):
    """A re-export that re-indexed the tasks: counts (and even fingerprints) can match while row 0 describes
    another task. The task string each row carries is compared with the table; the file is still used."""
    root, pop, names, cache = ds
    rows = opentau_rows(pop, names)
    rows[0]["task"], rows[1]["task"] = rows[1]["task"], rows[0]["task"]
    (root / SPEED_PERCENTILES_FILE).write_text("".join(json.dumps(r) + "\n" for r in rows))
    sp, calls = load(root, pop, names, cache)
    assert sp.stale_tasks == (0, 1) and calls == 0
    [msg] = warnings_of(caplog)
    assert "task_index [0, 1] name other tasks than the task table" in msg and "--recompute" in msg


def test_hand_edited_file_is_used(ds):
    root, pop, names, cache = ds
    load(root, pop, names, cache)
    path = root / SPEED_PERCENTILES_FILE
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    rows[0]["percentiles"] = [0.0] * 10  # ablation: every episode of task 0 is "slowest"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    sp, calls = load(root, pop, names, cache)
    assert calls == 0
    labels = sp.labels(pop.task_index, pop.length)
    assert (labels[pop.task_index == 0] == 100).all()


def test_stale_after_append_warns_once_and_uses_file(ds, caplog):
    root, pop, names, cache = ds
    old = SpeedPopulation(pop.episode_index[:-5], pop.length[:-5], pop.task_index[:-5])
    first, _ = load(root, old, names, cache)
    sp, calls = load(root, pop, names, cache)  # five episodes appended since
    assert sp.source == "file" and calls == 0
    assert set(sp.stale_tasks) == set(np.unique(pop.task_index[-5:]).tolist())
    assert sp.by_task == first.by_task  # still the file's numbers
    sp.labels(pop.task_index, pop.length)
    [msg] = warnings_of(caplog)
    assert "stale" in msg and str(root / SPEED_PERCENTILES_FILE) in msg
    assert f"robotempo speed {root} --recompute" in msg


def test_edit_with_same_count_is_stale_through_fingerprint(ds, caplog):
    root, pop, names, cache = ds
    load(root, pop, names, cache)
    edited = view_of(pop)
    edited.length[0] += 1  # same number of episodes per task, one length changed
    sp, _ = load(root, pop, names, cache, view=edited)
    assert sp.stale_tasks == (int(pop.task_index[0]),)
    assert len(warnings_of(caplog)) == 1


def test_paraphrased_metadata_tasks_do_not_decide_membership(ds, caplog):
    root, pop, names, cache = ds
    view = view_of(pop)
    view.task_index[:10] = -1  # metadata strings that do not match the task table
    sp, _ = load(root, pop, names, cache, view=view)
    np.testing.assert_array_equal(sp.labels(pop.task_index, pop.length), expected_labels(pop))
    again, _ = load(root, pop, names, cache, view=view)
    assert again.stale_tasks == () and not warnings_of(caplog)


def test_episodes_appended_under_paraphrased_metadata_are_stale(ds, caplog):
    """Every metadata task string paraphrased (-1 in the view): per-task fingerprints were all empty, so
    appended episodes went unnoticed. The file's whole-population fingerprint sees them."""
    from robotempo.speed.store import MetadataView, SpeedPopulation

    root, pop, names, cache = ds
    view = view_of(pop)
    view.task_index[:] = -1
    load(root, pop, names, cache, view=view)
    n = len(pop.length)
    grown = SpeedPopulation(
        np.arange(n + 3), np.r_[pop.length, [300, 350, 400]], np.r_[pop.task_index, [0, 0, 0]]
    )
    grown_view = MetadataView(grown.episode_index.copy(), grown.length.copy(), np.full(n + 3, -1))
    sp, calls = load(root, grown, names, cache, view=grown_view)
    assert calls == 0 and sp.stale_tasks  # the file is used as it is, and said to be stale
    [msg] = warnings_of(caplog)
    assert "is stale" in msg and "--recompute" in msg


def test_a_fresh_file_is_not_stale_when_metadata_lists_other_first_tasks(ds, caplog):
    """Multi-task episodes whose metadata lists another task first (LeRobot v2.x stores the list as a set):
    the metadata view disagreed with the frame population the file was computed from, and every open warned
    (and recomputed in memory) until the end of time; --recompute did not help."""
    root, pop, names, cache = ds
    names = {**names, len(names): "grasp"}  # a task of the table no episode's frames start with
    view = view_of(pop)
    view.task_index[pop.task_index == 0] = len(names) - 1  # the metadata lists "grasp" first there
    load(root, pop, names, cache, view=view)
    caplog.clear()
    sp, calls = load(root, pop, names, cache, view=view)
    assert (sp.stale_tasks, sp.source, calls) == ((), "file", 0) and not warnings_of(caplog)
    np.testing.assert_array_equal(sp.labels(pop.task_index, pop.length), expected_labels(pop))


def test_partial_file_computes_missing_tasks_in_memory(ds, caplog):
    root, pop, names, cache = ds
    path = root / SPEED_PERCENTILES_FILE
    load(root, pop, names, cache)
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines[:3]) + "\n")  # task 3 has no row
    before = path.read_bytes()
    sp, calls = load(root, pop, names, cache)
    assert calls == 1 and sp.computed_tasks == (3,) and sp.source == "file"
    np.testing.assert_array_equal(sp.labels(pop.task_index, pop.length), expected_labels(pop))
    [msg] = warnings_of(caplog)
    assert "[3] have no row" in msg and "--recompute" in msg
    assert path.read_bytes() == before  # a file we did not create this run is never rewritten


def test_empty_file_is_valid_but_partial(ds, caplog):
    root, pop, names, cache = ds
    (root / SPEED_PERCENTILES_FILE).write_text("")
    sp, calls = load(root, pop, names, cache)
    assert calls == 1 and sp.computed_tasks == tuple(range(N_TASKS))
    assert len(warnings_of(caplog)) == 1


def test_recompute_overwrites(ds):
    root, pop, names, cache = ds
    path = root / SPEED_PERCENTILES_FILE
    path.write_text(json.dumps({"task_index": 0, "task": "x", "n_episodes": 1, "percentiles": None}) + "\n")
    sp, calls = load(root, pop, names, cache, recompute=True)
    assert (sp.source, calls) == ("computed", 1)
    assert len(read_percentiles_file(path).rows) == N_TASKS


def test_unknown_task_index_warns_once_per_distinct_index(ds, caplog):
    root, pop, names, cache = ds
    task = pop.task_index.copy()
    task[:6] = [90, 91, 90, 91, 90, 90]
    bad = SpeedPopulation(pop.episode_index, pop.length, task)
    sp, _ = load(root, bad, names, cache)
    labels = sp.labels(bad.task_index, bad.length)
    sp.labels(bad.task_index, bad.length)
    assert (labels[:6] == 50).all()
    msgs = warnings_of(caplog)
    assert len(msgs) == 2 and {"90", "91"} == {m.split("task_index ")[1].split(",")[0] for m in msgs}
    assert 90 not in sp.by_task and 91 not in sp.by_task


def test_warnings_only_on_global_rank_zero(ds, caplog, monkeypatch):
    root, pop, names, cache = ds
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("LOCAL_RANK", "0")  # first rank of the second node: writes, does not warn
    (root / SPEED_PERCENTILES_FILE).write_text("")
    warner = Warner()
    sp, _ = load(root, pop, names, cache, warner=warner)
    assert not warnings_of(caplog)
    assert len(warner.messages) == 1  # the stale warning was raised, just not logged here


def test_non_local_main_rank_does_not_write(ds, monkeypatch):
    root, pop, names, cache = ds
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("LOCAL_RANK", "1")
    sp, calls = load(root, pop, names, cache)
    assert (sp.source, sp.path, calls) == ("computed", None, 1)
    assert not (root / SPEED_PERCENTILES_FILE).exists()
    np.testing.assert_array_equal(sp.labels(pop.task_index, pop.length), expected_labels(pop))


def test_read_only_root_uses_cache_copy(ds, caplog):
    root, pop, names, cache = ds
    before = checksums(root)
    with read_only_dir(root / "meta") as impossible:
        if impossible:
            pytest.skip(impossible)
        sp, calls = load(root, pop, names, cache)
        assert (sp.source, calls, sp.path) == ("computed", 1, cache_file_for(root, cache))
        [msg] = warnings_of(caplog)
        assert "Cannot write" in msg and str(sp.path) in msg
        again, calls = load(root, pop, names, cache)
        assert (again.source, calls, again.by_task) == ("cache", 0, sp.by_task)
        assert len(warnings_of(caplog)) == 1
    assert checksums(root) == before
    assert not temp_files(root) and not temp_files(cache)


def test_read_only_root_and_cache_computes_in_memory(ds, caplog, tmp_path):
    root, pop, names, _ = ds
    cache = tmp_path / "ro-cache"
    cache.mkdir()
    with read_only_dir(root / "meta") as impossible, read_only_dir(cache) as impossible_cache:
        if impossible or impossible_cache:
            pytest.skip(impossible or impossible_cache)
        sp, calls = load(root, pop, names, cache)
        assert (sp.source, sp.path, calls) == ("computed", None, 1)
        [msg] = warnings_of(caplog)
        assert "ROBOTEMPO_CACHE" in msg
    np.testing.assert_array_equal(sp.labels(pop.task_index, pop.length), expected_labels(pop))


def test_cache_location(tmp_path, monkeypatch):
    root = tmp_path / "r"
    monkeypatch.setenv("ROBOTEMPO_CACHE", str(tmp_path / "env"))
    path = cache_file_for(root)
    assert path.parent.parent == tmp_path / "env" / "speed" and path.name == "speed_percentiles.jsonl"
    assert cache_file_for(tmp_path / "r" / ".." / "r") == path  # keyed by the resolved root
    assert cache_file_for(tmp_path / "other") != path
    monkeypatch.delenv("ROBOTEMPO_CACHE")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_file_for(root).is_relative_to(tmp_path / "home" / ".cache" / "robotempo" / "speed")


def test_each_dataset_keeps_its_own_percentiles(tmp_path):
    names = task_names_for(1)
    fast = make_population(1, 40, seed=1)
    slow = SpeedPopulation(fast.episode_index, fast.length * 3, fast.task_index)
    a, _ = load(make_root(tmp_path / "a", names), fast, names, tmp_path / "c")
    b, _ = load(make_root(tmp_path / "b", names), slow, names, tmp_path / "c")
    assert a.by_task[0] != b.by_task[0]
    assert a.labels(fast.task_index, fast.length).tolist() == b.labels(slow.task_index, slow.length).tolist()


# ---- malformed files ---------------------------------------------------------------------------------------

GOOD = {"task_index": 0, "task": "t", "n_episodes": 12, "percentiles": [float(i) for i in range(10)]}


def _line(**changes):
    row = {**GOOD, **changes}
    return json.dumps({k: v for k, v in row.items() if v is not ...})


MALFORMED = {
    "bad json": ('{"task_index": 0, "task": ', "invalid JSON"),
    "not an object": ("[1, 2]", "JSON object"),
    "header line": ('{"version": 1}', "missing key"),
    "missing key": (_line(n_episodes=...), "missing key"),
    "nine boundaries": (_line(percentiles=list(range(9))), "10 boundaries"),
    "eleven boundaries": (_line(percentiles=list(range(11))), "10 boundaries"),
    "unsorted": (_line(percentiles=[0, 1, 2, 3, 5, 4, 6, 7, 8, 9]), "sorted"),
    "negative": (_line(percentiles=[-1, 1, 2, 3, 4, 5, 6, 7, 8, 9]), "negative"),
    "nan": (
        '{"task_index": 0, "task": "t", "n_episodes": 1, "percentiles": [NaN,1,2,3,4,5,6,7,8,9]}',
        "finite",
    ),
    "string boundary": (_line(percentiles=["1"] * 10), "finite numbers"),
    "percentiles not list": (_line(percentiles=5), "10 boundaries"),
    "bool task_index": (_line(task_index=True), "task_index"),
    "negative task_index": (_line(task_index=-2), "task_index"),
    "float n_episodes": (_line(n_episodes=3.0), "n_episodes"),
    "task not str": (_line(task=7), "'task'"),
    "future version": (_line(version=2), "version"),
    "fingerprint not str": (_line(fingerprint=1), "fingerprint"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_file_raises_naming_file_line_value_and_fix(ds, case):
    root, pop, names, cache = ds
    bad, problem = MALFORMED[case]
    path = root / SPEED_PERCENTILES_FILE
    path.write_text(_line(task_index=1) + "\n\n" + bad + "\n")
    before = checksums(root)
    with pytest.raises(SpeedLabelError) as info:
        read_percentiles_file(path)
    msg = str(info.value)
    assert f"{path}:3:" in msg and problem in msg
    assert "delete" in msg and f"robotempo speed {root} --recompute" in msg
    counted = Counted(pop)
    with pytest.raises(SpeedLabelError):
        load_or_compute_percentiles(root, names, counted, view_of(pop), cache_dir=cache)
    assert counted.calls == 0 and checksums(root) == before  # no silent fallback, nothing rewritten


def test_duplicate_task_index_and_not_utf8(ds):
    root, _, _, _ = ds
    path = root / SPEED_PERCENTILES_FILE
    path.write_text(_line() + "\n" + _line() + "\n")
    with pytest.raises(SpeedLabelError, match=r":2: task_index 0 appears twice \(lines 1 and 2\)"):
        read_percentiles_file(path)
    path.write_bytes(b"\xff\xfe" + _line().encode())
    with pytest.raises(SpeedLabelError, match="UTF-8"):
        read_percentiles_file(path)


def test_malformed_cache_copy_raises(ds):
    root, pop, names, cache = ds
    copy = cache_file_for(root, cache)
    copy.parent.mkdir(parents=True)
    copy.write_text(_line(percentiles=[1]) + "\n")
    with pytest.raises(SpeedLabelError, match=str(copy)):
        load(root, pop, names, cache)


def test_extra_keys_are_kept_and_rows_sorted_on_write(tmp_path):
    path = tmp_path / "f.jsonl"
    rows = [PercentileRow(2, "b", 3, None, {"note": "x"}), PercentileRow(1, "a", 12, [1.5] * 10)]
    write_percentiles_file(path, rows)
    back = read_percentiles_file(path)
    assert [r.task_index for r in back.rows] == [1, 2]
    assert back.rows[1].extra == {"note": "x"} and back.rows[0].percentiles == [1.5] * 10


def test_failed_write_leaves_no_temp_file(tmp_path):
    target = tmp_path / "meta" / "speed_percentiles.jsonl"
    target.mkdir(parents=True)  # os.replace onto a directory fails after the temp file was written
    with pytest.raises(OSError):
        write_percentiles_file(target, [PercentileRow(0, "a", 1, None)])
    assert not temp_files(tmp_path)


def test_metadata_view_validates_lengths():
    with pytest.raises(ValueError, match="one entry per episode"):
        MetadataView(np.arange(3), np.arange(2), np.arange(3))


def test_population_errors_propagate_unchanged(ds):
    """A data file missing while computing missing tasks is the dataset's error, not "no percentile file"."""
    root, pop, names, cache = ds
    (root / SPEED_PERCENTILES_FILE).write_text("")  # every task missing: the population must be read

    def broken():
        raise MissingFileError(
            root / "data" / "chunk-000" / "episode_000000.parquet", "data file", "re-download"
        )

    with pytest.raises(MissingFileError):
        load_or_compute_percentiles(root, names, broken, view_of(pop), cache_dir=cache)
    assert not cache_file_for(root, cache).exists()


@pytest.mark.parametrize("version", ["v2.1", "v3.0"])
def test_open_of_every_episode_computes_the_same_file_as_a_subset_open(tmp_path, version):
    """An open of every episode computes the percentiles from the task indices it has just read (no second
    pass over the data files); the file must be byte-identical to the one a one-episode open computes."""
    import shutil

    from robotempo import LeRobotDataset
    from robotempo.synth import write_synthetic

    whole = write_synthetic(tmp_path / "whole", version=version, n_episodes=60, n_tasks=2, mean_length=20)
    subset = shutil.copytree(whole, tmp_path / "subset")
    everything = LeRobotDataset("x", root=whole)
    one = LeRobotDataset("x", root=subset, episodes=[7])
    written = (whole / SPEED_PERCENTILES_FILE).read_bytes()
    assert written == (subset / SPEED_PERCENTILES_FILE).read_bytes()
    assert any(json.loads(line)["percentiles"] for line in written.splitlines())  # not all sparse
    assert int(one[0]["speed"]) == int(everything[everything.episode_data_index["from"][7].item()]["speed"])


@pytest.mark.parametrize("n_tasks", [3, 200])
def test_fingerprints_are_the_same_by_task_passes_and_by_sort(monkeypatch, n_tasks):
    """Few tasks take a pass per task, many a sort: a file written by either path must read as fresh by the
    other, so both must hash the same bytes."""
    from types import SimpleNamespace

    from robotempo.speed import store

    rng = np.random.default_rng(n_tasks)
    n = 5_000
    view = SimpleNamespace(
        task_index=rng.integers(-1, n_tasks, n),
        episode_index=rng.permutation(2 * n)[:n].astype(np.int64),  # not in order: sorted first
        length=rng.integers(1, 500, n),
    )
    by_pass = store.fingerprints_by_task(view)
    monkeypatch.setattr(store, "_FEW_TASKS", 0)
    by_sort = store.fingerprints_by_task(view)
    assert by_pass == by_sort and len(by_sort) == len(set(view.task_index.tolist()) - {-1})
    monkeypatch.setattr(store, "_FEW_TASKS", 10**6)
    assert store.fingerprints_by_task(view) == by_sort
