"""`robotempo demo`: write a synthetic dataset, describe it, label its speeds, and read it like a trainer."""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from robotempo.cli.info import run_info
from robotempo.cli.progress import plain, progress_callback
from robotempo.cli.speed import run_speed
from robotempo.errors import ConfigError, RobotempoError

MARKER = ".robotempo-demo"


def _prepare(out: Path) -> Path:
    """`out` is ours to overwrite only if an earlier demo made it (marker file); never touch anything else."""
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file, not a folder. Fix: pass --out with a new or empty folder")
    if out.exists() and any(out.iterdir()) and not (out / MARKER).exists():
        raise RobotempoError(
            f"{out} exists and was not made by `robotempo demo`; pass --out with a new or empty folder"
        )
    if out.exists():  # empty, or an earlier demo's: clear what is inside (`.` or a link cannot be removed)
        for child in out.iterdir():
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child)
            else:
                child.unlink()
    out.mkdir(parents=True, exist_ok=True)
    (out / MARKER).write_text("made by `robotempo demo`; safe to delete\n")
    return out / "dataset"


def _describe_item(item: dict, index: int) -> Table:
    table = Table(title=f"one training item (dataset[{index}])", title_justify="left")
    for col in ("key", "type", "shape / value"):
        table.add_column(col)
    for key, value in item.items():
        if isinstance(value, torch.Tensor):
            shown = str(tuple(value.shape)) if value.ndim else str(value.item())
            table.add_row(key, str(value.dtype).replace("torch.", ""), shown)
        else:
            table.add_row(key, type(value).__name__, repr(value))
    return table


def run_demo(args, console: Console) -> None:
    from robotempo.dataset import LeRobotDataset, collate
    from robotempo.prompt import format_speed_prompt
    from robotempo.synth import write_synthetic

    out = Path(args.out)
    root = _prepare(out)
    camera = None if args.camera == "none" else args.camera
    console.rule("1. write a synthetic LeRobot dataset")
    with progress_callback(
        console, f"writing {args.episodes} episodes ({args.version}, camera: {args.camera})"
    ) as cb:
        write_synthetic(
            root,
            version=args.version,
            n_episodes=args.episodes,
            n_tasks=3,
            camera=camera,
            image_size=(96, 96),
            fps=10,
            seed=0,
            progress=cb,
        )
    console.rule("2. robotempo info")
    run_info(str(root), console)

    console.rule("3. per-task speed labels")
    plot = out / "speed_lengths.png"
    run_speed(SimpleNamespace(root=str(root), recompute=False, plot=str(plot)), console)

    console.rule("4. LeRobotDataset, in place")
    deltas = {"observation.state": [-0.1, 0.0], "action": [i / 10 for i in range(10)]}
    if camera:
        deltas["observation.images.top"] = [-0.1, 0.0]
    t0 = time.perf_counter()
    ds = LeRobotDataset("robotempo/demo", root=root, delta_timestamps=deltas)
    console.print(plain(f"opened {ds} in {time.perf_counter() - t0:.3f} s"))
    index = min(42, len(ds) - 1)
    item = ds[index]
    console.print(_describe_item(item, index))
    console.print(
        f"prompt for this item: [bold]{format_speed_prompt(item['speed'], item['speed_is_pad'])!r}[/]"
    )

    console.rule("5. a DataLoader pass (2 workers, shuffled)")
    loader = torch.utils.data.DataLoader(
        ds,
        batch_size=64,
        shuffle=True,
        num_workers=2,
        collate_fn=collate,
        generator=torch.Generator().manual_seed(0),
    )
    t0 = time.perf_counter()
    seen, speeds = 0, []
    for batch in loader:
        seen += len(batch["index"])
        speeds.append(batch["speed"].numpy())
    dt = time.perf_counter() - t0
    counts = np.bincount(np.concatenate(speeds) // 10, minlength=11)
    console.print(
        f"read {seen:,} samples in {dt:.2f} s ({seen / dt:,.0f} samples/s, including worker start-up)"
    )
    console.print("samples per speed label 0..100: " + " ".join(str(c) for c in counts))
    console.print()
    console.print(plain(f"dataset: {root}"))
    console.print(plain(f"speed plot: {plot}"))
