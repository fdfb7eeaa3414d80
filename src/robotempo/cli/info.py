"""`robotempo info ROOT [ROOT ...]`: one dataset described in full, or several compared in one table (the
datasets of a mixture: their formats, rates, cameras and shapes side by side)."""

from __future__ import annotations

import numpy as np
from rich.console import Console
from rich.table import Table

from robotempo.cli.progress import plain, print_text, progress_bar
from robotempo.errors import RobotempoError
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


def run_info_many(roots: list[str], console: Console, options: dict | None = None) -> int:
    """A row per root; a root that cannot be read gets its error in its row and the others are still shown.
    Returns 2 when any root failed, else 0."""
    table = Table(title=f"{len(roots)} datasets", title_justify="left")
    for col, justify in (
        ("dataset", "left"),
        ("format", "left"),
        ("fps", "right"),
        ("episodes", "right"),
        ("frames", "right"),
        ("tasks", "right"),
        ("cameras", "left"),
        ("other features", "left"),
    ):
        table.add_column(col, justify=justify, overflow="fold")
    errors: list[tuple[str, str]] = []
    episodes = frames = 0
    with progress_bar(console) as bar:
        task = bar.add_task("reading metadata", total=len(roots))
        for root in roots:
            try:
                meta = read_metadata(root, options)
            except RobotempoError as e:
                errors.append((root, f"{type(e).__name__}: {e}"))
                table.add_row(plain(root), "[bold red]error[/]", "", "", "", "", "(below)", "")
            else:
                info, eps = meta.info, meta.episodes
                n = int(eps.length.sum())
                episodes += len(eps)
                frames += n
                table.add_row(
                    plain(root),
                    info.codebase_version,
                    f"{info.fps:g}",
                    f"{len(eps):,}",
                    f"{n:,}",
                    f"{len(meta.tasks):,}",
                    plain(_cameras(info)),
                    plain(_others(info)),
                )
            bar.advance(task)
    console.print(table)
    for root, error in errors:
        console.print(plain(f"{root}: {error}"), style="red")
    failed = f"; {len(errors)} could not be read" if errors else ""
    print_text(
        console,
        f"{len(roots) - len(errors)} of {len(roots)} read: {episodes:,} episodes, {frames:,} frames{failed}",
    )
    return 2 if errors else 0


def _cameras(info) -> str:
    """'2 video 224x224, 1 image 96x96': counted by kind and size (the names are in `info ROOT`)."""
    kinds: dict[str, int] = {}
    for key in info.camera_keys:
        f = info.features[key]
        kind = f"{'video' if f.is_video else 'image'} {'x'.join(str(n) for n in f.hwc[:2])}"
        kinds[kind] = kinds.get(kind, 0) + 1
    return ", ".join(f"{n} {kind}" for kind, n in kinds.items()) or "-"


def _others(info) -> str:
    """'observation.state[14], action[14]': the features a mixture must reconcile (float32 not written)."""
    skip = set(info.camera_keys) | {"timestamp", "frame_index", "episode_index", "index", "task_index"}
    out = []
    for name, f in info.features.items():
        if name not in skip:
            dtype = "" if f.dtype == "float32" else f" {f.dtype}"
            out.append(f"{name}{list(f.shape)}{dtype}")
    return ", ".join(out) or "-"
