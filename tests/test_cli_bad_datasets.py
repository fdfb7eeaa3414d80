"""The CLI on bad datasets: `info`, `validate` and `speed` never show a traceback; a dataset that cannot be
opened exits 2 with the typed message; `validate` reads every file and lists every bad one (exit 1)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from robotempo.synth import write_synthetic
from robotempo.validation import validate_dataset


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli") / "ds"
    write_synthetic(root, version="v2.1", n_episodes=4, n_tasks=2, fps=10, seed=3, mean_length=12.0,
                    camera="image", image_size=(32, 32))  # fmt: skip
    return root


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(Path(sys.executable).parent / "robotempo"), *args], capture_output=True, text=True, timeout=300
    )


def edit_column(path, name, fn) -> None:
    t = pq.read_table(path)
    pq.write_table(t.set_column(t.column_names.index(name), name, fn(t.column(name))), path)


def test_unreadable_metadata_exits_2_with_the_typed_message(good, tmp_path):
    root = tmp_path / "ds"
    shutil.copytree(good, root)
    info = json.loads((root / "meta/info.json").read_text())
    (root / "meta/info.json").write_text(json.dumps({**info, "fps": float("nan")}))
    for command in ("info", "validate", "speed"):
        result = cli(command, str(root))
        out = result.stdout + result.stderr
        assert "Traceback" not in out, out
        if command == "validate":
            assert result.returncode == 1 and "FAILED" in out and "fps" in out
        else:
            assert result.returncode == 2 and "DatasetFormatError" in out and "info.json" in out, out


def test_validate_lists_every_bad_file_and_counts_nan(good, tmp_path):
    root = tmp_path / "ds"
    shutil.copytree(good, root)
    data = root / "data/chunk-000"
    uneven = lambda c: pa.array([r + [0.5] if i == 3 else r for i, r in enumerate(c.to_pylist())])  # noqa: E731
    edit_column(data / "episode_000001.parquet", "action", uneven)
    edit_column(data / "episode_000002.parquet", "task_index", lambda c: pa.array(np.full(len(c), 9)))
    nan_state = lambda c: pa.array([[np.nan] * len(r) for r in c.to_pylist()], c.type)  # noqa: E731
    edit_column(data / "episode_000003.parquet", "observation.state", nan_state)
    findings = validate_dataset(root)
    failed = {f.check.strip(): f.details for f in findings if f.status == "failed"}
    assert failed["data/chunk-000/episode_000001.parquet"].startswith("FeatureMismatchError")
    assert "row 3" in failed["data/chunk-000/episode_000001.parquet"]
    assert failed["data/chunk-000/episode_000002.parquet"].startswith("UnknownTaskError")
    assert "2 of 4 data files failed" in failed["data files (schema, rows, dtypes, tasks, timestamps)"]
    notes = [f for f in findings if f.status == "note"]
    assert len(notes) == 1 and "observation.state" in notes[0].details
    result = cli("validate", str(root))
    assert result.returncode == 1 and "Traceback" not in result.stdout + result.stderr


@pytest.mark.parametrize("field", ["total_episodes", "total_frames"])
def test_validate_fails_either_info_total_that_disagrees_with_the_table(good, tmp_path, field):
    """A total_frames that disagreed failed validate; a total_episodes below the table's count passed it
    with a log line only (QA): both are the same stale summary."""
    import json

    root = tmp_path / "ds"
    shutil.copytree(good, root)
    path = root / "meta" / "info.json"
    info = json.loads(path.read_text())
    info[field] -= 1
    path.write_text(json.dumps(info))
    failed = {f.check: f.details for f in validate_dataset(root) if f.status == "failed"}
    assert f"{field} is {info[field]}" in failed.get("info.json totals", ""), failed


def test_validate_passes_a_good_dataset_and_reads_every_image(good, tmp_path):
    result = cli("validate", str(good))
    assert result.returncode == 0, result.stdout
    root = tmp_path / "ds"
    shutil.copytree(good, root)
    path = root / "data/chunk-000/episode_000002.parquet"
    t = pq.read_table(path)
    cells = t.column("observation.images.top").to_pylist()
    cells[5]["bytes"] = cells[5]["bytes"][:40]  # a damaged image in the middle of an episode
    edit_column(path, "observation.images.top", lambda c: pa.array(cells, c.type))
    failed = [f for f in validate_dataset(root) if f.status == "failed"]
    assert failed and "episode 2 frame 5" in failed[0].details, failed


def test_validate_refuses_a_palette_with_transparency(good, tmp_path):
    """What the reader refuses, validate reports: a PNG optimiser's palette with a transparent entry."""
    import io

    from PIL import Image

    root = tmp_path / "ds"
    shutil.copytree(good, root)
    path = root / "data/chunk-000/episode_000001.parquet"
    t = pq.read_table(path)
    cells = t.column("observation.images.top").to_pylist()
    rgba = np.asarray(Image.open(io.BytesIO(cells[2]["bytes"])).convert("RGBA")).copy()
    rgba[:8, :8, 3] = 0
    buf = io.BytesIO()
    Image.fromarray(rgba).quantize(64).save(buf, format="PNG")
    cells[2]["bytes"] = buf.getvalue()
    edit_column(path, "observation.images.top", lambda c: pa.array(cells, c.type))
    failed = [f for f in validate_dataset(root) if f.status == "failed"]
    assert failed and "episode 1 frame 2" in failed[0].details, failed
    assert "P (palette with transparency)" in failed[0].details, failed


