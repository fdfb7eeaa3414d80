"""Run one measurement in a fresh process of the right venv, with its own HF_HOME / TMPDIR / XDG_CACHE_HOME.

`Harness.run(lib, task, args)` starts `bash -c '. <peer env script>; exec <venv python> <worker> ...'` and
returns the worker's JSON result (or `{"error": ...}`), plus the bytes the process left in its scratch
directories and, when asked, in the dataset root it opened.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
PEERS = Path(os.environ.get("ROBOTEMPO_PEERS", "/tmp/peers"))
RESULT_TAG = "BENCH_RESULT "
SPEED_FILE = "meta/speed_percentiles.jsonl"


@dataclass(frozen=True)
class Side:
    python: Path
    env_script: Path | None
    script: Path


def _robotempo_python() -> Path:
    venv = REPO / ".venv" / "bin" / "python"
    return venv if venv.exists() else Path(sys.executable)


SIDES = {
    "robotempo": Side(_robotempo_python(), None, BENCH / "worker.py"),
    "lerobot": Side(PEERS / "venv/bin/python", PEERS / "env_lerobot.sh", BENCH / "peer_side/worker.py"),
    "opentau": Side(PEERS / "venv_tau/bin/python", PEERS / "env_opentau.sh", BENCH / "peer_side/worker.py"),
    "to_table": Side(PEERS / "venv_tau/bin/python", PEERS / "env_opentau.sh", BENCH / "peer_side/worker.py"),
    "arrow_cache": Side(
        PEERS / "venv_tau/bin/python", PEERS / "env_opentau.sh", BENCH / "peer_side/worker.py"
    ),
}


def commit_src(commit: str, under: Path) -> Path:
    """`src/` of `commit` of this repository (extracted once with `git archive` under `under`): run a
    benchmark's worker with PYTHONPATH pointing at it to measure that commit beside this checkout."""
    out = under / f"robotempo-{commit}"
    if not (out / "src" / "robotempo").exists():
        out.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(
            ["git", "-C", str(REPO), "archive", commit, "src"], check=True, capture_output=True
        )
        subprocess.run(["tar", "-x", "-C", str(out)], input=archive.stdout, check=True)
    return out / "src"


def peers_available() -> bool:
    return all(s.python.exists() and (s.env_script is None or s.env_script.exists()) for s in SIDES.values())


# -- bytes written ------------------------------------------------------------------------------------------
def snapshot(root: Path) -> dict[str, tuple[int, int, int]]:
    """relative path -> (size, mtime_ns, inode) of every file under `root`."""
    out = {}
    root = Path(root)
    if not root.exists():
        return out
    for dp, _, names in os.walk(root):
        for n in names:
            p = os.path.join(dp, n)
            try:
                st = os.lstat(p)
            except OSError:
                continue
            out[os.path.relpath(p, root)] = (st.st_size, st.st_mtime_ns, st.st_ino)
    return out


def written(before: dict, after: dict, ignore: tuple[str, ...] = ()) -> dict:
    """Bytes of files created or rewritten between two snapshots (a rewritten file counts in full)."""
    new = [p for p in after if p not in before]
    changed = [p for p in after if p in before and after[p] != before[p]]
    removed = [p for p in before if p not in after]
    counted = [p for p in new + changed if p not in ignore]
    return {
        "bytes": sum(after[p][0] for p in counted), "files": len(counted),
        "ignored_bytes": sum(after[p][0] for p in new + changed if p in ignore),
        "removed": len(removed), "examples": sorted(counted)[:5],
    }  # fmt: skip


def tree_size(path: Path) -> int:
    return sum(v[0] for v in snapshot(path).values())


