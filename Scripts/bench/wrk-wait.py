#!/usr/bin/env python3
"""What a run's tail follows: each round's p99 beside how long wrk itself waited for a CPU (issue 23).

    python3 Scripts/bench/wrk-wait.py RUN.json [RUN.json ...] [--figure wait|workers] [--json OUT]

wrk measures a request from its write to the response's read, so time that wrk's thread spends runnable but waiting
for a CPU adds to the latency it reports, whatever the server does. Unpinned, the kernel sometimes puts a server
worker on wrk's CPU for part of a round (BENCHMARKS.md, tail latency, eighteenth part); `bench.py` records wrk's wait
per load (`wrk_waited_ms_per_s`, from /proc/<wrk>/task/*/schedstat). For every load and placement this prints, per
subject, the rounds' median wait and p99, the p99 of its rounds with the least and the most wait (split at the
median), and Spearman's rank correlation of wait and p99 over every round of every subject, which is near 1 when the
wait orders the tail.

With `--figure workers` the same is done with how often a server worker sat on wrk's CPU instead: the share of
wrk's samples (every 50 ms) that found a worker last run on the CPU wrk's load thread last ran on, in percent
(`workers_on_wrk_cpu`, recorded by bench.py from the twentieth part on). Unpinned, the keep-alive p99 follows it
(BENCHMARKS.md, tail latency, twentieth part).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import NamedTuple

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # Scripts/, for benchlib
from benchlib.report import fmt_num, markdown_table  # noqa: E402
from benchlib.stats import spearman  # noqa: E402

LOADS = ("keepalive", "close")


class Figure(NamedTuple):
    """What --figure sets beside each round's p99."""
    key: str  # read from a load's results in bench.py's JSON
    scale: float  # to the unit shown
    label: str  # the column heading
    row_keys: tuple[str, str, str, str]  # the rows' JSON keys: its median, its range, the p99 of its lower/upper half


FIGURES = {
    "wait": Figure("wrk_waited_ms_per_s", 1.0, "wrk waited ms/s",
                   ("median_wait_ms_per_s", "wait_range", "p99_least_wait_ms", "p99_most_wait_ms")),
    "workers": Figure("workers_on_wrk_cpu", 100.0, "a worker on wrk's CPU, % of samples",
                      ("median_workers_on_wrk_cpu_pct", "workers_on_wrk_cpu_pct_range", "p99_lower_half_ms",
                       "p99_upper_half_ms")),
}


def rounds_of(data: dict, figure: str = "wait") -> dict[tuple[str, bool, str], list[tuple[float, float]]]:
    """(load, pinned, subject) -> [(the figure, p99 ms)] for each round that has both; the figure is wrk's wait
    (ms/s) or, with figure="workers", the share of samples with a worker on wrk's CPU (%)."""
    key, scale = FIGURES[figure].key, FIGURES[figure].scale
    pinned = bool(data.get("config", {}).get("pinned"))
    out: dict[tuple[str, bool, str], list[tuple[float, float]]] = {}
    for name, subject in data.get("subjects", {}).items():
        for r in subject.get("rounds", []):
            for load in LOADS:
                figures = r.get(load) or {}
                value, p99 = figures.get(key), (figures.get("latency_ms") or {}).get("p99")
                if value is not None and p99:
                    out.setdefault((load, pinned, name), []).append((float(value) * scale, float(p99)))
    return out


def split_medians(pairs: list[tuple[float, float]]) -> tuple[float | None, float | None]:
    """The median p99 of the rounds with the least wait (the lower half) and of those with the most (the upper
    half); with an odd count the middle round is in neither."""
    ordered = sorted(pairs)
    half = len(ordered) // 2
    if half == 0:
        return None, None
    low, high = ordered[:half], ordered[len(ordered) - half:]
    return statistics.median(p for _, p in low), statistics.median(p for _, p in high)


def summarize(collected: dict[tuple[str, bool, str], list[tuple[float, float]]], figure: str = "wait") -> list[dict]:
    median_key, range_key, low_key, high_key = FIGURES[figure].row_keys
    rows = []
    for load in LOADS:
        for pinned in (True, False):
            subjects = {name: pairs for (l, p, name), pairs in collected.items() if l == load and p == pinned}
            if not subjects:
                continue
            pooled = [pair for pairs in subjects.values() for pair in pairs]
            for name, pairs in subjects.items():
                low, high = split_medians(pairs)
                rows.append({
                    "load": load, "pinned": pinned, "subject": name, "rounds": len(pairs),
                    median_key: statistics.median(w for w, _ in pairs),
                    range_key: [min(w for w, _ in pairs), max(w for w, _ in pairs)],
                    "median_p99_ms": statistics.median(p for _, p in pairs),
                    low_key: low, high_key: high,
                    "spearman_subject": spearman([w for w, _ in pairs], [p for _, p in pairs]),
                    "spearman_pooled": spearman([w for w, _ in pooled], [p for _, p in pooled]),
                    "pooled_rounds": len(pooled),
                })
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("files", nargs="+", type=Path, help="bench.py JSON files")
    ap.add_argument("--figure", choices=sorted(FIGURES), default="wait",
                    help="what to set beside each round's p99: wrk's wait for a CPU (default) or how often a worker "
                         "sat on wrk's CPU")
    ap.add_argument("--json", type=Path, help="write the rows here")
    args = ap.parse_args(argv)
    figure = FIGURES[args.figure]
    collected: dict[tuple[str, bool, str], list[tuple[float, float]]] = {}
    for path in args.files:
        for key, pairs in rounds_of(json.loads(path.read_text()), args.figure).items():
            collected.setdefault(key, []).extend(pairs)
    rows = summarize(collected, args.figure)
    median_key, range_key, low_key, high_key = figure.row_keys
    if not rows:
        print(f"wrk-wait: no rounds with {figure.key} (runs of bench.py from before it was recorded)",
              file=sys.stderr)
        return 1
    head = ["load", "placement", "subject", "rounds", f"{figure.label}, median (range)", "p99 ms, median",
            "p99 ms, lower half / upper half of the figure", "rank correlation figure–p99: subject / all subjects"]
    table = [[r["load"], "pinned" if r["pinned"] else "unpinned", r["subject"], str(r["rounds"]),
              f"{fmt_num(r[median_key], 1)} ({fmt_num(r[range_key][0], 1)}–{fmt_num(r[range_key][1], 1)})",
              fmt_num(r["median_p99_ms"], 2),
              f"{fmt_num(r[low_key], 2)} / {fmt_num(r[high_key], 2)}",
              f"{fmt_num(r['spearman_subject'], 2)} / {fmt_num(r['spearman_pooled'], 2)} "
              f"({r['pooled_rounds']} rounds)"] for r in rows]
    print(markdown_table(head, ["---"] * 3 + ["---:", "---", "---:", "---", "---"], table))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
