"""Write v2.1 datasets with OpenTau 0.14.0's own writer (reference data for robotempo's compatibility checks).

Runs INSIDE the OpenTau peer venv, never imported by robotempo:

    . /tmp/peers/env_opentau.sh
    /tmp/peers/venv_tau/bin/python benchmarks/peers/make_opentau_dataset.py /tmp/peer_data --seed 0

Datasets (under OUT/, each a dataset root; an existing root is replaced). Same episode plan, values and
identity pixels as make_lerobot_dataset.py (synth.py, identity_pixels.py), so lr_X and ot_X hold the same
frames:

* ``ot_image``   30 episodes (40-120 frames), 3 tasks, state 6 + action 6 float32, one 96x96 camera
                 ``observation.images.cam`` of dtype "image" (PNG embedded in the parquet).
* ``ot_video``   the same with the camera as video (OpenTau encodes with the ``ffmpeg`` CLI: libsvtav1, g=2,
                 crf=30, yuv420p, one MP4 per episode).
* ``ot_tabular`` 200 tabular episodes (20-80 frames) + a shape-(1,) ``next.reward``.

Public API used: ``LeRobotDataset.create(repo_id, fps, root=, robot_type=, features=, use_videos=)``,
``add_frame``, ``save_episode`` (OpenTau has no finalize). OpenTau's create has no chunks_size argument: the
generator sets ``ds.meta.info["chunks_size"]`` before the first episode (written to info.json by
save_episode) so that the 30 episodes span several ``chunk-XXX`` directories.

The roots written here are pristine (no meta/speed_percentiles.jsonl): OpenTau writes that file into any
dataset it *opens*, so dump_reference_items.py opens a copy.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from identity_pixels import identity_frame  # noqa: E402
from make_lerobot_dataset import CAM, features  # noqa: E402  (pure dict builder, no lerobot import)
from synth import TASKS, episode_plan, episode_values  # noqa: E402


def write(
    root: Path,
    *,
    camera: str | None,
    n_episodes: int,
    min_len: int,
    max_len: int,
    fps: int,
    size: int,
    seed: int,
    chunks_size: int,
    reward: bool,
) -> dict:
    from opentau.datasets.lerobot_dataset import LeRobotDataset

    if root.exists():
        shutil.rmtree(root)
    t0 = time.time()
    ft = features(camera, size, reward)
    ds = LeRobotDataset.create(
        repo_id=f"peers/{root.name}",
        fps=fps,
        root=root,
        robot_type="synthetic",
        features=ft,
        use_videos=camera == "video",
    )
    ds.meta.info["chunks_size"] = chunks_size
    for ep, length, task in episode_plan(n_episodes, min_len, max_len, seed):
        state, action, rew = episode_values(ep, length, TASKS.index(task), seed)
        for f in range(length):
            frame = {"observation.state": state[f], "action": action[f], "task": task}
            if reward:
                frame["next.reward"] = rew[f : f + 1]
            if camera is not None:
                frame[CAM] = identity_frame(ep, f, size, size)
            ds.add_frame(frame)
        ds.save_episode()
    ds.stop_image_writer()
    info = json.loads((root / "meta/info.json").read_text())
    summary = {
        "root": str(root),
        "seconds": round(time.time() - t0, 1),
        "codebase_version": info["codebase_version"],
        "total_episodes": info["total_episodes"],
        "total_frames": info["total_frames"],
        "chunks_size": info["chunks_size"],
        "total_chunks": info["total_chunks"],
        "n_data_files": len(list(root.glob("data/*/*.parquet"))),
        "n_video_files": len(list(root.glob("videos/**/*.mp4"))),
        "chunks": sorted(p.name for p in root.glob("data/chunk-*")),
    }
    if camera == "video":
        summary["codec"] = info["features"][CAM].get("info", {}).get("video.codec")
    return summary


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", type=Path, help="output directory (e.g. /tmp/peer_data)")
    ap.add_argument("--which", nargs="+", default=["ot_image", "ot_video", "ot_tabular"])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--fps", type=int, default=30)
    ap.add_argument("--size", type=int, default=96)
    ap.add_argument("--episodes", type=int, default=30)
    ap.add_argument("--min-len", type=int, default=40)
    ap.add_argument("--max-len", type=int, default=120)
    ap.add_argument("--tabular-episodes", type=int, default=200)
    ap.add_argument("--tabular-min-len", type=int, default=20)
    ap.add_argument("--tabular-max-len", type=int, default=80)
    ap.add_argument("--chunks-size", type=int, default=8, help="episodes per chunk-XXX directory")
    ap.add_argument("--suffix", default="")
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    common = dict(fps=args.fps, size=args.size, seed=args.seed, chunks_size=args.chunks_size)
    cam = dict(n_episodes=args.episodes, min_len=args.min_len, max_len=args.max_len, reward=False)
    specs = {
        "ot_image": dict(camera="image", **cam),
        "ot_video": dict(camera="video", **cam),
        "ot_tabular": dict(
            camera=None,
            n_episodes=args.tabular_episodes,
            min_len=args.tabular_min_len,
            max_len=args.tabular_max_len,
            reward=True,
        ),
    }
    for name in args.which:
        print(json.dumps(write(args.out / f"{name}{args.suffix}", **specs[name], **common), indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
