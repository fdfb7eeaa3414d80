"""`robotempo demo | info | validate | speed | bench`."""

from __future__ import annotations

import argparse
import logging
import math
import os
import sys

from rich.console import Console
from rich.logging import RichHandler

from robotempo.cli.storage import add_root_arguments, storage_options
from robotempo.errors import RobotempoError
from robotempo.fs.store import abandoned_requests


def _version() -> str:
    from robotempo import __version__

    return __version__


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="robotempo", description=__doc__)
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    p.add_argument("--version", action="version", version=f"robotempo {_version()}")
    sub = p.add_subparsers(dest="command", required=True)

    d = sub.add_parser("demo", help="write a synthetic dataset, then open, label and read it")
    d.add_argument(
        "--out", default="demo-output", help="folder for the dataset and plots (default ./demo-output)"
    )
    d.add_argument(
        "--episodes", type=_whole(100_000), default=60, help="episodes to write, 1 to 100000 (default 60)"
    )
    d.add_argument("--version", choices=["v2.1", "v3.0"], default="v3.0")
    d.add_argument("--camera", choices=["video", "image", "none"], default="video")

    i = sub.add_parser("info", help="a table describing a dataset, or one row per dataset for several")
    add_root_arguments(i, many=True)

    v = sub.add_parser("validate", help="check every file of a dataset (or of several) against its metadata")
    add_root_arguments(v, many=True)
    v.add_argument(
        "--tolerance-s",
        type=_seconds,
        default=1e-4,
        help="timestamp tolerance in seconds, in [0, 1/fps) (default 1e-4)",
    )
    v.add_argument(
        "--jobs",
        type=_whole(1024),
        default=1,
        help="roots validated at once, each in a process of its own (several roots; default 1). Each "
        "process first imports the readers (~2.5 s of CPU): it pays off for datasets that take longer",
    )
    v.add_argument(
        "--no-video",
        action="store_true",
        help="skip decoding video frames (the streams are still checked against the metadata)",
    )

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
    b.add_argument(
        "--out",
        default=None,
        help="folder for the JSON record and the PNG chart (default: the suite's benchmarks/results)",
    )
    b.add_argument("--strict", action="store_true", help="exit 1 when any check is below its target")
    return p


def _whole(high: int):
    """An argparse type: a whole number from 1 to `high`."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = 0
        if not 1 <= value <= high:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number from 1 to {high}")
        return value

    return parse


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and 0 <= value < 1):  # checked against 1/fps once the dataset is read
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds in [0, 1)")
    return value


class _Console(Console):
    def on_broken_pipe(self) -> None:
        """`robotempo info X | head -1`: the reader left. rich exits 1, validate's code for a failed check;
        exit like a shell's SIGPIPE (141) instead."""
        self.quiet = True
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit's flush
        raise SystemExit(141)


def _print_error(text: str) -> None:
    """On stderr, one line however long (`cmd > report.txt` keeps it on the screen, `| grep error:` whole);
    the text is never read as markup (messages hold brackets: lists, paths)."""
    err = Console(stderr=True, soft_wrap=True)
    err.print("[bold red]error:[/]", end=" ")
    err.print(text, markup=False, highlight=False)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    console = _Console()
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(message)s",
        handlers=[RichHandler(console=Console(stderr=True), show_path=False)],
    )
    try:
        if args.command == "info":
            from robotempo.cli.info import run_info, run_info_many

            if len(args.root) > 1:
                return run_info_many(args.root, console, storage_options(args))
            run_info(args.root[0], console, storage_options(args))
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
    except KeyboardInterrupt:
        _print_error("interrupted (Ctrl-C); nothing of the dataset was changed")
        return 130
    except RobotempoError as e:
        _print_error(f"{type(e).__name__}: {e}")
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
            f"{type(e).__name__}: {e}\n(an unexpected error inside robotempo: please report it with the "
            "output of the same command run with -v)",
        )
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
