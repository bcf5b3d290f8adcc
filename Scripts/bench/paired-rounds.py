#!/usr/bin/env python3
"""Two subjects of the same bench.py rounds, compared round by round (issue 23).

    python3 Scripts/bench/paired-rounds.py RUN.json [RUN.json ...] [--json OUT] [--seed 1]
    python3 Scripts/bench/paired-rounds.py ROUNDS.txt   # the output of keepalive-rounds.sh

This machine has slow and fast phases that last tens of seconds: one build made 105,000 keep-alive requests a second
in one round and 140,000 in the next, at 9.2 and 7.0 µs of CPU a request, and the C reference moved the same way.
A median over rounds then moves with how many of each subject's rounds fell in a slow phase. `bench.py` interleaves
its subjects, so the subjects of one round ran within a minute or two of each other, mostly in the same phase: the
ratio within each round cancels most of it.

For every pair present in a run (`<mode>` against `<mode>@base`, round-robin against c-rr-close, reuseport against
c-reuseport, and the same for the @base builds) this takes, in every round that has both, the ratio of keep-alive
req/s, keep-alive p99, close p99 and server CPU µs per connection under the close load, and reports per pair and per
placement (pinned or not): the rounds, the median ratio with a 95 % bootstrap interval (resampling rounds), and how
many rounds had a ratio above 1. Runs given together are pooled by subject name: give it runs of the same builds.
A file that is not JSON is read as `keepalive-rounds.sh`'s output: each subject against the first, under the load its
first line names (keep-alive, or the close load with `--close`).
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # Scripts/, for benchlib
from benchlib import BenchError  # noqa: E402
from benchlib.loadgen import to_ms  # noqa: E402
from benchlib.stats import bootstrap_median  # noqa: E402

# (name, load, how to read it from a round's load)
METRICS = [
    ("keep-alive req/s", "keepalive", lambda load: load.get("req_per_s")),
    ("keep-alive p99", "keepalive", lambda load: load.get("latency_ms", {}).get("p99")),
    ("close p99", "close", lambda load: load.get("latency_ms", {}).get("p99")),
    ("server CPU µs/conn (close)", "close",
     lambda load: (load["master_us_per_req"] + load["workers_us_per_req"])
     if load.get("master_us_per_req") is not None and load.get("workers_us_per_req") is not None else None),
]

C_TWINS = {"round-robin": "c-rr-close", "reuseport": "c-reuseport"}


def pairs_of(subjects: dict) -> list[tuple[str, str]]:
    """The pairs of subjects this run lets us compare: (numerator, denominator)."""
    out = []
    for name in subjects:
        if name.endswith("@base"):
            continue
        if f"{name}@base" in subjects:
            out.append((name, f"{name}@base"))
    for ours, c in C_TWINS.items():
        for build in (ours, f"{ours}@base"):
            if build in subjects and c in subjects:
                out.append((build, c))
    return out


def by_round(subject: dict, load: str, read) -> dict[int, float]:
    out = {}
    for r in subject.get("rounds", []):
        figures = r.get(load)
        if not isinstance(figures, dict):
            continue
        value = read(figures)
        if value:
            out[int(r["round"])] = float(value)
    return out


def paired(numerator: dict, denominator: dict, load: str, read) -> list[float]:
    """The per-round ratios numerator / denominator, in round order, over the rounds that have both."""
    a, b = by_round(numerator, load, read), by_round(denominator, load, read)
    return [a[r] / b[r] for r in sorted(a) if r in b]


def is_pinned(data: dict) -> bool:
    return bool(data.get("config", {}).get("pinned"))


def collect(paths: list[Path]) -> dict[tuple[str, str, bool, str], list[float]]:
    """(numerator, denominator, pinned, metric) -> every round's ratio over the given runs."""
    out: dict[tuple[str, str, bool, str], list[float]] = {}
    for path in paths:
        data = json.loads(path.read_text())
        subjects = data.get("subjects")
        if not isinstance(subjects, dict):
            raise ValueError(f"{path}: not a bench.py comparison (no subjects)")
        for a, b in pairs_of(subjects):
            for metric, load, read in METRICS:
                out.setdefault((a, b, is_pinned(data), metric), []).extend(
                    paired(subjects[a], subjects[b], load, read))
    return out


def collect_lines(path: Path) -> dict[tuple[str, str, bool, str], list[float]]:
    """keepalive-rounds.sh's lines (`<round> <name> <req/s> <p99>`): every name against the first one, round by
    round, under the load its first line names (`# load: close` for `--close`; keep-alive without that line).
    Placement is not in the lines: it counts as unpinned unless the file's name says `pinned`."""
    rounds: dict[int, dict[str, tuple[float, float]]] = {}
    names: list[str] = []
    load = "keep-alive"
    for line in path.read_text().splitlines():
        fields = line.split()
        if fields[:2] == ["#", "load:"] and len(fields) == 3:
            load = {"keepalive": "keep-alive", "close": "close"}[fields[2]]
        if len(fields) != 4 or not fields[0].isdigit():
            continue
        number, name, rps, p99 = int(fields[0]), fields[1], float(fields[2]), to_ms(fields[3])
        if name not in names:
            names.append(name)
        rounds.setdefault(number, {})[name] = (rps, p99)
    pinned = "pinned" in path.name and "unpinned" not in path.name
    out: dict[tuple[str, str, bool, str], list[float]] = {}
    base = names[0] if names else None
    rate = "keep-alive req/s" if load == "keep-alive" else "close conn/s"
    for name in names[1:]:
        for index, metric in ((0, rate), (1, f"{load} p99")):
            out[(name, base, pinned, metric)] = [
                r[name][index] / r[base][index] for _, r in sorted(rounds.items()) if name in r and base in r]
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("files", nargs="+", type=Path, help="bench.py JSON files")
    p.add_argument("--json", type=Path, default=None, help="write every pair's figures and rounds here")
    p.add_argument("--seed", type=int, default=1, help="bootstrap seed (default 1)")
    args = p.parse_args(argv)
    try:
        found = collect([f for f in args.files if f.suffix == ".json"])
        for path in (f for f in args.files if f.suffix != ".json"):
            found.update(collect_lines(path))
    except (OSError, ValueError, KeyError, BenchError) as error:
        print(f"paired-rounds: {error}", file=sys.stderr)
        return 1
    if not found:
        print("paired-rounds: no run has a pair to compare (<mode> and <mode>@base, or ours and C)", file=sys.stderr)
        return 1
    rng = random.Random(args.seed)
    rows = []
    print("| pair | pinned | figure | rounds | median ratio (95 % interval) | rounds above 1 |")
    print("|---|---|---|---:|---|---:|")
    for (a, b, pinned, metric), ratios in found.items():
        if not ratios:
            continue
        low, high = bootstrap_median(ratios, rng)
        above = sum(1 for x in ratios if x > 1.0)
        rows.append({"numerator": a, "denominator": b, "pinned": pinned, "figure": metric, "ratios": ratios,
                     "median": statistics.median(ratios), "median_95": [low, high], "above_1": above})
        print(f"| {a} / {b} | {'yes' if pinned else 'no'} | {metric} | {len(ratios)} | "
              f"{statistics.median(ratios):.3f} ({low:.3f}–{high:.3f}) | {above} |")
    if args.json:
        args.json.write_text(json.dumps({"files": [str(f) for f in args.files], "pairs": rows}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
