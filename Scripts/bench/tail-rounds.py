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
interval (resampling rounds), and the median of q over each run's medians (the figure the target names). The output
of `Scripts/bench/keepalive-rounds.sh --close` (the close load alone, subjects named round-robin, reuseport, c-rr-close
and c-reuseport, pinned when the file's name says so) counts as a run too. Runs whose
JSON has `<mode>@base` subjects count their rounds as a second series (`round-robin@base` / `reuseport@base`, against
the same C rounds), and so do `round-robin-deferred` / `reuseport-deferred` (`--defer-accept 1`): against the default C
pair (the target as issue 23 names it) and, in runs that have `c-rr-close-deferred` / `c-reuseport-deferred`, against
that deferred C pair too (like for like). Runs that have `c-rr-close-wslow` / `c-reuseport-wslow` (the C pair whose
workers spend 5 µs more per connection) count them as "ours" against the plain C pair: how far the workers' CPU per
connection alone moves the ratio. `--series new` (or `base`, ...) keeps only those series. One round proves little here
(the per-round p99 moves by a factor of two on this machine); the interval says what many rounds can.

    python3 Scripts/bench/tail-rounds.py --load keepalive docs/bench-tail-*.json [--json OUT]

takes issue 23's other target the same way: the keep-alive p99 of round-robin over c-rr-close's and of reuseport over
c-reuseport's, each of the same round (met when <= 1.5). Unpinned, every subject's keep-alive p99 falls in one of two
modes, under half a millisecond or about 3 ms, and which one a run's median lands in decides that run. So this reports,
per subject and pinned or not: the rounds, how many met, the median ratio with its 95 % bootstrap interval, how many
runs met (their ratio of medians, the figure bench.py reports), and how often each subject was in the slow mode (p99
above `--slow-ms`, 2 ms by default), ours beside its C reference.
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
from benchlib import BenchError  # noqa: E402
from benchlib.loadgen import to_ms  # noqa: E402
from benchlib.report import first_left, markdown_table  # noqa: E402
from benchlib.stats import bootstrap_median  # noqa: E402


KEEPALIVE_TARGET = 1.5  # issue 23: keep-alive p99 <= 1.5 times the C reference's


def p99_of(round_: dict, load: str = "close") -> float | None:
    figures = round_.get(load)
    if not isinstance(figures, dict):
        return None
    value = figures.get("latency_ms", {}).get("p99")
    return float(value) if value else None


def rounds_of(subject: dict | None, load: str = "close") -> dict[int, float]:
    if not subject:
        return {}
    out = {}
    for r in subject.get("rounds", []):
        p99 = p99_of(r, load)
        if p99 is not None:
            out[int(r["round"])] = p99
    return out


def load_run(path: Path) -> tuple[dict, dict]:
    """A bench.py comparison's subjects and config."""
    data = json.loads(path.read_text())
    if not isinstance(data, dict) or not isinstance(data.get("subjects"), dict):
        raise ValueError("not a bench.py comparison (no subjects)")
    return data, data.get("config", {})


def keepalive_series(path: Path) -> list[dict]:
    data, _ = load_run(path)
    return keepalive_series_of(data, str(path))


def keepalive_series_of(data: dict, file: str) -> list[dict]:
    """Every (run, build) series in one bench.py run, keep-alive: each of our subjects' p99 over its C reference's,
    round by round. The `@base` subjects (an earlier build in the same rounds) are a second series against the same
    C rounds."""
    subjects = data["subjects"]
    config = data.get("config", {})
    out = []
    for name, suffix, build in (("new", "", binary_of(config, "--binary")),
                                ("base", "@base", config.get("base_binary"))):
        pairs = {}
        for ours, reference in (("round-robin", "c-rr-close"), ("reuseport", "c-reuseport")):
            mine, theirs = rounds_of(subjects.get(ours + suffix), "keepalive"), rounds_of(subjects.get(reference),
                                                                                         "keepalive")
            rounds = sorted(set(mine) & set(theirs))
            if not rounds:
                continue
            pairs[ours] = {
                "reference": reference,
                "rounds": [{"round": n, "ours_ms": mine[n], "c_ms": theirs[n], "ratio": mine[n] / theirs[n]}
                           for n in rounds],
                # The run's own figure: the ratio of medians, as bench.py reports it.
                "run_ratio": statistics.median(mine[n] for n in rounds) / statistics.median(theirs[n] for n in rounds),
            }
        if pairs:
            out.append({"file": file, "started": data.get("started"), "pinned": bool(config.get("pinned")),
                        "build": build or "(default build)", "series": name, "subjects": pairs})
    return out


def summarize_keepalive(name: str, group: list[dict], subject: str, slow_ms: float,
                        rng: random.Random) -> dict | None:
    rounds = [r for s in group if subject in s["subjects"] for r in s["subjects"][subject]["rounds"]]
    if not rounds:
        return None
    ratios = [r["ratio"] for r in rounds]
    runs = [s["subjects"][subject]["run_ratio"] for s in group if subject in s["subjects"]]
    low, high = bootstrap_median(ratios, rng)
    return {
        "group": name, "subject": subject, "runs": len(runs), "rounds": len(ratios),
        "rounds_met": sum(1 for x in ratios if x <= KEEPALIVE_TARGET),
        "median_ratio": statistics.median(ratios), "median_ratio_95": [low, high],
        "runs_met": sum(1 for x in runs if x <= KEEPALIVE_TARGET),
        "median_run_ratio": statistics.median(runs),
        "ours_slow": sum(1 for r in rounds if r["ours_ms"] > slow_ms),
        "c_slow": sum(1 for r in rounds if r["c_ms"] > slow_ms),
    }


def collect(args: argparse.Namespace, read, missing: str) -> list[dict]:
    """Every series `read` finds in the given files (a file it cannot read is skipped with a line on stderr), only
    those `--series` names; none says `missing` on stderr."""
    everything: list[dict] = []
    for path in args.files:
        try:
            everything += read(path)
        except (OSError, ValueError, KeyError, BenchError) as error:
            print(f"tail-rounds: skipping {path}: {error}", file=sys.stderr)
    if args.series is not None:
        wanted = set(args.series.split(","))
        everything = [s for s in everything if s["series"] in wanted]
    if not everything:
        print(f"tail-rounds: no run has {missing} in the same rounds", file=sys.stderr)
    return everything


def keepalive_main(args: argparse.Namespace) -> int:
    everything = collect(args, keepalive_series, "round-robin and c-rr-close, or reuseport and c-reuseport")
    if not everything:
        return 1

    rows = [[Path(s["file"]).name, s["series"], "yes" if s["pinned"] else "no", f"{subject} / {pair['reference']}",
             str(len(pair["rounds"])), f"{pair['run_ratio']:.2f}",
             str(sum(1 for r in pair["rounds"] if r["ratio"] <= KEEPALIVE_TARGET))]
            for s in everything for subject, pair in s["subjects"].items()]
    print(markdown_table(["run", "build", "pinned", "subject", "rounds", "ours / C, ratio of medians",
                          f"rounds met (<= {KEEPALIVE_TARGET:g})"], first_left(7, 4), rows))

    rng = random.Random(args.seed)
    summaries = []
    for series_name in sorted({s["series"] for s in everything}):
        chosen = [s for s in everything if s["series"] == series_name]
        for subject in ("round-robin", "reuseport"):
            for label, group in (("pinned", [s for s in chosen if s["pinned"]]),
                                 ("unpinned", [s for s in chosen if not s["pinned"]])):
                x = summarize_keepalive(f"{series_name}, {label}", group, subject, args.slow_ms, rng)
                if x:
                    summaries.append(x)
    rows = [[x["group"], x["subject"], str(x["runs"]), str(x["rounds"]), str(x["rounds_met"]),
             f"{x['median_ratio']:.2f} ({x['median_ratio_95'][0]:.2f}–{x['median_ratio_95'][1]:.2f})",
             f"{x['runs_met']} of {x['runs']}", f"{x['median_run_ratio']:.2f}",
             f"{x['ours_slow']}, {x['c_slow']} of {x['rounds']}"] for x in summaries]
    print()
    print(markdown_table(["group", "subject", "runs", "rounds", "rounds met", "median ours / C (95 % interval)",
                          "runs met", "median of runs' ratio",
                          f"rounds in the slow mode (p99 > {args.slow_ms:g} ms): ours, C"], first_left(9, 2), rows))
    if args.json:
        args.json.write_text(json.dumps({"load": "keepalive", "series": everything, "summaries": summaries},
                                        indent=1) + "\n")
    return 0


def run_of_lines(path: Path) -> dict:
    """`keepalive-rounds.sh --close`'s output (`<round> <name> <conn/s> <p99>`, the names those of bench.py's modes)
    as a bench.py comparison of the close load alone. Placement is not in the lines: pinned when the file's name says
    `pinned` (and not `unpinned`)."""
    lines = path.read_text().splitlines()
    if not lines or lines[0].split() != ["#", "load:", "close"]:
        raise ValueError("neither a bench.py JSON nor keepalive-rounds.sh --close output")
    subjects: dict[str, dict] = {}
    for line in lines[1:]:
        fields = line.split()
        if len(fields) != 4 or not fields[0].isdigit():
            continue
        subjects.setdefault(fields[1], {"rounds": []})["rounds"].append(
            {"round": int(fields[0]), "close": {"latency_ms": {"p99": to_ms(fields[3])}}})
    pinned = "pinned" in path.name and "unpinned" not in path.name
    return {"config": {"pinned": pinned}, "subjects": subjects}


def series(path: Path) -> list[dict]:
    """Every (run, build) series in one bench.py JSON, or in `keepalive-rounds.sh --close`'s output: its per-round q
    values."""
    if path.suffix == ".json":
        data, config = load_run(path)
    else:
        data = run_of_lines(path)
        config = data["config"]
    subjects = data["subjects"]
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
    p.add_argument("files", nargs="+", type=Path,
                   help="bench.py JSON files, or keepalive-rounds.sh --close output (close load only)")
    p.add_argument("--json", type=Path, default=None, help="write the table's figures and every round here")
    p.add_argument("--seed", type=int, default=1, help="bootstrap seed (default 1)")
    p.add_argument("--series", default=None,
                   help="only these series, comma-separated (new, base, deferred, 'deferred/C deferred', "
                        "'C workers slower'); default all")
    p.add_argument("--load", choices=("close", "keepalive"), default="close",
                   help="close: the close-tail ratio q (default); keepalive: each subject's keep-alive p99 over its "
                        "C reference's")
    p.add_argument("--slow-ms", type=float, default=2.0,
                   help="with --load keepalive: a round's p99 above this is in the slow mode (default 2)")
    args = p.parse_args(argv)
    if args.load == "keepalive":
        return keepalive_main(args)

    everything = collect(args, series, "round-robin, reuseport, c-rr-close and c-reuseport")
    if not everything:
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
