"""Open time and memory on datasets written by the peers' own writers (issue 11, item 6), side by side.

    .venv/bin/python benchmarks/bench_open_peer_written.py --corpus lr1k=/tmp/h11data/lr_tabular_1k \
        --corpus lr5k=/tmp/h11data/lr_tabular_5k --corpus ot5k=/tmp/h11data/ot_tabular_5k --rounds 5

Each corpus is a dataset root written by LeRobot 0.6.1 (v3.0: one row group per episode in the data files,
~80 per-episode statistics columns in row groups of 10 episodes in meta/episodes) or by OpenTau 0.14.0 (v2.1:
one parquet file per episode); generate them with benchmarks/peers/make_lerobot_dataset.py and
make_opentau_dataset.py (commands in docs/benchmarks.md). Per corpus, interleaved rounds of fresh processes
(benchmarks/harness.py) open `episodes=[k]` (k = the middle episode) and all episodes with robotempo and
with the peer that reads the format (LeRobot for v3.0, OpenTau for v2.1). Every library is warm: one
untimed first open writes its one-time files (robotempo's speed-percentile file, the peers' Arrow cache in a
per-(library, corpus) HF_HOME kept for the run). Open time excludes imports; memory is VmRSS after gc minus
VmRSS after the imports, same process. Writes benchmarks/results/<date>-open-peer-written.json.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import Harness, median  # noqa: E402

MB = 2**20
RESULTS = Path(__file__).resolve().parent / "results"


def _copy(root: Path, dst: Path) -> Path:
    """A hard-linked copy: the libraries write their one-time files into what they open."""
    if not dst.exists():
        shutil.copytree(root, dst, copy_function=os.link)
    return dst


def _plan(name: str, root: Path, work: Path) -> list[tuple[str, str, Path, list[int] | None]]:
    info = json.loads((root / "meta/info.json").read_text())
    k = int(info["total_episodes"]) // 2
    peer = "lerobot" if str(info["codebase_version"]).startswith("v3") else "opentau"
    out = []
    for lib in ("robotempo", peer):
        copy = _copy(root, work / f"{name}.{lib}")
        out += [(lib, name, copy, [k]), (lib, name, copy, None)]
    return out


def run(corpora: dict[str, Path], rounds: int, work: Path) -> dict:
    h = Harness(work, log=lambda s: print(s, file=sys.stderr))
    plan = [e for name, root in corpora.items() for e in _plan(name, root, work)]

    def kw(lib: str, name: str) -> dict:
        return {} if lib == "robotempo" else {"hf_home": h.shared_dir(f"{lib}-{name}")}

    for lib, name, root, eps in plan:  # warm-up: one-time files, not a figure
        if eps is None:
            h.run(lib, "open", {"root": str(root), "episodes": None}, **kw(lib, name))
    raw: dict[str, list[dict]] = {}
    loads = [os.getloadavg()[0]]
    for _ in range(rounds):
        for lib, name, root, eps in plan:
            key = f"{lib}/{name}/{'k' if eps else 'all'}"
            raw.setdefault(key, []).append(
                h.run(lib, "open", {"root": str(root), "episodes": eps}, **kw(lib, name))
            )
        loads.append(os.getloadavg()[0])
    rows = []
    for key, runs in raw.items():
        lib, name, sel = key.split("/")
        rows.append({
            "lib": lib, "corpus": name, "episodes": sel, "runs": len(runs), "open_s": median(runs, "open_s"),
            "open_cpu_s": median(runs, "open_cpu_s"), "rss_delta": median(runs, "rss_delta"),
            "numeric_nbytes": median(runs, "numeric_nbytes"), "len": median(runs, "len"),
            "errors": [r["error"][:300] for r in runs if "error" in r],
        })  # fmt: skip
    return {"rows": rows, "raw": raw, "load_1min": loads}


def table(rows: list[dict]) -> str:
    by = {(r["lib"], r["corpus"], r["episodes"]): r for r in rows}
    lines = [f"{'corpus':8} {'sel':4} {'lib':10} {'open s':>8} {'cpu s':>8} {'RSS MB':>8} {'peer/rt':>8} "
             f"{'num MB':>8} {'RSS-num':>8}"]  # fmt: skip
    for r in rows:
        rt = by.get(("robotempo", r["corpus"], r["episodes"]), {})
        ratio = r["open_s"] / rt["open_s"] if r["open_s"] and rt.get("open_s") else None
        num = rt.get("numeric_nbytes")
        over = (r["rss_delta"] - num) / MB if r["rss_delta"] is not None and num else None

        def f(x, fmt):
            return format(x, fmt) if x is not None else "-"

        lines.append(
            f"{r['corpus']:8} {r['episodes']:4} {r['lib']:10} {f(r['open_s'], '8.3f')} "
            f"{f(r['open_cpu_s'], '8.3f')} "
            f"{f(r['rss_delta'] and r['rss_delta'] / MB, '8.1f')} {f(ratio, '8.2f')} "
            f"{f(num and num / MB, '8.1f')} {f(over, '8.1f')}"
            + (f"  ERR {r['errors'][0][:120]}" if r["errors"] else "")
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", action="append", required=True, help="NAME=ROOT (repeatable)")
    ap.add_argument("--rounds", type=int, default=5, help="fresh processes per measurement (median)")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    corpora = {c.split("=", 1)[0]: Path(c.split("=", 1)[1]) for c in args.corpus}
    with tempfile.TemporaryDirectory(prefix="open-peer-") as work:
        result = run(corpora, args.rounds, Path(work))
    print(table(result["rows"]))
    loads = " ".join(f"{x:.1f}" for x in result["load_1min"])
    print(f"load (1 min) during the run: {loads}; cores: {os.cpu_count()}")
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = datetime.date.today().isoformat()
    path = args.out / f"{stamp}-open-peer-written.json"
    result["corpora"] = {k: str(v) for k, v in corpora.items()}
    result["rounds"] = args.rounds
    path.write_text(json.dumps(result, indent=1, default=str))
    print(f"saved {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
