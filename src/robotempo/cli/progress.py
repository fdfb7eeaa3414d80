"""A rich progress bar usable as a `progress(done, total)` callback."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.text import Text


def progress_bar(console: Console) -> Progress:
    """The CLI's one progress-bar layout: description, bar, done/total, elapsed time."""
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    )


@contextmanager
def progress_callback(console: Console, description: str) -> Iterator:
    with progress_bar(console) as bar:
        task = bar.add_task(description, total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield update


def print_text(console: Console, text: str) -> None:
    """One line of the CLI's own words about datasets (their paths included), never read as markup."""
    console.print(text, markup=False, highlight=False)


def plain(value: object) -> Text:
    """A dataset's text (a task, robot type, feature or path) as shown, never as rich markup or terminal
    codes: a task '[/]' crashed `info`, and raw escape sequences cleared the user's screen."""
    text = "".join(c if c.isprintable() or c == " " else repr(c)[1:-1] for c in str(value))
    return Text(text)