def test_validate_names_the_failing_file_whole_at_80_columns(good, tmp_path):
    """At 80 columns (a pipe, a narrow terminal) rich cut long cells with '...': the file went unnamed."""
    import os

    root = tmp_path / "a-rather-long-folder-name-for-a-dataset" / "ds"
    shutil.copytree(good, root)
    (root / "data/chunk-000/episode_000002.parquet").unlink()
    env = {**os.environ, "COLUMNS": "80"}
    result = subprocess.run(
        [str(Path(sys.executable).parent / "robotempo"), "validate", str(root)],
        capture_output=True, text=True, timeout=300, env=env,
    )  # fmt: skip
    joined = "".join(line.strip("│ ") for line in result.stdout.splitlines())
    assert result.returncode == 1 and "episode_000002.parquet" in joined, result.stdout


@pytest.mark.parametrize(
    ("plot", "says"),
    [("plot.txt", "use a file name ending in"), ("afile/plot.png", "is a file, not a folder")],
)
def test_speed_plot_path_is_checked_before_the_work(good, tmp_path, plot, says):
    (tmp_path / "afile").write_text("x")
    result = cli("speed", str(good), "--plot", str(tmp_path / plot))
    out = " ".join((result.stdout + result.stderr).split())  # the console wraps long lines
    assert result.returncode == 2 and "ConfigError" in out and says in out, out
    assert "unexpected error" not in out and "per-task speed labels" not in out  # before the table


def test_speed_plot_of_many_tasks_says_what_it_leaves_out(tmp_path):
    root = tmp_path / "many"
    write_synthetic(root, version="v2.1", n_episodes=30, n_tasks=30, fps=10, seed=3, mean_length=8.0)
    result = cli("speed", str(root), "--plot", str(tmp_path / "p.png"))
    assert result.returncode == 0 and "the first 24 of 30 tasks" in " ".join(result.stdout.split())
    assert (tmp_path / "p.png").stat().st_size > 0


def test_a_path_that_is_not_there_says_so(tmp_path):
    """It said 'the dataset card meta/info.json does not exist. Fix: repair meta/info.json'."""
    result = cli("info", str(tmp_path / "no-such-folder"))
    out = " ".join((result.stdout + result.stderr).split())
    assert result.returncode == 2 and "the dataset folder does not exist" in out and "check the path" in out
