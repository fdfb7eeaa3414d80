"""The measurement tasks a worker process runs, whatever library it drives (any venv: stdlib + numpy).

A worker is one fresh process doing one measurement:

    python worker.py --lib LIB --task TASK --args '{"root": ..., "episodes": null | [k, ...], ...}'

`LIB` names a `Library` adapter (robotempo's in benchmarks/worker.py, the peers' and the two loading recipes'
in benchmarks/peer_side/worker.py). Tasks:

  open    import, then open; import time, open time (wall and CPU), RSS and PSS after import and after open
          (P2, P3)
  pass    open + one full sequential pass over every row; rows read and the process's write counters (P1)
  items   random single items with the benchmark query, one thread (P4a)
  batch   random batches through `__getitems__` (robotempo only; P4b)
  loader  one shuffled DataLoader pass with fork workers, PSS/RSS trace (P8)
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
from collections.abc import Callable

from measure import emit, io_written, items_per_s, loader_memory, one_thread, pss_bytes, query, settled_rss


class Library:
    """What a worker needs from one library; `load` does the imports so they are timed apart from `open`."""

    name = "?"
    collate: Callable | None = None

    def load(self) -> None:
        raise NotImplementedError

    def open(self, root: str, episodes: list[int] | None, delta_timestamps: dict | None, **kw):
        raise NotImplementedError

    def full_pass(self, ds) -> int:
        """Read every row once, in order; return the number of rows read."""
        for i in range(len(ds)):
            ds[i]
        return len(ds)

    def extras(self, ds) -> dict:
        return {}

    def batch(self, ds, indices, mode: str):
        raise NotImplementedError(f"{self.name} has no batched fetch")

    def version(self) -> str:
        """What code measured: a version string, or a hash of the sources (after `load`)."""
        return "?"


def _open_timed(lib: Library, a: dict, deltas: dict | None):
    t, c = time.perf_counter(), time.process_time()
    ds = lib.open(a["root"], a.get("episodes"), deltas, **a.get("open_kw", {}))
    lib.open_cpu_s = time.process_time() - c
    return ds, time.perf_counter() - t


def task_open(lib: Library, a: dict) -> dict:
    rss_start = settled_rss()
    t = time.perf_counter()
    lib.load()
    import_s = time.perf_counter() - t
    rss_import = settled_rss()
    pss_import = pss_bytes()
    ds, open_s = _open_timed(lib, a, None)
    rss_open = settled_rss()
    pss_open = pss_bytes()
    return {
        "import_s": import_s, "open_s": open_s, "open_cpu_s": lib.open_cpu_s, "rss_start": rss_start,
        "rss_import": rss_import, "pss_import": pss_import, "pss_open": pss_open,
        "pss_delta": pss_open - pss_import,
        "rss_open": rss_open, "rss_delta": rss_open - rss_import, "len": len(ds), **lib.extras(ds),
    }  # fmt: skip


def task_pass(lib: Library, a: dict) -> dict:
    lib.load()
    io0 = io_written()
    ds, open_s = _open_timed(lib, a, None)
    t = time.perf_counter()
    rows = lib.full_pass(ds)
    pass_s = time.perf_counter() - t
    io1 = io_written()
    return {
        "open_s": open_s, "pass_s": pass_s, "rows": rows, "len": len(ds),
        "io_wchar": io1["wchar"] - io0["wchar"], "io_write_bytes": io1["write_bytes"] - io0["write_bytes"],
    }  # fmt: skip


def task_items(lib: Library, a: dict) -> dict:
    one_thread()
    lib.load()
    ds, open_s = _open_timed(lib, a, query())
    r = items_per_s(ds, a.get("max_items", 100_000), a["budget_s"], a.get("seed", 0))
    return {"open_s": open_s, "len": len(ds), **r}


def task_batch(lib: Library, a: dict) -> dict:
    import numpy as np
    from measure import random_indices, timed_loop

    one_thread()
    lib.load()
    ds, open_s = _open_timed(lib, a, query())
    bs = a.get("batch_size", 256)
    n_batches = max(8, a.get("max_batches", 2000))
    idx = random_indices(len(ds), bs * n_batches, a.get("seed", 0)).reshape(n_batches, bs)
    work = [np.asarray(b) for b in idx]
    r = timed_loop(lambda b: lib.batch(ds, b, a["mode"]), work, a["budget_s"])
    return {
        "open_s": open_s, "len": len(ds), "batch_size": bs, **r,
        "rate": r["calls"] * bs / r["wall_s"], "rate_cpu": r["calls"] * bs / max(r["cpu_s"], 1e-9),
    }  # fmt: skip


def task_loader(lib: Library, a: dict) -> dict:
    lib.load()
    ds, open_s = _open_timed(lib, a, query())
    r = loader_memory(
        ds, lib.collate, batch_size=a.get("batch_size", 64), workers=a.get("workers", 2),
        max_samples=a.get("max_samples", 10**12), seed=a.get("seed", 0),
    )  # fmt: skip
    return {"open_s": open_s, **r}


TASKS = {
    "open": task_open,
    "pass": task_pass,
    "items": task_items,
    "batch": task_batch,
    "loader": task_loader,
}


def main(libraries: dict[str, Callable[[], Library]], argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--lib", required=True, choices=sorted(libraries))
    p.add_argument("--task", required=True, choices=sorted(TASKS))
    p.add_argument("--args", default="{}", help="JSON object of task arguments")
    ns = p.parse_args(argv)
    a = json.loads(ns.args)
    try:
        lib = libraries[ns.lib]()
        result = TASKS[ns.task](lib, a)
    except Exception as e:  # a failed measurement is reported, never hidden
        emit({"error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc(limit=6)})
        return 1
    emit({"lib": ns.lib, "task": ns.task, "version": lib.version(), **result})
    return 0


if __name__ == "__main__":
    sys.exit("run benchmarks/worker.py or benchmarks/peer_side/worker.py")
