"""Rich tables, the JSON record and the PNG chart of one benchmark run."""

from __future__ import annotations

import json
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table
from suite import _human


def _b(v):
    return _human(v) if v is not None else "-"


def _s(v):
    return f"{v:.3f}" if v is not None else "-"


def _rate(v):
    return f"{v:,.0f}" if v is not None else "-"


def _x(v):
    return f"{v:.1f}x" if v is not None else "-"


def _pct(v):
    return f"{100 * v:.2f}%" if v is not None else "-"


def _plain(v):
    return "-" if v is None else str(v)


COLUMNS = {
    "P1": [("lib", "library", _plain), ("corpus", "corpus", _plain), ("rows", "rows read", _plain),
           ("seconds", "open+pass s", _s), ("hf_home", "HF_HOME", _b), ("tmpdir", "TMPDIR", _b),
           ("xdg", "XDG cache", _b), ("root", "dataset root", _b), ("speed_file", "speed file (once)", _b),
           ("total", "total", _b), ("vs_robotempo", "vs robotempo", _plain)],
    "P2": [("lib", "library", _plain), ("corpus", "corpus", _plain), ("runs", "runs", _plain),
           ("rss_import", "RSS after import", _b), ("rss_delta", "RSS after open - import", _b),
           ("pct_parquet", "% of parquet", _pct), ("x_numeric", "x numeric bytes", _x),
           ("vs_robotempo", "vs robotempo", _x), ("open_s", "open s", _s)],
    "P3": [("lib", "library", _plain), ("corpus", "corpus", _plain), ("episodes", "episodes", _plain),
           ("files", "parquet files", _plain), ("runs", "runs", _plain), ("open_s", "open s (median)", _s),
           ("spread", "min-max", _plain), ("open_cpu_s", "open CPU-s", _s), ("import_s", "import s", _s),
           ("vs_robotempo", "vs robotempo (wall)", _x), ("vs_robotempo_cpu", "(CPU)", _x)],
    "P4a": [("lib", "library", _plain), ("corpus", "corpus", _plain), ("camera", "camera", _plain),
            ("runs", "runs", _plain), ("rate", "items/s", _rate), ("rate_cpu", "items/CPU-s", _rate),
            ("spread", "min-max /CPU-s", _plain), ("robotempo_x", "robotempo is (CPU)", _x),
            ("robotempo_x_wall", "(wall)", _x)],
    "P4b": [("lib", "library", _plain), ("corpus", "corpus", _plain), ("mode", "collation", _plain),
            ("runs", "runs", _plain), ("rate", "samples/s", _rate), ("rate_cpu", "samples/CPU-s", _rate),
            ("spread", "min-max /CPU-s", _plain)],
    "P8": [("lib", "library", _plain), ("corpus", "corpus", _plain), ("samples", "samples", _plain),
           ("epoch", "epoch", _plain), ("rate", "samples/s", _rate), ("pss_10", "PSS @10%", _b),
           ("pss_end", "PSS end", _b), ("pss_ratio", "PSS ratio", lambda v: "-" if v is None else f"{v:.3f}"),
           ("rss_10", "RSS @10%", _b), ("rss_end", "RSS end", _b),
           ("rss_ratio", "RSS ratio", lambda v: "-" if v is None else f"{v:.3f}")],
}  # fmt: skip


def _verdict(ok) -> str:
    if ok == "info":
        return "[cyan]info[/]"
    return "[green]PASS[/]" if ok else ("[yellow]n/a[/]" if ok is None else "[bold red]FAIL[/]")


def print_section(section: dict, console: Console) -> None:
    cols = COLUMNS[section["id"]]
    t = Table(title=escape(f"{section['id']}: {section['title']}"), title_justify="left", show_lines=False)
    for _, header, _f in cols:
        t.add_column(
            header, justify="left" if header in ("library", "corpus", "camera", "collation") else "right"
        )
    for row in section["rows"]:
        t.add_row(*[escape(f(row.get(k))) for k, _, f in cols])
        if row.get("error"):
            t.add_row(f"[red]{escape(row['error'][:100])}[/]", *[""] * (len(cols) - 1))
    console.print(t)
    c = Table(show_header=True, box=None, padding=(0, 2))
    for h in ("check", "measured", "target", "verdict"):
        c.add_column(h)
    for ch in section["checks"]:
        c.add_row(escape(ch["what"]), escape(_plain(ch["value"])), escape(ch["target"]), _verdict(ch["pass"]))
    console.print(c)
    for n in section.get("notes", []):
        console.print(f"  [dim]- {escape(n)}[/]")
    console.print()


def print_summary(sections: list[dict], console: Console) -> None:
    t = Table(title="summary", title_justify="left")
    for h in ("target", "check", "measured", "target value", "verdict"):
        t.add_column(h)
    for s in sections:
        for ch in s["checks"]:
            t.add_row(
                s["id"],
                escape(ch["what"]),
                escape(_plain(ch["value"])),
                escape(ch["target"]),
                _verdict(ch["pass"]),
            )
    console.print(t)


