"""Hostile or badly broken datasets from the internet: each input here once read outside the dataset folder,
hung, ran another program, decoded gigabytes before a check, or escaped as an untyped error. Each case is a
real file written into a copy of a dataset our writer made."""

from __future__ import annotations

import io
import json
import os
import shutil
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import av
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from rich.console import Console

from robotempo import LeRobotDataset
from robotempo.errors import DatasetFormatError, VideoDecodeError
from robotempo.synth import CAMERA_KEY, write_synthetic

TIMEOUT = 120


@pytest.fixture(scope="module")
def bases(tmp_path_factory):
    out = {}
    for name, camera, version in (
        ("image", "image", "v3.0"),
        ("video", "video", "v2.1"),
        ("tab", None, "v3.0"),
    ):
        root = tmp_path_factory.mktemp(name) / "ds"
        write_synthetic(
            root, version=version, n_episodes=3, n_tasks=1, camera=camera, image_size=(32, 32), fps=10
        )
        out[name] = root
    return out


def _copy(bases, name: str, tmp_path: Path) -> Path:
    root = tmp_path / name
    shutil.copytree(bases[name], root, symlinks=True)
    return root


def _set_first_image(root: Path, data: bytes) -> None:
    path = next(root.glob("data/**/*.parquet"))
    table = pq.read_table(path)
    cells = table.column(CAMERA_KEY).to_pylist()
    cells[0] = {"bytes": data, "path": None}
    i = table.column_names.index(CAMERA_KEY)
    pq.write_table(
        table.set_column(i, CAMERA_KEY, pa.array(cells, table.schema.field(CAMERA_KEY).type)), path
    )


def _png(width: int, height: int, body: bytes | None = None) -> bytes:
    """A PNG of that size: its rows of zeros deflated (a few hundred KB for 12000x12000), or `body`."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    if body is None:
        row = b"\x00" + bytes(width * 4)
        z = zlib.compressobj(9)
        body = b"".join(z.compress(row) for _ in range(height)) + z.flush()
    header = struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", body) + chunk(b"IEND", b"")


def test_a_video_that_is_a_playlist_of_outside_files_is_not_followed(bases, tmp_path):
    """An HLS playlist named .mp4 whose segment lies outside the dataset: FFmpeg's probe followed it."""
    root = _copy(bases, "video", tmp_path)
    outside = tmp_path / "private.ts"
    with av.open(str(outside), "w", format="mpegts") as c:
        s = c.add_stream("mpeg2video", rate=10)
        s.width = s.height = 32
        s.pix_fmt = "yuv420p"
        for k in range(40):
            frame = av.VideoFrame.from_ndarray(np.full((32, 32, 3), 77, np.uint8), format="rgb24")
            frame.pts = k
            for p in s.encode(frame):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    info = json.loads((root / "meta/info.json").read_text())
    info["video_path"] = info["video_path"].replace(".mp4", ".m3u8")  # FFmpeg probes HLS by the name too
    (root / "meta/info.json").write_text(json.dumps(info))
    for video in root.glob("videos/**/*.mp4"):
        video.unlink()
        video.with_suffix(".m3u8").write_text(
            f"#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:10.0,\nfile:{outside}\n#EXT-X-ENDLIST\n"
        )
    ds = LeRobotDataset("h", root=root, speed_labels=False)
    with pytest.raises(VideoDecodeError, match="FFmpeg cannot open it"):
        for i in range(len(ds)):
            ds[i]


SYMLINK_LOOP = """
import sys
from robotempo import LeRobotDataset
from robotempo.cli.info import run_info
from rich.console import Console
LeRobotDataset("d", root=sys.argv[1], speed_labels=False)
run_info(sys.argv[1], Console(file=open("/dev/null", "w")))
print("done")
"""


def test_symlinks_back_into_the_dataset_are_not_listed_forever(bases, tmp_path):
    """`meta/episodes/chunk-001 -> .` and `chunk-000/loop -> ..`: the recursive listing never ended."""
    root = _copy(bases, "tab", tmp_path)
    (root / "meta/episodes/chunk-001").symlink_to(".")
    (root / "meta/episodes/chunk-000/loop").symlink_to("..")
    (root / "data/loop").symlink_to(".")
    out = subprocess.run(
        [sys.executable, "-c", SYMLINK_LOOP, str(root)], capture_output=True, text=True, timeout=TIMEOUT
    )
    assert out.stdout.strip() == "done", out.stderr[-2000:]


