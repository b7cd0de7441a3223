#!/usr/bin/env python3
"""Plots `marquee-bench` tables: the pipeline's posts/s against workers beside the ideal, or
the time to the last fan against the audience beside the floor.

Usage: .venv/bin/python scripts/plot-bench.py OUT.png TABLE.md [TABLE.md ...]

Each input is the output of `scripts/bench pipeline` or `scripts/bench lastfan` runs (or any
text holding such tables, like docs/benchmarks.md); the kind is told by the table's columns,
and the inputs of one plot are of one kind (lastfan tables win when both are found).

- pipeline: a `pipeline: ...` line, then a Markdown table. Rows from runs without crash
  injection form the measured line; rows with crashes are drawn as separate points. The ideal
  is the table's own column: the smaller of workers x concurrency / round trip and the budget.
- lastfan: a table with `fans`, `store` and `last (s)` columns. One line per store for the last
  fan (and a fainter one for p99), the floor N / budget from the table's `floor (s)` column,
  and 1.25 x the floor, the issue's target for the last fan.

Needs matplotlib (scripts/bench installs it into .venv when missing).
"""

import re
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import FuncFormatter  # noqa: E402


def read_rows(path, columns):
    """Every data row of every table in `path` whose header has all of `columns`, as dicts keyed
    by column header; each row also has "crash rate", from the last `pipeline:` line above it."""
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
            if all(column in cells for column in columns):
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


def plot_pipeline(out, rows):
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


def plot_lastfan(out, rows):
    rows = [r for r in rows if number(r["fans"]) and number(r["last (s)"]) is not None]
    fig, ax = plt.subplots(figsize=(8, 5.2), dpi=150)
    fans = sorted({number(r["fans"]) for r in rows})
    floor = {number(r["fans"]): number(r["floor (s)"]) for r in rows}
    ax.plot(fans, [floor[n] for n in fans], "--", color="0.3", linewidth=1.5, label="floor: N / budget")
    ax.plot(fans, [1.25 * floor[n] for n in fans], ":", color="0.45", linewidth=1.5, label="target: 1.25 × floor")
    colours = iter(["tab:blue", "tab:orange", "tab:green", "tab:red"])
    for place, store in enumerate(dict.fromkeys(r["store"] for r in rows)):
        of_store = sorted((r for r in rows if r["store"] == store), key=lambda r: number(r["fans"]))
        x = [number(r["fans"]) for r in of_store]
        last = [number(r["last (s)"]) for r in of_store]
        colour = next(colours, "tab:gray")
        ax.plot(x, last, "o-", color=colour, linewidth=2, markersize=7, label=f"last fan, {store} store")
        ax.plot(x, [number(r["p99 (s)"]) for r in of_store], "s:", color=colour, alpha=0.5, markersize=4, label=f"p99, {store} store")
        for r, xi, yi in zip(of_store, x, last):
            lost = f", {r['lost']} lost" if r.get("lost", "0") != "0" else ""
            ax.annotate(f"{yi:.2f} s\n{r['last / floor']} × floor{lost}", (xi, yi), textcoords="offset points", xytext=(8, -24 if place % 2 == 0 else 10), fontsize=8, color=colour)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xticks(fans)
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}"))
    ax.xaxis.set_minor_formatter(FuncFormatter(lambda v, _: ""))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.yaxis.set_minor_formatter(FuncFormatter(lambda v, _: f"{v:g}" if f"{v:.0e}"[0] in "25" else ""))
    ax.margins(x=0.12, y=0.15)
    ax.set_xlabel("fans (WebSocket clients subscribed to the artist)")
    ax.set_ylabel("seconds from PutEvents to the last fan's notification")
    ax.set_title("Time to the last fan: local gateway at its defaults")
    ax.grid(True, which="both", linewidth=0.4, alpha=0.5)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(out)
    print(f"wrote {out}")


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    out, paths = sys.argv[1], sys.argv[2:]
    rows = [row for path in paths for row in read_rows(path, ("fans", "store", "last (s)"))]
    if rows:
        plot_lastfan(out, rows)
        return
    rows = [row for path in paths for row in read_rows(path, ("workers", "posts/s"))]
    if not rows:
        sys.exit(f"no pipeline or lastfan table rows found in {', '.join(paths)}")
    plot_pipeline(out, rows)


if __name__ == "__main__":
    main()