# -- processes ----------------------------------------------------------------------------------------------
class Harness:
    def __init__(self, workdir: Path, timeout_s: float = 1800, log: Callable[[str], None] = print):
        self.workdir = Path(workdir)
        self.timeout_s = timeout_s
        self.log = log
        (self.workdir / "scratch").mkdir(parents=True, exist_ok=True)

    def shared_dir(self, name: str) -> Path:
        """A directory kept for this harness (e.g. an HF_HOME whose Arrow cache several runs reuse)."""
        p = self.workdir / "shared" / name
        p.mkdir(parents=True, exist_ok=True)
        return p

    def run(
        self,
        lib: str,
        task: str,
        args: dict,
        *,
        hf_home: Path | None = None,
        watch_root: Path | None = None,
        one_thread: bool = False,
    ) -> dict:
        side = SIDES[lib]
        scratch = self.workdir / "scratch" / uuid.uuid4().hex[:12]
        dirs = {
            "HF_HOME": Path(hf_home) if hf_home else scratch / "hf_home",
            "TMPDIR": scratch / "tmp",
            "XDG_CACHE_HOME": scratch / "xdg_cache",
        }
        for d in dirs.values():
            d.mkdir(parents=True, exist_ok=True)
        before_dirs = {k: snapshot(d) for k, d in dirs.items()}
        before_root = snapshot(watch_root) if watch_root else None
        env = os.environ.copy()
        env.pop("PYTHONPATH", None)
        threads = "1" if one_thread else env.get("OMP_NUM_THREADS", "")
        source = f'. "{side.env_script}"; ' if side.env_script else ""
        exports = (
            'export HF_HOME="$1" TMPDIR="$2" XDG_CACHE_HOME="$3" HF_LEROBOT_HOME="$1/lerobot" '
            'HF_OPENTAU_HOME="$1/opentau" HF_DATASETS_CACHE="$1/datasets" TQDM_DISABLE=1; '
            + (f"export OMP_NUM_THREADS={threads} MKL_NUM_THREADS={threads}; " if threads else "")
        )
        cmd = [
            "bash", "-c", source + exports + 'exec "$4" "$5" --lib "$6" --task "$7" --args "$8"', "bench",
            str(dirs["HF_HOME"]), str(dirs["TMPDIR"]), str(dirs["XDG_CACHE_HOME"]),
            str(side.python), str(side.script), lib, task, json.dumps(args),
        ]  # fmt: skip
        t = time.perf_counter()
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=self.timeout_s, env=env)
            out, err, rc = proc.stdout, proc.stderr, proc.returncode
        except subprocess.TimeoutExpired:
            out, err, rc = "", f"timeout after {self.timeout_s} s", -9
        wall = time.perf_counter() - t
        lines = [ln for ln in out.splitlines() if ln.startswith(RESULT_TAG)]
        result = json.loads(lines[-1][len(RESULT_TAG) :]) if lines else {}
        if not lines or rc != 0:
            result.setdefault("error", f"exit {rc}: " + " | ".join(err.strip().splitlines()[-4:])[-600:])
        result["process_wall_s"] = wall
        result["written"] = {k: written(before_dirs[k], snapshot(d)) for k, d in dirs.items()}
        if watch_root is not None:
            result["written"]["root"] = written(before_root, snapshot(watch_root), ignore=(SPEED_FILE,))
        shutil.rmtree(scratch, ignore_errors=True)  # a shared hf_home lives outside the scratch directory
        if "error" in result:
            self.log(f"[red]{lib} {task} failed:[/] {result['error'][:400]}")
        return result

    def repeat(self, n: int, lib: str, task: str, args: dict, **kw) -> list[dict]:
        return [self.run(lib, task, args, **kw) for _ in range(n)]


def median(results: list[dict], key: str) -> float | None:
    values = [r[key] for r in results if key in r and "error" not in r]
    return statistics.median(values) if values else None


def total_written(result: dict, include_speed_file: bool = False) -> int:
    w = result.get("written", {})
    total = sum(v["bytes"] for v in w.values())
    if include_speed_file and "root" in w:
        total += w["root"]["ignored_bytes"]
    return total