PEAK_AFTER_FIRST_ITEM = """
import sys
from robotempo import LeRobotDataset
from robotempo.errors import FeatureMismatchError
ds = LeRobotDataset("d", root=sys.argv[1], speed_labels=False)
def peak():
    return int(next(line for line in open("/proc/self/status") if line.startswith("VmHWM")).split()[1])
before = peak()
try:
    ds[0]
except FeatureMismatchError as e:
    print("typed", peak() - before, str(e)[:300])
"""


def test_an_image_larger_than_declared_is_refused_from_its_header(bases, tmp_path):
    """A 560 KB PNG of 12000x12000 in a 32x32 feature was decoded (+1.1 GB) before its size was checked."""
    root = _copy(bases, "image", tmp_path)
    _set_first_image(root, _png(12000, 12000))
    code = PEAK_AFTER_FIRST_ITEM
    out = subprocess.run(
        [sys.executable, "-c", code, str(root)], capture_output=True, text=True, timeout=TIMEOUT
    )
    assert out.stdout.startswith("typed"), out.stdout + out.stderr[-2000:]
    grown_kb = int(out.stdout.split()[1])
    assert grown_kb < 200_000 and "12000x12000" in out.stdout  # decoding it takes 576 MB


def test_image_cells_are_not_handed_to_other_programs(bases, tmp_path, monkeypatch):
    """Pillow opens EPS by running Ghostscript (`gs`): a hostile cell reached an external program."""
    root = _copy(bases, "image", tmp_path)
    marker = tmp_path / "gs-ran"
    fake = tmp_path / "bin" / "gs"
    fake.parent.mkdir()
    fake.write_text(f"#!/bin/sh\ntouch {marker}\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake.parent}{os.pathsep}{os.environ['PATH']}")
    eps = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 32 32\nshowpage\n%%EOF\n"
    _set_first_image(root, eps)
    ds = LeRobotDataset("h", root=root, speed_labels=False)
    with pytest.raises(DatasetFormatError, match="do not decode"):
        ds[0]
    assert not marker.exists()


def test_a_png_header_declaring_billions_of_pixels_is_a_typed_error(bases, tmp_path):
    root = _copy(bases, "image", tmp_path)
    _set_first_image(root, _png(60000, 60000, body=zlib.compress(b"\x00" * 100)))
    ds = LeRobotDataset("h", root=root, speed_labels=False)
    with pytest.raises(DatasetFormatError, match="image column"):
        ds[0]


@pytest.mark.parametrize(
    "edit, match",
    [
        (
            lambda d: d.update(data_path="data/{episode_index:>999999999}.parquet"),
            "formats {episode_index} with",
        ),
        (lambda d: d.update(data_path="data/{episode_index!r}.parquet"), "formats {episode_index} with !r"),
        (
            lambda d: d.update(data_path="data/chunk-{chunk_index:03d}/\x00{file_index}.parquet"),
            "control char",
        ),
        (lambda d: d.update(data_path="data/\ud800{chunk_index}/{file_index}.parquet"), "invalid code point"),
        (lambda d: d["features"][CAMERA_KEY].update(shape=[46341, 46341, 3]), "a side above 16384"),
    ],
)
def test_hostile_info_json_is_refused_before_anything_is_allocated(bases, tmp_path, edit, match):
    root = _copy(bases, "image", tmp_path)
    info = json.loads((root / "meta/info.json").read_text())
    edit(info)
    (root / "meta/info.json").write_text(json.dumps(info))
    with pytest.raises(DatasetFormatError, match=match):
        LeRobotDataset("h", root=root, speed_labels=False)


@pytest.mark.parametrize("rel", ["meta/info.json", "meta/tasks.parquet"])
def test_json_nested_too_deep_is_a_typed_error(bases, tmp_path, rel):
    root = _copy(bases, "video", tmp_path)  # v2.1: tasks.jsonl
    path = root / ("meta/tasks.jsonl" if rel.endswith("parquet") else rel)
    path.write_text("[" * 200_000 + "\n")
    with pytest.raises(DatasetFormatError, match="nested too deeply"):
        LeRobotDataset("h", root=root, speed_labels=False)


def test_thrift_lists_nested_deep_are_a_parse_error():
    from robotempo.store.thrift import ThriftError, read_struct

    with pytest.raises(ThriftError, match="nested deeper"):
        read_struct(b"\x19" * 3000)  # a list field of lists of lists...


