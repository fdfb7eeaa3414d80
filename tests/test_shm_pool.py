"""The workers' shared-memory pool (`robotempo.shm_pool`) through real DataLoader processes.

Every test asserts both sides: the pool did reuse storages (so the test could catch an overwrite), and no
tensor the main process (or a process it handed one to) still holds ever changed.
"""

from __future__ import annotations

import itertools
import multiprocessing as mp
import os
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import torch

from robotempo import LeRobotDataset, collate, shm_pool
from robotempo.errors import ConfigError
from robotempo.shm_pool import WorkerPool, worker_pool_stats
from robotempo.synth import CAMERA_KEY, decode_frame_identity

DELTAS = {CAMERA_KEY: [-0.1, 0.0]}


class PoolReporting(LeRobotDataset):
    """The dataset, with the worker's pool counters in each batch (`pool`: reused, fresh, retired;
    `pool_budget`: bytes)."""

    def __getitems__(self, indices):
        batch = super().__getitems__(indices)
        stats = worker_pool_stats() or {"reused": 0, "fresh": 0, "retired": 0, "budget_bytes": 0}
        batch.stacked["pool"] = torch.tensor([stats["reused"], stats["fresh"], stats["retired"]])
        batch.stacked["pool_budget"] = torch.full((len(indices),), stats["budget_bytes"])
        return batch


@pytest.fixture(scope="module")
def ds(v30_video_dataset):
    return PoolReporting("v", root=v30_video_dataset, delta_timestamps=DELTAS, speed_labels=False)


def loader(ds, **kw):
    kw = {"batch_size": 8, "num_workers": 2, "collate_fn": collate, "shuffle": True, **kw}
    return torch.utils.data.DataLoader(ds, generator=torch.Generator().manual_seed(0), **kw)


def check_identity(batch) -> None:
    frames = batch[CAMERA_KEY]
    for i in range(len(batch["index"])):
        ep, fr = int(batch["episode_index"][i]), int(batch["frame_index"][i])
        assert decode_frame_identity(frames[i, 1]) == (ep, fr)


def test_held_batches_and_views_keep_their_pixels_across_epochs(ds):
    held, views, copies = [], [], []
    reused = 0
    dl = loader(ds, persistent_workers=True)
    for epoch in range(3):
        for step, batch in enumerate(dl):
            check_identity(batch)
            reused = max(reused, int(batch["pool"][0]))
            if step in (0, 5) and epoch < 2:
                held.append(batch)  # a whole batch kept by the user
                views.append(batch[CAMERA_KEY][2:5, 1])  # a view of one camera tensor, its batch dropped
                copies.append((batch[CAMERA_KEY].clone(), views[-1].clone()))
            if epoch == 1 and step == 10:
                break  # an iterator ended mid-epoch (persistent workers drain its batches)
    assert reused > 0  # the workers did reuse storages while these batches were held
    for batch, view, (whole, part) in zip(held, views, copies):
        assert torch.equal(batch[CAMERA_KEY], whole)
        assert torch.equal(view, part)


def test_workers_shut_down_mid_epoch_and_two_loaders(ds):
    a, b = iter(loader(ds)), iter(loader(ds, batch_size=6))
    kept = []
    for step in range(12):
        for it in (a, b):
            batch = next(it)
            check_identity(batch)
            if step % 4 == 0:
                kept.append((batch[CAMERA_KEY][1:], batch[CAMERA_KEY][1:].clone()))
    reused = int(batch["pool"][0])
    del a  # its workers end while the main process holds their batches
    for _ in range(10):
        check_identity(next(b))
    assert reused > 0
    for view, copy in kept:
        assert torch.equal(view, copy)


def test_user_collate_fn_keeps_pixels(ds):
    # A collate_fn that passes the worker's tensors on in its own dict: every send is still counted.
    dl = loader(ds, collate_fn=lambda batch: {k: v for k, v in batch.stacked.items()})
    kept = []
    for step, batch in enumerate(dl):
        check_identity(batch)
        if step % 5 == 0:
            kept.append((batch[CAMERA_KEY][:, 0], batch[CAMERA_KEY][:, 0].clone()))
    assert int(batch["pool"][0]) > 0
    assert all(torch.equal(view, copy) for view, copy in kept)
    # torch's default collate stacks copies: the pool's tensors never leave the worker
    for batch in loader(ds, collate_fn=torch.utils.data.default_collate):
        check_identity(batch)


# The children compare with numpy: torch's OpenMP pool does not survive a fork of a process that used it.
def _hold_and_compare(queue, start, result) -> None:
    frames, expected = queue.get()
    start.wait(60)
    result.put(bool(np.array_equal(frames.numpy(), expected.numpy())))


