#!/usr/bin/env python3
"""Plots `marquee-bench pipeline` tables: posts/s against workers, beside the ideal.

Usage: .venv/bin/python scripts/plot-bench.py OUT.png TABLE.md [TABLE.md ...]

Each input is the output of one `scripts/bench pipeline` run (or any text holding such tables,
like docs/benchmarks.md): a `pipeline: ...` line, then a Markdown table. Rows from runs without
crash injection form the measured line; rows with crashes are drawn as separate points. The
ideal is the table's own column: the smaller of workers x concurrency / round trip and the
budget. Needs matplotlib (scripts/bench installs it into .venv when missing).
"""

import re
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import FuncFormatter  # noqa: E402


def read_rows(path):
    """Every data row of every pipeline table in `path`, as dicts keyed by column header."""
    rows = []
    header = None
    crash_rate = 0.0
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            match = re.search(r"crash rate ([0-9.]+)", line)
            if line.startswith("pipeline:") and match:
                crash_rate = float(match.group(1))
                header = None
                continue
            if not line.startswith("|"):
                header = None if not line else header
                continue
            cells = [c.strip() for c in line.strip("|").split("|")]
            if "workers" in cells and "posts/s" in cells:
                header = cells
                continue
            if header is None or set(line) <= set("|-: "):
                continue
            if len(cells) != len(header):
                continue
            row = dict(zip(header, cells))
            row["crash rate"] = crash_rate
            rows.append(row)
    return rows


def number(text):
    try:
        return float(text)
    except ValueError:
        return None


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    out, paths = sys.argv[1], sys.argv[2:]
    rows = [row for path in paths for row in read_rows(path)]
    if not rows:
        sys.exit(f"no pipeline table rows found in {', '.join(paths)}")

    clean = sorted(
        (r for r in rows if r["crash rate"] == 0 and number(r.get("crashes", "0")) == 0),
        key=lambda r: number(r["workers"]),
    )
    crashed = [r for r in rows if r not in clean]

    fig, ax = plt.subplots(figsize=(8, 5.2), dpi=150)
    if clean:
        workers = [number(r["workers"]) for r in clean]
        measured = [number(r["posts/s"]) for r in clean]
        ideal = [number(r["ideal posts/s"]) for r in clean]
        if all(i is not None for i in ideal):
            ax.plot(workers, ideal, "--", color="0.45", linewidth=1.5, label="ideal: workers × concurrency / round trip (or the budget)")
        ax.plot(workers, measured, "o-", color="tab:blue", linewidth=2, markersize=7, label="measured (all posts, duplicates included)")
        for r, x, y in zip(clean, workers, measured):
            ax.annotate(f"{y:,.0f}/s\n{r['ratio']} of ideal", (x, y), textcoords="offset points", xytext=(8, -26), fontsize=8)
    for r in crashed:
        x, y = number(r["workers"]), number(r["posts/s"])
        ax.plot([x], [y], "X", color="tab:red", markersize=10)
        ax.annotate(
            f"crash rate {r['crash rate']:g}: {y:,.0f}/s, {r['ratio']} of ideal,\n"
            f"{r['crashes']} crashes, {r['lost']} lost, {r['duplicates']} duplicates",
            (x, y),
            textcoords="offset points",
            xytext=(-200, 14),
            fontsize=8,
            color="tab:red",
        )
    if crashed:
        ax.plot([], [], "X", color="tab:red", markersize=10, label="with crash injection")

    first = rows[0]
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ticks = sorted({number(r["workers"]) for r in rows})
    ax.set_xticks(ticks)
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}"))
    ax.yaxis.set_minor_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}" if str(int(v))[0] in "25" else ""))
    ax.margins(x=0.08, y=0.12)
    ax.set_xlabel("workers (concurrent deliver invocations)")
    ax.set_ylabel("posts per second")
    ax.set_title(
        f"Fan-out pipeline: {int(number(first['subscribers'])):,} subscribers, "
        f"{first['round trip (ms)']} ms simulated round trip, budget {first['budget (posts/s)']}"
    )
    ax.grid(True, which="both", linewidth=0.4, alpha=0.5)
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(out)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
