"""Write v3.0 datasets with LeRobot 0.6.1's own writer (reference data for robotempo's compatibility checks).

Runs INSIDE the LeRobot peer venv, never imported by robotempo:

    . /tmp/peers/env_lerobot.sh
    /tmp/peers/venv/bin/python benchmarks/peers/make_lerobot_dataset.py /tmp/peer_data --seed 0

Datasets (under OUT/, each a dataset root; an existing root is replaced):

* ``lr_video``   30 episodes (40-120 frames), 3 tasks, state 6 + action 6 float32, one 96x96 camera
                 ``observation.images.cam`` stored as video (default codec: LeRobot's default, AV1 libsvtav1),
                 pixels encode (episode, frame) (see identity_pixels.py). Small file-size limits and a small
                 ``chunks_size`` force several data files, several video files and several chunks.
* ``lr_image``   the same with the camera as dtype "image" (PNG embedded in the parquet).
* ``lr_tabular`` 200 tabular episodes (20-80 frames) + a shape-(1,) ``next.reward``.

Public API used: ``LeRobotDataset.create(..., data_files_size_in_mb=, video_files_size_in_mb=,
rgb_encoder=)``, ``ds.meta.update_chunk_settings(chunks_size=)`` (``create`` has no chunks_size argument in
0.6.1), ``add_frame``, ``save_episode``, ``finalize``.
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
from synth import ACTION_DIM, STATE_DIM, TASKS, episode_plan, episode_values  # noqa: E402

CAM = "observation.images.cam"


def features(camera: str | None, size: int, reward: bool) -> dict:
    ft = {
        "observation.state": {
            "dtype": "float32",
            "shape": (STATE_DIM,),
            "names": ["episode", "frame", "task"] + [f"s{i}" for i in range(3, STATE_DIM)],
        },
        "action": {"dtype": "float32", "shape": (ACTION_DIM,), "names": [f"a{i}" for i in range(ACTION_DIM)]},
    }
    if reward:
        ft["next.reward"] = {"dtype": "float32", "shape": (1,), "names": None}
    if camera is not None:
        ft[CAM] = {"dtype": camera, "shape": (size, size, 3), "names": ["height", "width", "channels"]}
    return ft


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
    data_mb: float,
    video_mb: float,
    chunks_size: int,
    vcodec: str | None,
    reward: bool,
) -> dict:
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    if root.exists():
        shutil.rmtree(root)
    kwargs = {}
    if vcodec:
        from lerobot.configs.video import RGBEncoderConfig

        kwargs["rgb_encoder"] = RGBEncoderConfig(vcodec=vcodec)
    t0 = time.time()
    ds = LeRobotDataset.create(
        repo_id=f"peers/{root.name}",
        fps=fps,
        features=features(camera, size, reward),
        root=root,
        robot_type="synthetic",
        use_videos=camera == "video",
        data_files_size_in_mb=data_mb,
        video_files_size_in_mb=video_mb,
        **kwargs,
    )
    ds.meta.update_chunk_settings(chunks_size=chunks_size)
    for ep, length, task in episode_plan(n_episodes, min_len, max_len, seed):
        state, action, rew = episode_values(ep, length, TASKS.index(task), seed)
        for f in range(length):
            frame = {"observation.state": state[f], "action": action[f], "task": task}
            if reward:
                frame["next.reward"] = rew[f : f + 1]
            if camera is not None:
                # Identity pixels hold 8 bits: larger benchmark corpora (not compared frame by frame) wrap.
                frame[CAM] = identity_frame(ep % 256, f % 256, size, size)
            ds.add_frame(frame)
        ds.save_episode()
    ds.finalize()
    info = json.loads((root / "meta/info.json").read_text())
    summary = {
        "root": str(root),
        "seconds": round(time.time() - t0, 1),
        "total_episodes": info["total_episodes"],
        "total_frames": info["total_frames"],
        "chunks_size": info["chunks_size"],
        "data_files": sorted(str(p.relative_to(root)) for p in root.glob("data/*/*.parquet")),
        "video_files": sorted(str(p.relative_to(root)) for p in root.glob("videos/**/*.mp4")),
        "episode_meta_files": sorted(
            str(p.relative_to(root)) for p in root.glob("meta/episodes/*/*.parquet")
        ),
    }
    if camera == "video":
        summary["codec"] = info["features"][CAM]["info"].get("video.codec")
    return summary


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", type=Path, help="output directory (e.g. /tmp/peer_data)")
    ap.add_argument("--which", nargs="+", default=["lr_video", "lr_image", "lr_tabular"])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--fps", type=int, default=30)
    ap.add_argument("--size", type=int, default=96, help="camera height = width")
    ap.add_argument("--episodes", type=int, default=30, help="episodes of lr_video / lr_image")
    ap.add_argument("--min-len", type=int, default=40)
    ap.add_argument("--max-len", type=int, default=120)
    ap.add_argument("--tabular-episodes", type=int, default=200)
    ap.add_argument("--tabular-min-len", type=int, default=20)
    ap.add_argument("--tabular-max-len", type=int, default=80)
    ap.add_argument("--chunks-size", type=int, default=3, help="files per chunk directory")
    ap.add_argument("--video-data-mb", type=float, default=0.02, help="data_files_size_in_mb for lr_video")
    ap.add_argument("--image-data-mb", type=float, default=0.25, help="data_files_size_in_mb for lr_image")
    ap.add_argument("--tabular-data-mb", type=float, default=0.05, help="data_files_size_in_mb, lr_tabular")
    ap.add_argument("--video-mb", type=float, default=0.1, help="video_files_size_in_mb for lr_video")
    ap.add_argument("--vcodec", default=None, help="e.g. h264; default: LeRobot's default (libsvtav1)")
    ap.add_argument("--suffix", default="", help="appended to dataset names (e.g. _h264)")
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    common = dict(fps=args.fps, size=args.size, seed=args.seed, chunks_size=args.chunks_size)
    specs = {
        "lr_video": dict(
            camera="video",
            n_episodes=args.episodes,
            min_len=args.min_len,
            max_len=args.max_len,
            data_mb=args.video_data_mb,
            video_mb=args.video_mb,
            vcodec=args.vcodec,
            reward=False,
        ),
        "lr_image": dict(
            camera="image",
            n_episodes=args.episodes,
            min_len=args.min_len,
            max_len=args.max_len,
            data_mb=args.image_data_mb,
            video_mb=args.video_mb,
            vcodec=None,
            reward=False,
        ),
        "lr_tabular": dict(
            camera=None,
            n_episodes=args.tabular_episodes,
            min_len=args.tabular_min_len,
            max_len=args.tabular_max_len,
            data_mb=args.tabular_data_mb,
            video_mb=args.video_mb,
            vcodec=None,
            reward=True,
        ),
    }
    for name in args.which:
        summary = write(args.out / f"{name}{args.suffix}", **specs[name], **common)
        print(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
