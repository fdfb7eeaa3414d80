"""robotempo.fs without a server: root naming, local reads, S3 options, BlockFile against the bytes."""

from __future__ import annotations

import gc
import io
import os
import pickle

import numpy as np
import pyarrow.fs as pafs
import pytest

from robotempo.errors import ConfigError, StorageError
from robotempo.fs import BlockFile, DatasetRoot, as_file, s3_options


def test_local_root_reads_and_names(tmp_path):
    (tmp_path / "meta").mkdir()
    (tmp_path / "meta" / "info.json").write_bytes(b"{}")
    (tmp_path / "meta" / "episodes" / "chunk-000").mkdir(parents=True)
    (tmp_path / "meta" / "episodes" / "chunk-000" / "file-000.parquet").write_bytes(b"x")
    (tmp_path / "meta" / "episodes" / "chunk-000" / ".file-001.parquet.tmp").write_bytes(b"x")
    root = DatasetRoot(tmp_path)
    assert root.is_local and root.where("meta/info.json") == tmp_path / "meta" / "info.json"
    assert root.read_bytes("meta/info.json") == b"{}" and root.size("meta/info.json") == 2
    assert root.is_file("meta/info.json") and not root.is_file("meta/nope.json")
    assert root.list_files("meta/episodes", ".parquet") == ["meta/episodes/chunk-000/file-000.parquet"]
    assert root.identity("meta/info.json")[1] == 2
    with pytest.raises(FileNotFoundError):
        root.read_bytes("meta/nope.json")
    again = pickle.loads(pickle.dumps(root))
    assert again == root and again.read_bytes("meta/info.json") == b"{}"
    ref = as_file(tmp_path / "meta" / "info.json")
    assert str(ref) == str(tmp_path / "meta" / "info.json") and ref.read_bytes() == b"{}"


def test_object_store_urls_are_named_as_urls():
    root = DatasetRoot("s3://bucket/some/prefix/", {"endpoint_url": "http://127.0.0.1:9"})
    assert not root.is_local and root.url == "s3://bucket/some/prefix"
    assert root.where("meta/info.json") == "s3://bucket/some/prefix/meta/info.json"
    assert root.path("data/x.parquet") == "bucket/some/prefix/data/x.parquet"
    assert pickle.loads(pickle.dumps(root)) == root
    with pytest.raises(ConfigError, match="names no bucket"):
        DatasetRoot("s3://")
    with pytest.raises(ConfigError, match=r"empty path component .* root='s3://bucket/a/b'"):
        DatasetRoot("s3://bucket//a/b")  # a bare ArrowInvalid from the S3 client at the first read


def test_s3_options_aliases_environment_and_bounds(monkeypatch):
    for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_REGION", "AWS_DEFAULT_REGION"):
        monkeypatch.delenv(name, raising=False)
    opts = s3_options({"endpoint_url": "https://minio:9000", "anon": True, "key": "k", "secret": "s"})
    assert opts["endpoint_override"] == "minio:9000" and opts["scheme"] == "https"
    assert opts["anonymous"] is True and (opts["access_key"], opts["secret_key"]) == ("k", "s")
    assert opts["connect_timeout"] > 0 and opts["request_timeout"] > 0
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:4566")
    monkeypatch.setenv("AWS_REGION", "eu-west-3")
    opts = s3_options(None)
    assert (opts["endpoint_override"], opts["scheme"], opts["region"]) == (
        "127.0.0.1:4566",
        "http",
        "eu-west-3",
    )
    monkeypatch.setenv("ROBOTEMPO_S3_RETRIES", "0")
    with pytest.raises(ConfigError, match="ROBOTEMPO_S3_RETRIES"):
        s3_options(None)


def test_settings_given_as_text_are_read_as_their_type(monkeypatch):
    """`--storage-option KEY=VALUE` gives text: pyarrow took "anonymous=0" (any non-empty string) for True,
    sending no credentials, and refused "connect_timeout=5"."""
    import argparse

    from robotempo.cli.storage import storage_options

    for text, expected in (("0", False), ("no", False), ("False", False), ("1", True), ("yes", True)):
        assert s3_options({"anonymous": text})["anonymous"] is expected, text
    args = argparse.Namespace(storage_option=["anonymous=off", "connect_timeout=5", "region=0123"])
    opts = s3_options(storage_options(args))
    assert opts["anonymous"] is False and opts["connect_timeout"] == 5.0 and opts["region"] == "0123"
    DatasetRoot("s3://bucket/ds", {"endpoint_override": "127.0.0.1:9", "connect_timeout": "5"}).fs  # noqa: B018
    with pytest.raises(ConfigError, match="anonymous='maybe' is not true or false"):
        s3_options({"anonymous": "maybe"})
    with pytest.raises(ConfigError, match="request_timeout='soon' is not a number"):
        s3_options({"request_timeout": "soon"})


