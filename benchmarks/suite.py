"""The benchmark definitions: which library runs which task on which corpus, how often, and what is checked.

Each `p*` method returns one target's section: rows (one per library x corpus, medians over fresh processes),
checks (the target, the measured value, PASS/FAIL) and notes. Every figure is measured side by side in the
same run, with the rounds of the libraries interleaved; comparisons are ratios.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import corpora
from harness import Harness, median, total_written

MB = 2**20


@dataclass(frozen=True)
class Scale:
    name: str
    factor: float  # of the full corpus sizes
    r_open: int  # fresh processes per P2 figure
    r_p3: int  # fresh processes per P3 figure
    r_items: int  # fresh processes per P4 figure
    budget_s: float  # CPU seconds timed per P4 process
    p8_max_samples: int  # DataLoader pass length cap


SCALES = {
    "quick": Scale("quick", 0.05, r_open=1, r_p3=2, r_items=1, budget_s=1.5, p8_max_samples=10**9),
    "full": Scale("full", 1.0, r_open=3, r_p3=5, r_items=3, budget_s=4.0, p8_max_samples=40_000),
}

CLOCK_NOTE = (
    "Timing checks are given on wall time and on the process's CPU time (user + sys, all threads): on this "
    "shared 2-core machine other jobs take the cores, so wall time measures their load as much as the "
    "library; rounds are interleaved so that every library shares it."
)
P1_NOTES = [
    "Fresh HF_HOME, TMPDIR and XDG_CACHE_HOME per process; the dataset root is a copy (meta/ copied, data "
    "hard-linked) without meta/speed_percentiles.jsonl, so the first open writes it once (column "
    "'speed file', allowed by the target); robotempo opens V264 a 2nd time, with the file present, to show 0 "
    "bytes in all.",
    "Pass: robotempo reads every row through __getitems__ (256 rows a call); the peers ds[i] for every i; "
    "the recipes Dataset.iter(batch_size=256).",
]
P4A_NOTES = [
    "One thread (torch.set_num_threads(1), OMP_NUM_THREADS=1, Arrow cpu count 1); the same seeded random "
    "indices for every library; each process times about budget_s CPU seconds of items.",
    CLOCK_NOTE,
    "On T every library decodes the current frame's PNG (the camera has no delta_timestamps); LeRobot 0.6.1 "
    "reads v3.0 only, so it is compared on Vtab (the same episodes, v3.0).",
]


def _spread(results: list[dict], key: str) -> str:
    v = [r[key] for r in results if key in r and "error" not in r]
    return f"{min(v):.3g}-{max(v):.3g}" if len(v) > 1 else ""


def _error(results: list[dict]) -> str | None:
    return next((r["error"] for r in results if "error" in r), None)


def ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def check(what: str, value, target: str, ok: bool, shown: str | None = None, info: bool = False) -> dict:
    """One verdict line; `pass` is None (n/a) when the value could not be measured, "info" when the figure
    is shown for information (no target, or a target defined on the full-scale corpora only)."""
    return {
        "what": what,
        "value": shown if shown is not None or value is None else value,
        "target": target,
        "pass": None if value is None else "info" if info else bool(ok),
    }


def at_least(what: str, x: float | None, floor: float, fmt: str = "{:.1f}x", info: bool = False) -> dict:
    target = f">= {fmt.format(floor)}" + (" (full scale)" if info else "")
    return check(what, x, target, x is not None and x >= floor, _fmt(fmt, x), info)


def at_most(
    what: str, x: float | None, ceiling: float, fmt: str = "{:.3f}", strict: bool = False, info: bool = False
) -> dict:
    ok = x is not None and (x < ceiling if strict else x <= ceiling)
    target = f"{'<' if strict else '<='} {fmt.format(ceiling)}" + (" (full scale)" if info else "")
    return check(what, x, target, ok, _fmt(fmt, x), info)


def _fmt(fmt: str, x: float | None) -> str | None:
    return None if x is None else fmt.format(x)


class Suite:
    def __init__(self, scale: Scale, harness: Harness, base: Path, peers: bool, log: Callable = print):
        self.scale, self.h, self.base, self.peers, self.log = scale, harness, Path(base), peers, log
        self.copies = harness.workdir / "copies"
        self.copies.mkdir(parents=True, exist_ok=True)
        self._warm: dict[tuple[str, str], dict] = {}
        self._roots: dict[str, Path] = {}
        self.full_only = scale.factor < 1  # P2 and P3 targets are defined on the full T and S

    # -- corpora and copies ---------------------------------------------------------------------------------
    def corpus(self, name: str) -> Path:
        if name not in self._roots:
            self._roots[name] = corpora.ensure(name, self.scale.factor, self.base)
        return self._roots[name]

    def info(self, name: str) -> dict:
        self.corpus(name)
        return corpora.record(name, self.scale.factor, self.base)

    def k(self, name: str) -> int:
        return self.info(name)["episodes"] // 2

    def peer_root(self, lib: str, name: str) -> Path:
        """OpenTau writes its percentile file into what it opens: it gets a hard-linked copy of its own."""
        if lib != "opentau":
            return self.corpus(name)
        dst = self.copies / f"{name}.opentau"
        if not dst.exists():
            corpora.copy_for_opening(self.corpus(name), dst)
        return dst

    def hf_home(self, lib: str, name: str) -> dict:
        """A per-(library, corpus) HF_HOME kept for the run: its Arrow cache is written once, then reused."""
        return {} if lib == "robotempo" else {"hf_home": self.h.shared_dir(f"{lib}-{name}")}

    def warm(self, lib: str, name: str, episodes: list[int] | None) -> dict:
        """A first open that writes the library's one-time files (percentiles, Arrow cache); not a figure."""
        if (lib, name) not in self._warm:
            args = {"root": str(self.peer_root(lib, name)), "episodes": episodes}
            self._warm[(lib, name)] = self.h.run(lib, "open", args, **self.hf_home(lib, name))
        return self._warm[(lib, name)]

    def rounds(self, plan: list[tuple], n: int, make: Callable) -> dict[tuple, list[dict]]:
        """`n` rounds over `plan`, interleaved (A B C A B C ...); `make(entry)` -> (lib, task, args, kw)."""
        out: dict[tuple, list[dict]] = {e: [] for e in plan}
        for _ in range(n):
            for e in plan:
                lib, task, args, kw = make(e)
                out[e].append(self.h.run(lib, task, args, **kw))
        return out

    # -- P1 -------------------------------------------------------------------------------------------------
    def p1(self) -> dict:
        plan = [("robotempo", "T"), ("robotempo", "V264")]
        if self.peers:
            plan += [("opentau", "T"), ("arrow_cache", "T"), ("to_table", "T"), ("lerobot", "V264")]
        rows, raw = [], {}
        for lib, name in plan:
            copy = corpora.copy_for_opening(self.corpus(name), self.copies / f"{name}.p1.{lib}")
            runs = [self.h.run(lib, "pass", {"root": str(copy)}, watch_root=copy)]
            if lib == "robotempo" and name == "V264":  # again, with the percentile file present
                runs.append(self.h.run(lib, "pass", {"root": str(copy)}, watch_root=copy))
            shutil.rmtree(copy, ignore_errors=True)
            for n, r in enumerate(runs):
                raw[f"{lib}/{name}/{n}"] = r
                rows.append(_p1_row(lib + (" (2nd open)" if n else ""), name, r))
        checks = []
        for r in rows:
            if r["lib"].startswith("robotempo"):
                ok = r["total"] == 0 and r["rows"] is not None
                checks.append(check(f"{r['lib']} on {r['corpus']}: bytes written, speed file apart",
                                    r["total"], "0", ok))  # fmt: skip
            if "2nd open" in r["lib"]:
                total = (r["total"] or 0) + (r["speed_file"] or 0)
                checks.append(
                    check(f"{r['lib']} on {r['corpus']}: bytes written, all", total, "0", total == 0)
                )
            elif r["total"] is not None and not r["lib"].startswith("robotempo"):
                r["vs_robotempo"] = f"+{_human(r['total'])}" if r["total"] else "same (0)"
        return {"id": "P1", "title": "bytes written by open + one full pass", "rows": rows, "checks": checks,
                "raw": raw, "notes": P1_NOTES}  # fmt: skip

    # -- P2 -------------------------------------------------------------------------------------------------
    def p2(self) -> dict:
        info = self.info("T")
        plan = [("robotempo", "T")] + ([("to_table", "T"), ("opentau", "T")] if self.peers else [])
        if self.peers:
            self.warm("opentau", "T", None)

        def make(e):
            return e[0], "open", {"root": str(self.peer_root(*e))}, self.hf_home(*e)

        rows, raw = [], {}
        for (lib, name), runs in self.rounds(plan, self.scale.r_open, make).items():
            raw[lib] = runs
            delta = median(runs, "rss_delta")
            rows.append({
                "lib": lib, "corpus": name, "runs": len(runs), "rss_import": median(runs, "rss_import"),
                "rss_delta": delta, "pct_parquet": ratio(delta, info["parquet_bytes"]),
                "x_numeric": ratio(delta, info["numeric_bytes"]), "open_s": median(runs, "open_s"),
                "error": _error(runs),
            })  # fmt: skip
        rt = rows[0]["rss_delta"]
        for r in rows:
            r["vs_robotempo"] = ratio(r["rss_delta"], rt)
        limit = 1.5 * info["numeric_bytes"] + 50 * MB
        pct = rows[0]["pct_parquet"]
        scope = " (full scale)" if self.full_only else ""
        checks = [
            check("robotempo RSS after open / T parquet bytes", pct, f"<= 5%{scope}",
                  pct is not None and pct <= 0.05, _fmt("{:.2%}", pct), self.full_only),
            check("robotempo RSS after open vs 1.5 x numeric bytes + 50 MB", rt, f"<= {_human(limit)}{scope}",
                  rt is not None and rt <= limit, None if rt is None else _human(rt), self.full_only),
        ]  # fmt: skip
        notes = [
            f"T: {info['episodes']} episodes, {info['frames']} frames, parquet "
            f"{_human(info['parquet_bytes'])} in {info['parquet_files']} files; numeric columns "
            f"{_human(info['numeric_bytes'])}.",
            "RSS = VmRSS (what psutil reports) after gc, minus the RSS after the imports, same process.",
            "OpenTau's figure is with its Arrow cache already written (warm HF_HOME): the cache is "
            "memory-mapped, the best case for OpenTau.",
        ]
        if self.scale.factor < 1:
            notes.append("At this scale fixed costs (the parquet reader's first use, open file handles) "
                         "dominate; the 5% target is defined on the full T.")  # fmt: skip
        return {"id": "P2", "title": "resident memory after open of T (episodes=None)", "rows": rows,
                "checks": checks, "raw": raw, "corpus": info, "notes": notes}  # fmt: skip

    # -- P3 -------------------------------------------------------------------------------------------------
    def p3(self) -> dict:
        plan = []
        for v21, v30 in (("S1k", "S3_1k"), ("S", "S3")):
            plan += [("robotempo", v21), ("robotempo", v30)]
            if self.peers:
                plan += [("to_table", v21), ("opentau", v21), ("lerobot", v30)]
                self.warm("opentau", v21, [self.k(v21)])

        def make(e):
            return e[0], "open", {"root": str(self.peer_root(*e)), "episodes": [self.k(e[1])]}, {}

        rows, raw, wall, cpu = [], {}, {}, {}
        for (lib, name), runs in self.rounds(plan, self.scale.r_p3, make).items():
            raw[f"{lib}/{name}"] = runs
            wall[(lib, name)], cpu[(lib, name)] = median(runs, "open_s"), median(runs, "open_cpu_s")
            rows.append({
                "lib": lib, "corpus": name, "episodes": self.info(name)["episodes"],
                "files": self.info(name)["parquet_files"], "runs": len(runs), "open_s": wall[(lib, name)],
                "open_cpu_s": cpu[(lib, name)], "spread": _spread(runs, "open_s"),
                "import_s": median(runs, "import_s"), "error": _error(runs),
            })  # fmt: skip
        for r in rows:
            r["vs_robotempo"] = ratio(r["open_s"], wall.get(("robotempo", r["corpus"])))
            r["vs_robotempo_cpu"] = ratio(r["open_cpu_s"], cpu.get(("robotempo", r["corpus"])))
        checks = []
        for clock, t in (("wall", wall), ("CPU", cpu)):
            growth = ratio(t.get(("robotempo", "S")), t.get(("robotempo", "S1k")))
            what = f"robotempo open growth S1k -> S ({clock})"
            checks.append(at_most(what, growth, 2, "{:.2f}x", strict=True, info=self.full_only))
            for peer in ("to_table", "opentau"):
                x = ratio(t.get((peer, "S")), t.get(("robotempo", "S")))
                what = f"{peer} / robotempo open time on S ({clock})"
                checks.append(at_least(what, x, 20, info=self.full_only))
        s = self.info("S")
        notes = [
            f"episodes=[k], k = the middle episode; open timed in-process (imports apart), a fresh process "
            f"and HF_HOME per run, median of {self.scale.r_p3}; S: {s['episodes']} episodes in "
            f"{s['parquet_files']} files. The percentile file is present for every library (OpenTau: its "
            "own, from a first open).",
            CLOCK_NOTE
            + " The to_table recipe scans with several threads: its CPU time exceeds its wall time.",
            *self._speed_once(),
        ]
        return {"id": "P3", "title": "open time, episodes=[k]", "rows": rows, "checks": checks, "raw": raw,
                "notes": notes}  # fmt: skip

    def _speed_once(self) -> list[str]:
        """The one-time percentile computation: robotempo's open with the file absent minus present."""
        notes = []
        for name in ("S1k", "S"):
            copy = corpora.copy_for_opening(self.corpus(name), self.copies / f"{name}.nospeed")
            args = {"root": str(copy), "episodes": [self.k(name)]}
            absent = self.h.run("robotempo", "open", args)
            present = median(self.h.repeat(self.scale.r_p3, "robotempo", "open", args), "open_s")
            shutil.rmtree(copy, ignore_errors=True)
            if "open_s" in absent and present is not None:
                notes.append(
                    f"robotempo's one-time percentile computation on {name}: open {absent['open_s']:.3f} s "
                    f"with the file absent vs {present:.3f} s present "
                    f"({absent['open_s'] - present:+.3f} s, once)."
                )
            warm = self._warm.get(("opentau", name), {})
            if "open_s" in warm:
                notes.append(f"OpenTau's first open of {name} (its percentile file, cold cache): "
                             f"{warm['open_s']:.3f} s.")  # fmt: skip
        return notes

    # -- P4a / P4b ------------------------------------------------------------------------------------------
    def _item_runs(self, plan: list[tuple], task: str, extra: Callable = lambda e: {}) -> dict:
        def make(e):
            args = {"root": str(self.peer_root(e[0], e[1])), "budget_s": self.scale.budget_s, **extra(e)}
            return e[0], task, args, {"one_thread": True, **self.hf_home(e[0], e[1])}

        return self.rounds(plan, self.scale.r_items, make)

    def p4a(self) -> dict:
        plan = [("robotempo", "Ttab"), ("robotempo", "Vtab"), ("robotempo", "T")]
        if self.peers:
            plan += [("opentau", "Ttab"), ("lerobot", "Vtab"), ("opentau", "T")]
        rows, raw, cpu, wall = [], {}, {}, {}
        for (lib, name), runs in self._item_runs(plan, "items").items():
            raw[f"{lib}/{name}"] = runs
            cpu[(lib, name)], wall[(lib, name)] = median(runs, "rate_cpu"), median(runs, "rate")
            rows.append({
                "lib": lib, "corpus": name, "camera": "PNG decoded" if name == "T" else "none",
                "runs": len(runs), "rate": wall[(lib, name)], "rate_cpu": cpu[(lib, name)],
                "spread": _spread(runs, "rate_cpu"), "error": _error(runs),
            })  # fmt: skip
        for r in rows:
            if r["lib"] != "robotempo":
                r["robotempo_x"] = ratio(cpu.get(("robotempo", r["corpus"])), r["rate_cpu"])
                r["robotempo_x_wall"] = ratio(wall.get(("robotempo", r["corpus"])), r["rate"])
        checks = []
        for peer, name, floor in (("lerobot", "Vtab", 10), ("opentau", "Ttab", 10), ("opentau", "T", 0)):
            kind = "tabular" if floor else "PNG camera, for information"
            for clock, t in (("per CPU-s", cpu), ("wall", wall)):
                x = ratio(t.get(("robotempo", name)), t.get((peer, name)))
                what = f"robotempo / {peer} items/s, {kind} ({name}, {clock})"
                checks.append(
                    at_least(what, x, floor)
                    if floor
                    else check(what, x, "-", True, _fmt("{:.1f}x", x), info=True)
                )
        return {"id": "P4a", "title": "single items/s, random indices, state [-0.1, 0] + action chunk 50",
                "rows": rows, "checks": checks, "raw": raw, "notes": P4A_NOTES}  # fmt: skip

    def p4b(self) -> dict:
        plan = [
            ("robotempo", name, mode) for name in ("Ttab", "Vtab", "T") for mode in ("stacked", "default")
        ]
        rows, raw, cpu, wall = [], {}, {}, {}
        for (_, name, mode), runs in self._item_runs(plan, "batch", lambda e: {"mode": e[2]}).items():
            raw[f"{name}/{mode}"] = runs
            cpu[(name, mode)], wall[(name, mode)] = median(runs, "rate_cpu"), median(runs, "rate")
            rows.append({
                "lib": "robotempo", "corpus": name,
                "mode": "collate (.stacked)" if mode == "stacked" else "default_collate(items)",
                "runs": len(runs), "rate": wall[(name, mode)], "rate_cpu": cpu[(name, mode)],
                "spread": _spread(runs, "rate_cpu"), "error": _error(runs),
            })  # fmt: skip
        checks = [
            at_least(f"robotempo batched samples/s, {name}, collate ({clock})", t[(name, "stacked")], 100_000,
                     "{:,.0f}")
            for name in ("Ttab", "Vtab") for clock, t in (("per CPU-s", cpu), ("wall", wall))
        ]  # fmt: skip
        notes = [
            "Batches of 256 seeded random indices, one thread. Neither peer has a batched fetch. T (PNG "
            "camera) is shown for information: its cost is the PNG decode of 256 frames per batch.",
            CLOCK_NOTE,
        ]
        return {"id": "P4b", "title": "batched __getitems__ (batch 256), same queries, one thread",
                "rows": rows, "checks": checks, "raw": raw, "notes": notes}  # fmt: skip

    # -- P8 -------------------------------------------------------------------------------------------------
    def p8(self) -> dict:
        plan = [("robotempo", "Vtab"), ("robotempo", "T")] + ([("lerobot", "Vtab")] if self.peers else [])
        rows, raw = [], {}
        for lib, name in plan:
            args = {"root": str(self.peer_root(lib, name)), "batch_size": 64, "workers": 2,
                    "max_samples": self.scale.p8_max_samples}  # fmt: skip
            r = raw[f"{lib}/{name}"] = self.h.run(lib, "loader", args, **self.hf_home(lib, name))
            keys = ("samples", "rate", "pss_10", "pss_end", "pss_ratio", "rss_10", "rss_end", "rss_ratio")
            rows.append({"lib": lib, "corpus": name, "epoch": r.get("epoch_samples"),
                         "error": r.get("error"), **{k: r.get(k) for k in keys}})  # fmt: skip
        checks = [
            at_most(f"robotempo {m.upper()} end / at 10% of the pass, {r['corpus']}", r[f"{m}_ratio"], 1.1)
            for r in rows if r["lib"] == "robotempo" for m in ("pss", "rss")
        ]  # fmt: skip
        notes = [
            "PSS from /proc/<pid>/smaps_rollup and RSS from /proc/<pid>/status, summed over the main process "
            "and its workers at 50 marks of the pass; '@10%' is the median of the marks in [8%, 12%], 'end' "
            "the median of those in [96%, 100%] (workers alive), so one batch in flight does not decide.",
            f"Pass: the whole epoch, capped at {self.scale.p8_max_samples:,} samples; the benchmark query.",
        ]
        return {"id": "P8", "title": "memory over a DataLoader pass (2 fork workers, batch 64, shuffled)",
                "rows": rows, "checks": checks, "raw": raw, "notes": notes}  # fmt: skip


def _p1_row(lib: str, name: str, r: dict) -> dict:
    w = r.get("written", {})
    return {
        "lib": lib, "corpus": name, "rows": r.get("rows"), "seconds": r.get("open_s", 0) + r.get("pass_s", 0),
        "hf_home": w.get("HF_HOME", {}).get("bytes"), "tmpdir": w.get("TMPDIR", {}).get("bytes"),
        "xdg": w.get("XDG_CACHE_HOME", {}).get("bytes"), "root": w.get("root", {}).get("bytes"),
        "speed_file": w.get("root", {}).get("ignored_bytes"), "total": total_written(r),
        "io_write_bytes": r.get("io_write_bytes"), "error": r.get("error"),
    }  # fmt: skip


def _human(n: float | None) -> str:
    if n is None:
        return "-"
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)
