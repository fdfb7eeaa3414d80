"""`robotempo validate ROOT`: every file checked against the metadata; findings; exit 1 on failure."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from robotempo.cli.progress import plain, progress_bar
from robotempo.cli.storage import storage_options
from robotempo.validation import validate_dataset

STYLE = {"ok": "[green]ok[/]", "failed": "[bold red]FAILED[/]", "note": "[yellow]note[/]"}


def run_validate(args, console: Console) -> int:
    with progress_bar(console) as bar:
        tasks: dict[str, int] = {}

        def progress(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = bar.add_task(stage, total=total)
            bar.update(tasks[stage], completed=done, total=total)

        findings = validate_dataset(
            args.root,
            args.tolerance_s,
            video=not args.no_video,
            progress=progress,
            storage_options=storage_options(args),
        )
    table = Table(title=plain(f"validate {args.root}"), title_justify="left")
    # Folded, never cut: the name of a failing file is the point of the report (at 80 columns "..." hid it).
    table.add_column("check", overflow="fold")
    table.add_column("result")
    table.add_column("details", overflow="fold")
    for f in findings:
        table.add_row(f.check, STYLE[f.status], f.details)
    console.print(table)
    return 1 if any(f.status == "failed" for f in findings) else 0
