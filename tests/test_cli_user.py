"""The CLI as a new user meets it: errors on stderr in one line, bad arguments refused before any work,
paths with brackets, Ctrl-C, `validate --no-video` still checking the streams, `bench --strict`."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from robotempo.cli import main
from robotempo.errors import ConfigError
from robotempo.synth import write_synthetic

ROBOTEMPO = str(Path(sys.executable).parent / "robotempo")


def cli(*args: str, cwd: Path | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": "80", **(env or {})}
    return subprocess.run([ROBOTEMPO, *args], capture_output=True, text=True, timeout=300, cwd=cwd, env=env)


def run_main(capsys, *args: str) -> subprocess.CompletedProcess:
    """`robotempo ARGS` in this process (what does not need a process of its own: 2.5 s of imports each)."""
    try:
        code = main(list(args))
    except SystemExit as e:  # argparse's refusals
        code = e.code
    out = capsys.readouterr()
    return subprocess.CompletedProcess(args, code, out.out, out.err)


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("cli-user") / "ds"
    write_synthetic(root, version="v2.1", n_episodes=3, n_tasks=2, fps=10, seed=4, mean_length=12.0,
                    camera="video", image_size=(32, 32))  # fmt: skip
    return root


def test_an_error_is_one_line_on_stderr(tmp_path):
    """`robotempo info X > report.txt` showed nothing (the error went to stdout), and a pipe wrapped the
    message at 80 columns (`| grep error:` lost the fix)."""
    deep = tmp_path / ("a-long-folder-name-" * 6) / "no-such-dataset"
    result = cli("info", str(deep))
    assert result.returncode == 2
    assert "error:" not in result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: MissingFileError: "), result.stderr
    assert str(deep) in lines[0] and "Fix:" in lines[0]


def test_a_file_given_as_the_root_is_named_a_file(tmp_path, capsys):
    path = tmp_path / "info.json"
    path.write_text("{}")
    result = run_main(capsys, "info", str(path))
    assert result.returncode == 2 and "is a file, not a dataset folder" in result.stderr, result.stderr
    assert "does not exist" not in result.stderr


@pytest.mark.parametrize("episodes", ["-3", "0", "many"])
def test_demo_refuses_a_bad_episode_count_before_writing(tmp_path, capsys, episodes):
    result = run_main(capsys, "demo", "--out", str(tmp_path / "out"), "--episodes", episodes)
    assert result.returncode == 2 and "--episodes" in result.stderr and "unexpected" not in result.stderr
    assert not (tmp_path / "out").exists()


def test_demo_out_naming_a_file_is_a_typed_error_and_the_file_is_kept(tmp_path, capsys):
    path = tmp_path / "notes.txt"
    path.write_text("mine")
    result = run_main(capsys, "demo", "--out", str(path), "--episodes", "2")
    assert result.returncode == 2 and "ConfigError" in result.stderr and "is a file" in result.stderr
    assert path.read_text() == "mine"


def test_demo_writes_into_an_empty_current_folder_and_through_a_link(tmp_path):
    """`demo --out .` in an empty folder and `--out LINK` to an empty folder failed with an untyped OSError
    (the demo removed the folder itself to start afresh; QA)."""
    here = tmp_path / "here"
    here.mkdir()
    result = cli("demo", "--out", ".", "--episodes", "2", "--camera", "none", cwd=here)
    assert result.returncode == 0, result.stdout + result.stderr
    assert (here / "dataset" / "meta" / "info.json").is_file()
    target, link = tmp_path / "target", tmp_path / "link"
    target.mkdir()
    link.symlink_to(target)
    result = cli("demo", "--out", str(link), "--episodes", "2", "--camera", "none")
    assert result.returncode == 0, result.stdout + result.stderr
    assert link.is_symlink() and (target / "dataset" / "meta" / "info.json").is_file()
    result = cli("demo", "--out", str(link), "--episodes", "2", "--camera", "none")  # its own output again
    assert result.returncode == 0 and link.is_symlink(), result.stdout + result.stderr


def test_brackets_in_paths_are_not_markup(video, tmp_path):
    """A folder named 'mk[/]' made rich raise MarkupError: 'an unexpected error inside robotempo'."""
    root = tmp_path / "mk[/]" / "ds"
    shutil.copytree(video, root)
    result = cli("validate", str(root))
    assert result.returncode == 0 and "[/]" in result.stdout, result.stdout + result.stderr
    plot = tmp_path / "a[/]b.png"
    result = cli("speed", str(root), "--plot", str(plot))
    assert result.returncode == 0, result.stderr
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("tolerance", ["-1", "inf", "5", "nan"])
def test_validate_refuses_a_tolerance_outside_its_range(video, capsys, tolerance):
    result = run_main(capsys, "validate", str(video), "--tolerance-s", tolerance)
    assert result.returncode == 2 and "--tolerance-s" in result.stderr, result.stdout + result.stderr
    assert "TimestampError" not in result.stdout


def test_validate_checks_the_tolerance_against_the_fps(video, capsys):
    result = run_main(capsys, "validate", str(video), "--tolerance-s", "0.2")  # a frame lasts 0.1 s at 10 fps
    assert result.returncode == 2 and "ArgumentError" in result.stderr and "1/fps = 0.1" in result.stderr


def test_validate_no_video_still_checks_the_streams(video, tmp_path):
    """--no-video skips decoding; it skipped the stream checks too, and a truncated MP4 validated (exit 0)."""
    root = tmp_path / "ds"
    shutil.copytree(video, root)
    mp4 = sorted(root.glob("videos/**/*.mp4"))[0]
    mp4.write_bytes(mp4.read_bytes()[: mp4.stat().st_size // 2])
    result = cli("validate", str(root), "--no-video")
    assert result.returncode == 1 and "FAILED" in result.stdout, result.stdout
    good = cli("validate", str(video), "--no-video", env={"COLUMNS": "200"})
    assert good.returncode == 0 and "not decoded (--no-video)" in good.stdout, good.stdout


def test_validate_checks_every_root_and_reports_each(video, tmp_path, capsys, monkeypatch):
    """The datasets of a mixture in one command: a damaged one, then a missing one, do not stop the good
    one after them; the summary names each root and the damaged file; exit 1."""
    monkeypatch.setenv("COLUMNS", "250")
    damaged = tmp_path / "damaged"
    shutil.copytree(video, damaged)
    mp4 = sorted(damaged.glob("videos/**/*.mp4"))[0]
    mp4.write_bytes(mp4.read_bytes()[: mp4.stat().st_size // 2])
    missing = tmp_path / "missing"
    result = run_main(capsys, "validate", str(damaged), str(missing), str(video))
    assert result.returncode == 1, result.stdout + result.stderr
    rows = {line.split("│")[1].strip(): line for line in result.stdout.splitlines() if line.count("│") == 4}
    assert "FAILED" in rows[str(damaged)] and "video files failed" in rows[str(damaged)], result.stdout
    assert "FAILED" in rows[str(missing)] and "metadata" in rows[str(missing)], result.stdout
    assert " ok " in rows[str(video)] and "3 episodes" in rows[str(video)], result.stdout
    assert mp4.name in result.stdout and "MissingFileError" in result.stdout
    assert f"1 of 3 datasets passed; failed: {damaged}, {missing}" in result.stdout
    assert run_main(capsys, "validate", str(video), str(video)).returncode == 0


def test_validate_jobs_gives_the_report_of_one_root_after_another(video, tmp_path, capsys, monkeypatch):
    """--jobs 2: the roots are validated in processes of their own, the report is the same, in the order given
    (a root given twice is reported twice)."""
    monkeypatch.setenv("COLUMNS", "250")
    damaged = tmp_path / "damaged"
    shutil.copytree(video, damaged)
    mp4 = sorted(damaged.glob("videos/**/*.mp4"))[0]
    mp4.write_bytes(mp4.read_bytes()[: mp4.stat().st_size // 2])
    roots = [str(damaged), str(tmp_path / "missing"), str(video), str(video)]
    serial = run_main(capsys, "validate", *roots)
    parallel = run_main(capsys, "validate", *roots, "--jobs", "2")
    assert serial.returncode == parallel.returncode == 1

    def report(out: str) -> list[str]:  # the tables and the summary line, not the progress bars
        return [line for line in out.splitlines() if "│" in line or "datasets passed" in line]

    assert report(parallel.stdout) == report(serial.stdout), parallel.stdout
    assert "2 of 4 datasets passed" in parallel.stdout and mp4.name in parallel.stdout
    for bad in ("0", "many"):
        refused = run_main(capsys, "validate", str(video), "--jobs", bad)
        assert refused.returncode == 2 and "--jobs" in refused.stderr


def test_validate_tolerance_too_large_for_one_roots_fps_fails_that_root(video, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "250")
    fast = write_synthetic(tmp_path / "fast", n_episodes=2, n_tasks=1, fps=30, mean_length=10.0)
    # 1/30 < 0.05 < 1/10
    result = run_main(capsys, "validate", str(fast), str(video), "--tolerance-s", "0.05")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "ArgumentError" in result.stdout and "1/fps = 0.0333333" in result.stdout, result.stdout
    assert f"1 of 2 datasets passed; failed: {fast}" in result.stdout


def test_info_compares_several_roots_in_one_table(video, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "250")
    other = write_synthetic(tmp_path / "other", n_episodes=4, n_tasks=1, fps=30, mean_length=10.0,
                            camera="image", image_size=(24, 40), state_dim=7, action_dim=6)  # fmt: skip
    missing = tmp_path / "missing"
    result = run_main(capsys, "info", str(video), str(missing), str(other))
    assert result.returncode == 2, result.stdout + result.stderr
    rows = {line.split("│")[1].strip(): line.split("│")[2:-1] for line in result.stdout.splitlines()
            if line.count("│") == 9}  # fmt: skip
    fmt, fps, episodes, _, tasks, cameras, others = (c.strip() for c in rows[str(video)])
    assert (fmt, fps, episodes, tasks, cameras) == ("v2.1", "10", "3", "2", "1 video 32x32"), rows
    assert others == "observation.state[14], action[14]"
    fmt, fps, episodes, _, tasks, cameras, others = (c.strip() for c in rows[str(other)])
    assert (fmt, fps, episodes, tasks, cameras) == ("v3.0", "30", "4", "1", "1 image 24x40"), rows
    assert others == "observation.state[7], action[6]"
    assert "error" in rows[str(missing)][0]
    assert f"{missing}: MissingFileError" in result.stdout
    assert "2 of 3 read: 7 episodes" in result.stdout and "1 could not be read" in result.stdout


def test_ctrl_c_is_one_line_and_exit_130(video):
    """SIGINT during `validate` printed a whole traceback. The signal is sent by the process to itself at the
    first progress report, so it lands inside the real work."""
    script = textwrap.dedent(
        """
        import os, signal, sys
        import robotempo.cli.validate as v
        real = v.validate_dataset
        def interrupted(*args, progress, **kw):
            def report(*a):
                os.kill(os.getpid(), signal.SIGINT)
                progress(*a)
            return real(*args, progress=report, **kw)
        v.validate_dataset = interrupted
        from robotempo.cli import main
        sys.exit(main(["validate", sys.argv[1]]))
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script, str(video)], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 130, result.stdout + result.stderr
    assert "Traceback" not in result.stderr and "error: interrupted" in result.stderr


