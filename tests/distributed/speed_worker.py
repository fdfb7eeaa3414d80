"""One rank of a torchrun job that loads speed percentiles for a list of prepared scenarios (R2).

    torchrun --nproc_per_node 2 speed_worker.py CONFIG.json

CONFIG: {"out": folder, "process_group": "before" | "after", "raise_errors": bool, "scenarios": [
          {"name", "root", "fixture", "cache_dir", "calls": 1 | 2}]}
`root` and `cache_dir` may contain "{node}" (torchrun's GROUP_RANK), to give each node its own disk.

Per rank this writes `<out>/log_rank<R>.txt` (every robotempo WARNING, tagged with its scenario),
`<out>/writes_rank<R>.jsonl` (every call of the percentile writer: path, success) and
`<out>/result_<scenario>_rank<R>.json` (source, labels, population reads, or the error raised).

With "process_group": "before" the gloo group exists during the loads and, after every scenario, every rank
meets the others in a barrier and an all_gather of the scenario name: if the library had left a rank inside a
collective, or skipped one, these would hang or mismatch (and time out after 30 s instead of hanging forever).
With "after", the loads run with only RANK / LOCAL_RANK set (a dataset built before `init_process_group`).
"""

from __future__ import annotations

import json
import logging
import os
import sys
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import torch.distributed as dist  # noqa: E402
from speed_support import load_fixture  # noqa: E402

import robotempo.speed.store as store  # noqa: E402
from robotempo.errors import SpeedLabelError  # noqa: E402

RANK = int(os.environ["RANK"])
NODE = int(os.environ.get("GROUP_RANK", "0"))
CURRENT = {"scenario": "-"}


class _ScenarioTag(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.scenario = CURRENT["scenario"]
        return True


def _instrument_writes(out: Path) -> None:
    real = store.write_percentiles_file

    def counted(path, rows):
        ok = False
        try:
            real(path, rows)
            ok = True
        finally:
            with open(out / f"writes_rank{RANK}.jsonl", "a") as f:
                f.write(
                    json.dumps({"scenario": CURRENT["scenario"], "node": NODE, "path": str(path), "ok": ok})
                    + "\n"
                )

    store.write_percentiles_file = counted


def _sync(name: str) -> None:
    if dist.is_initialized():
        dist.barrier()
        names: list[str | None] = [None] * dist.get_world_size()
        dist.all_gather_object(names, name)
        assert set(names) == {name}, f"ranks are out of step: {names}"


def _run(scenario: dict, out: Path, raise_errors: bool) -> None:
    CURRENT["scenario"] = scenario["name"]
    population, view, names = load_fixture(Path(scenario["fixture"]))
    reads = []

    def population_reader():
        reads.append(1)
        return population

    results = []
    for call in range(scenario.get("calls", 1)):
        try:
            sp = store.load_or_compute_percentiles(
                scenario["root"].format(node=NODE),
                names,
                population_reader,
                view,
                cache_dir=scenario["cache_dir"].format(node=NODE),
                recompute=scenario.get("recompute", False),
            )
            labels = sp.labels(population.task_index, population.length).tolist()
            results.append(
                {
                    "source": sp.source,
                    "labels": labels,
                    "population_reads": len(reads),
                    "path": None if sp.path is None else str(sp.path),
                }
            )
        except SpeedLabelError as e:
            results.append({"error": type(e).__name__, "message": str(e)})
            (out / f"result_{scenario['name']}_rank{RANK}.json").write_text(json.dumps(results))
            if raise_errors:
                raise
        _sync(f"{scenario['name']}#{call}")
    (out / f"result_{scenario['name']}_rank{RANK}.json").write_text(json.dumps(results))


def main() -> None:
    config = json.loads(Path(sys.argv[1]).read_text())
    out = Path(config["out"])
    handler = logging.FileHandler(out / f"log_rank{RANK}.txt")
    handler.addFilter(_ScenarioTag())
    handler.setFormatter(logging.Formatter("%(scenario)s\t%(levelname)s\t%(message)s"))
    logger = logging.getLogger("robotempo")
    logger.addHandler(handler)
    logger.setLevel(logging.WARNING)
    _instrument_writes(out)
    if config["process_group"] == "before":
        dist.init_process_group("gloo", timeout=timedelta(seconds=30))
    for scenario in config["scenarios"]:
        _run(scenario, out, config.get("raise_errors", False))
    if config["process_group"] == "after":
        dist.init_process_group("gloo", timeout=timedelta(seconds=30))
    _sync("end")
    (out / f"done_rank{RANK}").write_text("ok")
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