def _compare_inherited(frames, expected, start, result) -> None:
    start.wait(60)
    result.put(bool(np.array_equal(frames.numpy(), expected.numpy())))


@pytest.mark.parametrize("how", ["pickled on", "forked"])
def test_batch_handed_to_another_process_is_never_overwritten(ds, how):
    ctx = mp.get_context("fork")
    start, result, queue = ctx.Event(), ctx.SimpleQueue(), ctx.Queue()
    it = iter(loader(ds))
    for _ in range(6):  # let the pool warm up
        batch = next(it)
    frames = batch[CAMERA_KEY][:, 1]
    expected = frames.clone()
    if how == "pickled on":
        child = ctx.Process(target=_hold_and_compare, args=(queue, start, result))
        child.start()
        queue.put((frames, expected))
    else:
        child = ctx.Process(target=_compare_inherited, args=(frames, expected, start, result))
        child.start()
    del batch, frames
    for _ in range(20):
        batch = next(it)
        check_identity(batch)
    start.set()
    assert result.get() is True
    child.join(30)
    assert int(batch["pool"][0]) > 0  # storages were reused meanwhile
    assert int(batch["pool"][2]) > 0  # and the one handed over was retired, never reused


def test_forks_while_a_batch_is_held_do_not_wear_the_pool_out(ds):
    """A fork while the main process holds a batch retires that batch's slots (the child has them). A flag
    row serves one storage only, and a worker had 128 of them: after ~64 such forks (an evaluation loader
    started inside the training loop, say) every later batch was fresh shared memory, for the rest of the
    run. The pool still reuses storages after 100 forks, and a held batch still never changes."""
    sampler = torch.utils.data.RandomSampler(ds, replacement=True, num_samples=8 * 130)
    it = iter(loader(ds, num_workers=1, shuffle=None, sampler=sampler))
    for _ in range(100):
        batch = next(it)
        held, expected = batch[CAMERA_KEY], batch[CAMERA_KEY].clone()
        pid = os.fork()
        if pid == 0:
            os._exit(0)
        os.waitpid(pid, 0)
    reused, _, retired = (int(v) for v in batch["pool"])
    assert retired >= 100, batch["pool"]  # each fork retired the held batch's storages
    for _ in range(30):
        batch = next(it)
        check_identity(batch)
    assert int(batch["pool"][0]) - reused >= 20, (reused, batch["pool"])  # and the pool goes on reusing
    assert torch.equal(held, expected)


_handed_before: list = []  # in the worker: weak references to the tensors of its last batch


def _drop_in_another_thread(samples):
    """In the worker: the batch as torch hands it to its queue, pickled and dropped by another thread (the
    queue's feeder); returns how many of its tensors that drop left alive, and how many of the last batch's
    tensors this batch's production released."""
    import pickle
    import threading
    import weakref
    from multiprocessing.reduction import ForkingPickler

    batch = collate(samples)
    released = sum(r() is None for r in _handed_before)
    refs = [weakref.ref(v) for v in batch.values() if isinstance(v, torch.Tensor)]
    box = [batch]
    del batch, samples

    def feed():
        pickle.loads(bytes(ForkingPickler.dumps(box.pop())))  # pickled, then dropped (as is the copy)

    thread = threading.Thread(target=feed)
    thread.start()
    thread.join()
    out = {
        "tensors": torch.tensor(len(refs)),
        "alive_after_feeder": torch.tensor(sum(r() is not None for r in refs)),
        "last_batch": torch.tensor(len(_handed_before)),
        "released_since": torch.tensor(released),
    }
    _handed_before[:] = refs
    return out


def test_the_feeder_thread_never_drops_a_batchs_last_reference(ds):
    """Dropping a tensor's last reference releases the GIL inside torch's deallocator. A spawned worker's
    queue feeder doing so while the worker's interpreter finalized (a loop left early) died from inside C++:
    SIGABRT, 'DataLoader worker killed by signal: Aborted' in the training process (1 loader in 5-25 under
    spawn). The worker keeps the last reference and drops it from its main thread at its next batch."""
    for context in ("fork", "spawn"):
        it = loader(ds, num_workers=1, collate_fn=_drop_in_another_thread, multiprocessing_context=context)
        for i, out in enumerate(itertools.islice(it, 3)):
            assert int(out["tensors"]) >= 5, out
            assert int(out["alive_after_feeder"]) == int(out["tensors"]), (context, out)
            assert int(out["released_since"]) == int(out["last_batch"]) == (0 if i == 0 else out["tensors"])


