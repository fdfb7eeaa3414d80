"""Dump items read by a reference library (LeRobot 0.6.1 or OpenTau 0.14.0) to an .npz.

Runs INSIDE a peer venv (never imported by robotempo or its tests):

    . /tmp/peers/env_lerobot.sh
    /tmp/peers/venv/bin/python benchmarks/peers/dump_reference_items.py --lib lerobot --backend pyav \
        --root /tmp/peer_data/lr_video --query deltas --episodes 7,2,11 --out /tmp/peer_data/dumps/x.npz

    . /tmp/peers/env_opentau.sh
    /tmp/peers/venv_tau/bin/python benchmarks/peers/dump_reference_items.py --lib opentau \
        --backend torchcodec --root /tmp/peer_data/ot_video --query deltas --out /tmp/peer_data/dumps/y.npz

OpenTau writes meta/speed_percentiles.jsonl into any dataset it opens: with --lib opentau the dataset is
first copied to ``--scratch/<name>`` (default /tmp/peer_data/opentau_opened/<name>; kept between runs so the
file is written once, by the first open; ``--fresh-copy`` re-copies) and the copy is opened. The original
root is never touched.

Queries (``--query``):
  none    no delta_timestamps
  deltas  {"observation.state": [-0.1, 0.0], "action": [k/fps for k in range(10)], <camera>: [-2/fps, 0]}
  single  {"observation.state": [0.0]}   (shows OpenTau's squeeze of one-element windows)

Indices (``--indices``): ``auto`` = for every selected episode its first 4 rows, its last 11 rows and its
middle row (so both padding ends of the windows above are exercised), plus ``--random`` seeded random
rows; or an explicit comma list of dataset positions.

.npz layout (keys are flat strings):
  indices                  int64[N]    dataset positions asked for (ds[i])
  error                    str[N]      "" or the exception (type: message) raised for that position
  ok                       bool[N]
  item/<key>               [n_ok, ...] the item values of the ok positions, stacked (tensors -> arrays,
                                       str -> str arrays, python scalars -> arrays)
  dtype/<key>, shape/<key> str, int64  torch dtype (or python type) and per-item shape of <key>
  keys                     str[K]      item keys in the order the reference returns them
  len                      int64       len(ds)
  num_episodes, num_frames, selected_episodes (the reference's own ds.episodes after init)
  row_episode_index        int64[len]  episode_index of every dataset position (from the reference's table)
  episode_data_index/from, /to         OpenTau: ds.episode_data_index; LeRobot 0.6.1 has none: the absolute
                                       [dataset_from_index, dataset_to_index) of the selected episodes
  info                     str         JSON: library, version, backend, root, query, delta_timestamps, ...
  hf_cache_bytes_added     int64       growth of $HF_HOME/datasets during open + reads
  (OpenTau only) speed_percentiles_jsonl (str, the file as OpenTau left it), speed_raw_by_episode/episode
                 and /value, speed_raw_per_item (int64[n_ok], the value of the item's episode)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
import traceback
from pathlib import Path

import numpy as np

CAM_PREFIX = "observation.images."


def dir_bytes(path: Path) -> int:
    total = 0
    if path.exists():
        for dp, _, fns in os.walk(path):
            for fn in fns:
                try:
                    total += os.lstat(os.path.join(dp, fn)).st_size
                except OSError:
                    pass
    return total


def delta_timestamps(query: str, fps: int, camera_keys: list[str]):
    if query == "none":
        return None
    if query == "single":
        return {"observation.state": [0.0]}
    if query == "deltas":
        d = {"observation.state": [-0.1, 0.0], "action": [k / fps for k in range(10)]}
        for cam in camera_keys:
            d[cam] = [-1 / fps * 2, 0]
        return d
    raise ValueError(query)


def read_info(root: Path) -> dict:
    return json.loads((root / "meta/info.json").read_text())


def camera_keys_of(info: dict) -> list[str]:
    return [k for k, v in info["features"].items() if v["dtype"] in ("image", "video")]


def open_lerobot(root: Path, episodes, deltas, backend: str):
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    ds = LeRobotDataset(
        f"peers/{root.name}", root=root, episodes=episodes, delta_timestamps=deltas, video_backend=backend
    )
    meta = {"lerobot_version": __import__("lerobot").__version__}
    return ds, meta


def opentau_cfg():
    from opentau.configs.default import DatasetMixtureConfig
    from opentau.configs.train import TrainPipelineConfig

    return TrainPipelineConfig(
        dataset_mixture=DatasetMixtureConfig(),
        batch_size=1,
        resolution=(48, 64),
        num_cams=1,
        max_state_dim=8,
        max_action_dim=7,
        action_chunk=10,
    )


def open_opentau(root: Path, episodes, deltas, backend: str):
    from opentau.datasets.lerobot_dataset import LeRobotDataset

    ds = LeRobotDataset(
        opentau_cfg(),
        f"peers/{root.name}",
        root=root,
        episodes=episodes,
        delta_timestamps=deltas,
        video_backend=backend,
        standardize=False,
    )
    ds._total_rand_attempts = 0  # no silent retry on another random index
    import opentau

    return ds, {"opentau_version": getattr(opentau, "__version__", "?")}


def row_episode_index(ds) -> np.ndarray:
    t = ds.hf_dataset.with_transform(None).with_format("arrow")["episode_index"]
    return np.asarray(t, dtype=np.int64).reshape(-1)


def auto_indices(ep_rows: np.ndarray, n_random: int, seed: int) -> list[int]:
    n = len(ep_rows)
    if n == 0:
        return []
    change = np.flatnonzero(np.diff(ep_rows)) + 1
    starts = np.concatenate([[0], change])
    ends = np.concatenate([change, [n]])
    picks = set()
    for s, e in zip(starts.tolist(), ends.tolist(), strict=True):
        picks.update(range(s, min(s + 4, e)))
        picks.update(range(max(s, e - 11), e))
        picks.add((s + e) // 2)
    rng = np.random.default_rng(seed)
    picks.update(rng.integers(0, n, size=min(n_random, n)).tolist())
    return sorted(picks)


def to_numpy(value):
    """(array, dtype name) of one item value."""
    import torch

    if isinstance(value, torch.Tensor):
        name = str(value.dtype)
        if value.dtype == torch.bfloat16:
            value = value.float()
        return value.detach().cpu().numpy(), name
    if isinstance(value, str):
        return np.asarray(value, dtype=np.str_), "str"
    if isinstance(value, (bool, int, float)):
        return np.asarray(value), type(value).__name__
    if isinstance(value, (list, tuple)):
        return np.asarray(value), f"{type(value).__name__}"
    if value is None:
        return np.asarray("None", dtype=np.str_), "NoneType"
    return np.asarray(str(value), dtype=np.str_), type(value).__name__


def opentau_copy(src: Path, scratch: Path, fresh: bool) -> Path:
    dst = scratch / src.name
    if fresh and dst.exists():
        shutil.rmtree(dst)
    if not dst.exists():
        scratch.mkdir(parents=True, exist_ok=True)
        tmp = scratch / f".{src.name}.copying"
        if tmp.exists():
            shutil.rmtree(tmp)
        shutil.copytree(src, tmp)
        os.replace(tmp, dst)
    return dst


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lib", choices=["lerobot", "opentau"], required=True)
    ap.add_argument("--backend", choices=["pyav", "torchcodec"], default="torchcodec")
    ap.add_argument("--root", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--query", choices=["none", "deltas", "single"], default="none")
    ap.add_argument("--episodes", default="all", help="'all' (episodes=None) or a comma list, order kept")
    ap.add_argument("--indices", default="auto")
    ap.add_argument("--random", type=int, default=40, help="extra random positions with --indices auto")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--scratch", type=Path, default=Path("/tmp/peer_data/opentau_opened"))
    ap.add_argument("--fresh-copy", action="store_true", help="OpenTau: re-copy the pristine root first")
    args = ap.parse_args(argv)

    root = args.root.resolve()
    info = read_info(root)
    fps = int(info["fps"])
    cams = camera_keys_of(info)
    deltas = delta_timestamps(args.query, fps, cams)
    episodes = None if args.episodes == "all" else [int(x) for x in args.episodes.split(",")]

    opened_root = root
    if args.lib == "opentau":
        opened_root = opentau_copy(root, args.scratch, args.fresh_copy)
    speed_file = opened_root / "meta/speed_percentiles.jsonl"
    speed_file_existed = speed_file.exists()

    hf_datasets = Path(os.environ.get("HF_HOME", str(Path.home() / ".cache/huggingface"))) / "datasets"
    cache0 = dir_bytes(hf_datasets)
    t0 = time.time()
    opener = open_lerobot if args.lib == "lerobot" else open_opentau
    ds, libmeta = opener(opened_root, episodes, deltas, args.backend)
    open_s = time.time() - t0

    ep_rows = row_episode_index(ds)
    if args.indices == "auto":
        indices = auto_indices(ep_rows, args.random, args.seed)
    else:
        indices = [int(x) for x in args.indices.split(",")]

    errors, ok_items = [], []
    t1 = time.time()
    for i in indices:
        try:
            ok_items.append(ds[i])
            errors.append("")
        except Exception as e:  # record, do not hide: a reference failure is a finding
            msg = f"{type(e).__name__}: {e}"
            if isinstance(e, RuntimeError) and "Failed to load data after" in str(e):
                msg += "\n" + traceback.format_exc(limit=2)
            errors.append(msg[:4000])
    read_s = time.time() - t1
    cache1 = dir_bytes(hf_datasets)

    out: dict[str, np.ndarray] = {}
    out["indices"] = np.asarray(indices, dtype=np.int64)
    out["error"] = np.asarray(errors, dtype=np.str_)
    out["ok"] = np.asarray([e == "" for e in errors])
    keys: list[str] = list(ok_items[0].keys()) if ok_items else []
    for it in ok_items[1:]:
        if list(it.keys()) != keys:
            raise SystemExit(f"items do not share one key list: {keys} vs {list(it.keys())}")
    out["keys"] = np.asarray(keys, dtype=np.str_)
    for k in keys:
        arrs, names = zip(*(to_numpy(it[k]) for it in ok_items), strict=True)
        out[f"item/{k}"] = np.stack(arrs)
        out[f"dtype/{k}"] = np.asarray(
            sorted(set(names))[0] if len(set(names)) == 1 else "|".join(sorted(set(names)))
        )
        out[f"shape/{k}"] = np.asarray(arrs[0].shape, dtype=np.int64)
    out["len"] = np.asarray(len(ds), dtype=np.int64)
    out["num_episodes"] = np.asarray(ds.num_episodes, dtype=np.int64)
    out["num_frames"] = np.asarray(ds.num_frames, dtype=np.int64)
    sel = ds.episodes
    out["selected_episodes"] = np.asarray([] if sel is None else list(sel), dtype=np.int64)
    out["row_episode_index"] = ep_rows
    edi = getattr(ds, "episode_data_index", None)
    if edi is not None:
        out["episode_data_index/from"] = edi["from"].numpy()
        out["episode_data_index/to"] = edi["to"].numpy()
        out["episode_data_index/kind"] = np.asarray("opentau ds.episode_data_index (relative rows)")
    else:
        eps = list(sel) if sel is not None else list(range(ds.meta.total_episodes))
        out["episode_data_index/from"] = np.asarray(
            [ds.meta.episodes[e]["dataset_from_index"] for e in eps], dtype=np.int64
        )
        out["episode_data_index/to"] = np.asarray(
            [ds.meta.episodes[e]["dataset_to_index"] for e in eps], dtype=np.int64
        )
        out["episode_data_index/kind"] = np.asarray(
            "lerobot 0.6.1 has no episode_data_index: meta.episodes dataset_from/to_index (absolute)"
        )
    out["hf_cache_bytes_added"] = np.asarray(cache1 - cache0, dtype=np.int64)

    if args.lib == "opentau":
        out["speed_percentiles_jsonl"] = np.asarray(
            speed_file.read_text() if speed_file.exists() else "", dtype=np.str_
        )
        sr = ds.speed_raw_by_episode
        out["speed_raw_by_episode/episode"] = np.asarray(list(sr.keys()), dtype=np.int64)
        out["speed_raw_by_episode/value"] = np.asarray(list(sr.values()), dtype=np.int64)
        out["speed_raw_per_item"] = np.asarray(
            [sr[int(np.asarray(it["episode_index"]).reshape(-1)[0])] for it in ok_items], dtype=np.int64
        )
        out["speed_percentiles_by_task"] = np.asarray(
            json.dumps({str(k): v for k, v in ds.speed_percentiles_by_task.items()}), dtype=np.str_
        )

    meta = {
        "library": args.lib,
        **libmeta,
        "backend": args.backend,
        "root": str(root),
        "opened_root": str(opened_root),
        "speed_file_existed_before_open": speed_file_existed,
        "codebase_version": info["codebase_version"],
        "fps": fps,
        "query": args.query,
        "delta_timestamps": deltas,
        "episodes_arg": episodes,
        "open_seconds": round(open_s, 3),
        "read_seconds": round(read_s, 3),
        "python": sys.version.split()[0],
    }
    out["info"] = np.asarray(json.dumps(meta), dtype=np.str_)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez(args.out, **out)
    n_err = sum(1 for e in errors if e)
    print(
        f"{args.out}: {len(indices)} items ({n_err} errors), len={len(ds)}, keys={keys}, "
        f"open {open_s:.2f}s read {read_s:.2f}s"
    )
    if n_err:
        first = next(e for e in errors if e)
        print("first error:", first.splitlines()[0][:400])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
