"""Measurement primitives shared by the robotempo worker and the peer-side worker.

Imported by scripts that run in *different* virtual environments (robotempo's, LeRobot's, OpenTau's), so it
needs only the standard library and numpy (torch is imported inside the functions that drive a DataLoader).
Memory comes from /proc, not psutil: the peer environments have no psutil, and `VmRSS` is exactly what
`psutil.Process().memory_info().rss` reports.

A worker prints its result as one line `BENCH_RESULT {json}` on stdout; the harness parses that line.
"""

from __future__ import annotations

import gc
import json
import math
import os
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

RESULT_TAG = "BENCH_RESULT "
FPS = 10  # every benchmark corpus is written at 10 fps: -0.1 s is exactly one frame back


def emit(result: dict) -> None:
    print(RESULT_TAG + json.dumps(result), flush=True)


def query(fps: float = FPS) -> dict[str, list[float]]:
    """The benchmark query of P4/P8: state at [-0.1 s, 0] and an action chunk of 50 frames."""
    return {"observation.state": [-0.1, 0.0], "action": [i / fps for i in range(50)]}


# -- memory -----------------------------------------------------------------------------------------------
def _kb_field(path: str, name: str) -> int:
    with open(path) as f:
        for line in f:
            if line.startswith(name + ":"):
                return int(line.split()[1]) * 1024
    raise KeyError(f"{name} not in {path}")


def rss_bytes(pid: int | str = "self") -> int:
    return _kb_field(f"/proc/{pid}/status", "VmRSS")


def pss_bytes(pid: int | str = "self") -> int:
    return _kb_field(f"/proc/{pid}/smaps_rollup", "Pss")


def unique_bytes(pid: int | str = "self") -> int:
    """USS: the pages only this process maps (what one more such process adds to a node)."""
    rollup = f"/proc/{pid}/smaps_rollup"
    return _kb_field(rollup, "Private_Clean") + _kb_field(rollup, "Private_Dirty")


def anonymous_bytes(pid: int | str = "self") -> int:
    """Resident anonymous memory: the process's private heap and arenas, not file-backed or shared memory."""
    return _kb_field(f"/proc/{pid}/smaps_rollup", "Anonymous")


def fresh_page_rate(gb: float = 0.5) -> float:
    """GB/s at which this machine hands out memory never used before by this process (`gb` of anonymous
    memory touched once, then freed): recorded with VLA runs because it sets what a fresh shared-memory
    batch costs. On this project's VMs (Firecracker, virtio-balloon free page reporting, order 11) the guest
    returns free 8 MB blocks to the host within seconds, and the next use of such a page costs a host-side
    fault: 0.43-0.55 GB/s instead of 13.6-14.1 GB/s for pages reused before they were reported. Touching all
    free memory before a run does not help for long: it is reported back within seconds of being freed."""
    t = time.perf_counter()
    block = np.ones(int(gb * 2**30), np.uint8)
    rate = gb / (time.perf_counter() - t)
    del block
    return rate


def children(pid: int) -> list[int]:
    out: list[int] = []
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            out += [int(c) for c in Path(f"/proc/{pid}/task/{tid}/children").read_text().split()]
        except OSError:
            pass
    return out


def tree_memory(pid: int | None = None) -> dict:
    """PSS and RSS summed over a process and its direct children (DataLoader workers)."""
    pid = pid or os.getpid()
    pids = [pid, *children(pid)]
    pss = rss = 0
    for p in pids:
        try:
            pss += pss_bytes(p)
            rss += rss_bytes(p)
        except (OSError, KeyError):
            pass
    return {"pss": pss, "rss": rss, "processes": len(pids)}


def settled_rss() -> int:
    gc.collect()
    return rss_bytes()


def io_written() -> dict:
    """This process's write counters: `wchar` (every write syscall) and `write_bytes` (sent to storage)."""
    out = {}
    with open("/proc/self/io") as f:
        for line in f:
            k, v = line.split(":")
            out[k] = int(v)
    return {"wchar": out.get("wchar", 0), "write_bytes": out.get("write_bytes", 0)}


