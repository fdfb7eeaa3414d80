"""`robotempo validate ROOT [ROOT ...]`: every file checked against the metadata; findings; exit 1 on failure.

With several roots (the datasets of a mixture, checked before a long job starts), each is validated in turn
and one bad dataset does not stop the others: a summary table lists every root with its verdict, then each
failing root's failed checks."""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor, as_completed

from rich.console import Console
from rich.table import Table

from robotempo.cli.progress import plain, print_text, progress_bar
from robotempo.cli.storage import storage_options
from robotempo.errors import ArgumentError, RobotempoError
from robotempo.validation import Finding, validate_dataset

STYLE = {"ok": "[green]ok[/]", "failed": "[bold red]FAILED[/]", "note": "[yellow]note[/]"}


def run_validate(args, console: Console) -> int:
    roots = args.root if isinstance(args.root, list) else [args.root]
    if len(roots) == 1:
        return _run_one(args, roots[0], console)
    return _run_many(args, roots, console)


def _run_one(args, root: str, console: Console) -> int:
    with progress_bar(console) as bar:
        tasks: dict[str, int] = {}

        def progress(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = bar.add_task(stage, total=total)
            bar.update(tasks[stage], completed=done, total=total)

        findings = validate_dataset(
            root,
            args.tolerance_s,
            video=not args.no_video,
            progress=progress,
            storage_options=storage_options(args),
        )
    console.print(_findings_table(f"validate {root}", findings))
    return 1 if _failed(findings) else 0


def validate_root(root: str, tolerance_s: float, video: bool, options: dict, progress=None) -> list[Finding]:
    """One root's findings; an error that stops its validation is its finding (the next root is checked)."""
    try:
        return validate_dataset(root, tolerance_s, video, progress, options)
    except ArgumentError as e:  # --tolerance-s not below this dataset's 1/fps: its verdict, not all
        return [Finding("arguments", "failed", f"{type(e).__name__}: {e}")]
    except RobotempoError as e:  # e.g. its store unreachable
        return [Finding("dataset", "failed", f"{type(e).__name__}: {e}")]


def _run_many(args, roots: list[str], console: Console) -> int:
    options = storage_options(args)
    video = not args.no_video
    jobs = min(args.jobs, len(roots))
    results: list[list[Finding]] = [[] for _ in roots]  # in the order given (a root may come twice)
    with progress_bar(console) as bar:
        overall = bar.add_task("datasets", total=len(roots))
        current = bar.add_task("", total=None)
        if jobs == 1:
            for i, root in enumerate(roots):
                bar.reset(current, total=None, description=plain(root))

                def progress(stage: str, n: int, total: int, root: str = root) -> None:
                    bar.update(current, completed=n, total=total, description=plain(f"{root}: {stage}"))

                results[i] = validate_root(root, args.tolerance_s, video, options, progress)
                bar.advance(overall)
        else:  # each root in a process of its own (spawned: nothing of this process's threads is inherited)
            bar.update(current, description=f"{jobs} processes")
            context = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(jobs, mp_context=context) as pool:
                futures = {
                    pool.submit(validate_root, root, args.tolerance_s, video, options): i
                    for i, root in enumerate(roots)
                }
                try:
                    for future in as_completed(futures):
                        results[futures[future]] = future.result()
                        bar.advance(overall)
                except BaseException:  # Ctrl-C or a bug: the roots not started are not started
                    pool.shutdown(wait=False, cancel_futures=True)
                    raise
        bar.update(current, visible=False)

    summary = Table(title=f"validate: {len(roots)} datasets", title_justify="left")
    summary.add_column("dataset", overflow="fold")
    summary.add_column("result")
    summary.add_column("details", overflow="fold")
    for root, findings in zip(roots, results):
        failed = _failed(findings)
        details = findings[0].details
        checks = [f.check for f in failed if not f.check.startswith(" ")]  # indented rows: a check's files
        if checks:
            more = f" (and {len(checks) - 1} more checks)" if len(checks) > 1 else ""
            details = f"{checks[0]} failed{more}"
        summary.add_row(plain(root), STYLE["failed" if failed else "ok"], plain(details))
    console.print(summary)
    bad = [(root, _failed(findings)) for root, findings in zip(roots, results) if _failed(findings)]
    for root, failed in bad:
        console.print(_findings_table(f"failed checks of {root}", failed))
    failed = f"; failed: {', '.join(root for root, _ in bad)}" if bad else ""
    print_text(console, f"{len(roots) - len(bad)} of {len(roots)} datasets passed{failed}")
    return 1 if bad else 0


def _failed(findings: list[Finding]) -> list[Finding]:
    return [f for f in findings if f.status == "failed"]


def _findings_table(title: str, findings: list[Finding]) -> Table:
    table = Table(title=plain(title), title_justify="left")
    # Folded, never cut: the name of a failing file is the point of the report (at 80 columns "..." hid it).
    table.add_column("check", overflow="fold")
    table.add_column("result")
    table.add_column("details", overflow="fold")
    for f in findings:
        table.add_row(plain(f.check), STYLE[f.status], plain(f.details))
    return table
