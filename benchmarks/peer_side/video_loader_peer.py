"""P5, the peers' side: one DataLoader measurement of LeRobot 0.6.1 or OpenTau 0.14.0 in a fresh process.

Runs INSIDE a peer venv and calls only the peers' public APIs (`LeRobotDataset(...)`, torch's DataLoader):

    . /tmp/peers/env_lerobot.sh
    /tmp/peers/venv/bin/python benchmarks/peer_side/video_loader_peer.py --lib lerobot --backend torchcodec \
        --root /tmp/robotempo-bench/x1/V264 --cam-deltas 1 --indices /tmp/idx.npy --workers 2 \
        --warmup 5 --batches 60 --budget-s 120 [--dump /tmp/x.npz]

    . /tmp/peers/env_opentau.sh          # OpenTau writes meta/speed_percentiles.jsonl: pass a copy as --root
    /tmp/peers/venv_tau/bin/python benchmarks/peer_side/video_loader_peer.py --lib opentau ...

The measurement loop (`measure_loader`) needs only the standard library, numpy and torch, so
`benchmarks/bench_video_loader.py` imports it for robotempo's side too: every system is timed by the same code.
The result is printed as one line `BENCH_RESULT {json}`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback
from pathlib import Path

import numpy as np

RESULT_TAG = "BENCH_RESULT "
CLK_TCK = os.sysconf("SC_CLK_TCK")


def emit(result: dict) -> None:
    print(RESULT_TAG + json.dumps(result), flush=True)


def read_info(root) -> dict:
    return json.loads((Path(root) / "meta" / "info.json").read_text())


def video_keys(info: dict) -> list[str]:
    return [k for k, f in info["features"].items() if f["dtype"] == "video"]


def camera_keys(info: dict) -> list[str]:
    return [k for k, f in info["features"].items() if f["dtype"] in ("video", "image")]


def benchmark_query(info: dict, cam_deltas: bool) -> dict[str, list[float]]:
    """The P5 / VLA query at the dataset's frame rate: state [-1/fps, 0], an action chunk of 50 frames, and
    every camera at [-1/fps, 0] (two frames) or, without `cam_deltas`, the current frame only."""
    fps = float(info["fps"])
    d = {"observation.state": [-1 / fps, 0.0], "action": [i / fps for i in range(50)]}
    if cam_deltas:
        for k in camera_keys(info):
            d[k] = [-1 / fps, 0.0]
    return d


# -- CPU time of this process and its DataLoader workers -----------------------------------------------------
def _proc_cpu_s(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime, all threads


def _children(pid: int) -> list[int]:
    out: list[int] = []
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            out += [int(c) for c in Path(f"/proc/{pid}/task/{tid}/children").read_text().split()]
        except OSError:
            pass
    return out


def tree_cpu(pids: list[int]) -> dict[int, float]:
    return {p: _proc_cpu_s(p) for p in pids}


def tree_rchar(pids: list[int]) -> int:
    """Bytes these processes asked of files and pipes through read calls (/proc/<pid>/io rchar): what a
    loader reads, page cache or not. Memory-mapped reads (HF datasets' Arrow cache) are not counted."""
    total = 0
    for p in pids:
        try:
            for line in Path(f"/proc/{p}/io").read_text().splitlines():
                if line.startswith("rchar:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total


def loadavg() -> list[float]:
    return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]


def proc_stat_busy() -> tuple[float, float]:
    """(busy, total) jiffies of the whole machine, from /proc/stat: the machine's load during a window."""
    f = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = f[3] + f[4]
    return float(sum(f) - idle), float(sum(f))


# -- the measurement -----------------------------------------------------------------------------------------
def _to_numpy(v):
    import torch

    if isinstance(v, torch.Tensor):
        return v.detach().cpu().numpy()
    return None


def measure_loader(
    ds,
    collate_fn,
    indices: np.ndarray,
    *,
    batch_size: int,
    workers: int,
    warmup: int,
    batches: int,
    budget_s: float,
    dump: str | None = None,
    dump_batches: int = 2,
    dump_keys: tuple[str, ...] = (),
) -> dict:
    """Iterate a DataLoader over `indices` (in this order, batched); time `batches` batches after `warmup`.

    The clock starts once `warmup` batches have arrived (worker start-up and first fills excluded) and stops
    after `batches` more or, if sooner, after the first batch that ends past `budget_s` seconds of timing
    (slow systems; at least 2 timed batches). CPU seconds of the main process and of its workers over the same
    window are read from /proc. The first `dump_batches` warm-up batches' `dump_keys` (and `index`) are saved
    to `dump` for a correctness comparison.
    """
    import torch
    from torch.utils.data import DataLoader

    n_total = (warmup + batches) * batch_size
    if len(indices) < n_total:
        raise ValueError(f"{len(indices)} indices for {n_total} samples")
    order = [int(i) for i in indices[:n_total]]
    kw = {"prefetch_factor": 2, "persistent_workers": False} if workers else {}
    loader = DataLoader(
        ds, batch_size=batch_size, sampler=order, num_workers=workers, collate_fn=collate_fn,
        drop_last=False, **kw,
    )  # fmt: skip
    t_iter = time.perf_counter()
    it = iter(loader)
    saved: dict[str, np.ndarray] = {}
    first_batch_s = None
    for i in range(warmup):
        b = next(it)
        if first_batch_s is None:
            first_batch_s = time.perf_counter() - t_iter
        if dump and i < dump_batches:
            for k in ("index", *dump_keys):
                a = _to_numpy(b[k])
                if a is not None:
                    saved.setdefault(k, []).append(a)
    warmup_s = time.perf_counter() - t_iter
    me = os.getpid()
    pids = [me, *_children(me)]
    cpu0 = tree_cpu(pids)
    rchar0 = tree_rchar(pids)
    m0 = proc_stat_busy()
    la0 = loadavg()
    t0 = time.perf_counter()
    done = samples = 0
    per_batch = []
    last = t0
    for b in it:
        # the batch's tensors are received (rebuilt in this process) but their data is not read: the same
        # for every system, and what a trainer's own copy to the device would add is not the loader's cost
        n = None
        for v in b.values():
            if isinstance(v, torch.Tensor):
                n = v.shape[0]
        samples += n or batch_size
        done += 1
        now = time.perf_counter()
        per_batch.append(now - last)
        last = now
        if done >= batches or (now - t0 > budget_s and done >= 2):
            break
    wall = time.perf_counter() - t0
    cpu1 = tree_cpu(pids)
    rchar1 = tree_rchar(pids)
    m1 = proc_stat_busy()
    del it  # shut the workers down
    cpu = {("main" if p == me else f"worker{j}"): cpu1[p] - cpu0[p] for j, p in enumerate(pids)}
    machine_busy = (m1[0] - m0[0]) / max(m1[1] - m0[1], 1.0) * (os.cpu_count() or 1)
    if dump and saved:
        np.savez_compressed(dump, **{k: np.concatenate(v) for k, v in saved.items()})
    return {
        "batches": done, "samples": samples, "wall_s": wall, "samples_per_s": samples / wall,
        "cpu_s": cpu, "cpu_s_total": sum(cpu.values()),
        "samples_per_cpu_s": samples / max(sum(cpu.values()), 1e-9),
        "read_bytes_per_sample": (rchar1 - rchar0) / max(samples, 1),
        "machine_busy_cores": machine_busy, "own_busy_cores": sum(cpu.values()) / wall,
        "loadavg_start": la0, "loadavg_end": loadavg(),
        "first_batch_s": first_batch_s, "warmup_s": warmup_s,
        "batch_s_median": float(np.median(per_batch)) if per_batch else None,
        "truncated_by_budget": done < batches,
    }  # fmt: skip


# -- peer adapters -------------------------------------------------------------------------------------------
def open_lerobot(root: str, deltas: dict, backend: str):
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    return LeRobotDataset(
        f"bench/{Path(root).name}", root=root, delta_timestamps=deltas, video_backend=backend
    )


def open_opentau(root: str, deltas: dict, backend: str):
    from opentau.configs.default import DatasetMixtureConfig
    from opentau.configs.train import TrainPipelineConfig
    from opentau.datasets.lerobot_dataset import LeRobotDataset

    info = read_info(root)
    dim = int(info["features"]["observation.state"]["shape"][0])
    adim = int(info["features"]["action"]["shape"][0])
    cams = camera_keys(info)
    height, width = info["features"][cams[0]]["shape"][:2] if cams else (96, 96)
    cfg = TrainPipelineConfig(
        dataset_mixture=DatasetMixtureConfig(), batch_size=1, resolution=(height, width), num_cams=len(cams) or 1,
        max_state_dim=dim, max_action_dim=adim, action_chunk=50,
    )  # fmt: skip
    ds = LeRobotDataset(
        cfg, f"bench/{Path(root).name}", root=root, delta_timestamps=deltas, video_backend=backend,
        standardize=False,
    )  # fmt: skip
    ds._total_rand_attempts = 0  # fail loudly instead of silently retrying a random other index
    return ds


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lib", choices=["lerobot", "opentau"], required=True)
    ap.add_argument("--backend", choices=["torchcodec", "pyav"], required=True)
    ap.add_argument("--root", required=True)
    ap.add_argument("--cam-deltas", type=int, choices=[0, 1], required=True)
    ap.add_argument("--indices", required=True, help=".npy of dataset positions, in loader order")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--batches", type=int, default=60)
    ap.add_argument("--budget-s", type=float, default=120.0)
    ap.add_argument("--dump", default=None)
    ap.add_argument(
        "--torch-threads", type=int, default=0, help="torch.set_num_threads in this process (0: keep)"
    )
    a = ap.parse_args(argv)
    try:
        import torch

        if a.torch_threads:
            torch.set_num_threads(a.torch_threads)

        info = read_info(a.root)
        deltas = benchmark_query(info, bool(a.cam_deltas))
        t = time.perf_counter()
        ds = (open_lerobot if a.lib == "lerobot" else open_opentau)(a.root, deltas, a.backend)
        open_s = time.perf_counter() - t
        indices = np.load(a.indices)
        if indices.max() >= len(ds):
            raise ValueError(f"index {indices.max()} out of range for len {len(ds)}")
        r = measure_loader(
            ds, torch.utils.data.default_collate, indices, batch_size=a.batch_size, workers=a.workers,
            warmup=a.warmup, batches=a.batches, budget_s=a.budget_s, dump=a.dump,
            dump_keys=tuple(camera_keys(info)) + ("observation.state", "action"),
        )  # fmt: skip
        version = __import__(a.lib).__version__ if hasattr(__import__(a.lib), "__version__") else "?"
        emit({"lib": a.lib, "backend": a.backend, "version": version, "open_s": open_s, "len": len(ds),
              "torch_threads": torch.get_num_threads(), **r})  # fmt: skip
    except Exception as e:  # a failed measurement is reported, never hidden
        emit({"error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc(limit=8)})
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
