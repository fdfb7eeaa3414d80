"""Real on-disk fixtures for the speed-label tests, shared by pytest and the scripts torchrun launches.

A fixture is a folder holding `population.npz` (every episode: index, length, task from "frame data"),
`view.npz` (the metadata's view of the same episodes) and `tasks.json` (the task table). A dataset root is a
folder with `meta/` holding a real task table, so tests can checksum every file the root had before a load.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from robotempo.speed.store import MetadataView, SpeedPopulation


def make_population(n_tasks: int = 4, per_task: int = 40, seed: int = 0) -> SpeedPopulation:
    """Tasks with distinct paces (task k's episodes last about 100 + 60k frames), shuffled episode order."""
    rng = np.random.default_rng(seed)
    tasks = np.repeat(np.arange(n_tasks), per_task)
    lengths = (100 + 60 * tasks + rng.integers(-40, 40, len(tasks))).astype(np.int64)
    order = rng.permutation(len(tasks))
    return SpeedPopulation(np.arange(len(tasks)), lengths[order], tasks[order])


def view_of(population: SpeedPopulation) -> MetadataView:
    """The metadata's view when it agrees with the frame data."""
    return MetadataView(
        population.episode_index.copy(), population.length.copy(), population.task_index.copy()
    )


def task_names_for(n_tasks: int) -> dict[int, str]:
    return {k: f"task number {k}" for k in range(n_tasks)}


def save_fixture(
    folder: Path, population: SpeedPopulation, view: MetadataView, task_names: dict[int, str]
) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    np.savez(folder / "population.npz", **vars(population))
    np.savez(folder / "view.npz", **vars(view))
    (folder / "tasks.json").write_text(json.dumps({str(k): v for k, v in task_names.items()}))
    return folder


def load_fixture(folder: Path) -> tuple[SpeedPopulation, MetadataView, dict[int, str]]:
    with np.load(folder / "population.npz") as p, np.load(folder / "view.npz") as v:
        population = SpeedPopulation(p["episode_index"], p["length"], p["task_index"])
        view = MetadataView(v["episode_index"], v["length"], v["task_index"])
    names = {int(k): s for k, s in json.loads((folder / "tasks.json").read_text()).items()}
    return population, view, names


def make_root(root: Path, task_names: dict[int, str]) -> Path:
    """A dataset root with a real `meta/tasks.jsonl` (the percentile file is all a load may add)."""
    (root / "meta").mkdir(parents=True, exist_ok=True)
    rows = [json.dumps({"task_index": k, "task": v}) for k, v in sorted(task_names.items())]
    (root / "meta" / "tasks.jsonl").write_text("\n".join(rows) + "\n")
    return root


def checksums(folder: Path) -> dict[str, str]:
    """sha256 of every file under `folder`, by relative path."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def temp_files(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*.tmp"))


def _writable(folder: Path) -> bool:
    probe = folder / ".write-probe"
    try:
        probe.write_bytes(b"")
    except OSError:
        return False
    probe.unlink()
    return True


@contextlib.contextmanager
def read_only_dir(folder: Path) -> Iterator[str | None]:
    """Make `folder` refuse new files for this process; yields None on success, else why it is impossible.

    Not root: `chmod 555`. Root ignores mode bits, so then `chattr +i` (the immutable attribute, which even
    root cannot write through) is used. The attribute is always removed again, or the folder could not be
    deleted.
    """
    mode = folder.stat().st_mode
    immutable = False
    try:
        if os.geteuid() == 0 and shutil.which("chattr"):
            done = subprocess.run(["chattr", "+i", str(folder)], capture_output=True, text=True, check=False)
            immutable = done.returncode == 0
        else:
            folder.chmod(0o555)
        yield (
            None if not _writable(folder) else "cannot make a folder read-only here (root without chattr +i)"
        )
    finally:
        if immutable:
            subprocess.run(["chattr", "-i", str(folder)], check=True)
        folder.chmod(mode)
