"""What an open video file of an object store keeps in memory: its blocks and prefetched ranges.

    .venv/bin/python benchmarks/profile_remote_video_memory.py            # 2,400 random samples
    .venv/bin/python benchmarks/profile_remote_video_memory.py --batches 100

One v3.0 dataset of 3 cameras at 480x640 (H.264, sensor noise raised so each camera's file is ~17 MB, as a
real recording's would be, not the ~2 MB of a clean synthetic scene), written under DIR/remote-memory,
uploaded to an S3 server on 127.0.0.1 (moto, as the tests start it); random batches of 8 samples (2 frames of
each camera) in this process; then the bytes of blocks and prefetched ranges its open files hold, against
`robotempo.fs.blockfile.held_bytes()`, what the decoder cache's default budgets per open file of a store
(all of a process's open files together: at most `ROBOTEMPO_REMOTE_CACHE_MB`, default 128).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent / "tests"))
DIR = Path(os.environ.get("ROBOTEMPO_BENCH_DIR", "/tmp/robotempo-bench")) / "remote-memory"
CAMERAS = ("observation.images.top", "observation.images.left", "observation.images.wrist")


def corpus() -> Path:
    from robotempo.synth import SynthSpec
    from robotempo.writer import DatasetWriter

    root = DIR / "vga-h264"
    if (root / "done").exists():
        return root
    spec = SynthSpec(n_episodes=3, n_tasks=1, mean_length=300.0, length_sigma=0.0, camera="video",
                     image_size=(480, 640), fps=30, seed=5, pixel_noise=12.0)  # fmt: skip
    features = {k: v for k, v in spec.features().items() if k in ("observation.state", "action")}
    for key in CAMERAS:
        features[key] = {"dtype": "video", "shape": [480, 640, 3], "names": ["height", "width", "channels"]}
    with DatasetWriter(root, fps=30, features=features, version="v3.0", video_codec="h264") as w:
        for e in range(spec.n_episodes):
            arrays, task = spec.episode(e)
            frames = arrays.pop("observation.images.top")
            arrays.update(dict(zip(CAMERAS, (frames, frames[:, :, ::-1], frames[:, ::-1]))))
            w.add_episode(arrays, task=task)
    (root / "done").write_text("")
    return root


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batches", type=int, default=300, help="random batches of 8 samples")
    args = ap.parse_args(argv)
    from s3_server import ACCESS_KEY, REGION, SECRET_KEY, S3Server

    from robotempo import LeRobotDataset
    from robotempo.fs.blockfile import held_bytes

    root = corpus()
    sizes = sorted(p.stat().st_size for p in root.rglob("*.mp4"))
    server = S3Server()
    try:
        url = server.upload(root, "bench", "remote-memory")
        options = {"endpoint_override": server.endpoint, "access_key": ACCESS_KEY, "secret_key": SECRET_KEY,
                   "region": REGION}  # fmt: skip
        delta = {key: [-1 / 30, 0.0] for key in CAMERAS}
        ds = LeRobotDataset("remote-memory", root=url, storage_options=options, speed_labels=False,
                            return_uint8=True, delta_timestamps=delta)  # fmt: skip
        rng = np.random.default_rng(0)
        for _ in range(args.batches):
            ds.__getitems__(rng.integers(1, len(ds), 8).tolist())
        slots = ds._video().cache._state.get().slots.values()
        readers = [s.reader for s in slots if s.reader is not None]
        held = [r._blocks._bytes() for r in readers]
    finally:
        server.stop()
    print(
        f"files: {len(sizes)} of {', '.join(f'{s / 1e6:.1f}' for s in sizes)} MB; {args.batches * 8} samples"
    )
    each = ", ".join(f"{h / 1e6:.1f}" for h in held)
    print(
        f"held per open file: {each} MB (sum {sum(held) / 1e6:.1f} MB); budgeted: {held_bytes() / 1e6:.1f} MB"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