def test_one_key_of_the_pair_takes_the_other_from_the_environment(monkeypatch):
    """pyarrow wants both keys or neither; one alone reached the user as pyarrow's bare ValueError."""
    monkeypatch.delenv("AWS_ACCESS_KEY_ID", raising=False)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "from-env")
    opts = s3_options({"access_key": "given"})
    assert (opts["access_key"], opts["secret_key"]) == ("given", "from-env")
    with pytest.raises(ConfigError, match="secret_key but no access_key, and AWS_ACCESS_KEY_ID is not set"):
        s3_options({"secret_key": "given"})
    root = DatasetRoot("s3://bucket/ds", {"endpoint_override": "127.0.0.1:9", "secret": "given"})
    with pytest.raises(ConfigError, match="pass both"):
        _ = root.fs


def test_unknown_storage_option_is_a_config_error():
    root = DatasetRoot("s3://bucket/ds", {"endpoint_override": "127.0.0.1:9", "no_such_setting": 1})
    with pytest.raises(ConfigError, match="no_such_setting"):
        _ = root.fs


class _Counting:
    """A random-access source that counts its ranged reads (stands in for a store file)."""

    def __init__(self, data: bytes):
        self.data, self.ranges = data, []

    @property
    def reads(self) -> int:
        return len(self.ranges)

    def size(self) -> int:
        return len(self.data)

    def read_at(self, n: int, offset: int) -> bytes:
        self.ranges.append((offset, offset + n))  # list.append is atomic: prefetch threads call this
        return self.data[offset : offset + n]

    def close(self) -> None:
        pass


def test_blockfile_reads_equal_the_bytes_and_stay_bounded():
    data = np.random.default_rng(0).integers(0, 256, 100_003, dtype=np.uint8).tobytes()
    source = _Counting(data)
    f = BlockFile(source, "mem", block_size=4096, blocks=3)
    plain = io.BytesIO(data)
    rng = np.random.default_rng(1)
    for _ in range(500):
        whence = int(rng.integers(0, 3))
        offset = int(rng.integers(0, len(data))) - (len(data) if whence == io.SEEK_END else 0)
        if whence == io.SEEK_CUR:
            offset = int(rng.integers(-100, 5000))
            offset = max(offset, -plain.tell())
        n = int(rng.integers(0, 20_000))
        assert f.seek(offset, whence) == plain.seek(offset, whence)
        before = source.reads
        got = f.read(n)
        assert source.reads - before <= 1  # one ranged request per read at most (missing blocks merged)
        assert 0 < len(got) or n == 0 or plain.tell() >= len(data)  # a short read, never an empty one
        assert got == plain.read(len(got))
        assert f.tell() == plain.tell() and len(f._blocks) <= 20_000 // 4096 + 2  # the largest read
    f.seek(0)
    buf = bytearray(10)
    assert f.readinto(buf) == 10 and bytes(buf) == data[:10]


