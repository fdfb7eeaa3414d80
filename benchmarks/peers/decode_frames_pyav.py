"""Decode, with whatever PyAV/FFmpeg the running python has, the camera frames of a reference dump, and
measure how far they are from the frames the reference returned.

Needs only numpy, pyarrow and av (no LeRobot, no OpenTau, no robotempo), so it runs in the peer venvs
(PyAV 15.1 / FFmpeg 7.1) and in any other venv, e.g. the project's own .venv (PyAV 18 / FFmpeg 8): that is
how the spread between FFmpeg builds is measured. Nothing in robotempo imports it.

    /work/main/.venv/bin/python benchmarks/peers/decode_frames_pyav.py \
        /tmp/peer_data/dumps/lr_video__lerobot-pyav__none__all.npz --data /tmp/peer_data

Frame choice: the frame whose pts is nearest to ``from_timestamp + timestamp`` (v3.0) or ``timestamp``
(v2.1), then ``to_ndarray(format="rgb24") / 255`` (what LeRobot's PyAV path does).
"""

from __future__ import annotations

import argparse
import glob
import json
from pathlib import Path

import av
import numpy as np
import pyarrow.parquet as pq


def episode_video_map(root: Path, key: str) -> tuple[dict, dict]:
    info = json.loads((root / "meta/info.json").read_text())
    out = {}
    if info["codebase_version"].startswith("v3"):
        for p in sorted(glob.glob(str(root / "meta/episodes/*/*.parquet"))):
            cols = [
                "episode_index",
                f"videos/{key}/chunk_index",
                f"videos/{key}/file_index",
                f"videos/{key}/from_timestamp",
            ]
            for r in pq.read_table(p, columns=cols).to_pylist():
                path = root / info["video_path"].format(
                    video_key=key, chunk_index=r[cols[1]], file_index=r[cols[2]]
                )
                out[r["episode_index"]] = (path, float(r[cols[3]]))
    else:
        for line in (root / "meta/episodes.jsonl").read_text().splitlines():
            e = json.loads(line)["episode_index"]
            path = root / info["video_path"].format(
                episode_chunk=e // info["chunks_size"], video_key=key, episode_index=e
            )
            out[e] = (path, 0.0)
    return out, info


def decode_all(path: Path) -> tuple[np.ndarray, list[np.ndarray]]:
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        pts, frames = [], []
        for f in c.decode(s):
            pts.append(float(f.pts * s.time_base))
            frames.append(f.to_ndarray(format="rgb24"))
    return np.asarray(pts), frames


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dump", type=Path)
    ap.add_argument("--data", type=Path, default=Path("/tmp/peer_data"))
    ap.add_argument("--key", default="observation.images.cam")
    args = ap.parse_args(argv)
    z = np.load(args.dump)
    dataset = args.dump.stem.split("__")[0]
    root = args.data / dataset
    vmap, info = episode_video_map(root, args.key)
    ref = z[f"item/{args.key}"]
    if ref.ndim != 4:
        raise SystemExit("use a dump without camera delta_timestamps (query none or single)")
    cache: dict[Path, tuple] = {}
    diffs, worst_dt = [], 0.0
    for n in range(len(ref)):
        e, ts = int(z["item/episode_index"][n]), float(z["item/timestamp"][n])
        path, t0 = vmap[e]
        if path not in cache:
            cache[path] = decode_all(path)
        pts, frames = cache[path]
        j = int(np.argmin(np.abs(pts - (t0 + ts))))
        worst_dt = max(worst_dt, abs(pts[j] - (t0 + ts)))
        mine = frames[j].transpose(2, 0, 1).astype(np.float32) / 255.0
        diffs.append(np.abs(mine.astype(np.float64) - ref[n].astype(np.float64)))
    d = np.stack(diffs)
    res = {
        "dump": args.dump.name,
        "pyav": av.__version__,
        "libavcodec": ".".join(map(str, av.library_versions["libavcodec"])),
        "frames": int(len(d)),
        "max_abs": float(d.max()),
        "mean_abs": float(d.mean()),
        "p999_abs": float(np.quantile(d, 0.999)),
        "frac_pixels_differ": float((d > 0).mean()),
        "frames_not_identical": int((d.reshape(len(d), -1).max(1) > 0).sum()),
        "max_pts_minus_query_s": worst_dt,
        "codec": info["features"][args.key].get("info", {}).get("video.codec"),
    }
    print(json.dumps(res))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
