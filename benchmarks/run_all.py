"""Run every benchmark (P1 P2 P3 P4a P4b P8) side by side and report each target with PASS/FAIL.

    .venv/bin/python benchmarks/run_all.py --quick      # corpora at 1/20 scale: a few minutes
    .venv/bin/python benchmarks/run_all.py --full       # full corpora (written once, ~15 min), then ~30 min

Every figure comes from fresh processes (one per measurement) of robotempo's venv or of a peer's venv
(/tmp/peers, see ../../shared/tools/peers/README.md); without /tmp/peers only robotempo's own figures run.
Writes <out>/<date>-<scale>.json and .png (default out: benchmarks/results). Options: --only P1,P3 runs a
subset; --dir moves the corpus cache (default /tmp/robotempo-bench); --strict exits 1 when a check fails.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import corpora  # noqa: E402
import report  # noqa: E402
from harness import Harness, peers_available  # noqa: E402
from rich.console import Console  # noqa: E402
from suite import SCALES, Suite  # noqa: E402

SECTIONS = ("P1", "P2", "P3", "P4a", "P4b", "P8")
DEFAULT_OUT = Path(__file__).resolve().parent / "results"


def _load() -> list[float]:
    return list(os.getloadavg())


def run(
    scale: str,
    out: Path = DEFAULT_OUT,
    base: Path = corpora.DEFAULT_DIR,
    only: list[str] | None = None,
    peers: bool | None = None,
    console: Console | None = None,
) -> dict:
    """Run the suite; print the tables; write the JSON and PNG. Returns the run record."""
    console = console or Console()
    sc = SCALES[scale]
    peers = peers_available() if peers is None else peers
    work = Path(base) / f"work-{scale}"
    shutil.rmtree(work, ignore_errors=True)
    harness = Harness(work, log=console.print)
    suite = Suite(sc, harness, base, peers, log=console.print)
    wanted = [s for s in SECTIONS if only is None or s in only]
    started = datetime.datetime.now()
    record = {
        "date": started.date().isoformat(), "started": started.isoformat(timespec="seconds"), "scale": scale,
        "scale_factor": sc.factor, "peers": peers, "machine": {
            "cpus": os.cpu_count(), "load_start": _load(), "python": platform.python_version(),
            "platform": platform.platform(),
        }, "sections": {}, "corpora": {},
    }  # fmt: skip
    console.print(
        f"[bold]robotempo benchmarks[/], scale {scale} (x{sc.factor:g}), peers: {'yes' if peers else 'no'}"
    )
    t = time.perf_counter()
    with console.status("writing or finding the corpora..."):
        for name in [n for n, spec in corpora.SPECS.items() if spec.suite]:
            suite.corpus(name)
            record["corpora"][name] = suite.info(name)
    console.print(
        f"corpora ready in {time.perf_counter() - t:.0f} s under {corpora.corpus_dir(base, sc.factor)}"
    )
    for sid in wanted:
        t = time.perf_counter()
        with console.status(f"{sid}..."):
            section = getattr(suite, sid.lower())()
        section["seconds"] = time.perf_counter() - t
        record["sections"][sid] = section
        report.print_section(section, console)
        console.print(f"[dim]{sid} took {section['seconds']:.0f} s, load average {_load()[0]:.2f}[/]\n")
    record["machine"]["load_end"] = _load()
    record["versions"] = sorted(_versions(record["sections"]))
    changed = [v for v in record["versions"] if v.startswith("robotempo")]
    if len(changed) > 1:
        console.print(f"[yellow]robotempo's source changed during the run:[/] {changed}")
    record["seconds"] = (datetime.datetime.now() - started).total_seconds()
    report.print_summary(list(record["sections"].values()), console)
    stem = f"{record['date']}-{scale}" + ("" if only is None else "-" + "-".join(wanted))
    out = Path(out)
    report.write_json(out / f"{stem}.json", record)
    title = f"robotempo benchmarks {record['date']} ({scale}, x{sc.factor:g}; {os.cpu_count()} cores shared)"
    report.write_png(out / f"{stem}.png", record["sections"], title)
    console.print(
        f"wrote {out / (stem + '.json')} and {out / (stem + '.png')} ({record['seconds']:.0f} s in all)"
    )
    shutil.rmtree(work, ignore_errors=True)
    return record


def _versions(tree) -> set[str]:
    """Every `version` string in a run's raw results."""
    if isinstance(tree, dict):
        found = {tree["version"]} if "task" in tree and isinstance(tree.get("version"), str) else set()
        return found.union(*(_versions(v) for v in tree.values()))
    if isinstance(tree, list):
        return set().union(*(_versions(v) for v in tree))
    return set()


def failed(record: dict) -> list[str]:
    return [
        f"{sid}: {c['what']}"
        for sid, s in record["sections"].items()
        for c in s["checks"]
        if c["pass"] is False
    ]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    g = p.add_mutually_exclusive_group()
    g.add_argument("--quick", action="store_true", help="1/20-scale corpora (default)")
    g.add_argument("--full", action="store_true", help="full-scale corpora")
    p.add_argument("--only", help="comma list of sections, e.g. P1,P3")
    p.add_argument("--dir", type=Path, default=corpora.DEFAULT_DIR, help="corpus cache and scratch directory")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    p.add_argument("--no-peers", action="store_true", help="robotempo's own figures only")
    p.add_argument("--strict", action="store_true", help="exit 1 when any check fails")
    args = p.parse_args(argv)
    console = Console() if sys.stdout.isatty() else Console(width=190)
    record = run(
        "full" if args.full else "quick", args.out, args.dir, args.only.split(",") if args.only else None,
        False if args.no_peers else None, console,
    )  # fmt: skip
    return 1 if args.strict and failed(record) else 0


if __name__ == "__main__":
    sys.exit(main())
