"""Benchmark corpora, written by robotempo's own writer (`robotempo.synth.write_synthetic`), seed 0.

    .venv/bin/python benchmarks/corpora.py --scale 0.05          # quick: T = 50 episodes, S = 1,000
    .venv/bin/python benchmarks/corpora.py --scale 1             # full (about 15 minutes on 2 cores)

| name  | format | episodes (x scale) | frames/episode | camera                       | used by          |
|-------|--------|--------------------|----------------|------------------------------|------------------|
| T     | v2.1   | 1,000              | ~150           | 96x96 PNG in the parquet     | P1 P2 P4a P4b P8 |
| Ttab  | v2.1   | 1,000              | ~150           | none (T's numeric columns)   | P4a P4b          |
| Vtab  | v3.0   | 1,000              | ~150           | none (LeRobot reads v3.0 only) | P4a P4b P8   |
| V264  | v3.0   | 1,000              | ~150           | 96x96 MP4, H.264             | P1 (LeRobot), P5 |
| Vav1  | v3.0   | 1,000              | ~150           | 96x96 MP4, AV1 (LeRobot default) | P5, on request |
| V21v  | v2.1   | 1,000 (MP4 each)   | ~150           | 96x96 MP4, H.264             | S3, on request   |
| S     | v2.1   | 20,000 (one file each) | ~20        | none                         | P3               |
| S1k   | v2.1   | 1,000              | ~20            | none                         | P3 (scaling)     |
| S3    | v3.0   | 20,000             | ~20            | none                         | P3 (LeRobot)     |
| S3_1k | v3.0   | 1,000              | ~20            | none                         | P3 (LeRobot)     |

Every corpus holds the same episode `e` (same task, length and values) whatever its format or scale: synth
makes episode `e` a function of `(seed, e)` only. Corpora live under `DIR/x<scale>/<name>` (default DIR
/tmp/robotempo-bench) and are reused when present: `<name>.done.json` beside a corpus marks it complete; a
corpus is written under a temporary name and renamed into place, so an interrupted run leaves no half corpus.
After writing, robotempo opens it once, writing `meta/speed_percentiles.jsonl` (P3 times that separately).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

DEFAULT_DIR = Path(os.environ.get("ROBOTEMPO_BENCH_DIR", "/tmp/robotempo-bench"))
SEED = 0
N_TASKS = 8
FPS = 10
SPEED_FILE = "meta/speed_percentiles.jsonl"

log = logging.getLogger("corpora")


@dataclass(frozen=True)
class CorpusSpec:
    name: str
    version: str
    episodes: int  # at full scale
    camera: str | None = None
    codec: str = "h264"
    mean_length: float = 150.0
    suite: bool = True  # written by run_all; False: only on request (`--only`)

    def scaled(self, scale: float) -> int:
        return max(10, round(self.episodes * scale))


SPECS = {
    s.name: s
    for s in (
        CorpusSpec("T", "v2.1", 1000, camera="image"),
        CorpusSpec("Ttab", "v2.1", 1000),
        CorpusSpec("Vtab", "v3.0", 1000),
        CorpusSpec("V264", "v3.0", 1000, camera="video", codec="h264"),
        CorpusSpec("Vav1", "v3.0", 1000, camera="video", codec="av1", suite=False),
        CorpusSpec("V21v", "v2.1", 1000, camera="video", codec="h264", suite=False),
        CorpusSpec("S", "v2.1", 20000, mean_length=20.0),
        CorpusSpec("S1k", "v2.1", 1000, mean_length=20.0),
        CorpusSpec("S3", "v3.0", 20000, mean_length=20.0),
        CorpusSpec("S3_1k", "v3.0", 1000, mean_length=20.0),
    )
}


def scale_tag(scale: float) -> str:
    return f"x{scale:g}"


def corpus_dir(base: Path, scale: float) -> Path:
    return Path(base) / scale_tag(scale)


def tree_bytes(root: Path, suffix: str = "") -> tuple[int, int]:
    """(bytes, files) under `root`, counting only names ending with `suffix`."""
    total = files = 0
    for dp, _, names in os.walk(root):
        for n in names:
            if n.endswith(suffix):
                total += os.lstat(os.path.join(dp, n)).st_size
                files += 1
    return total, files


def describe(root: Path) -> dict:
    info = json.loads((root / "meta" / "info.json").read_text())
    parquet, n_parquet = tree_bytes(root / "data", ".parquet")
    video, n_video = tree_bytes(root / "videos", ".mp4") if (root / "videos").exists() else (0, 0)
    numeric_row = 0
    for f in info["features"].values():
        if f["dtype"] in ("image", "video", "string"):
            continue
        n = 1
        for d in f.get("shape") or [1]:
            n *= int(d)
        numeric_row += n * {"float64": 8, "int64": 8, "float32": 4, "int32": 4, "bool": 1}.get(f["dtype"], 4)
    return {
        "version": info["codebase_version"], "episodes": info["total_episodes"],
        "frames": info["total_frames"],
        "parquet_bytes": parquet, "parquet_files": n_parquet, "video_bytes": video, "video_files": n_video,
        "numeric_bytes": numeric_row * info["total_frames"], "numeric_bytes_per_row": numeric_row,
    }  # fmt: skip


def synth_fingerprint() -> str:
    """A hash of the source of robotempo's synthetic data and of its writer (the files' layout, e.g. v3.0 row
    groups): a corpus written by another version is reported."""
    import hashlib

    import robotempo.synth
    import robotempo.writer

    sources = [Path(robotempo.synth.__file__), *sorted(Path(robotempo.writer.__file__).parent.glob("*.py"))]
    return hashlib.sha256(b"".join(p.read_bytes() for p in sources)).hexdigest()[:12]


def ensure(name: str, scale: float, base: Path = DEFAULT_DIR, force: bool = False) -> Path:
    """The corpus root, written first if absent (or if `force`)."""
    spec = SPECS[name]
    where = corpus_dir(base, scale)
    root, done = where / name, where / f"{name}.done.json"
    if done.exists() and root.exists() and not force:
        written_by = json.loads(done.read_text()).get("synth")
        if written_by != synth_fingerprint():
            log.warning("%s was written by another version of robotempo.synth (%s); reused as it is "
                        "(--force rewrites it)", root, written_by)  # fmt: skip
        return root
    from robotempo.dataset import LeRobotDataset
    from robotempo.synth import write_synthetic

    where.mkdir(parents=True, exist_ok=True)
    tmp = where / f".{name}.partial"
    for p in (tmp, root):
        if p.exists():
            shutil.rmtree(p)
    done.unlink(missing_ok=True)
    n = spec.scaled(scale)
    step = max(1, n // 10)

    def progress(i: int, total: int) -> None:
        if i % step == 0 or i == total:
            log.info("  %s: %d/%d episodes", name, i, total)

    t = time.perf_counter()
    write_synthetic(
        tmp, version=spec.version, n_episodes=n, n_tasks=N_TASKS, camera=spec.camera, codec=spec.codec,
        fps=FPS, seed=SEED, mean_length=spec.mean_length, progress=progress,
    )  # fmt: skip
    write_s = time.perf_counter() - t
    os.replace(tmp, root)
    t = time.perf_counter()
    LeRobotDataset(f"bench/{name}", root=root, episodes=[0])  # writes meta/speed_percentiles.jsonl once
    speed_s = time.perf_counter() - t
    record = {
        "spec": asdict(spec),
        "scale": scale,
        "synth": synth_fingerprint(),
        "write_s": write_s,
        "first_open_s": speed_s,
        **describe(root),
    }
    done.write_text(json.dumps(record, indent=1))
    log.info("%s written in %.1f s: %s", name, write_s, describe(root))
    return root


def record(name: str, scale: float, base: Path = DEFAULT_DIR) -> dict:
    return json.loads((corpus_dir(base, scale) / f"{name}.done.json").read_text())


def copy_for_opening(src: Path, dst: Path, keep_speed_file: bool = False) -> Path:
    """A copy a library may write into: `meta/` copied, data and video files hard-linked (no data copied).

    Libraries only ever read data files, so the links keep the corpus pristine while costing no disk.
    """
    if dst.exists():
        shutil.rmtree(dst)
    tmp = dst.with_name(f".{dst.name}.partial")
    if tmp.exists():
        shutil.rmtree(tmp)
    shutil.copytree(src / "meta", tmp / "meta")
    if not keep_speed_file:
        (tmp / SPEED_FILE).unlink(missing_ok=True)
    for sub in ("data", "videos"):
        if (src / sub).exists():
            shutil.copytree(src / sub, tmp / sub, copy_function=os.link)
    os.replace(tmp, dst)
    return dst


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--scale", type=float, default=0.05, help="fraction of the full episode counts (default 0.05)"
    )
    p.add_argument("--dir", type=Path, default=DEFAULT_DIR)
    p.add_argument("--only", help="comma list of corpus names (default: all)")
    p.add_argument("--force", action="store_true", help="rewrite corpora that exist")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(message)s")
    log.setLevel(logging.INFO)
    names = args.only.split(",") if args.only else list(SPECS)
    for name in names:
        root = ensure(name, args.scale, args.dir, force=args.force)
        print(name, root, json.dumps(record(name, args.scale, args.dir)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
