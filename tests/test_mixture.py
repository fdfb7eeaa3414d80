"""Mixture: three real datasets that differ in version, fps, state/action dims and cameras, on one schema."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from test_shared_columns import assert_columns_shared

from robotempo import LeRobotDataset, Mixture, collate
from robotempo.errors import DeltaTimestampsError, MixtureError
from robotempo.synth import CAMERA_KEY, decode_frame_identity, write_synthetic

CAM = "observation.images.cam0"
# name: (version, fps, state dim, action dim, camera)
SOURCES = {
    "video10": ("v3.0", 10, 6, 5, "video"),
    "png20": ("v2.1", 20, 8, 7, "image"),
    "tab15": ("v3.0", 15, 4, 3, None),
}
DELTAS = {"action": [0.0, 0.2, 0.4], "observation.state": [-0.2, 0.0]}


@pytest.fixture(scope="module")
def roots(tmp_path_factory) -> dict:
    out = {}
    for i, (name, (version, fps, state, action, camera)) in enumerate(SOURCES.items()):
        root = tmp_path_factory.mktemp(name) / "ds"
        write_synthetic(
            root,
            version=version,
            n_episodes=4,
            n_tasks=2,
            camera=camera,
            image_size=(32, 32),
            fps=fps,
            seed=10 + i,
            state_dim=state,
            action_dim=action,
            mean_length=12.0,
        )
        out[name] = root
    return out


def _specs(roots, **kw) -> list[dict]:
    return [{"repo_id": name, "root": root, **kw} for name, root in roots.items()]


KEY_MAPS = [{CAMERA_KEY: CAM}, {CAMERA_KEY: CAM}, None]


@pytest.fixture(scope="module")
def mix(roots) -> Mixture:
    return Mixture(_specs(roots), key_maps=KEY_MAPS, delta_timestamps=DELTAS)


def test_a_dataset_or_a_path_instead_of_a_list_is_refused_at_once(roots):
    """`Mixture(ds)` read every item of `ds` (list() of a dataset) before saying it was no list (QA)."""
    ds = LeRobotDataset("tab15", root=roots["tab15"], speed_labels=False)
    for wrong in (ds, str(roots["tab15"]), roots["tab15"], {"repo_id": "x", "root": roots["tab15"]}, 5):
        with pytest.raises(MixtureError, match="Mixture takes a list of datasets"):
            Mixture(wrong)


def test_wrong_arguments_to_set_epoch_and_compute_stats_are_typed(mix, roots):
    from robotempo import compute_stats
    from robotempo.errors import ArgumentError

    for wrong in ("a", -1, 1.5, True):
        with pytest.raises(ArgumentError, match="epoch must be an int >= 0"):
            mix.set_epoch(wrong)
    ds = LeRobotDataset("tab15", root=roots["tab15"], speed_labels=False)
    for wrong in (5, [ds]):
        with pytest.raises(ArgumentError, match="compute_stats takes a LeRobotDataset or a Mixture"):
            compute_stats(wrong)
    with pytest.raises(ArgumentError, match="group_by='robot_type' groups a Mixture's datasets"):
        compute_stats(ds, group_by="robot_type")  # was ignored
    with pytest.raises(MixtureError, match="group_by=5 is not a grouping"):
        compute_stats(mix, group_by=5)


def test_index_space_and_default_weights(mix):
    lengths = [len(ds) for ds in mix.datasets]
    assert mix.dataset_lengths == lengths and len(mix) == sum(lengths)
    assert mix.offsets.dtype == np.int64 and mix.offsets.tolist() == [0, *np.cumsum(lengths).tolist()]
    np.testing.assert_allclose(mix.weights, np.array(lengths) / sum(lengths))
    assert mix.weights.dtype == np.float64


def test_every_item_has_the_same_keys_shapes_and_dtypes(mix):
    first = [int(o) for o in mix.offsets[:-1]]
    items = [mix[i] for i in first]
    for item in items[1:]:
        assert list(item) == list(items[0])
        for key, value in item.items():
            if isinstance(value, torch.Tensor):
                assert (value.shape, value.dtype) == (items[0][key].shape, items[0][key].dtype), key
    item = items[0]
    assert item["action"].shape == (3, 7) and item["action_dim_is_pad"].shape == (7,)
    assert item["observation.state"].shape == (2, 8) and item["observation.state_dim_is_pad"].shape == (8,)
    assert item[CAM].shape == (32, 32) or item[CAM].shape == (3, 32, 32)
    assert [it["dataset_index"].item() for it in items] == [0, 1, 2]
    assert [it["dataset_name"] for it in items] == list(SOURCES)
    assert all(it["dataset_index"].dtype == torch.int64 for it in items)
    # masks of real dimensions, and a missing camera as zeros marked as padding
    assert [int((~it["action_dim_is_pad"]).sum()) for it in items] == [5, 7, 3]
    assert [bool(it[f"{CAM}_is_pad"]) for it in items] == [False, False, True]
    assert not items[2][CAM].any() and items[0][CAM].any()
    for it, width in zip(items, [5, 7, 3]):
        assert not it["action"][:, width:].any()


def test_items_equal_the_source_datasets_items(mix):
    rng = np.random.default_rng(0)
    indices = rng.permutation(len(mix))[:40].tolist()
    batch = mix.__getitems__(indices)
    which, local = mix.locate(indices)
    for pos, (d, j) in enumerate(zip(which, local)):
        item, source = batch[pos], mix.datasets[d][int(j)]
        assert item["dataset_index"].item() == d and item["index"] == source["index"]
        w = source["action"].shape[-1]
        assert torch.equal(item["action"][:, :w], source["action"])
        assert torch.equal(
            item["observation.state"][:, : source["observation.state"].shape[-1]], source["observation.state"]
        )
        assert torch.equal(item["speed"], source["speed"]), "each dataset keeps its own speed labels"
        assert item["task"] == source["task"]
        if CAMERA_KEY in source:
            assert torch.equal(item[CAM], source[CAMERA_KEY])
            frame = (item[CAM].permute(1, 2, 0) * 255).round().to(torch.uint8).numpy()
            assert decode_frame_identity(frame) == (int(source["episode_index"]), int(source["frame_index"]))


def test_collate_and_default_collate_accept_mixed_batches(mix):
    indices = [0, int(mix.offsets[2]) + 1, int(mix.offsets[1]) + 2, 3, len(mix) - 1]
    batch = mix.__getitems__(indices)
    ours = collate(batch)
    theirs = torch.utils.data.default_collate([mix[i] for i in indices])
    assert set(ours) == set(theirs)
    for key in ours:
        if isinstance(ours[key], torch.Tensor):
            assert torch.equal(ours[key], theirs[key]), key
        else:
            assert list(ours[key]) == list(theirs[key]), key
    assert ours["dataset_index"].tolist() == [0, 2, 1, 0, 2]


def test_delta_seconds_map_onto_each_datasets_grid(mix):
    for d, (_, fps, *_) in enumerate(SOURCES.values()):
        ds = mix.datasets[d]
        assert ds.delta_indices["action"] == [0, round(0.2 * fps), round(0.4 * fps)]
        item = mix[int(mix.offsets[d])]  # frame 0 of episode 0
        frames = item["action"][:, 1].tolist()  # identity column: frame_index
        length = int(ds.episode_data_index["to"][0])
        assert frames == [min(k, length - 1) for k in ds.delta_indices["action"]]
        assert item["observation.state_is_pad"].tolist() == [True, False]


def test_off_grid_offset_is_an_error_naming_the_dataset_unless_resample(roots):
    with pytest.raises(DeltaTimestampsError, match=r"tab15.*15 fps.*'action'.*0\.1 s.*resample='nearest'"):
        Mixture(_specs(roots), delta_timestamps={"action": [0.0, 0.1]})
    mix = Mixture(_specs(roots), delta_timestamps={"action": [0.0, 0.1]}, resample="nearest")
    assert [ds.delta_indices["action"] for ds in mix.datasets] == [[0, 1], [0, 2], [0, 2]]
    assert mix.datasets[2].delta_timestamps["action"] == [0.0, 2 / 15]


def test_nearest_breaks_ties_away_from_the_current_frame(roots):
    """Offsets halfway between two frames went to the even row (banker's rounding): at 10 fps, 0.05 and
    0.25 s down, 0.15 s up, so a chunk served one frame twice; now every tie goes away from frame 0."""
    deltas = {"action": [-0.25, -0.15, -0.05, 0.0, 0.05, 0.15, 0.25]}
    mix = Mixture(_specs(roots), delta_timestamps=deltas, resample="nearest")
    by_fps = {ds.fps: ds.delta_indices["action"] for ds in mix.datasets}
    assert by_fps[10] == [-3, -2, -1, 0, 1, 2, 3]  # each a tie at 10 fps: no frame twice
    assert by_fps[20] == [-5, -3, -1, 0, 1, 3, 5]  # on the grid: unchanged


@pytest.mark.parametrize(
    "weights, match",
    [
        ([1, -1, 1], r"weights\[1\] \(dataset 'png20'\) is -1"),
        ([1, float("nan"), 1], r"weights\[1\].*nan"),
        ([1, 1], "2 weights for 3 datasets"),
        ([0, 0, 0], "all weights are 0"),
        (["a", 1, 1], "not numbers"),
        ({0: 1, 1: 1, 2: 0}, "is a dict"),  # list() took the keys: weights 0, 1, 2
        ("111", "is a str"),
        (np.ones((3, 1)), r"weights of shape \(3, 1\)"),
    ],
)
def test_bad_weights_are_typed_errors(mix, weights, match):
    with pytest.raises(MixtureError, match=match):
        Mixture(mix.datasets, weights=weights)


def test_a_misspelt_spec_key_names_the_spec_and_the_argument(roots):
    """A spec is LeRobotDataset's arguments: a typo raised a bare TypeError naming no dataset."""
    specs = _specs(roots)
    specs[1] = {**specs[1], "episode": [1]}
    with pytest.raises(MixtureError, match=r"dataset 1 \(.*'episode' \(did you mean 'episodes'\?\)"):
        Mixture(specs)


def test_zero_weight_is_allowed(mix):
    m = Mixture(mix.datasets, weights=[2, 0, 2])
    assert m.weights.tolist() == [0.5, 0.0, 0.5]


def test_schema_conflicts_are_typed_errors(roots, mix, v30_video_dataset):
    other = LeRobotDataset("big", root=v30_video_dataset, delta_timestamps=DELTAS)
    with pytest.raises(MixtureError, match=r"per-frame shape \(3, 32, 32\) vs \(3, 64, 64\).*never resizes"):
        Mixture([mix.datasets[0], other], key_maps=[KEY_MAPS[0], {CAMERA_KEY: CAM}])
    with pytest.raises(MixtureError, match="window of 2 frames vs None"):
        Mixture([mix.datasets[0], LeRobotDataset("x", root=roots["tab15"])])
    with pytest.raises(MixtureError, match="does not have"):
        Mixture(mix.datasets, key_maps=[None, None, {CAMERA_KEY: CAM}])
    with pytest.raises(MixtureError, match="repo_id 'video10'"):
        Mixture([mix.datasets[0], mix.datasets[0]])
    with pytest.raises(MixtureError, match="opened with delta_timestamps"):
        Mixture([LeRobotDataset("x", root=roots["tab15"])], delta_timestamps=DELTAS)


def test_dataloader_spawn_workers_give_the_batches_of_no_workers(mix):
    batches = list(torch.utils.data.BatchSampler(range(0, len(mix), 3), 8, drop_last=False))

    def run(workers: int) -> list[dict]:
        loader = torch.utils.data.DataLoader(
            mix,
            batch_sampler=batches,
            collate_fn=collate,
            num_workers=workers,
            multiprocessing_context="spawn" if workers else None,
            worker_init_fn=assert_columns_shared if workers else None,
        )
        return list(loader)

    zero, two = run(0), run(2)
    assert len(zero) == len(two) == len(batches)
    for a, b in zip(zero, two):
        assert set(a) == set(b)
        for key in a:
            assert torch.equal(a[key], b[key]) if isinstance(a[key], torch.Tensor) else a[key] == b[key]


def test_one_cache_budget_per_process(mix):
    import pickle

    from robotempo.store.heavy import default_heavy_cache
    from robotempo.store.parquet import default_parquet_files

    assert all(ds.frames._heavy_cache is default_heavy_cache() for ds in mix.datasets)
    assert all(ds.frames.files is default_parquet_files() for ds in mix.datasets)
    copy = pickle.loads(pickle.dumps(mix.datasets[1]))
    assert copy.frames._heavy_cache is default_heavy_cache() and copy.frames.files is default_parquet_files()
    private = LeRobotDataset("p", root=mix.datasets[1].root, heavy_cache_mb=1)
    assert private.frames._heavy_cache is not default_heavy_cache()
    assert private.frames._heavy_cache.budget == 2**20


def test_shared_caches_never_serve_a_replaced_file(tmp_path):
    """The process-wide handle and image caches outlive a dataset: a dataset rewritten in place reads anew."""
    import shutil

    root = tmp_path / "ds"
    args = {"n_episodes": 2, "n_tasks": 1, "camera": "image", "image_size": (32, 32), "mean_length": 8.0}
    write_synthetic(root, seed=1, **args)
    old = LeRobotDataset("r", root=root, speed_labels=False)
    first = old[0]
    write_synthetic(tmp_path / "other", seed=2, **{**args, "mean_length": 12.0})
    shutil.rmtree(root)
    shutil.copytree(tmp_path / "other", root)
    new = LeRobotDataset("r", root=root, speed_labels=False)
    fresh = LeRobotDataset("r", root=tmp_path / "other", speed_labels=False)
    assert len(new) == len(fresh) != len(old)
    for key in ("observation.state", CAMERA_KEY):
        assert torch.equal(new[0][key], fresh[0][key]) and not torch.equal(new[0][key], first[key])


def _cache_limit(batch) -> int:
    from robotempo.store.heavy import default_heavy_cache

    return default_heavy_cache().max_bytes


def test_loader_workers_hold_one_heavy_cache_budget_together(v30_dataset):
    from robotempo.store.heavy import default_heavy_cache

    ds = LeRobotDataset("img", root=v30_dataset)
    assert ds.image_keys
    budget = default_heavy_cache().budget
    loader = torch.utils.data.DataLoader(
        ds, batch_size=16, num_workers=2, collate_fn=_cache_limit, multiprocessing_context="fork"
    )
    assert set(loader) == {budget // 2}
    assert default_heavy_cache().max_bytes == budget  # the main process keeps the whole budget


# -- opening specs in threads ---------------------------------------------------------------------------
def test_threaded_open_gives_the_datasets_of_one_by_one(roots, monkeypatch):
    monkeypatch.setenv("ROBOTEMPO_MIXTURE_OPEN_THREADS", "1")
    one = Mixture(_specs(roots), key_maps=KEY_MAPS, delta_timestamps=DELTAS)
    monkeypatch.setenv("ROBOTEMPO_MIXTURE_OPEN_THREADS", "8")
    threaded = Mixture(_specs(roots), key_maps=KEY_MAPS, delta_timestamps=DELTAS)
    assert threaded.names == one.names and threaded.dataset_lengths == one.dataset_lengths
    rows = np.random.default_rng(3).permutation(len(one))[:40].tolist()
    a, b = one.__getitems__(rows).stacked, threaded.__getitems__(rows).stacked
    assert sorted(a) == sorted(b)
    for key, value in a.items():
        assert torch.equal(value, b[key]) if isinstance(value, torch.Tensor) else value == b[key], key


def test_threaded_open_raises_the_first_failure_in_the_datasets_order(roots, tmp_path, monkeypatch):
    """Dataset 1 is missing; dataset 3 fails too, sooner (it is not even read): the error is dataset 1's, as
    when the datasets are opened one by one."""
    from robotempo.errors import RobotempoError

    specs = _specs(roots, delta_timestamps=None)
    missing = {"repo_id": "gone", "root": tmp_path / "nothing-here"}
    bad = {"repo_id": "bad", "root": tmp_path / "bad", "episodes": [10**6]}
    (tmp_path / "bad").mkdir()
    errors = []
    for threads in ("1", "8"):
        monkeypatch.setenv("ROBOTEMPO_MIXTURE_OPEN_THREADS", threads)
        with pytest.raises(RobotempoError) as info:
            Mixture([specs[0], missing, specs[1], bad, specs[2]])
        errors.append((type(info.value), str(info.value)))
    assert errors[0] == errors[1] and "nothing-here" in errors[0][1], errors


def test_every_broken_dataset_is_named_in_one_error(roots, tmp_path, monkeypatch):
    """The first broken dataset of a mixture stopped the open: a job over many datasets with three broken
    ones took three restarts to learn of them. The first one's error (its type, its message) now lists the
    others, opened one by one and in threads alike."""
    from robotempo.errors import DatasetFormatError

    specs = _specs(roots, delta_timestamps=None)
    (tmp_path / "garbled" / "meta").mkdir(parents=True)
    (tmp_path / "garbled" / "meta" / "info.json").write_text("{")
    broken = [
        {"repo_id": "garbled", "root": tmp_path / "garbled"},
        {"repo_id": "gone", "root": tmp_path / "nothing-here"},
        {"repo_id": "far", "root": roots["tab15"], "episodes": [10**6]},
    ]
    for threads in ("1", "8"):
        monkeypatch.setenv("ROBOTEMPO_MIXTURE_OPEN_THREADS", threads)
        with pytest.raises(DatasetFormatError) as info:
            Mixture([specs[0], broken[0], specs[1], broken[1], broken[2], specs[2]])
        text = str(info.value)
        first, rest = text.split("\n", 1)
        assert first.startswith("dataset 1 ('garbled'): ") and "info.json" in first, text
        assert rest.startswith("2 more of the mixture's 6 datasets failed to open"), text
        assert "dataset 3 ('gone'): MissingFileError: " in rest and "nothing-here" in rest, text
        assert "dataset 4 ('far'): " in rest and "1000000" in rest, text
        assert info.value.path == tmp_path / "garbled" / "meta" / "info.json"  # still the first one's error
    with pytest.raises(DatasetFormatError) as info:
        Mixture([specs[0], broken[0], specs[1]])
    assert "more of the mixture's" not in str(info.value)  # one failure: its own message, unchanged
    with pytest.raises(MixtureError) as info:  # entries that are no spec at all: named by their place
        Mixture(["lab/pick", "lab/place"])
    assert str(info.value).startswith("dataset 0 is 'lab/pick'") and "  dataset 1: MixtureError: " in str(
        info.value
    )


def test_an_error_that_is_not_robotempos_stops_the_opens_and_is_listed_after_the_first(
    roots, tmp_path, monkeypatch
):
    """Fault injection: dataset 2's open fails with a bare RuntimeError (a bug, not a broken dataset). The
    opens stop there; dataset 1's typed error, first in order, is raised and lists it."""
    from robotempo.errors import MissingFileError

    real_open = Mixture._open

    def open_one(self, d, source):
        if d == 2:
            raise RuntimeError("a bug in some library")
        return real_open(self, d, source)

    monkeypatch.setattr(Mixture, "_open", open_one)
    specs = _specs(roots, delta_timestamps=None)
    gone = {"repo_id": "gone", "root": tmp_path / "nothing-here"}
    with pytest.raises(MissingFileError) as info:
        Mixture([specs[0], gone, specs[1], {"repo_id": "also-gone", "root": tmp_path / "nor-here"}])
    text = str(info.value)
    assert "dataset 2 ('png20'): RuntimeError: a bug in some library" in text, text
    assert "nor-here" not in text  # not opened after the bug
    with pytest.raises(RuntimeError, match="a bug"):  # first in order: raised as it is
        Mixture([specs[0], specs[1], specs[2], gone])


def test_threaded_open_builds_one_default_cache_for_every_dataset(roots):
    """In a fresh process, threads opening datasets at once must not each build a process-wide heavy cache or
    handle cache (one budget per process). Building them is made slow (50 ms) to widen the window a missing
    lock leaves: without it, 8 threads build 8 of each."""
    import subprocess
    import sys

    code = (
        "import time\n"
        "import robotempo.store.heavy as H, robotempo.store.parquet as P\n"
        "for cls in (H.HeavyCache, P.ParquetFiles):\n"
        "    def slow(self, *a, _init=cls.__init__, **k):\n"
        "        time.sleep(0.05); _init(self, *a, **k)\n"
        "    cls.__init__ = slow\n"
        "from robotempo import Mixture\n"
        f"roots = {[str(r) for r in roots.values()]!r}\n"
        "specs = [{'repo_id': f'd{i}', 'root': r} for i, r in enumerate(roots * 4)]\n"
        "mix = Mixture(specs)\n"
        "print(len({id(d.frames.heavy_cache) for d in mix.datasets}),"
        " len({id(d.frames.files) for d in mix.datasets}))\n"
    )
    env = {**os.environ, "ROBOTEMPO_MIXTURE_OPEN_THREADS": "8"}  # local roots open one by one by default
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True, env=env
    ).stdout.split()
    assert out == ["1", "1"], out


def test_local_specs_open_one_by_one_by_default(roots, monkeypatch):
    """Local opens are CPU work under the GIL (threads made P9's open 1.39x slower): none unless asked."""
    import threading

    seen = []
    real = Mixture._open

    def recording(self, d, source):
        seen.append(threading.current_thread().name)
        return real(self, d, source)

    monkeypatch.delenv("ROBOTEMPO_MIXTURE_OPEN_THREADS", raising=False)
    monkeypatch.setattr(Mixture, "_open", recording)
    Mixture(_specs(roots), key_maps=KEY_MAPS)
    assert seen == [threading.main_thread().name] * len(roots)
    seen.clear()
    monkeypatch.setenv("ROBOTEMPO_MIXTURE_OPEN_THREADS", "2")
    Mixture(_specs(roots), key_maps=KEY_MAPS)
    assert all(name.startswith("robotempo-mixture-open") for name in seen), seen


@pytest.mark.parametrize("reserved", ["dataset_name", "dataset_index", "task"])
def test_a_feature_cannot_be_mapped_onto_a_reserved_key(roots, reserved):
    """`dataset_name` was missing from the reserved keys: every item's action became the dataset's name."""
    maps = [{**KEY_MAPS[0], "action": reserved}, KEY_MAPS[1], KEY_MAPS[2]]
    with pytest.raises(MixtureError, match="reserved key"):
        Mixture(_specs(roots), key_maps=maps)


def test_an_empty_request_is_an_empty_batch_with_every_key(mix):
    empty = mix.__getitems__([])
    assert len(empty) == 0 and list(empty.stacked) == mix.keys
    full = mix.__getitems__([0, 1])
    for key, value in empty.stacked.items():
        if isinstance(value, torch.Tensor):
            assert value.shape == (0, *full.stacked[key].shape[1:]) and value.dtype == full.stacked[key].dtype
        else:
            assert value == [], key


def test_a_mixture_item_index_is_an_int_and_may_count_from_the_end(mix):
    assert mix[-1]["index"] == mix[len(mix) - 1]["index"]
    with pytest.raises(TypeError, match="an item index must be an int"):
        mix[2.7]
    with pytest.raises(TypeError, match="item indices must be integers"):
        mix.__getitems__(["1"])


def test_a_window_asked_for_a_key_skips_the_datasets_that_rename_it_away(roots):
    """Dataset 0 maps its observation.state to 'proprio'; the window asked for the mixture key
    observation.state was put on dataset 0's own observation.state, so 'proprio' came with a window."""
    maps = [{**KEY_MAPS[0], "observation.state": "proprio"}, KEY_MAPS[1], KEY_MAPS[2]]
    mix = Mixture(_specs(roots), key_maps=maps, delta_timestamps={"observation.state": [-0.2, 0.0]})
    assert "observation.state" not in mix.datasets[0].delta_timestamps
    assert mix.schema["proprio"].window is None and mix.schema["observation.state"].window == 2
    item = mix[0]  # dataset 0
    assert item["proprio"].shape == (6,) and bool(item["observation.state_is_pad"].all())
    assert torch.equal(item["proprio"], mix.datasets[0][0]["observation.state"])
    other = mix[int(mix.offsets[1])]
    assert other["observation.state"].shape == (2, 8)
    assert other["observation.state_is_pad"].tolist() == [True, False]  # an episode's first frame


def test_key_maps_must_be_one_dict_per_dataset(roots):
    with pytest.raises(MixtureError, match="key_maps is a dict, not a list"):
        Mixture(_specs(roots), key_maps={"a": "b", "c": "d", "e": "f"})
    with pytest.raises(MixtureError, match=r"key_maps\[1\] is a str"):
        Mixture(_specs(roots), key_maps=[None, "ab", None])


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_a_non_finite_offset_is_named_as_such(roots, bad):
    with pytest.raises(DeltaTimestampsError, match="must be finite"):
        Mixture(_specs(roots), key_maps=KEY_MAPS, delta_timestamps={"action": [0.0, bad]})


def _action_dataset(root, dim: int, value: float):
    from robotempo.writer import DatasetWriter

    w = DatasetWriter(root, 10, {"action": {"dtype": "float32", "shape": [dim]}})
    for e in range(2):
        w.add_episode({"action": np.full((6, dim), value + e, np.float32)}, "t")
    w.finalize()
    return root


def test_a_shape_1_feature_pads_like_any_narrower_vector(tmp_path):
    """A 1-DoF action (shape [1], served 0-d like LeRobot) among 3-wide ones was a MixtureError."""
    from robotempo import compute_stats

    roots = {"one": _action_dataset(tmp_path / "1", 1, 5.0), "three": _action_dataset(tmp_path / "3", 3, 1.0)}
    alone = LeRobotDataset("one", root=roots["one"], speed_labels=False)
    assert alone[0]["action"].shape == ()
    mix = Mixture(_specs(roots), delta_timestamps={"action": [0.0, 0.1]})
    item = mix[7]  # dataset 0, episode 1, frame 1
    assert item["action"].tolist() == [[6.0, 0.0, 0.0], [6.0, 0.0, 0.0]]
    assert item["action_dim_is_pad"].tolist() == [False, True, True]
    assert mix[len(mix) - 1]["action_dim_is_pad"].tolist() == [False, False, False]
    batch = collate(mix.__getitems__([0, len(mix) - 1]))
    assert batch["action"].shape == (2, 2, 3)
    stats = compute_stats(mix, group_by="all")["all"]["action"]
    assert stats["count"].tolist() == [24, 12, 12] and stats["max"].tolist() == [6.0, 2.0, 2.0]
    only = Mixture(_specs({"one": roots["one"], "again": roots["one"]}))
    assert only[0]["action"].shape == ()  # every dataset 0-d: stays 0-d


def test_compute_stats_keys_must_name_numeric_features(mix):
    from robotempo import compute_stats
    from robotempo.errors import ArgumentError

    with pytest.raises(ArgumentError, match="'actoin', not a feature"):
        compute_stats(mix, keys=["action", "actoin"])
    with pytest.raises(ArgumentError, match="a camera"):
        compute_stats(mix, keys=[CAM])
    with pytest.raises(ArgumentError, match="a default column"):
        compute_stats(mix.datasets[2], keys=["timestamp"])
    assert list(compute_stats(mix, keys="action", group_by="all")["all"]) == ["action"]  # a str is one key


def test_merged_batches_keep_shared_camera_memory_and_request_order():
    """A worker's camera parts live in its reused shared-memory pool: the merged batch was a fresh private
    tensor (a page fault per page, then one more copy when packed; 3x the CPU at 480x640)."""
    from robotempo.mixture import _merge
    from robotempo.shm_pool import shared_tensor

    def part(d: int, sel: list[int], shared: bool) -> tuple:
        cam = (
            shared_tensor((len(sel), 3, 8, 8), torch.float32) if shared else torch.empty((len(sel), 3, 8, 8))
        )
        cam[:] = torch.tensor(sel, dtype=torch.float32).view(-1, 1, 1, 1)
        index = torch.tensor(sel, dtype=torch.int64)
        return np.array(sel), {
            "cam": cam,
            "index": index,
            "dataset_index": torch.full((len(sel),), d),
            "t": [f"{d}:{i}" for i in sel],
        }

    for shared in (True, False):
        merged = _merge([part(0, [3, 0], shared), part(1, [1, 4, 2], shared)], 5, ["a", "b"], {})
        assert merged["cam"].is_shared() == shared
        assert merged["index"].tolist() == [0, 1, 2, 3, 4] and not merged["index"].is_shared()
        assert merged["cam"][:, 0, 0, 0].tolist() == [0, 1, 2, 3, 4]
        assert merged["t"] == ["0:0", "1:1", "1:2", "0:3", "1:4"]


def test_a_mixture_sizes_the_shared_video_decoders_for_all_its_files(tmp_path, monkeypatch, caplog):
    """Sized for one dataset's cameras (8 each), 10 datasets of 4 cameras reopened ~39 MP4s per batch: the
    process's cache grows to every distinct video file the mixture's datasets select, when they fit; when
    they do not, one INFO line at the mixture's open (not one per dataset) says what would keep them open."""
    import logging
    import shutil

    from robotempo.video import cache as cache_module
    from robotempo.video import decoder

    monkeypatch.delenv("ROBOTEMPO_VIDEO_CACHE_SIZE", raising=False)
    monkeypatch.setattr(decoder, "_default_fetcher", None)  # the process's cache, grown here, not elsewhere
    monkeypatch.setattr(cache_module, "_noted", set())
    v30 = write_synthetic(
        tmp_path / "v", version="v3.0", n_episodes=2, n_tasks=1, camera="video", image_size=(32, 32), fps=10
    )
    v21 = write_synthetic(  # one file per episode
        tmp_path / "e", version="v2.1", n_episodes=6, n_tasks=1, camera="video", image_size=(32, 32), fps=10
    )
    copy = shutil.copytree(v21, tmp_path / "copy")  # the same files in another folder: files of their own
    specs = [{"repo_id": f"v{i}", "root": v30} for i in range(12)]  # one file, listed 12 times: counted once
    specs.append({"repo_id": "e", "root": v21, "episodes": [0, 2, 3]})
    specs.append({"repo_id": "e2", "root": v21, "episodes": [2, 3, 4]})  # overlaps the one before: 4 in all
    specs.append({"repo_id": "c", "root": copy})
    specs.append({"repo_id": "private", "root": v21, "video_cache_size": 2})  # its own cache: not counted
    cost = cache_module.decoder_bytes(32 * 32)
    mix = Mixture(specs, names=[s["repo_id"] for s in specs])
    assert mix.datasets[12]._video_files == 3
    parts = [part for ds in mix.datasets[:-1] for part in ds._video_parts()]
    assert cache_module.video_union(parts) == (1 + 4 + 6, cost, 0)
    mix[0]  # the first dataset alone has joined the process's cache: 8 per camera
    assert decoder.default_fetcher().cache.max_size == 8
    for start in mix.offsets[:-1]:
        mix[int(start)]
    assert decoder.default_fetcher().cache.max_size == 11
    mix.datasets[-1][0]
    assert mix.datasets[-1]._video().cache.max_size == 2
    decoder.default_fetcher().close()

    # 7 of 11 decoders of 32x32 frames fit the budget: a small cover buys little, 8 per camera stay
    monkeypatch.setattr(decoder, "_default_fetcher", None)
    monkeypatch.setattr(cache_module, "DECODER_BUDGET_BYTES", 7 * cost)
    with caplog.at_level(logging.INFO, logger="robotempo.video.cache"):
        small = Mixture(specs[:-1], names=[s["repo_id"] for s in specs[:-1]])
    told = [r.getMessage() for r in caplog.records if "ROBOTEMPO_VIDEO_CACHE_SIZE" in r.getMessage()]
    assert len(told) == 1 and "ROBOTEMPO_VIDEO_CACHE_SIZE=11 " in told[0], (
        told
    )  # the mixture's, not the copy's
    for start in small.offsets[:-1]:
        small[int(start)]
    assert decoder.default_fetcher().cache.max_size == 8
    decoder.default_fetcher().close()


class _PoolCounting(Mixture):
    """The mixture, with its worker's shared-memory pool counters in each batch (`pool`: takes, fresh)."""

    def __getitems__(self, indices):
        from robotempo.shm_pool import worker_pool_stats

        batch = super().__getitems__(indices)
        stats = worker_pool_stats()
        batch.stacked["pool"] = torch.tensor([stats["takes"], stats["fresh"]]).expand(len(indices), 2).clone()
        return batch


def _flip(frames: torch.Tensor) -> torch.Tensor:
    return frames.flip(-1)


def test_cameras_of_many_datasets_are_decoded_into_one_batch_tensor(roots, tmp_path):
    """Under a mixture each dataset's frames are decoded straight into the batch's camera tensor at its rows:
    decoded in each dataset's shape then copied, a worker took one more shared-memory storage per dataset in
    the batch, of as many sizes (the QA soak: ~20 per batch, 6% of the camera bytes fresh). A worker takes as
    many storages for a batch of four datasets as for a batch of one, and every frame is the source's: the
    pool reuses storages, so a row left unwritten (a dataset lacking the camera, one whose transformed frames
    are copied in, image and video cameras, windows of 2 frames) would show another batch's pixels."""
    v21 = write_synthetic(
        tmp_path / "v21", version="v2.1", n_episodes=3, n_tasks=1, camera="video", image_size=(32, 32),
        fps=10, seed=3, mean_length=10.0,
    )  # fmt: skip
    window = {CAM: [-0.1, 0.0]}
    specs = [
        {"repo_id": "video10", "root": roots["video10"]},
        {"repo_id": "v21", "root": v21},
        {"repo_id": "flipped", "root": v21, "image_transforms": _flip},
        {"repo_id": "tab15", "root": roots["tab15"]},
    ]
    mix = _PoolCounting(specs, key_maps=[{CAMERA_KEY: CAM}] * 3 + [None], delta_timestamps=window)
    alone = _PoolCounting(specs[:1], key_maps=[{CAMERA_KEY: CAM}], delta_timestamps=window)

    def batches(dataset, n: int):
        sampler = torch.utils.data.RandomSampler(
            dataset, replacement=True, num_samples=8 * n, generator=torch.Generator().manual_seed(1)
        )
        loader = torch.utils.data.DataLoader(
            dataset, batch_size=8, sampler=sampler, num_workers=1, collate_fn=collate, drop_last=True
        )
        return iter(loader)  # each batch dropped before the next: the worker's pool can reuse its storages

    def takes_per_batch(pools: list) -> set[int]:
        return set(np.diff([takes for takes, _ in pools]).tolist())

    pools, mixed, seen = [], 0, set()
    for batch in batches(mix, 30):
        pools.append(batch["pool"][0].tolist())
        mixed += len(set(batch["dataset_index"].tolist())) > 1
        for i, (d, index) in enumerate(zip(batch["dataset_index"].tolist(), batch["index"].tolist())):
            ds = mix.datasets[d]
            if ds.camera_keys:
                source = ds[int(np.flatnonzero(ds.frames.columns["index"] == index)[0])]
                assert torch.equal(batch[CAM][i], source[CAMERA_KEY]), (d, index)
                assert torch.equal(batch[f"{CAM}_is_pad"][i], source[f"{CAMERA_KEY}_is_pad"])
            else:
                assert not batch[CAM][i].any() and batch[f"{CAM}_is_pad"][i].all()
            seen.add(d)
    assert seen == {0, 1, 2, 3} and mixed >= 20
    assert pools[-1][1] < 10, pools  # a few fresh storages, then the same ones again
    assert takes_per_batch(pools) == takes_per_batch([b["pool"][0].tolist() for b in batches(alone, 10)])


class _Crops:
    """image_transforms that crop one more column on every call after the first (item 0, read for the
    mixture's schema, comes out whole)."""

    def __init__(self):
        self.calls = 0

    def __call__(self, frames: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return frames if self.calls == 1 else frames[..., : -min(self.calls, 8)]


@pytest.mark.parametrize("transform", [_Crops, lambda: lambda f: f.double()])
def test_transforms_that_break_the_batch_shape_or_dtype_are_typed_errors(roots, transform):
    """Transformed frames are written into the mixture's batch: a transform that changes its output's shape
    from item to item, or makes a dtype other than the schema's, is an error naming the dataset, the camera
    and both shapes, never a silently cast or truncated frame."""
    specs = [
        {"repo_id": "video10", "root": roots["video10"], "image_transforms": transform()},
        {"repo_id": "tab15", "root": roots["tab15"]},
    ]
    mix = Mixture(specs, key_maps=[{CAMERA_KEY: CAM}, None])
    both = [0, len(mix) - 1]
    if transform is _Crops:
        with pytest.raises(MixtureError, match=r"'video10' made 'observation.images.\w+' torch.float32"):
            mix.__getitems__(both)
    else:  # one dtype in every item: the schema takes it
        assert mix.__getitems__(both)[0][CAM].dtype == torch.float64
