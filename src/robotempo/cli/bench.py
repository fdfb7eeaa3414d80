"""`robotempo bench [--quick] [--out DIR]`: the benchmark suite of a source checkout (benchmarks/run_all.py).

The suite writes synthetic corpora with robotempo's own writer, measures robotempo's figures in fresh
processes and, when the reference libraries are installed in /tmp/peers (see benchmarks/peer_side/), the
same figures for LeRobot, OpenTau and the two loading recipes side by side. It prints one table per target
with PASS/FAIL and writes a JSON record and a PNG chart into `--out`.

The suite lives in the repository, not in the installed package: this command finds `benchmarks/` in the
current directory or next to an editable install's `src/`.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

from rich.console import Console
from rich.text import Text

from robotempo.errors import ConfigError


def find_suite() -> Path | None:
    """The suite in the current folder, else in the checkout of an editable install (src/robotempo/cli/ ->
    the checkout); never a `benchmarks/` folder of some other project above an installed package."""
    checkout = Path(__file__).resolve().parents[3]
    roots = [Path.cwd()]
    if (checkout / "src" / "robotempo" / "cli" / "bench.py").is_file():
        roots.append(checkout)
    for root in roots:
        candidate = root / "benchmarks" / "run_all.py"
        if candidate.is_file() and (candidate.parent / "suite.py").is_file():
            return candidate
    return None


def run_bench(args, console: Console) -> int:
    script = find_suite()
    if script is None:
        raise ConfigError(
            "the benchmark suite (benchmarks/run_all.py) is not here. Fix: run `robotempo bench` from a "
            "robotempo source checkout (git clone; pip install -e .)"
        )
    sys.path.insert(0, str(script.parent))
    spec = importlib.util.spec_from_file_location("robotempo_bench_run_all", script)
    run_all = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(run_all)
    out = Path(args.out) if args.out else script.parent / "results"  # beside the suite, wherever it ran from
    record = run_all.run("quick" if args.quick else "full", out=out, console=console)
    failed = run_all.failed(record)
    if failed:
        console.print(Text.assemble((f"{len(failed)} check(s) below target: ", "yellow"), "; ".join(failed)))
        return 1 if args.strict else 0
    return 0