def test_pool_knob(ds, monkeypatch):
    monkeypatch.setenv("ROBOTEMPO_SHM_POOL_MB", "0")
    for step, batch in enumerate(loader(ds, num_workers=1)):
        check_identity(batch)
        assert batch["pool"].tolist() == [0, 0, 0]
        if step == 6:
            break
    monkeypatch.setenv("ROBOTEMPO_SHM_POOL_MB", "lots")
    with pytest.raises(ConfigError, match="ROBOTEMPO_SHM_POOL_MB='lots'"):
        next(iter(loader(ds, num_workers=1)))


PACKED = ("index", "frame_index", "episode_index", "timestamp", f"{CAMERA_KEY}_is_pad", "speed")


def test_numeric_columns_packed_in_one_storage_keep_their_values(ds, tmp_path):
    order = [int(i) for i in np.random.default_rng(1).permutation(len(ds))[:64]]
    ref = list(torch.utils.data.DataLoader(ds, batch_size=8, sampler=order, collate_fn=collate))
    assert ref[0]["index"].untyped_storage().data_ptr() != ref[0]["speed"].untyped_storage().data_ptr()
    dl = torch.utils.data.DataLoader(
        ds, batch_size=8, sampler=order, collate_fn=collate, num_workers=2, persistent_workers=True
    )
    held = []
    for epoch in range(4):
        for step, batch in enumerate(dl):
            storage = batch["index"].untyped_storage()
            for key in PACKED:
                t = batch[key]
                assert t.untyped_storage().data_ptr() == storage.data_ptr(), key
                assert t.data_ptr() % 64 == 0 and t.is_contiguous(), key
                assert t.dtype == ref[step][key].dtype and torch.equal(t, ref[step][key]), key
            assert batch[CAMERA_KEY].untyped_storage().data_ptr() != storage.data_ptr()
            if epoch < 2 and step % 3 == 0:
                held.append((step, batch))  # kept whole while the workers go on reusing storages
            if epoch < 2 and step % 3 == 1:
                held.append((step, {"index": batch["index"][2:5]}))  # one view kept, its batch dropped
    assert int(batch["pool"][0]) > 0  # storages were reused while those were held
    for step, kept in held:
        for key in (k for k in PACKED if k in kept):
            want = ref[step][key] if len(kept) > 1 else ref[step][key][2:5]
            assert torch.equal(kept[key], want), (step, key)
    torch.save(held[0][1]["speed"], tmp_path / "speed.pt")  # a view saves, loads and compares like any other
    assert torch.equal(torch.load(tmp_path / "speed.pt"), ref[held[0][0]]["speed"])


