"""`robotempo validate ROOT`: every file checked against the metadata; a table of checks; exit 1 on failure"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from rich.console import Console
from rich.table import Table

from robotempo.cli.progress import progress_callback
from robotempo.cli.storage import storage_options
from robotempo.errors import DatasetFormatError, RobotempoError
from robotempo.format import DatasetMeta, read_metadata
from robotempo.speed import SPEED_PERCENTILES_FILE, read_percentiles_file


def _episode_ends(ds) -> np.ndarray:
    """Rows of the first and last frame of every selected episode."""
    return np.stack([ds.frames.ep_from, ds.frames.ep_to - 1], axis=1).reshape(-1)


def run_validate(args, console: Console) -> int:
    results: list[tuple[str, bool, str]] = []

    def check(name: str, fn: Callable[[], str]) -> object:
        try:
            results.append((name, True, fn()))
        except (RobotempoError, OSError) as e:
            results.append((name, False, f"{type(e).__name__}: {e}"))

    state: dict = {}

    def metadata() -> str:
        meta: DatasetMeta = read_metadata(args.root, storage_options(args))
        state["meta"] = meta
        info = meta.info
        notes = f"{info.codebase_version}, {len(meta.episodes):,} episodes, {meta.total_frames:,} frames"
        if info.total_frames and info.total_frames != meta.total_frames:
            raise DatasetFormatError(
                info.path,
                f"total_frames is {info.total_frames} but the episodes sum to {meta.total_frames}",
                "set total_frames to the sum of the episode lengths",
            )
        return notes

    check("metadata (info.json, tasks, episodes)", metadata)
    if "meta" in state:
        from robotempo.dataset import LeRobotDataset

        def rows() -> str:
            ds = LeRobotDataset(
                "validate",
                root=args.root,
                tolerance_s=args.tolerance_s,
                speed_labels=False,
                storage_options=storage_options(args),
            )
            state["ds"] = ds
            return f"{len(ds.meta.episodes.data_files):,} data files, rows and timestamps match the metadata"

        check("data rows, episode alignment, timestamps", rows)
    if "ds" in state:
        ds = state["ds"]
        ends = _episode_ends(ds)
        for key in ds.camera_keys:
            if key in ds.video_keys and args.no_video:
                continue

            def frames(key=key) -> str:
                with progress_callback(console, f"decoding first/last frames of {key}") as progress:
                    for start in range(0, len(ends), 256):
                        ds.camera_frames({key: ends[start : start + 256]})
                        progress(min(start + 256, len(ends)), len(ends))
                kind = "video" if key in ds.video_keys else "image"
                return f"{kind}: first and last frame of {len(ends) // 2:,} episodes decode within tolerance"

            check(f"camera {key}", frames)

    speed_file = state["meta"].location.file(SPEED_PERCENTILES_FILE) if "meta" in state else None
    if speed_file is not None and speed_file.is_file():
        check(
            "meta/speed_percentiles.jsonl", lambda: f"{len(read_percentiles_file(speed_file).rows)} task rows"
        )

    table = Table(title=f"validate {args.root}", title_justify="left")
    table.add_column("check")
    table.add_column("result")
    table.add_column("details")
    for name, ok, details in results:
        table.add_row(name, "[green]ok[/]" if ok else "[bold red]FAILED[/]", details)
    console.print(table)
    return 0 if all(ok for _, ok, _ in results) else 1
