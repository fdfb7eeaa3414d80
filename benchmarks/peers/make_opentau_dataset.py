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

OpenTau's writer takes 0.7-1.7 s per tabular episode on this shared 2-core machine (a ``datasets`` map and a
parquet write per episode; every ``save_episode`` also checks the files and lengths of all earlier episodes),
so 5,000 episodes take 1.5-2.5 hours in one session. ``--continue-from OLD --continue-at N``
resumes the same plan from episode N in a fresh writer session: the new root gets hard links to OLD's first N
episode files and the first N lines of its episodes(_stats).jsonl, the writer's metadata object is brought
to the state it had after N episodes (task table added in OLD's order, counters, episode lengths), and
OpenTau's writer writes episodes N.. itself. Episodes N..len(OLD)-1 are written again and compared byte for
byte with OLD's files (the check that resuming changes nothing the writer makes).

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


def _resume(ds, old: Path, at: int) -> None:
    """Bring a fresh OpenTau writer to the state it had after writing `old`'s first `at` episodes."""
    meta, root = ds.meta, ds.root
    lines = {name: (old / "meta" / name).read_text().splitlines(keepends=True)[:at]
             for name in ("episodes.jsonl", "episodes_stats.jsonl")}  # fmt: skip
    if len(lines["episodes.jsonl"]) != at:
        raise SystemExit(f"{old} holds fewer than {at} episodes")
    for row in map(json.loads, (old / "meta/tasks.jsonl").read_text().splitlines()):
        meta.add_task(row["task"])  # same order, same indices, same tasks.jsonl
    episodes = [json.loads(line) for line in lines["episodes.jsonl"]]
    for e in episodes:
        src = old / meta.get_data_file_path(e["episode_index"])
        dst = root / meta.get_data_file_path(e["episode_index"])
        dst.parent.mkdir(parents=True, exist_ok=True)
        dst.hardlink_to(src)
        meta.episodes[e["episode_index"]] = e
    for name, kept in lines.items():
        (root / "meta" / name).write_text("".join(kept))
    meta.info["total_episodes"] = at
    meta.info["total_frames"] = sum(e["length"] for e in episodes)
    meta.info["total_chunks"] = -(-at // meta.info["chunks_size"])
    meta.info["splits"] = {"train": f"0:{at}"}
    ds.episode_buffer = ds.create_episode_buffer()


def _same_as_old(root: Path, old: Path, episodes: range, meta) -> dict:
    differ = [
        e for e in episodes
        if (root / meta.get_data_file_path(e)).read_bytes() != (old / meta.get_data_file_path(e)).read_bytes()
    ]  # fmt: skip
    return {"rewritten_episodes_compared": len(episodes), "differing": differ[:10]}


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
    continue_from: Path | None = None,
    continue_at: int = 0,
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
    start = 0
    if continue_from is not None:
        _resume(ds, continue_from, continue_at)
        start = continue_at
    times, t100 = [], time.time()
    for ep, length, task in episode_plan(n_episodes, min_len, max_len, seed)[start:]:
        state, action, rew = episode_values(ep, length, TASKS.index(task), seed)
        for f in range(length):
            frame = {"observation.state": state[f], "action": action[f], "task": task}
            if reward:
                frame["next.reward"] = rew[f : f + 1]
            if camera is not None:
                frame[CAM] = identity_frame(ep, f, size, size)
            ds.add_frame(frame)
        ds.save_episode()
        if (ep + 1) % 100 == 0:
            times.append(round(time.time() - t100, 1))
            t100 = time.time()
            print(f"{root.name}: {ep + 1} episodes, last 100 in {times[-1]} s", file=sys.stderr, flush=True)
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
        "seconds_per_100_episodes": times,
    }
    if continue_from is not None:
        old_n = json.loads((continue_from / "meta/info.json").read_text())["total_episodes"]
        summary["resumed"] = _same_as_old(root, continue_from, range(continue_at, old_n), ds.meta)
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
    ap.add_argument("--continue-from", type=Path, help="an earlier root of the same plan to resume from")
    ap.add_argument("--continue-at", type=int, default=0, help="first episode the writer writes again")
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    common = dict(fps=args.fps, size=args.size, seed=args.seed, chunks_size=args.chunks_size,
                  continue_from=args.continue_from, continue_at=args.continue_at)  # fmt: skip
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
