"""Where an embedded-image (PNG-in-parquet) batch's CPU time goes, in one process (issue 11, item 3).

    .venv/bin/python benchmarks/profile_png.py /tmp/robotempo-bench/vla/quick/vla224_png --cache-mb 3

`__getitems__` + `collate` of `--batches` random batches of 32 with bench_vla's query (each camera at
[-1/fps, 0], state history, 50-step action chunk), 0 workers, timers (CPU time of this process) around each
stage: the heavy-column read (`FrameTable.read_heavy`; inside it, whole row-group loads and, where the
installed robotempo has them, page loads), and PNG decoding: `decode_image` (uint8 HWC) and `to_item_layout`
(the batch to float32 CHW) where the installed robotempo has them, else `cameras.decode_image_into` (each
image straight into its slot of the batch tensor, conversion included). Only public functions and module
attributes of the checkout that runs it are timed, so the same script profiles another checkout (before
a change): run it with that checkout's python. With `decode_image_into`, it then times 64 images decoded into
a new shared-memory tensor against the same tensor reused (what fresh pages cost a DataLoader worker).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent / "peer_side"))

from video_loader_peer import benchmark_query, read_info  # noqa: E402

BATCH = 32


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("root")
    ap.add_argument("--cache-mb", type=float, default=3.0, help="heavy_cache_mb of the dataset")
    ap.add_argument("--batches", type=int, default=12)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)

    import robotempo.cameras as cameras
    import robotempo.dataset as dataset
    import robotempo.store.frames as frames
    from robotempo import LeRobotDataset, collate

    cpu: dict[str, float] = {}
    loaded = [0]

    def timed(name, fn, count=False):
        def wrapper(*args, **kwargs):
            t = time.process_time()
            try:
                value = fn(*args, **kwargs)
                if count:
                    loaded[0] += value.nbytes
                return value
            finally:
                cpu[name] = cpu.get(name, 0.0) + time.process_time() - t

        return wrapper

    frames.FrameTable.read_heavy = timed(
        "read_heavy (read, decompress, Arrow -> Python)", frames.FrameTable.read_heavy
    )
    if hasattr(dataset, "to_item_layout"):  # decode to uint8 HWC, then one conversion of the batch
        dataset.decode_image = timed("PNG decode (PIL, RGB, numpy)", dataset.decode_image)
        dataset.to_item_layout = timed("uint8 HWC -> item layout", dataset.to_item_layout)
    else:  # each image decoded straight into its slot of the batch tensor
        decode_into = cameras.decode_image_into
        cameras.decode_image_into = timed(
            "PNG decode into the batch (PIL, planes, /255)", cameras.decode_image_into
        )
    try:
        import robotempo.store.heavy as heavy  # the page reader

        heavy._load = timed("  of which row-group loads", heavy._load, count=True)
        heavy._page = timed("  of which page loads", heavy._page, count=True)
    except ImportError:  # the row-group reader
        frames.FrameTable._load = timed("  of which row-group loads", frames.FrameTable._load, count=True)

    root = Path(a.root)
    ds = LeRobotDataset("bench/png", root=root, delta_timestamps=benchmark_query(read_info(root), True),
                        speed_labels=False, heavy_cache_mb=a.cache_mb)  # fmt: skip
    n = a.batches * BATCH
    order = np.random.default_rng(a.seed).permutation(len(ds))
    order = np.concatenate([order] * (1 + n // len(ds)))[:n]
    c0, w0 = time.process_time(), time.perf_counter()
    for b in range(a.batches):
        collate(ds.__getitems__(order[b * BATCH : (b + 1) * BATCH].tolist()))
    total, wall = time.process_time() - c0, time.perf_counter() - w0
    print(f"{root.name}: {n} samples, heavy cache {a.cache_mb} MB: {n / total:.1f} samples/CPU-s "
          f"({n / wall:.1f} samples/s); loaded {loaded[0] / n / 1e3:.0f} KB per sample")  # fmt: skip
    for name, seconds in cpu.items():
        print(f"  {name:50s} {1e3 * seconds / n:6.2f} CPU ms/sample  {seconds / total:6.1%}")
    print(f"  {'all':50s} {1e3 * total / n:6.2f} CPU ms/sample")
    if not hasattr(dataset, "to_item_layout"):
        fresh_vs_reused(ds, decode_into)
    return 0


def fresh_vs_reused(ds, decode_into, n: int = 64, reps: int = 5) -> None:
    """CPU per image decoded into a new shared-memory batch tensor (as `frames_tensor` makes one in a
    DataLoader worker, released after each batch) vs into the same tensor again (minimum of `reps`)."""
    import math

    import torch

    key = ds.image_keys[0]
    hwc = ds.meta.info.features[key].hwc
    cells = ds.frames.read_heavy(key, np.arange(n) % len(ds))
    shape = (n, 3, hwc[0], hwc[1])

    def shared(dtype):
        storage = torch.UntypedStorage._new_shared(math.prod(shape) * dtype.itemsize)
        return torch.empty(0, dtype=dtype).set_(storage, 0, shape)

    def fill(out):  # a new tensor is released when this returns: its cost is counted
        for cell, slot in zip(cells, out.numpy()):
            decode_into(cell, slot, "-", key, hwc)

    for dtype in (torch.float32, torch.uint8):
        kept, best = shared(dtype), {}
        for _ in range(reps):
            for fresh in (True, False):
                t = time.process_time()
                fill(shared(dtype) if fresh else kept)
                best[fresh] = min(best.get(fresh, math.inf), time.process_time() - t)
        print(
            f"  {n} images into a {dtype} shared-memory tensor: new {1e3 * best[True] / n:.2f}, "
            f"reused {1e3 * best[False] / n:.2f} CPU ms per image"
        )


if __name__ == "__main__":
    sys.exit(main())
