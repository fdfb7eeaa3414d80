"""The peers' side of a measurement: one fresh process inside a peer venv, public APIs only.

    . /tmp/peers/env_lerobot.sh; /tmp/peers/venv/bin/python benchmarks/peer_side/worker.py --lib lerobot ...
    . /tmp/peers/env_opentau.sh; /tmp/peers/venv_tau/bin/python benchmarks/peer_side/worker.py --lib opentau

Libraries:
  lerobot      LeRobot 0.6.1 `LeRobotDataset` (reads v3.0 only)
  opentau      OpenTau 0.14.0 `LeRobotDataset`, `standardize=False`, no silent retry on another index
  to_table     the seed recipe: `pyarrow.dataset(paths).to_table(filter=episode_index.isin(...))` wrapped in
               `datasets.Dataset` (paths: every data file, from info.json's `data_path` template)
  arrow_cache  the seed recipe: `datasets.load_dataset("parquet", data_files=<the selection's files>)`
The recipes need only `datasets` and `pyarrow`, which both peer venvs have. See ../tasks.py for the tasks.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tasks import Library, main  # noqa: E402


def _info(root) -> dict:
    return json.loads((Path(root) / "meta" / "info.json").read_text())


def data_files(root, episodes: list[int] | None) -> list[str]:
    """Data files of the selection: per-episode files (v2.1) by template, else every file (v3.0 / all)."""
    info = _info(root)
    template = info["data_path"]
    if episodes is not None and "{episode_index" in template:
        size = int(info.get("chunks_size", 1000))
        return [
            str(Path(root) / template.format(episode_chunk=e // size, episode_index=e))
            for e in sorted(episodes)
        ]
    pattern = re.sub(r"\{[^}]*\}", "*", template)
    return sorted(str(p) for p in Path(root).glob(pattern))


def _versions(*names: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    out = []
    for n in names:
        try:
            out.append(f"{n} {version(n)}")
        except PackageNotFoundError:
            pass
    return ", ".join(out)


class _Recipe(Library):
    def version(self) -> str:
        return _versions("datasets", "pyarrow")

    def full_pass(self, ds) -> int:
        rows = 0
        for batch in ds.iter(batch_size=256):
            rows += len(next(iter(batch.values())))
        return rows


class ToTable(_Recipe):
    name = "to_table"

    def load(self) -> None:
        import datasets
        import pyarrow.dataset as pa_ds

        self._datasets, self._pa_ds = datasets, pa_ds

    def open(self, root, episodes, delta_timestamps, **kw):
        pa_ds = self._pa_ds
        dataset = pa_ds.dataset(data_files(root, None), format="parquet")
        flt = None if episodes is None else pa_ds.field("episode_index").isin(sorted(episodes))
        return self._datasets.Dataset(dataset.to_table(filter=flt))

    def extras(self, ds) -> dict:
        import pyarrow as pa

        return {"table_nbytes": ds.data.nbytes, "arrow_allocated": pa.total_allocated_bytes(),
                "arrow_pool": pa.default_memory_pool().backend_name}  # fmt: skip


class ArrowCache(_Recipe):
    name = "arrow_cache"

    def load(self) -> None:
        import datasets

        self._datasets = datasets

    def open(self, root, episodes, delta_timestamps, **kw):
        return self._datasets.load_dataset("parquet", data_files=data_files(root, episodes), split="train")


class LeRobot(Library):
    name = "lerobot"

    def version(self) -> str:
        return _versions("lerobot", "datasets", "torchcodec")

    def load(self) -> None:
        from lerobot.datasets.lerobot_dataset import LeRobotDataset

        self._cls = LeRobotDataset

    def open(self, root, episodes, delta_timestamps, **kw):
        return self._cls(
            f"bench/{Path(root).name}", root=root, episodes=episodes, delta_timestamps=delta_timestamps,
            video_backend=kw.get("video_backend"),
        )  # fmt: skip


class OpenTau(Library):
    name = "opentau"

    def version(self) -> str:
        return _versions("opentau", "datasets", "torchcodec")

    def load(self) -> None:
        from opentau.configs.default import DatasetMixtureConfig
        from opentau.configs.train import TrainPipelineConfig
        from opentau.datasets.lerobot_dataset import LeRobotDataset

        self._cls = LeRobotDataset
        self._cfg = TrainPipelineConfig(
            dataset_mixture=DatasetMixtureConfig(), batch_size=1, resolution=(96, 96), num_cams=1,
            max_state_dim=14, max_action_dim=14, action_chunk=50,
        )  # fmt: skip

    def open(self, root, episodes, delta_timestamps, **kw):
        ds = self._cls(
            self._cfg, f"bench/{Path(root).name}", root=root, episodes=episodes,
            delta_timestamps=delta_timestamps, video_backend=kw.get("video_backend"), standardize=False,
        )  # fmt: skip
        ds._total_rand_attempts = 0  # fail loudly instead of retrying a random other index
        return ds


if __name__ == "__main__":
    sys.exit(main({"lerobot": LeRobot, "opentau": OpenTau, "to_table": ToTable, "arrow_cache": ArrowCache}))
