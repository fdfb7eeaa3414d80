"""`robotempo speed ROOT [--recompute] [--plot FILE.png]`: per-task speed labels, their file, and a plot."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table
from rich.text import Text

from robotempo.cli.progress import plain, progress_callback
from robotempo.cli.storage import storage_options
from robotempo.errors import ConfigError
from robotempo.format import read_metadata
from robotempo.speed import SPEED_BUCKET_LABELS
from robotempo.speed.dataset_labels import dataset_percentiles
from robotempo.store.population import episode_task_index

BARS = " ▁▂▃▄▅▆▇█"


def _histogram(labels: np.ndarray) -> str:
    counts = np.array([(labels == b).sum() for b in SPEED_BUCKET_LABELS])
    if counts.max() == 0:
        return ""
    return "".join(BARS[int(round(c / counts.max() * (len(BARS) - 1)))] for c in counts)


PLOT_SUFFIXES = (".png", ".pdf", ".svg", ".jpg", ".jpeg")
MAX_PANELS = 24


def _check_plot_path(out: str | Path) -> Path:
    """The plot's path, checked before any work: a bad one was a bare ValueError / OSError after it."""
    path = Path(out)
    if path.suffix.lower() not in PLOT_SUFFIXES:
        raise ConfigError(
            f"--plot {out}: the plot cannot be written as {path.suffix or 'a file without a suffix'}. Fix: "
            f"use a file name ending in one of {', '.join(PLOT_SUFFIXES)}"
        )
    parent = next((p for p in [path.parent, *path.parent.parents] if p.exists()), None)
    if parent is not None and not parent.is_dir():
        raise ConfigError(f"--plot {out}: {parent} is a file, not a folder. Fix: choose another path")
    if parent is not None and not os.access(parent, os.W_OK):
        raise ConfigError(f"--plot {out}: {parent} is not writable. Fix: choose a folder you can write")
    return path


def run_speed(args, console: Console) -> None:
    if args.plot:
        _check_plot_path(args.plot)
    meta = read_metadata(args.root, storage_options(args))
    with progress_callback(console, "reading task_index from the frame data") as progress:
        percentiles = dataset_percentiles(meta, recompute=args.recompute, progress=progress)
        task_of_episode = episode_task_index(
            meta.location, meta.episodes, progress=progress, tasks=meta.tasks
        )
    labels = percentiles.labels(task_of_episode, meta.episodes.length)
    where = percentiles.path or "not saved: the dataset folder and the user cache are not writable"
    console.print(Text.assemble("speed percentiles: ", (percentiles.source, "bold"), " (", plain(where), ")"))
    table = Table(title="per-task speed labels (label histogram over 0, 10, ..., 100)", title_justify="left")
    for col, justify in (
        ("task", "right"),
        ("description", "left"),
        ("episodes", "right"),
        ("length min..max", "right"),
        ("p5 · p45 · p95", "left"),
        ("labels", "left"),
    ):
        table.add_column(col, justify=justify)
    for t, name in sorted(meta.tasks.items()):
        mine = task_of_episode == t
        lengths = meta.episodes.length[mine]
        bounds = percentiles.by_task.get(t)
        text = "sparse (all 50)" if bounds is None else f"{bounds[0]:.1f} · {bounds[4]:.1f} · {bounds[9]:.1f}"
        span = f"{lengths.min()}..{lengths.max()}" if len(lengths) else "-"
        table.add_row(str(t), plain(name[:40]), str(int(mine.sum())), span, text, _histogram(labels[mine]))
    console.print(table)
    if args.plot:
        path = plot_lengths(meta.tasks, task_of_episode, meta.episodes.length, percentiles.by_task, args.plot)
        more = f" (the first {MAX_PANELS} of {len(meta.tasks)} tasks)" if len(meta.tasks) > MAX_PANELS else ""
        console.print(Text.assemble("plot written to ", (str(path), "bold"), more))


def plot_lengths(
    tasks: dict[int, str],
    task_of_episode: np.ndarray,
    lengths: np.ndarray,
    by_task: dict[int, list[float] | None],
    out: str | Path,
) -> Path:
    """One panel per task: the episode-length histogram with its p5..p95 boundaries."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = sorted(tasks)[:MAX_PANELS]
    cols = min(3, max(1, len(shown)))
    rows = int(np.ceil(len(shown) / cols)) or 1
    fig, axes = plt.subplots(rows, cols, figsize=(5 * cols, 3.2 * rows), squeeze=False)
    for ax, t in zip(axes.flat, shown):
        mine = lengths[task_of_episode == t]
        if len(mine):
            ax.hist(mine, bins=min(40, max(5, len(np.unique(mine)))), color="#4c72b0", alpha=0.8)
        bounds = by_task.get(t)
        for b in bounds or []:
            ax.axvline(b, color="#dd8452", lw=1)
        note = "sparse: all 50" if bounds is None else "orange: p5, p15, ..., p95"
        ax.set_title(f"task {t}: {tasks[t][:40]}\n{len(mine)} episodes, {note}", fontsize=9)
        ax.set_xlabel("episode length (frames)")
    for ax in list(axes.flat)[len(shown) :]:
        ax.axis("off")
    if len(tasks) > len(shown):
        fig.suptitle(f"the first {len(shown)} of {len(tasks)} tasks", fontsize=10)
    fig.tight_layout()
    out = Path(out)  # checked by run_speed before the work
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(out, dpi=110)
    except OSError as e:
        raise ConfigError(f"--plot {out}: cannot write it ({e}). Fix: choose another path") from None
    finally:
        plt.close(fig)
    return out