def write_json(path: Path, record: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=1, default=str))


def write_png(path: Path, sections: dict[str, dict], title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 3, figsize=(17, 9.5))
    fig.suptitle(title)

    def bars(ax, labels, values, ylabel, log=False, fmt=str):
        values = [v if v is not None else 0 for v in values]
        colors = ["tab:green" if lab.startswith("robotempo") else "tab:gray" for lab in labels]
        ax.bar(range(len(values)), values, color=colors)
        ax.set_xticks(range(len(values)), labels, rotation=30, ha="right", fontsize=8)
        ax.set_ylabel(ylabel)
        if log and any(v > 0 for v in values):
            ax.set_yscale("symlog" if 0 in values else "log")
        for i, v in enumerate(values):
            ax.annotate(fmt(v), (i, v), ha="center", va="bottom", fontsize=7)

    def lab(r, extra=""):
        return f"{r['lib']}\n{r['corpus']}{extra}"

    if "P1" in sections:
        rows = sections["P1"]["rows"]
        bars(axes[0, 0], [lab(r) for r in rows], [(r["total"] or 0) / 2**20 for r in rows],
             "MB written (speed file apart)", fmt=lambda v: f"{v:.1f}")  # fmt: skip
        axes[0, 0].set_title("P1 bytes written, open + full pass")
    if "P2" in sections:
        rows = sections["P2"]["rows"]
        bars(axes[0, 1], [lab(r) for r in rows], [(r["rss_delta"] or 0) / 2**20 for r in rows],
             "MB RSS above imports", log=True, fmt=lambda v: f"{v:.0f}")  # fmt: skip
        axes[0, 1].set_title("P2 memory after open of T")
    if "P3" in sections:
        rows = sections["P3"]["rows"]
        bars(axes[0, 2], [lab(r) for r in rows], [r["open_s"] for r in rows], "open s, episodes=[k]",
             log=True, fmt=lambda v: f"{v:.3f}")  # fmt: skip
        axes[0, 2].set_title("P3 open time (S1k / S3_1k vs S / S3)")
    if "P4a" in sections:
        rows = sections["P4a"]["rows"]
        bars(axes[1, 0], [lab(r) for r in rows], [r["rate"] for r in rows], "items/s", log=True,
             fmt=lambda v: f"{v:,.0f}")  # fmt: skip
        axes[1, 0].set_title("P4a single items/s, one thread")
    if "P4b" in sections:
        rows = sections["P4b"]["rows"]
        short = {"collate (.stacked)": "collate", "default_collate(items)": "default"}
        bars(axes[1, 1], [lab(r, " " + short.get(r["mode"], r["mode"])) for r in rows],
             [r["rate"] for r in rows], "samples/s", log=True, fmt=lambda v: f"{v:,.0f}")  # fmt: skip
        axes[1, 1].axhline(100_000, color="tab:red", ls="--", lw=1)
        axes[1, 1].set_title("P4b batched samples/s (batch 256), target 100k")
    if "P8" in sections:
        ax = axes[1, 2]
        for key, r in sections["P8"].get("raw", {}).items():
            trace = r.get("trace") if isinstance(r, dict) else None
            if trace:
                ax.plot([m["fraction"] for m in trace], [m["pss"] / 2**20 for m in trace], marker="o",
                        label=f"{key} PSS")  # fmt: skip
                ax.plot([m["fraction"] for m in trace], [m["rss"] / 2**20 for m in trace], ls=":",
                        label=f"{key} RSS")  # fmt: skip
        ax.set_xlabel("fraction of the pass")
        ax.set_ylabel("MB, main + 2 workers")
        ax.legend(fontsize=7)
        ax.set_title("P8 memory over a DataLoader pass")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def to_markdown(record: dict) -> str:
    """One markdown table per section, with its checks: for docs/benchmarks.md."""
    out = []
    for sid, s in record["sections"].items():
        cols = COLUMNS[sid]
        out.append(f"**{sid}: {s['title']}** ({record['scale']} run, {record['date']})\n")
        out.append("| " + " | ".join(h for _, h, _ in cols) + " |")
        out.append("|" + "---|" * len(cols))
        for row in s["rows"]:
            out.append("| " + " | ".join(f(row.get(k)) for k, _, f in cols) + " |")
            if row.get("error"):
                out.append(f"| error: {row['error'][:200]} |" + " |" * (len(cols) - 1))
        out.append("\n| check | measured | target | verdict |\n|---|---|---|---|")
        for c in s["checks"]:
            verdict = {True: "PASS", False: "**FAIL**", None: "n/a", "info": "info"}[c["pass"]]
            out.append(f"| {c['what']} | {_plain(c['value'])} | {c['target']} | {verdict} |")
        out.append("")
    return "\n".join(out)


if __name__ == "__main__":
    import sys

    print(to_markdown(json.loads(Path(sys.argv[1]).read_text())))