def test_blockfile_prefetch_fetches_merged_ranges_once_and_serves_reads_from_them():
    data = np.random.default_rng(2).integers(0, 256, 200_000, dtype=np.uint8).tobytes()
    source = _Counting(data)
    f = BlockFile(source, "mem", block_size=1000, blocks=50, hole=1000)  # 50 KB of blocks, 50 KB of ranges
    # Two ranges less than `hole` apart become one request; the others one each; nothing read twice.
    wanted = [(10_000, 12_000), (12_500, 14_000), (60_000, 61_000), (150_000, 150_100), (199_900, 250_000)]
    assert f.prefetch(wanted) == 4
    merged = [(10_000, 14_000), (60_000, 61_000), (150_000, 150_100), (199_900, 200_000)]
    assert sorted(source.ranges) == merged
    assert f.prefetch(wanted) == 0 and source.reads == 4  # held: no request
    for lo, hi in wanted:
        f.seek(lo)
        got = b""
        while f.tell() < min(hi, len(data)):
            got += f.read(32_768)  # a short read stops at the end of a prefetched range
        assert got[: hi - lo] == data[lo:hi]
    assert source.reads == 4  # every read fell inside a prefetched range
    # Overlapping and adjacent ranges: only the missing parts are fetched, the bytes stay right.
    source.ranges.clear()
    assert f.prefetch([(11_000, 20_000)]) == 1 and source.ranges == [(14_000, 20_000)]
    f.seek(10_000)
    assert b"".join(f.read(3_000) for _ in range(4))[:10_000] == data[10_000:20_000]
    # The prefetched ranges stay within their budget: the oldest are dropped.
    for start in range(0, 200_000, 20_000):
        f.prefetch([(start, start + 15_000)])
        assert f._ranges.held <= f.prefetch_budget
    f.seek(180_000)
    assert f.read(15_000) == data[180_000:195_000]


def test_blockfile_open_files_of_a_process_hold_one_budget_together(monkeypatch):
    """Every open file keeps up to its own blocks and ranges, but all of a process's together stay within
    ROBOTEMPO_REMOTE_CACHE_MB beyond the file being read: the least recently read give up their oldest
    bytes first (a mixture of 300 files kept open would otherwise hold 16 MB each)."""
    from robotempo.fs import blockfile

    monkeypatch.setenv("ROBOTEMPO_REMOTE_CACHE_MB", "1")
    budget, own = 1 << 20, 2 * 16 * 32_768  # each file: 16 blocks of 32 KB and as many bytes of ranges
    monkeypatch.setattr(blockfile, "_shared", blockfile._Shared())  # this test's files only
    shared = blockfile._shared
    rng = np.random.default_rng(3)
    datas = [rng.integers(0, 256, 3_000_000, dtype=np.uint8).tobytes() for _ in range(6)]
    files = [BlockFile(_Counting(d), f"mem{i}", block_size=32_768, blocks=16) for i, d in enumerate(datas)]

    def held() -> list[int]:
        return [sum(map(len, f._blocks.values())) + f._ranges.held for f in files]

    # Each file alone fills its own budget (a long pass over it): 6 x 1 MB, one file kept beyond 1 MB.
    for f, d in zip(files, datas):
        for start in range(0, 3_000_000, 100_000):
            f.seek(start)
            got = b""
            while len(got) < 40_000:  # reads may be short
                got += f.read(40_000 - len(got))
            assert got == d[start : start + 40_000]
        assert f.prefetch([(2_000_000, 2_400_000)]) == 1
        f.seek(2_000_000)
        assert f.read(100_000) == d[2_000_000:2_100_000]
        assert 0 < held()[files.index(f)] <= own
        assert sum(held()) <= budget + own and shared.held == sum(held())
    # The file read last kept its bytes; the least recently read were emptied first.
    assert held()[-1] == 16 * 32_768 + 400_000 and held()[0] == 0, held()
    # Random reads over all of them: the bytes stay right, the sum stays bounded and counted.
    for _ in range(300):
        i = int(rng.integers(0, 6))
        at = int(rng.integers(0, 2_900_000))
        files[i].seek(at)
        got = files[i].read(int(rng.integers(1, 70_000)))
        assert got == datas[i][at : at + len(got)] and got
        assert sum(held()) <= budget + own and shared.held == sum(held())
    # Only files holding bytes are in the shedding order (a charge walks no emptied file).
    assert all(e.bytes > 0 for e in list(shared.order.values())[:-1])
    # A closed file, one dropped without a close, and one the garbage collector frees from a cycle (its weak
    # reference cleared before its close runs: a store failure's traceback holds the file) leave the count.
    files.pop().close()
    del f
    files.pop()
    assert shared.held == sum(held()) and len(shared.files) == 4
    cyclic = files.pop()
    cyclic.loop = cyclic
    del cyclic
    gc.collect()
    assert shared.held == sum(held()) > 0 and len(shared.files) == 3
    for f in files:
        f.close()
    assert shared.held == 0 and not shared.files