def test_bench_strict_exits_1_below_target(tmp_path):
    """A suite that reports a check below target: exit 0 by default (the run worked), 1 with --strict."""
    suite = tmp_path / "benchmarks"
    suite.mkdir()
    (suite / "suite.py").write_text("")
    (suite / "run_all.py").write_text(
        "def run(scale, out, console):\n"
        "    return {'checks': [{'name': 'P3 open', 'verdict': 'FAIL'}]}\n\n\n"
        "def failed(record):\n"
        "    return [c['name'] for c in record['checks'] if c['verdict'] == 'FAIL']\n"
    )
    assert cli("bench", "--quick", "--out", str(tmp_path / "out"), cwd=tmp_path).returncode == 0
    strict = cli("bench", "--quick", "--strict", "--out", str(tmp_path / "out"), cwd=tmp_path)
    assert strict.returncode == 1 and "1 check(s) below target: P3 open" in strict.stdout


def test_a_bad_pool_budget_says_what_unset_means(monkeypatch):
    from robotempo.shm_pool import pool_budget_bytes

    monkeypatch.setenv("ROBOTEMPO_SHM_POOL_MB", "-1")
    with pytest.raises(ConfigError, match="unset it to use the default share of /dev/shm"):
        pool_budget_bytes()


def test_a_reader_that_leaves_early_is_not_a_failed_check(video):
    """`validate GOOD | head -1` exited 1, validate's code for a bad file; now 141, like a shell's SIGPIPE."""
    cmd = f"'{ROBOTEMPO}' validate '{video}' | head -c 1 >/dev/null; echo ${{PIPESTATUS[0]}}"
    out = subprocess.run(["bash", "-c", cmd], capture_output=True, text=True, timeout=300)
    assert out.stdout.strip() in ("0", "141"), out.stdout + out.stderr  # 0: it wrote all before head left
    assert "Traceback" not in out.stderr and "error" not in out.stderr


def test_version_names_the_installed_package(capsys):
    import robotempo
    from robotempo.cli import main

    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0 and capsys.readouterr().out.strip() == f"robotempo {robotempo.__version__}"
    import subprocess
    import sys
    from importlib.metadata import version

    assert version("robotempo") == robotempo.__version__  # the package's metadata reads the same one place
    done = subprocess.run([sys.executable, "-m", "robotempo", "--version"], capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.strip() == f"robotempo {robotempo.__version__}", done