# -- timing -----------------------------------------------------------------------------------------------
def random_indices(n: int, count: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, n, size=count)


def timed_loop(fetch: Callable[[object], object], work: Sequence, budget_s: float, warmup: int = 3) -> dict:
    """Call `fetch` on successive entries of `work` until `budget_s` of CPU time (or 5x that of wall time).

    The budget is CPU time so that a measurement gets the same amount of work on a shared, loaded machine.
    Returns calls done, wall and CPU seconds (CPU / wall near 1: the process had its core to itself).
    """
    for w in work[:warmup]:
        fetch(w)
    work = work[warmup:]
    calls = 0
    t0, c0 = time.perf_counter(), time.process_time()
    for w in work:
        fetch(w)
        calls += 1
        if calls % 4 == 0 and (
            time.process_time() - c0 >= budget_s or time.perf_counter() - t0 >= 5 * budget_s
        ):
            break
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {"calls": calls, "wall_s": wall, "cpu_s": cpu}


def one_thread() -> None:
    """Single-threaded compute, for figures stated 'on one core' (torch and Arrow thread pools)."""
    import torch

    torch.set_num_threads(1)
    try:
        import pyarrow as pa

        pa.set_cpu_count(1)
        pa.set_io_thread_count(1)
    except Exception:  # noqa: BLE001 - pyarrow is always there in practice; the pin is best effort
        pass


def items_per_s(ds, n_items: int, budget_s: float, seed: int) -> dict:
    """Random single items, `ds[i]`."""
    idx = random_indices(len(ds), n_items, seed).tolist()
    r = timed_loop(lambda i: ds[i], idx, budget_s)
    return {**r, "rate": r["calls"] / r["wall_s"], "rate_cpu": r["calls"] / max(r["cpu_s"], 1e-9)}


# -- DataLoader memory (P8) -------------------------------------------------------------------------------
def loader_memory(
    ds, collate_fn, *, batch_size: int, workers: int, max_samples: int, seed: int, points: int = 50
) -> dict:
    """One shuffled DataLoader pass (fork workers); PSS/RSS of main + workers at `points` marks of the pass.

    The figure "at 10%" is the median of the marks in [8%, 12%] of the pass and "at the end" the median of
    the marks in [96%, 100%] (workers still alive): one sample would catch the transient buffers of the
    batches in flight (a few tens of MB on an image dataset) as often as the trend.
    """
    import torch

    g = torch.Generator().manual_seed(seed)
    kw = {"collate_fn": collate_fn} if collate_fn is not None else {}
    dl = torch.utils.data.DataLoader(
        ds, batch_size=batch_size, shuffle=True, generator=g, num_workers=workers,
        multiprocessing_context="fork" if workers else None, **kw,
    )  # fmt: skip
    n_batches = min(len(dl), math.ceil(max_samples / batch_size))
    marks = sorted({max(1, round(n_batches * (k + 1) / points)) for k in range(points)})
    before = tree_memory()
    trace = []
    it = iter(dl)
    samples = 0
    t0 = time.perf_counter()
    for b in range(1, n_batches + 1):
        batch = next(it)
        samples += len(batch["index"])
        if b in marks:
            trace.append({"batch": b, "fraction": b / n_batches, **tree_memory()})
    wall = time.perf_counter() - t0
    del it

    def window(key: str, lo: float, hi: float) -> float:
        inside = [m[key] for m in trace if lo <= m["fraction"] <= hi]
        return statistics.median(inside or [min(trace, key=lambda m: abs(m["fraction"] - hi))[key]])

    out = {
        "samples": samples, "epoch_samples": len(ds), "wall_s": wall, "rate": samples / wall,
        "before": before, "trace": trace, "workers_seen": trace[-1]["processes"] - 1,
    }  # fmt: skip
    for key in ("pss", "rss"):
        out[f"{key}_10"], out[f"{key}_end"] = window(key, 0.08, 0.12), window(key, 0.96, 1.0)
        out[f"{key}_ratio"] = out[f"{key}_end"] / out[f"{key}_10"]
        out[f"{key}_max"] = max(m[key] for m in trace)
    return out
