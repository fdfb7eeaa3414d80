"""`robotempo demo | info | validate | speed | bench`."""

from __future__ import annotations

import argparse
import logging
import os
import sys

from rich.console import Console
from rich.logging import RichHandler

from robotempo.cli.storage import add_root_arguments, storage_options
from robotempo.errors import RobotempoError
from robotempo.fs.store import abandoned_requests


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="robotempo", description=__doc__)
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", required=True)

    d = sub.add_parser("demo", help="write a synthetic dataset, then open, label and read it")
    d.add_argument(
        "--out", default="demo-output", help="folder for the dataset and plots (default ./demo-output)"
    )
    d.add_argument("--episodes", type=int, default=60)
    d.add_argument("--version", choices=["v2.1", "v3.0"], default="v3.0")
    d.add_argument("--camera", choices=["video", "image", "none"], default="video")

    i = sub.add_parser("info", help="a table describing a dataset")
    add_root_arguments(i)

    v = sub.add_parser("validate", help="check every file of a dataset against its metadata")
    add_root_arguments(v)
    v.add_argument("--tolerance-s", type=float, default=1e-4)
    v.add_argument("--no-video", action="store_true", help="skip decoding video frames")

    s = sub.add_parser("speed", help="per-task speed labels: table, file, plot")
    add_root_arguments(s)
    s.add_argument(
        "--recompute", action="store_true", help="recompute meta/speed_percentiles.jsonl from the data"
    )
    s.add_argument(
        "--plot", metavar="FILE.png", help="write each task's length distribution with its boundaries"
    )

    b = sub.add_parser("bench", help="run the benchmark suite (see benchmarks/)")
    b.add_argument(
        "--quick",
        action="store_true",
        help="1/20-scale corpora (about 1.5 min without the peers, 4 min with them)",
    )
    b.add_argument("--out", default="benchmarks/results")
    return p


def _print_error(console: Console, text: str) -> None:
    console.print("[bold red]error:[/]", end=" ")
    console.print(text, markup=False, highlight=False)  # messages hold brackets (lists) that are not markup


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    console = Console()
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(message)s",
        handlers=[RichHandler(console=Console(stderr=True), show_path=False)],
    )
    try:
        if args.command == "info":
            from robotempo.cli.info import run_info

            run_info(args.root, console, storage_options(args))
        elif args.command == "demo":
            from robotempo.cli.demo import run_demo

            run_demo(args, console)
        elif args.command == "validate":
            from robotempo.cli.validate import run_validate

            return run_validate(args, console)
        elif args.command == "speed":
            from robotempo.cli.speed import run_speed

            run_speed(args, console)
        elif args.command == "bench":
            from robotempo.cli.bench import run_bench

            return run_bench(args, console)
    except RobotempoError as e:
        _print_error(console, f"{type(e).__name__}: {e}")
        if abandoned_requests():
            # The error is reported; store requests given up at their deadline still retry, and pyarrow's
            # S3 finalization at exit would wait for them (minutes against a black-holed endpoint).
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(2)
        return 2
    except Exception as e:  # a bug, not a bad dataset: say so, without a traceback unless asked (-v)
        if args.verbose:
            raise
        _print_error(
            console,
            f"{type(e).__name__}: {e}\n(an unexpected error inside robotempo: please report it with the "
            "output of the same command run with -v)",
        )
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