def test_cli_shows_dataset_text_as_text(bases, tmp_path):
    """A task '[/]' crashed `info` (rich markup) and escape sequences reached the terminal raw."""
    from robotempo.cli.info import run_info

    root = _copy(bases, "video", tmp_path)
    (root / "meta/tasks.jsonl").write_text(json.dumps({"task_index": 0, "task": "[/] \x1b[2Jclear"}) + "\n")
    buffer = io.StringIO()
    run_info(str(root), Console(file=buffer, width=200, color_system=None))
    text = buffer.getvalue()
    assert "[/]" in text and "\x1b" not in text and "\\x1b[2Jclear" in text


PEAK_AFTER_OPEN_AND_ITEM = """
import sys
from robotempo import LeRobotDataset
from robotempo.errors import DatasetFormatError
def peak():
    return int(next(line for line in open("/proc/self/status") if line.startswith("VmHWM")).split()[1])
import torch  # imported before the baseline, like a training script
before = peak()
try:
    LeRobotDataset("d", root=sys.argv[1], speed_labels=False)[0]
except DatasetFormatError as e:
    print("typed", peak() - before, str(e)[:400])
"""


def _peak_after(root: Path) -> tuple[int, str]:
    out = subprocess.run(
        [sys.executable, "-c", PEAK_AFTER_OPEN_AND_ITEM, str(root)],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert out.stdout.startswith("typed"), out.stdout + out.stderr[-2000:]
    return int(out.stdout.split()[1]), out.stdout


def test_an_image_cell_that_expands_to_gigabytes_is_refused_from_the_footer(bases, tmp_path):
    """One zstd cell of zeros (a file of ~20 KB) expanded to its full size before any check."""
    root = _copy(bases, "image", tmp_path)
    path = next(root.glob("data/**/*.parquet"))
    table = pq.read_table(path)
    cells = table.column(CAMERA_KEY).to_pylist()
    cells[0] = {"bytes": bytes(160_000_000), "path": None}  # expanded, +160 MB: above the 100 MB bound
    i = table.column_names.index(CAMERA_KEY)
    table = table.set_column(i, CAMERA_KEY, pa.array(cells, table.schema.field(CAMERA_KEY).type))
    pq.write_table(table, path, compression="zstd")
    del table, cells
    grown_kb, text = _peak_after(root)
    assert grown_kb < 100_000 and "bytes uncompressed" in text, text


def test_a_numeric_row_that_expands_to_millions_of_values_is_refused_from_the_footer(bases, tmp_path):
    """A 4.5 KB file whose first row held 250 million floats (run-length encoded) cost +2.5 GB at open."""
    root = _copy(bases, "tab", tmp_path)
    path = next(root.glob("data/**/*.parquet"))
    table = pq.read_table(path)
    n, big = table.num_rows, 50_000_000
    width = len(table.column("observation.state")[0])
    offsets = np.concatenate([[0, big], big + width * np.arange(1, n)]).astype(np.int64)
    values = pa.array(np.zeros(int(offsets[-1]), np.float32))
    column = pa.LargeListArray.from_arrays(pa.array(offsets), values)
    i = table.column_names.index("observation.state")
    pq.write_table(table.set_column(i, pa.field("observation.state", column.type), column), path)
    del table, column, values
    grown_kb, text = _peak_after(root)
    assert grown_kb < 100_000 and "values of 'observation.state'" in text, text


@pytest.mark.parametrize("column, value", [("data/chunk_index", -1), ("length", 2**64 - 1)])
def test_episode_metadata_integers_out_of_range_are_named(bases, tmp_path, column, value):
    """A negative chunk index became a missing 'chunk--01' file; a uint64 length of 2**64-1 read as -1."""
    root = _copy(bases, "tab", tmp_path)
    path = next(root.glob("meta/episodes/**/*.parquet"))
    table = pq.read_table(path)
    kind = pa.uint64() if value > 0 else pa.int64()
    values = pa.array([value] + table.column(column).to_pylist()[1:], kind)
    pq.write_table(table.set_column(table.column_names.index(column), column, values), path)
    with pytest.raises(DatasetFormatError, match=f"column '{column}' holds {value} .row 0., not an integer"):
        LeRobotDataset("h", root=root, speed_labels=False)
