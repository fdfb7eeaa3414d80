"""`robotempo info ROOT`."""

from __future__ import annotations

import numpy as np
from rich.console import Console
from rich.table import Table

from robotempo.cli.progress import plain
from robotempo.format import read_metadata


def human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


def run_info(root: str, console: Console, options: dict | None = None) -> None:
    meta = read_metadata(root, options)
    info, eps = meta.info, meta.episodes
    summary = Table(title=plain(root), show_header=False, title_justify="left")
    summary.add_row("format", info.codebase_version)
    summary.add_row("robot", plain(info.robot_type))
    summary.add_row("fps", f"{info.fps:g}")
    summary.add_row("episodes", f"{len(eps):,}")
    summary.add_row("frames", f"{int(eps.length.sum()):,}")
    if len(eps):
        summary.add_row(
            "episode length",
            f"min {eps.length.min()}  median {int(np.median(eps.length))}  max {eps.length.max()} frames",
        )
    summary.add_row("tasks", f"{len(meta.tasks):,}")
    for name in ("data", "videos", "meta"):
        size, count = meta.location.tree_size(name)
        summary.add_row(
            f"{name}/ {'on disk' if meta.location.is_local else 'in the store'}",
            f"{human_bytes(size)} in {count:,} files",
        )
    console.print(summary)

    tasks = Table(title="tasks", title_justify="left")
    tasks.add_column("task_index", justify="right")
    tasks.add_column("task")
    tasks.add_column("episodes", justify="right")
    tasks.add_column("mean length", justify="right")
    ids, counts = np.unique(eps.task_index, return_counts=True)
    count = dict(zip(ids.tolist(), counts.tolist()))
    shown = sorted(meta.tasks.items())[:30]
    for idx, task in shown:
        lengths = eps.length[eps.task_index == idx]
        tasks.add_row(
            str(idx), plain(task), f"{count.get(idx, 0):,}", f"{lengths.mean():.1f}" if len(lengths) else "-"
        )
    if len(meta.tasks) > len(shown):
        tasks.add_row("...", f"{len(meta.tasks) - len(shown)} more", "", "")
    console.print(tasks)

    feats = Table(title="features", title_justify="left")
    for col in ("name", "dtype", "shape", "camera"):
        feats.add_column(col)
    for name, f in info.features.items():
        cam = ""
        if f.is_video:
            vi = f.info or {}
            cam = (
                f"video {vi.get('video.codec', '?')} "
                f"{vi.get('video.width', '?')}x{vi.get('video.height', '?')}"
                f" {vi.get('video.pix_fmt', '')}"
            )
        elif f.is_image:
            cam = f"image in parquet {f.shape[1] if len(f.shape) > 1 else '?'}x{f.shape[0]}"
        feats.add_row(plain(name), plain(f.dtype), str(list(f.shape)), plain(cam))
    console.print(feats)
