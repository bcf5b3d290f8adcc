#!/usr/bin/env python3
"""Is round-robin's close tail, against reuseport, worse than the C pair's? (issue 23) Round by round, over runs
already made.

    python3 Scripts/bench/tail-rounds.py docs/bench-tail-*.json [--json OUT] [--seed 1]

`bench.py` interleaves its subjects round by round, so within one round round-robin, reuseport, c-rr-close and
c-reuseport ran within a minute or two of each other on the same machine. For every round of every given run that
has all four, this takes

    ours = close p99 of round-robin / close p99 of reuseport
    c    = close p99 of c-rr-close  / close p99 of c-reuseport
    q    = ours / c          (the target is ours <= c, that is q <= 1)

and reports, pinned and unpinned apart: the rounds, how many had q <= 1, the median of q with a 95 % bootstrap
interval (resampling rounds), and the median of q over each run's medians (the figure the target names). Runs whose
JSON has `<mode>@base` subjects count their rounds as a second series (`round-robin@base` / `reuseport@base`, against
the same C rounds), and so do `round-robin-deferred` / `reuseport-deferred` (`--defer-accept 1`): against the default C
pair (the target as issue 23 names it) and, in runs that have `c-rr-close-deferred` / `c-reuseport-deferred`, against
that deferred C pair too (like for like). Runs that have `c-rr-close-wslow` / `c-reuseport-wslow` (the C pair whose
workers spend 5 µs more per connection) count them as "ours" against the plain C pair: how far the workers' CPU per
connection alone moves the ratio. `--series new` (or `base`, ...) keeps only those series. One round proves little here
(the per-round p99 moves by a factor of two on this machine); the interval says what many rounds can.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # Scripts/, for benchlib
from benchlib.stats import bootstrap_median  # noqa: E402


def close_p99(round_: dict) -> float | None:
    close = round_.get("close")
    if not isinstance(close, dict):
        return None
    value = close.get("latency_ms", {}).get("p99")
    return float(value) if value else None


def rounds_of(subject: dict | None) -> dict[int, float]:
    if not subject:
        return {}
    out = {}
    for r in subject.get("rounds", []):
        p99 = close_p99(r)
        if p99 is not None:
            out[int(r["round"])] = p99
    return out


def series(path: Path) -> list[dict]:
    """Every (run, build) series in one bench.py JSON: its per-round q values."""
    data = json.loads(path.read_text())
    if not isinstance(data, dict) or not isinstance(data.get("subjects"), dict):
        raise ValueError("not a bench.py comparison (no subjects)")
    subjects = data["subjects"]
    config = data.get("config", {})
    out = []
    # (series, our round-robin and reuseport subjects, the build, the C pair's suffix): the deferred subjects are taken
    # against the default C pair (the target as the issue names it) and, where the run has them, against the deferred
    # C pair (like for like). The C pair whose workers are slower (`-wslow`) is taken as "ours" against the plain C
    # pair: how far the workers' CPU per connection alone moves the ratio.
    for name, rr_name, rp_name, build, c_suffix in (
            ("new", "round-robin", "reuseport", binary_of(config, "--binary"), ""),
            ("base", "round-robin@base", "reuseport@base", config.get("base_binary"), ""),
            ("deferred", "round-robin-deferred", "reuseport-deferred", "--defer-accept 1", ""),
            ("deferred/C deferred", "round-robin-deferred", "reuseport-deferred", "--defer-accept 1", "-deferred"),
            ("C workers slower", "c-rr-close-wslow", "c-reuseport-wslow", "--worker-work-ns", "")):
        c_rr = rounds_of(subjects.get("c-rr-close" + c_suffix))
        c_rp = rounds_of(subjects.get("c-reuseport" + c_suffix))
        rr, rp = rounds_of(subjects.get(rr_name)), rounds_of(subjects.get(rp_name))
        rounds = sorted(set(rr) & set(rp) & set(c_rr) & set(c_rp))
        if not rounds:
            continue
        per_round = [{"round": n, "ours": rr[n] / rp[n], "c": c_rr[n] / c_rp[n],
                      "q": (rr[n] / rp[n]) / (c_rr[n] / c_rp[n])} for n in rounds]
        out.append({
            "file": str(path), "started": data.get("started"), "pinned": bool(config.get("pinned")),
            "build": build or "(default build)", "series": name,
            "rounds": per_round,
            # The run's own figure: ratios of medians, as bench.py reports them.
            "run_ours": statistics.median(rr[n] for n in rounds) / statistics.median(rp[n] for n in rounds),
            "run_c": statistics.median(c_rr[n] for n in rounds) / statistics.median(c_rp[n] for n in rounds),
        })
    return out


def binary_of(config: dict, flag: str) -> str | None:
    command = config.get("command", [])
    for i, arg in enumerate(command[:-1]):
        if arg == flag:
            return command[i + 1]
    return None


def summarize(name: str, group: list[dict], rng: random.Random) -> dict | None:
    qs = [r["q"] for s in group for r in s["rounds"]]
    if not qs:
        return None
    low, high = bootstrap_median(qs, rng)
    run_qs = [s["run_ours"] / s["run_c"] for s in group]
    return {
        "group": name, "runs": len(group), "rounds": len(qs),
        "rounds_met": sum(1 for q in qs if q <= 1.0),
        "median_q": statistics.median(qs), "median_q_95": [low, high],
        "geomean_q": math.exp(statistics.fmean(math.log(q) for q in qs)),
        "runs_met": sum(1 for q in run_qs if q <= 1.0),
        "median_run_q": statistics.median(run_qs),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("files", nargs="+", type=Path, help="bench.py JSON files")
    p.add_argument("--json", type=Path, default=None, help="write the table's figures and every round here")
    p.add_argument("--seed", type=int, default=1, help="bootstrap seed (default 1)")
    p.add_argument("--series", default=None,
                   help="only these series, comma-separated (new, base, deferred, 'deferred/C deferred', "
                        "'C workers slower'); default all")
    args = p.parse_args(argv)

    everything: list[dict] = []
    for path in args.files:
        try:
            everything += series(path)
        except (OSError, ValueError, KeyError) as error:
            print(f"tail-rounds: skipping {path}: {error}", file=sys.stderr)
    if args.series is not None:
        wanted = set(args.series.split(","))
        everything = [s for s in everything if s["series"] in wanted]
    if not everything:
        print("tail-rounds: no run has round-robin, reuseport, c-rr-close and c-reuseport in the same rounds",
              file=sys.stderr)
        return 1

    print("| run | build | pinned | rounds | ours: rr / reuseport | C pair | q = ours / C | rounds with q <= 1 |")
    print("|---|---|---|---:|---:|---:|---:|---:|")
    for s in everything:
        met = sum(1 for r in s["rounds"] if r["q"] <= 1.0)
        print(f"| {Path(s['file']).name} | {s['series']} | {'yes' if s['pinned'] else 'no'} | {len(s['rounds'])} | "
              f"{s['run_ours']:.2f} | {s['run_c']:.2f} | {s['run_ours'] / s['run_c']:.2f} | {met} |")

    rng = random.Random(args.seed)
    # The default listener (new and base builds) and --defer-accept are summarized apart.
    summaries = []
    for variant, label in (({"new", "base"}, ""), ({"deferred"}, ", deferred"),
                           ({"deferred/C deferred"}, ", deferred against C deferred"),
                           ({"C workers slower"}, ", C pair with workers 5 µs slower against the C pair")):
        chosen = [s for s in everything if s["series"] in variant]
        summaries += [x for x in (summarize("pinned" + label, [s for s in chosen if s["pinned"]], rng),
                                  summarize("unpinned" + label, [s for s in chosen if not s["pinned"]], rng),
                                  summarize("all" + label, chosen, rng)) if x]
    print()
    print("| group | runs | rounds | rounds with q <= 1 | median q (95 % interval) | geometric mean q | runs met | median of runs' q |")
    print("|---|---:|---:|---:|---|---:|---:|---:|")
    for x in summaries:
        low, high = x["median_q_95"]
        print(f"| {x['group']} | {x['runs']} | {x['rounds']} | {x['rounds_met']} | {x['median_q']:.2f} "
              f"({low:.2f}–{high:.2f}) | {x['geomean_q']:.2f} | {x['runs_met']} of {x['runs']} | "
              f"{x['median_run_q']:.2f} |")
    if args.json:
        args.json.write_text(json.dumps({"series": everything, "summaries": summaries}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
