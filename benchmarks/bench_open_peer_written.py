"""Open time and memory on datasets written by the peers' own writers (issue 11, item 6), side by side.

    .venv/bin/python benchmarks/bench_open_peer_written.py --corpus lr1k=/tmp/h11data/lr_tabular_1k \
        --corpus lr5k=/tmp/h11data/lr_tabular_5k --corpus ot5k=/tmp/h11data/ot_tabular_5k --rounds 5 \
        --modes warm,cold

Each corpus is a dataset root written by LeRobot 0.6.1 (v3.0: one row group per episode in the data files,
~80 per-episode statistics columns in row groups of 10 episodes in meta/episodes) or by OpenTau 0.14.0 (v2.1:
one parquet file per episode); generate them with benchmarks/peers/make_lerobot_dataset.py and
make_opentau_dataset.py (commands in docs/benchmarks.md). Per corpus, interleaved rounds of fresh processes
(benchmarks/harness.py) open `episodes=[k]` (k = the middle episode) and all episodes with robotempo and
with the peer that reads the format (LeRobot for v3.0, OpenTau for v2.1), in each of the modes:

  warm   the one-time files exist (robotempo's speed-percentile file; the peer's Arrow cache in a
         per-(library, corpus) HF_HOME kept for the run) and everything is in the page cache;
  cold   the same one-time files, but every file of the dataset and of the peer's HF_HOME is evicted from the
         page cache first (posix_fadvise DONTNEED; `resident_mb` says what was left in it);
  first  the first open ever: no speed-percentile file, an empty HF_HOME (the peer builds its Arrow cache),
         page cache evicted.

An untimed open per (library, corpus) first writes the one-time files. Open time excludes imports; CPU time
is the process's (all its threads); memory is VmRSS / PSS after gc minus the same after the imports, same
process. Writes benchmarks/results/<date>-open-peer-written.json.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import SPEED_FILE, Harness, median  # noqa: E402

MB = 2**20
RESULTS = Path(__file__).resolve().parent / "results"
MODES = ("warm", "cold", "first")
FIGURES = ("open_s", "open_cpu_s", "rss_delta", "pss_delta", "numeric_nbytes", "len", "resident_mb_before",
           "load_1min")  # fmt: skip


def _copy(root: Path, dst: Path) -> Path:
    """A hard-linked copy: the libraries write their one-time files into what they open."""
    if not dst.exists():
        shutil.copytree(root, dst, copy_function=os.link)
    return dst


def _files(*dirs: Path) -> list[str]:
    return [os.path.join(dp, n) for d in dirs if d.exists() for dp, _, names in os.walk(d) for n in names]


def evict(*dirs: Path) -> None:
    """Drop the files under `dirs` from the page cache (clean pages only; nothing here is dirty for long)."""
    os.sync()
    for p in _files(*dirs):
        fd = os.open(p, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def resident_mb(*dirs: Path) -> float | None:
    """Bytes of the files under `dirs` in the page cache (util-linux `fincore`), or None without it."""
    files = _files(*dirs)
    if not files or not shutil.which("fincore"):
        return None
    total = 0
    for i in range(0, len(files), 500):
        cmd = ["fincore", "--bytes", "--noheadings", "--raw", "-o", "RES", *files[i : i + 500]]
        out = subprocess.run(cmd, capture_output=True, text=True).stdout
        total += sum(int(x) for x in out.split())
    return total / MB


def _plan(name: str, root: Path, work: Path) -> list[tuple[str, str, Path, list[int] | None]]:
    info = json.loads((root / "meta/info.json").read_text())
    k = int(info["total_episodes"]) // 2
    peer = "lerobot" if str(info["codebase_version"]).startswith("v3") else "opentau"
    out = []
    for lib in ("robotempo", peer):
        copy = _copy(root, work / f"{name}.{lib}")
        out += [(lib, name, copy, [k]), (lib, name, copy, None)]
    return out


def run(corpora: dict[str, Path], rounds: int, modes: list[str], work: Path) -> dict:
    h = Harness(work, log=lambda s: print(s, file=sys.stderr))
    plan = [e for name, root in corpora.items() for e in _plan(name, root, work)]

    def home(lib: str, name: str) -> Path | None:
        return None if lib == "robotempo" else h.shared_dir(f"{lib}-{name}")

    for lib, name, root, eps in plan:  # warm-up: one-time files, not a figure
        if eps is None:
            h.run(lib, "open", {"root": str(root), "episodes": None}, hf_home=home(lib, name))
    raw: dict[str, list[dict]] = {}
    loads = [os.getloadavg()[0]]
    for _ in range(rounds):
        for lib, name, root, eps in plan:
            for mode in modes:
                hf_home = home(lib, name)
                if mode == "first":
                    (root / SPEED_FILE).unlink(missing_ok=True)
                    hf_home = None  # a fresh, empty HF_HOME in the run's scratch directory
                if mode in ("cold", "first"):
                    evict(root, *([hf_home] if hf_home else []))
                resident = resident_mb(root, *([hf_home] if hf_home else []))
                r = h.run(lib, "open", {"root": str(root), "episodes": eps}, hf_home=hf_home)
                r["resident_mb_before"], r["load_1min"] = resident, os.getloadavg()[0]
                raw.setdefault(f"{lib}/{name}/{'k' if eps else 'all'}/{mode}", []).append(r)
        loads.append(os.getloadavg()[0])
    rows = []
    for key, runs in raw.items():
        lib, name, sel, mode = key.split("/")
        rows.append({
            "lib": lib, "corpus": name, "episodes": sel, "mode": mode, "runs": len(runs),
            **{k: median(runs, k) for k in FIGURES},
            "errors": [r["error"][:300] for r in runs if "error" in r],
        })  # fmt: skip
    return {"rows": rows, "raw": raw, "load_1min": loads}


def _ratio(a: dict, b: dict, key: str) -> float | None:
    return a[key] / b[key] if a.get(key) and b.get(key) else None


def _f(x, fmt: str) -> str:
    return format(x, fmt) if x is not None else "-"


def table(rows: list[dict]) -> str:
    """One line per measurement; `rt/peer` ratios are robotempo's figure over the peer's, same mode."""
    by = {(r["lib"], r["corpus"], r["episodes"], r["mode"]): r for r in rows}
    head = (f"{'corpus':7} {'sel':3} {'mode':5} {'lib':9} {'open s':>7} {'cpu s':>7} {'RSS MB':>7} "
            f"{'PSS MB':>7} {'rt/peer':>7} {'rt/p cpu':>8} {'num MB':>7} {'RSS-num':>7} {'res MB':>6} "
            f"{'load':>5}")  # fmt: skip
    lines = [head]
    for r in rows:
        key = (r["corpus"], r["episodes"], r["mode"])
        rt = by.get(("robotempo", *key), {})
        peer = next((p for (lib, *k), p in by.items() if lib != "robotempo" and tuple(k) == key), {})
        ratio, cpu = (_ratio(rt, peer, k) for k in ("open_s", "open_cpu_s"))
        num = rt.get("numeric_nbytes")
        over = (r["rss_delta"] - num) / MB if r["rss_delta"] is not None and num else None
        mb = lambda x: x and x / MB  # noqa: E731
        mine = r["lib"] == "robotempo"
        lines.append(
            f"{r['corpus']:7} {r['episodes']:3} {r['mode']:5} {r['lib']:9} {_f(r['open_s'], '7.3f')} "
            f"{_f(r['open_cpu_s'], '7.3f')} {_f(mb(r['rss_delta']), '7.1f')} "
            f"{_f(mb(r['pss_delta']), '7.1f')} {_f(ratio if mine else None, '7.2f')} "
            f"{_f(cpu if mine else None, '8.2f')} {_f(mb(num), '7.1f')} {_f(over, '7.1f')} "
            f"{_f(r['resident_mb_before'], '6.1f')} {_f(r['load_1min'], '5.1f')}"
            + (f"  ERR {r['errors'][0][:120]}" if r["errors"] else "")
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", action="append", required=True, help="NAME=ROOT (repeatable)")
    ap.add_argument("--rounds", type=int, default=5, help="fresh processes per measurement (median)")
    ap.add_argument("--modes", default="warm,cold", help=f"comma-separated, of {', '.join(MODES)}")
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--tag", default="", help="suffix of the results file name")
    args = ap.parse_args(argv)
    modes = args.modes.split(",")
    if not set(modes) <= set(MODES):
        ap.error(f"--modes: {args.modes!r} is not a list of {MODES}")
    corpora = {c.split("=", 1)[0]: Path(c.split("=", 1)[1]) for c in args.corpus}
    with tempfile.TemporaryDirectory(prefix="open-peer-") as work:
        result = run(corpora, args.rounds, modes, Path(work))
    print(table(result["rows"]))
    loads = " ".join(f"{x:.1f}" for x in result["load_1min"])
    print(f"load (1 min) during the run: {loads}; cores: {os.cpu_count()}")
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = datetime.date.today().isoformat()
    path = args.out / f"{stamp}-open-peer-written{args.tag}.json"
    result.update(corpora={k: str(v) for k, v in corpora.items()}, rounds=args.rounds, modes=modes)
    path.write_text(json.dumps(result, indent=1, default=str))
    print(f"saved {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