def test_blockfile_budget_holds_under_threads_reading_their_own_files(monkeypatch):
    """A worker's decode threads each read their own file while the others shed its bytes: every read's
    bytes stay right and the count stays exact."""
    import threading

    from robotempo.fs import blockfile

    monkeypatch.setenv("ROBOTEMPO_REMOTE_CACHE_MB", "1")
    monkeypatch.setattr(blockfile, "_shared", blockfile._Shared())
    rng = np.random.default_rng(4)
    datas = [rng.integers(0, 256, 2_000_000, dtype=np.uint8).tobytes() for _ in range(4)]
    files = [BlockFile(_Counting(d), f"mem{i}", block_size=16_384, blocks=32) for i, d in enumerate(datas)]
    wrong: list[tuple] = []

    def reader(i: int) -> None:
        r = np.random.default_rng(10 + i)
        for _ in range(400):
            at = int(r.integers(0, 1_990_000))
            if r.random() < 0.2:
                files[i].prefetch([(at, at + 200_000)])
            files[i].seek(at)
            got = files[i].read(int(r.integers(1, 50_000)))
            if not got or got != datas[i][at : at + len(got)]:
                wrong.append((i, at, len(got)))

    threads = [threading.Thread(target=reader, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not wrong
    held = [f._bytes() for f in files]
    assert blockfile._shared.held == sum(held) <= (1 << 20) + 2 * 32 * 16_384, held
    for f in files:
        f.close()
    assert blockfile._shared.held == 0


def test_a_fork_waits_for_the_store_operations_under_way():
    """pyarrow's S3 client holds a lock shared by every operation under way: a child forked during one
    inherits it held and its first client waits forever. A fork waits until none is under way, and holds new
    ones back until it is done."""
    import threading
    import time

    from robotempo.fs import store

    started, log = threading.Event(), []

    def slow() -> str:
        started.set()
        time.sleep(0.5)
        log.append(("op done", time.monotonic()))
        return "ok"

    t = threading.Thread(target=lambda: log.append(("result", store.within_deadline(slow, "s3://b/x"))))
    t.start()
    assert started.wait(10)
    pid = os.fork()
    if pid == 0:  # the child: no operation of its own under way, none held back
        os._exit(0 if store._fork_gate.busy == 0 and not store._fork_gate.forking else 1)
    forked = time.monotonic()
    _, status = os.waitpid(pid, 0)
    t.join()
    assert os.waitstatus_to_exitcode(status) == 0
    assert log[0][0] == "op done" and log[0][1] <= forked and ("result", "ok") in log
    assert store._fork_gate.busy == 0 and not store._fork_gate.forking
    assert store.within_deadline(lambda: "again", "s3://b/x") == "again"  # new operations run after the fork


def test_blockfile_budget_starts_empty_in_a_forked_child(monkeypatch):
    from robotempo.fs import blockfile

    f = BlockFile(_Counting(bytes(200_000)), "mem", block_size=4096, blocks=8)
    assert f.read(10_000) and blockfile._shared.held > 0
    pid = os.fork()
    if pid == 0:  # the child: the parent's files are not its own, their bytes not in its count
        os._exit(0 if blockfile._shared.held == 0 and not blockfile._shared.files else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    f.close()


def test_blockfile_prefetch_error_is_typed_and_leaves_the_file_usable(monkeypatch):
    # A refused connection is retried until the deadline once the store has answered in this process (an
    # earlier test's store did): a short deadline keeps this test's wait short whatever ran before it.
    monkeypatch.setenv("ROBOTEMPO_S3_DEADLINE_S", "2")
    data = bytes(range(256)) * 400

    class Flaky(_Counting):
        fail = True

        def read_at(self, n: int, offset: int) -> bytes:
            if self.fail and offset >= 50_000:
                raise OSError("AWS Error NETWORK_CONNECTION during GetObject operation: curlCode: 7")
            return super().read_at(n, offset)

    source = Flaky(data)
    f = BlockFile(source, "s3://b/ds/videos/x.mp4", block_size=1000, blocks=50, hole=1000)
    with pytest.raises(StorageError, match="s3://b/ds/videos/x.mp4"):
        f.prefetch([(1_000, 2_000), (60_000, 61_000)])
    source.fail = False
    assert f.prefetch([(60_000, 61_000)]) == 1
    f.seek(60_000)
    assert f.read(1_000) == data[60_000:61_000]


def test_blockfile_reads_that_get_no_answer_fail_typed_at_the_deadline(monkeypatch):
    """A store that never answers: prefetches and block reads give up at ROBOTEMPO_S3_DEADLINE_S with a
    StorageError naming the file, whatever the client's own retries and timeouts would take."""
    import threading
    import time

    release = threading.Event()

    class Silent(_Counting):
        def read_at(self, n: int, offset: int) -> bytes:
            release.wait(30)  # the request hangs until the test ends
            return super().read_at(n, offset)

    monkeypatch.setenv("ROBOTEMPO_S3_DEADLINE_S", "0.5")
    f = BlockFile(Silent(bytes(100_000)), "s3://b/ds/videos/x.mp4", block_size=1000, blocks=50, hole=1000)
    try:
        for attempt in (lambda: f.prefetch([(0, 10), (50_000, 50_010)]), lambda: f.read(100)):
            started = time.monotonic()
            with pytest.raises(StorageError, match="did not answer within 0.5 s") as e:
                attempt()
            assert time.monotonic() - started < 10
            assert "s3://b/ds/videos/x.mp4" in str(e.value) and "ROBOTEMPO_S3_DEADLINE_S" in str(e.value)
    finally:
        release.set()  # the abandoned requests end and free the pool


def test_blockfile_over_a_real_file(tmp_path):
    path = tmp_path / "x.bin"
    path.write_bytes(os.urandom(70_000))
    f = BlockFile(pafs.LocalFileSystem().open_input_file(str(path)), path, block_size=8192, blocks=2)
    f.seek(65_000)
    assert f.read() == path.read_bytes()[65_000:]
    f.close()
    assert f.closed


def test_other_schemes_go_through_fsspec(v30_dataset):
    """A `memory://` root (fsspec's in-process filesystem) serves the same items as the local folder."""
    fsspec = pytest.importorskip("fsspec")
    import torch

    from robotempo import LeRobotDataset

    mem = fsspec.filesystem("memory")
    mem.put(str(v30_dataset), "/robotempo-fs-test/ds", recursive=True)
    try:
        remote = LeRobotDataset(
            "m", root="memory://robotempo-fs-test/ds", speed_labels=False, episodes=[2, 7]
        )
        local = LeRobotDataset("m", root=v30_dataset, speed_labels=False, episodes=[2, 7])
        rows = list(range(len(local)))
        got, want = remote.__getitems__(rows).stacked, local.__getitems__(rows).stacked
        assert remote.root == "memory://robotempo-fs-test/ds"
        assert all(torch.equal(got[k], v) for k, v in want.items() if isinstance(v, torch.Tensor))
    finally:
        mem.rm("/robotempo-fs-test", recursive=True)


class _ClientError(Exception):
    """What an fsspec backend's HTTP or SDK client raises: not an OSError."""


def test_a_backend_failure_that_is_not_an_oserror_is_a_storage_error_naming_the_file(v30_dataset):
    """fsspec backends raise their client's exceptions (gcsfs's HttpError, an httpx ConnectError): they
    reached the user untyped, and the CLI called them an unexpected error inside robotempo (QA)."""
    fsspec = pytest.importorskip("fsspec")
    from fsspec.implementations.memory import MemoryFileSystem

    from robotempo import LeRobotDataset
    from robotempo.cli import main

    class Flaky(MemoryFileSystem):
        protocol = "robotempoflaky"
        store: dict = {}
        pseudo_dirs = [""]
        failing: str | None = None

        def info(self, path, **kwargs):
            if Flaky.failing == "info":
                raise _ClientError("403 Forbidden: the token lacks storage.objects.get")
            return super().info(path, **kwargs)

        def _open(self, path, mode="rb", **kwargs):
            f = super()._open(path, mode, **kwargs)
            if Flaky.failing == "read" and "r" in mode:

                def read(*args, **kwargs):
                    raise _ClientError("503 Service Unavailable")

                f.read = read
            return f

    fsspec.register_implementation(Flaky.protocol, Flaky, clobber=True)
    Flaky().put(str(v30_dataset), "/bucket/ds", recursive=True)
    url = f"{Flaky.protocol}://bucket/ds"
    assert len(LeRobotDataset("x", root=url, speed_labels=False)) > 0
    for failing, said in (("info", "403 Forbidden"), ("read", "503 Service Unavailable")):
        Flaky.failing = failing
        message = rf"{url}/\S+: the store failed the request \(_ClientError: {said}"
        with pytest.raises(StorageError, match=message):
            LeRobotDataset("x", root=url, speed_labels=False)
        assert main(["info", url]) == 2
    Flaky.failing = None


# -- planned ranged reads of parquet files in an object store (fs/parquet_ranges.py) ----------------------
def test_plan_joins_near_chunks_and_leaves_camera_bytes_between_numeric_chunks_unread():
    from robotempo.fs.parquet_ranges import MAX_SPAN, SMALL_GAP, plan

    hole = 1 << 20
    # LeRobot's meta/episodes: the wanted columns of each row group, a few KB of other columns between.
    meta = [(g * 20_000 + c * 300, g * 20_000 + c * 300 + 200) for g in range(500) for c in range(7)]
    assert plan(meta, hole) == [(0, 499 * 20_000 + 6 * 300 + 200)]
    # A data file with a camera: 4 KB of numeric chunks, then 300 KB of images, per episode.
    numeric = [(g * 304_000, g * 304_000 + 4_000) for g in range(50)]
    assert plan(numeric, hole) == numeric
    # Far apart but each large: a gap below the bytes already needed (and below `hole`) is joined.
    big = [(0, 600_000), (900_000, 1_500_000), (1_500_000 + hole, 2_000_000 + hole)]
    assert plan(big, hole) == [(0, 1_500_000), (1_500_000 + hole, 2_000_000 + hole)]
    # Overlaps and duplicates join; no request grows past MAX_SPAN through joining.
    assert plan([(10, 20), (15, 30), (10, 20), (30, 31)], hole) == [(10, 31)]
    step = MAX_SPAN // 4
    wide = [(i * step, i * step + step - SMALL_GAP // 2) for i in range(8)]
    spans = plan(wide, hole)
    assert len(spans) == 2 and all(hi - lo <= MAX_SPAN for lo, hi in spans)
    assert plan([(0, 2 * MAX_SPAN)], hole) == [(0, 2 * MAX_SPAN)]  # one chunk larger than a span: as is


def test_a_scheme_fsspec_cannot_read_is_a_config_error():
    """fsspec is installed (torch needs it) but not every backend: a gs:// root raised fsspec's bare
    ImportError, which the CLI reported as a bug inside robotempo."""
    import importlib.util

    with pytest.raises(ConfigError, match=r"nosuch://x/y: fsspec has no filesystem for nosuch://"):
        _ = DatasetRoot("nosuch://x/y").fs
    if importlib.util.find_spec("gcsfs") is None:
        with pytest.raises(ConfigError, match=r"gs://bucket/ds: .* gs backend is not installed .*gcsfs"):
            _ = DatasetRoot("gs://bucket/ds").fs


def test_a_hub_url_is_refused_with_the_download_to_do_instead(tmp_path):
    """With huggingface_hub installed, fsspec reads hf:// over the network: offline, the CLI said 'an
    unexpected error inside robotempo' about an HTTP client's ConnectError (QA, the [hub] extra)."""
    from robotempo import LeRobotDataset
    from robotempo.cli import main

    with pytest.raises(ConfigError, match=r"'hf://datasets/lab/ds': .* huggingface-cli download .* as root"):
        LeRobotDataset("lab/ds", root="hf://datasets/lab/ds")
    assert main(["info", "hf://datasets/lab/ds"]) == 2


def test_bench_never_runs_a_suite_of_another_project_above_an_installed_package(tmp_path, monkeypatch):
    """`robotempo bench` looked for benchmarks/run_all.py in every folder above the installed package and ran
    the first one found: a project's own benchmarks/ above its .venv (QA, a wheel install)."""
    import robotempo.cli.bench as bench

    project = tmp_path / "project"
    (project / "benchmarks").mkdir(parents=True)
    for name in ("run_all.py", "suite.py"):
        (project / "benchmarks" / name).write_text("raise SystemExit('must not run')\n")
    installed = project / ".venv" / "lib" / "python3.11" / "site-packages" / "robotempo" / "cli" / "bench.py"
    monkeypatch.setattr(bench, "__file__", str(installed))
    monkeypatch.chdir(tmp_path)
    assert bench.find_suite() is None
    monkeypatch.chdir(project)  # the current folder is where a user says the suite is
    assert bench.find_suite() == project / "benchmarks" / "run_all.py"