def test_default_budget_is_a_fair_share_of_dev_shm(ds, monkeypatch):
    # 96 ranks x 2 workers on this node
    monkeypatch.delenv("ROBOTEMPO_SHM_POOL_MB", raising=False)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "96")
    fs = os.statvfs("/dev/shm")
    # of its free space, not its size: on a node shared with other jobs, what they hold is not ours to share
    share = fs.f_bavail * fs.f_frsize // (2 * 96 * 2)
    assert share > 0
    batches = [b for b, _ in zip(loader(ds), range(6))]  # 3 from each worker
    budgets = [int(b["pool_budget"][0]) for b in batches]
    assert all(0.9 * share <= budget <= fs.f_blocks * fs.f_frsize // (2 * 96 * 2) for budget in budgets)
    # an explicit value is kept as given, above the fair share too
    big = share // 2**20 + 3000
    monkeypatch.setenv("ROBOTEMPO_SHM_POOL_MB", str(big))
    batch = next(iter(loader(ds, num_workers=1)))
    assert int(batch["pool_budget"][0]) == big * 2**20


def test_pool_follows_the_recent_peak_not_the_highest_ever():
    # The pool's own policy on real shared memory in this process: a storage is free here as soon as no
    # tensor uses it (nothing was sent). A peak of 5 in flight, then one at a time, with 2 at once every 100.
    shm_pool._install()  # the pool reuses nothing unless robotempo's storage reducer is installed
    pool = WorkerPool(2**30)
    peak = [pool.tensor((1000,), torch.float32, 4000) for _ in range(5)]
    del peak
    for take in range(1, 601):
        kept = pool.tensor((1000,), torch.float32, 4000)
        if take % 100 == 0:
            pool.tensor((1000,), torch.float32, 4000)  # taken while `kept` is held: the second slot
        del kept
        if take == 250:  # within the idle limit (256 takes): the peak's storages are still there
            assert pool.stats()["slots"] == 5
    stats = pool.stats()
    assert (stats["slots"], stats["trimmed"], stats["fresh"]) == (2, 3, 5)  # the 2 in use, none re-made
    assert stats["held_bytes"] == 2 * 4000


def test_a_dropped_batch_is_reported_released_before_the_next_one_arrives(ds):
    # The main process reports a batch released as soon as it drops it, not at its next receipt: until then
    # the worker cannot reuse those storages, and the run keeps one more batch per worker in flight.
    it = iter(loader(ds, num_workers=1))
    batch = next(it)
    check_identity(batch)
    received = shm_pool._received.mine()
    watched = {batch[CAMERA_KEY].untyped_storage().data_ptr()}
    assert received is not None and watched <= set(received.receipts)  # the camera storage is pooled
    del batch
    deadline = time.monotonic() + 10
    while watched & set(received.receipts) and time.monotonic() < deadline:
        time.sleep(0.005)
    assert not watched & set(received.receipts)
    for _ in range(4):  # the worker reuses the released storages without a pixel going wrong
        check_identity(next(it))


def test_the_release_watcher_is_gone_before_the_interpreter_finalizes(v30_video_dataset, tmp_path):
    # A daemon thread left running into finalization made torchrun ranks abort at exit (SIGABRT, about one
    # exit in ten): the watcher is stopped and joined by an atexit handler. Handlers run last-in first-out,
    # so this script's own handler, registered first, runs after robotempo's and sees what finalization sees.
    script = tmp_path / "exit.py"
    script.write_text(
        textwrap.dedent(f"""
        import atexit, sys, threading
        import torch
        from robotempo import LeRobotDataset, collate

        def report():
            alive = [t.name for t in threading.enumerate() if t.name == "robotempo-shm-release"]
            sys.stdout.write(f"watchers alive at exit: {{len(alive)}}\\n")

        atexit.register(report)
        ds = LeRobotDataset("v", root={str(v30_video_dataset)!r}, delta_timestamps={DELTAS!r},
                            speed_labels=False)
        loader = torch.utils.data.DataLoader(ds, batch_size=4, num_workers=1, collate_fn=collate)
        for i, batch in enumerate(loader):
            if i == 3:
                break
        seen = [t.name for t in threading.enumerate() if t.name == "robotempo-shm-release"]
        sys.stdout.write(f"watchers while training: {{len(seen)}}\\n")
        """)
    )
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "watchers while training: 1" in out.stdout  # the pool and its watcher were in use
    assert "watchers alive at exit: 0" in out.stdout


_FULL_SHM = """
import torch
from robotempo.errors import StorageError
from robotempo import shm_pool
from robotempo.shm_pool import WorkerPool, shared_tensor
shm_pool._install()  # the pool reuses nothing unless robotempo's storage reducer is installed
held = shared_tensor((9, 2**20), torch.uint8)  # 9 MB of the 16
print("budget:", shm_pool.pool_budget_bytes())  # half of the 7 MB free (another job holds the rest)
try:
    shared_tensor((8, 2**20), torch.uint8)
except StorageError as e:
    print("typed:", e)
pool = WorkerPool(64 * 2**20)
first = pool.tensor((6, 2**20), torch.uint8, 6 * 2**20)  # leaves no room for another 6 MB
del first  # free in the pool, still allocated
again = pool.tensor((5, 2**20), torch.uint8, 5 * 2**20)  # another size: the free one goes back, then fits
print("pool:", pool.trimmed, pool.held)
"""


def test_a_full_dev_shm_is_a_typed_error_naming_it_and_the_fix(tmp_path):
    """Docker's default /dev/shm is 64 MB: torch's bare RuntimeError named a torch_* file and no fix; a pool
    first gives back its free storages; its budget is a share of the free space, not of the size (a node
    shared with other jobs). Run in a private mount namespace with a 16 MB /dev/shm (needs the right to
    mount; skipped without it)."""
    import shutil
    import subprocess
    import sys

    if shutil.which("unshare") is None:
        pytest.skip("no unshare")
    script = tmp_path / "full.py"
    script.write_text(_FULL_SHM)
    probe = subprocess.run(
        ["unshare", "-m", "sh", "-c", "mount -t tmpfs -o size=1m tmpfs /dev/shm"], capture_output=True
    )
    if probe.returncode:
        pytest.skip("no right to make a mount namespace here")
    mount = f"mount -t tmpfs -o size=16m tmpfs /dev/shm && exec {sys.executable} {script}"
    env = {k: v for k, v in os.environ.items() if k not in ("LOCAL_WORLD_SIZE", "ROBOTEMPO_SHM_POOL_MB")}
    result = subprocess.run(
        ["unshare", "-m", "sh", "-c", mount], capture_output=True, text=True, timeout=120, env=env
    )
    assert result.returncode == 0, result.stderr
    assert f"budget: {7 * 2**20 // 2}" in result.stdout, result.stdout
    assert "typed: /dev/shm: no room for a batch tensor of 8.0 MB (7 MB free of 16 MB)" in result.stdout
    assert "--shm-size" in result.stdout and "return_uint8=True" in result.stdout
    assert "pool: 1 " in result.stdout, result.stdout
