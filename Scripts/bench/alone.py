#!/usr/bin/env python3
"""A framework alone against the same application behind Switchboard: "why not one process with threads?"

For each framework application of benchlib.apps whose binary is built (the others are skipped with one line), three
subjects, interleaved per round:

  alone        the example with `--alone on`: the application listening by itself, one process with its framework's
               default event-loop threads (NIO's singleton group: one per core), no Switchboard
  round-robin  the same application behind Switchboard, `--workers 2 --mode round-robin` (the master accepts and
               passes each connection to a worker)
  reuseport    `--workers 2 --mode reuseport` (each worker has its own SO_REUSEPORT listener)

Each gets a 1 s warm-up, then two wrk loads (`wrk -t1 -c50`, no Lua script): keep-alive, and `Connection: close`
(one TCP connection per request). CPU is utime + stime of every process of the subject (the one process alone; master
and workers otherwise) around each timed load, per request. Prints a Markdown table and the ratios to `alone` of one
run, writes JSON with every raw number. Standard library only (the shared parts are the package Scripts/benchlib);
127.0.0.1 only.

  python3 Scripts/bench/alone.py --smoke
  python3 Scripts/bench/alone.py --rounds 3 --duration 8 --json docs/bench-alone.json
"""

from __future__ import annotations

import argparse
import datetime as _dt
import os
import platform
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # Scripts/, for benchlib

from benchlib import HOST, REPO_ROOT, BenchError, make_log  # noqa: E402
from benchlib import apps, loadgen, procfs, report, servers, stats  # noqa: E402
from benchlib.machine import run_text  # noqa: E402
from benchlib.report import fmt_fixed as fmt  # noqa: E402

SUBJECTS = ["alone", "round-robin", "reuseport"]
LOADS = ["keepalive", "close"]
WORKERS = 2
CONNECTIONS = 50
WARMUP_S = 1
SERVE_TIMEOUT_S = 30.0
GEN_BOUND_PCT = 95.0  # wrk at >= this % of one core set the pace, not the server
CLK_TCK = procfs.CLK_TCK

log = make_log("alone-bench")


# ---------------------------------------------------------------- subjects

class AloneServer(servers.Server):
    """The application listening by itself on a port chosen here (it prints no Switchboard ready line): ready when
    GET / answers 200."""

    def __init__(self, name: str, argv: list[str], port: int, logfile: Path, registry: servers.Registry):
        super().__init__(name, argv, None, logfile, 0, registry, mode="alone")
        self.port = port

    def start(self) -> None:
        self.logfile.parent.mkdir(parents=True, exist_ok=True)
        self._log_fh = open(self.logfile, "ab", buffering=0)
        self._log_fh.write(f"# {' '.join(self.argv)}\n".encode())
        try:
            self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=self._log_fh,
                                         stderr=subprocess.STDOUT, cwd=str(REPO_ROOT), **self.popen_options)
        except OSError as e:
            raise BenchError(f"{self.name}: cannot start {self.argv[0]}: {e.strerror}")
        self.pgid = self.proc.pid
        self.registry.servers.append(self)
        deadline = time.monotonic() + SERVE_TIMEOUT_S
        while not answers(self.port):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise BenchError(f"{self.name}: did not answer GET / on port {self.port} "
                                 f"(exit status {self.proc.poll()}; log: {report.rel(self.logfile)})")
            time.sleep(0.02)


def answers(port: int) -> bool:

    try:
        with socket.create_connection((HOST, port), timeout=1) as s:
            s.sendall(f"GET / HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n".encode())
            return s.recv(16).startswith(b"HTTP/1.1 200")
    except OSError:
        return False


def free_port() -> int:

    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def start_subject(app: apps.App, binary: str, subject: str, logfile: Path,
                  registry: servers.Registry) -> servers.Server:
    if subject == "alone":
        port = free_port()
        srv = AloneServer(subject, [binary, "--host", HOST, "--port", str(port), "--alone", "on"], port, logfile,
                          registry)
    else:
        argv = [binary, "--host", HOST, "--port", "0", "--workers", str(WORKERS), "--mode", subject]
        srv = servers.Server(subject, argv, None, logfile, WORKERS, registry, mode=subject, strict=True,
                             worker_wait_s=3.0)
    try:
        srv.start()
    except BenchError:
        text = logfile.read_text(errors="replace") if logfile.is_file() else ""
        if apps.built_without_trait(text):
            raise BenchError(f"{binary} was built without the {app.trait} trait: {app.build_command()}")
        raise
    return srv


def subject_pids(srv: servers.Server) -> list[int]:
    return [srv.proc.pid] + procfs.children_of(srv.proc.pid)


# ---------------------------------------------------------------- loads

def run_load(load: str, port: int, duration: int, registry: servers.Registry) -> dict:
    cmd = loadgen.wrk_command("wrk", f"http://{HOST}:{port}/", duration, CONNECTIONS, close=load == "close",
                              script=False)
    run = loadgen.run_generator(cmd, duration + 30, registry)
    r = loadgen.parse_wrk_text(run.out)
    if load == "close":
        # A response without `Connection: close` makes wrk write its next request on the connection the server
        # closes: one read error per connection is expected (as in tls.py). Only the excess is an error.
        read = r["errors"].get("read", 0)
        r["errors"]["read_expected"] = min(read, r["requests"] + CONNECTIONS)
        r["error_total"] -= r["errors"]["read_expected"]
    r["generator_cpu_s"] = round(run.cpu_s, 4)
    r["command"] = " ".join(cmd)
    return r


def measure(srv: servers.Server, load: str, duration: int, registry: servers.Registry) -> dict:
    run_load(load, srv.port, WARMUP_S, registry)
    time.sleep(0.2)
    pids = subject_pids(srv)
    threads = {str(p): procfs.status_kb(p, "Threads") for p in pids}  # an integer field, read as the kB ones are
    loadavg = os.getloadavg()
    before = {p: procfs.cpu_ticks(p) for p in pids}
    t0 = time.monotonic()
    r = run_load(load, srv.port, duration, registry)
    wall = time.monotonic() - t0
    after = {p: procfs.cpu_ticks(p) for p in pids}
    if subject_pids(srv) != pids or None in after.values():
        raise BenchError(f"{srv.name}: processes changed during {load}: {pids} -> {subject_pids(srv)}")
    ticks = sum(after[p] - before[p] for p in pids)
    master_ticks = after[pids[0]] - before[pids[0]] if srv.mode != "alone" else 0
    n = max(r["requests"], 1)
    us = 1e6 / CLK_TCK
    r.update({
        "wall_s": round(wall, 3), "pids": pids, "threads": threads, "ticks": ticks, "clk_tck": CLK_TCK,
        "server_us_per_req": ticks * us / n, "master_us_per_req": master_ticks * us / n,
        "server_cpu_pct": ticks / CLK_TCK / wall * 100, "generator_cpu_pct": r["generator_cpu_s"] / wall * 100,
        "loadavg_before": loadavg,
    })
    return r


# ---------------------------------------------------------------- summary

KEYS = ["req_per_s", "p50_ms", "p99_ms", "server_us_per_req", "master_us_per_req", "server_cpu_pct",
        "generator_cpu_pct"]


def summarize(raw: dict) -> dict:
    out = {}
    for app, per_load in raw.items():
        for load, per_subject in per_load.items():
            for subject, rounds in per_subject.items():
                out.setdefault(app, {}).setdefault(load, {})[subject] = {
                    "median": {k: stats.median_or_none([r[k] for r in rounds]) for k in KEYS},
                    "min_max": {k: stats.spread([r[k] for r in rounds]) for k in KEYS},
                    "errors": sum(r["error_total"] for r in rounds),
                    "generator_bound_rounds": sum(1 for r in rounds if r["generator_cpu_pct"] >= GEN_BOUND_PCT),
                }
    return out


def ratios(summary: dict, raw: dict) -> dict:
    """Each Switchboard subject over `alone`, per application and load: the ratio of medians, and the per-round ratios
    (round i of one subject ran right beside round i of the other)."""
    out = {}
    for app, per_load in summary.items():
        for load, per_subject in per_load.items():
            for subject in SUBJECTS[1:]:
                entry = {}
                for key in ("req_per_s", "server_us_per_req", "p99_ms"):
                    per_round = stats.paired_ratios([r[key] for r in raw[app][load][subject]],
                                                    [r[key] for r in raw[app][load]["alone"]])
                    entry[key] = {"ratio": stats.ratio(per_subject[subject]["median"][key],
                                                       per_subject["alone"]["median"][key]),
                                  "per_round": per_round, "per_round_spread": stats.spread(per_round)}
                out.setdefault(app, {}).setdefault(load, {})[f"{subject}/alone"] = entry
    return out


def table(summary: dict, rounds: int) -> str:
    show = rounds > 1
    head = ["application", "load", "subject", "req/s", "p50 ms", "p99 ms", "server CPU µs/req", "master µs/req",
            "server CPU % / wrk CPU %", "errors"]
    rows = []
    for app, per_load in summary.items():
        for load, per_subject in per_load.items():
            for subject, s in per_subject.items():
                m, mm = s["median"], s["min_max"]
                rows.append([app, load, subject, fmt(m["req_per_s"], 0, mm["req_per_s"] if show else None),
                             fmt(m["p50_ms"], 2), fmt(m["p99_ms"], 2, mm["p99_ms"] if show else None),
                             fmt(m["server_us_per_req"], 1, mm["server_us_per_req"] if show else None),
                             fmt(m["master_us_per_req"], 1) if subject != "alone" else "–",
                             f"{fmt(m['server_cpu_pct'])} / {fmt(m['generator_cpu_pct'])}", str(s["errors"])])
    return report.markdown_table(head, report.first_left(len(head), 3), rows)


def ratio_table(rat: dict, rounds: int) -> str:
    show = rounds > 1
    rows = []
    for app, per_load in rat.items():
        for load, per_pair in per_load.items():
            for pair, figs in per_pair.items():
                rows.append([app, load, pair] + [fmt(figs[k]["ratio"], 2, figs[k]["per_round_spread"] if show else None)
                                                 for k in ("req_per_s", "server_us_per_req", "p99_ms")])
    return report.markdown_table(["application", "load", "ratio", "req/s", "server CPU per request", "p99"],
                                 report.first_left(6, 3), rows)


# ---------------------------------------------------------------- main

def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--app-binary", action="append", default=[], metavar="NAME=PATH",
                   help="an application's binary (" + ", ".join(a.name for a in apps.APPS) + "); default: the first "
                        "built of .build-faults/release, .build/release, .build/debug; a missing one is skipped")
    p.add_argument("--rounds", type=int, default=None, help="interleaved rounds (default 3; --smoke 1)")
    p.add_argument("--duration", type=int, default=None, help="seconds per timed load (default 8; --smoke 1)")
    p.add_argument("--json", default=None, help="JSON output (default bench-results/bench-alone.json)")
    p.add_argument("--smoke", action="store_true",
                   help="1 round of 1 s loads: every subject answers every load with 0 errors, or exit 1")
    return p.parse_args(argv)


def find_apps(args) -> dict[str, str]:
    try:
        given = apps.parse_binaries(args.app_binary)
    except ValueError as e:
        raise BenchError(str(e))
    found = {}
    for app in apps.APPS:
        path = given.get(app.name) or app.find_binary()
        if path is None:
            log(f"{app.name}: skipped: {app.missing_line()}")
        elif not os.access(path, os.X_OK):
            raise BenchError(f"--app-binary {app.name}: not an executable: {path}")
        else:
            found[app.name] = str(Path(path).absolute())
    if not found:
        raise BenchError("no application built: " + "; ".join(a.build_command() for a in apps.APPS))
    return found


def machine_info(binaries: dict[str, str]) -> dict:
    return {
        "commit": run_text(["git", "rev-parse", "--short", "HEAD"]),
        "worktree_dirty": bool(run_text(["git", "status", "--porcelain", "--untracked-files=no"])),
        "binaries": {name: {"path": b, "release": "/release/" in b,
                            "mtime": _dt.datetime.fromtimestamp(os.stat(b).st_mtime).isoformat(timespec="seconds")}
                     for name, b in binaries.items()},
        "wrk": loadgen.wrk_version("wrk"), "nproc": os.cpu_count(), "cpu": procfs.cpu_model() or "unknown",
        "kernel": platform.release(), "python": platform.python_version(), "clk_tck": CLK_TCK,
        "loadavg_at_start": os.getloadavg(),
    }


def main(registry: servers.Registry, argv=None) -> int:
    args = parse_args(argv)
    rounds = args.rounds or (1 if args.smoke else 3)
    duration = args.duration or (1 if args.smoke else 8)
    if rounds < 1 or duration < 1:
        raise BenchError("--rounds and --duration must be at least 1")
    if not shutil.which("wrk"):
        raise BenchError("wrk not found (apt-get install -y wrk)")
    binaries = find_apps(args)
    json_path = Path(args.json) if args.json else REPO_ROOT / "bench-results" / "bench-alone.json"
    logdir = json_path.resolve().parent / f"{json_path.stem}-logs"
    info = machine_info(binaries)
    started = time.monotonic()
    raw = {name: {load: {s: [] for s in SUBJECTS} for load in LOADS} for name in binaries}
    problems = []
    for rnd in range(1, rounds + 1):
        order = SUBJECTS if rnd % 2 == 1 else SUBJECTS[::-1]  # alternate which subject goes first
        for name, binary in binaries.items():
            for subject in order:
                srv = start_subject(apps.by_name(name), binary, subject, logdir / f"{name}-{subject}-r{rnd}.log",
                                    registry)
                try:
                    for load in LOADS:
                        r = measure(srv, load, duration, registry)
                        r["round"] = rnd
                        raw[name][load][subject].append(r)
                        log(f"round {rnd} {name} {subject:11} {load:9} {r['req_per_s']:9,.0f} req/s  "
                            f"server {r['server_us_per_req']:6.1f} µs/req  p99 {r['p99_ms'] or 0:6.2f} ms  "
                            f"server {r['server_cpu_pct']:3.0f} % wrk {r['generator_cpu_pct']:3.0f} %  "
                            f"load avg {r['loadavg_before'][0]:.2f}  errors {r['error_total']}")
                        if r["error_total"] or r["requests"] == 0:
                            problems.append(f"{name} {subject} {load} round {rnd}: {r['requests']} requests, "
                                            f"errors {r['errors']}")
                finally:
                    srv.stop()
    summary = summarize(raw)
    rat = ratios(summary, raw)
    info["loadavg_at_end"] = os.getloadavg()
    doc = {
        "benchmark": "alone", "date": _dt.datetime.now().isoformat(timespec="seconds"),
        "command": " ".join([sys.executable] + sys.argv), "machine": info,
        "config": {"workers": WORKERS, "connections": CONNECTIONS, "rounds": rounds, "duration_s": duration,
                   "warmup_s": WARMUP_S, "host": HOST, "subjects": SUBJECTS, "loads": LOADS, "smoke": args.smoke},
        "elapsed_s": round(time.monotonic() - started, 1),
        "raw": raw, "summary": summary, "ratios": rat, "problems": problems,
    }
    report.write_json(json_path, doc)
    print(f"## A framework alone against 2 workers behind Switchboard ({CONNECTIONS} connections, medians of {rounds} "
          f"round{'s' if rounds > 1 else ''} of {duration} s{', min–max in brackets' if rounds > 1 else ''})\n")
    print(table(summary, rounds) + "\n")
    print("Server CPU is utime + stime of every process of the subject (alone: the one process; otherwise the "
          "master and its workers) per request; CPU % is of one core. close: one connection per request (req/s is "
          "connections/s); its errors leave out wrk's one expected read error per connection.\n")
    print(ratio_table(rat, rounds) + "\n")
    print(f"commit {info['commit']}{' (dirty work tree)' if info['worktree_dirty'] else ''}, {info['wrk']}, "
          f"{info['nproc']} CPUs, load average at start {info['loadavg_at_start'][0]:.2f}, at end "
          f"{info['loadavg_at_end'][0]:.2f}; binaries: "
          + ", ".join(f"{n} {b['path']}" for n, b in info["binaries"].items()))
    print(f"JSON: {report.rel(json_path)}")
    if problems:
        for pr in problems:
            print(f"problem: {pr}")
        return 1
    if args.smoke:
        print("smoke: every subject answered every load with 0 errors")
    return 0


def entry() -> int:
    return servers.run_with_cleanup("alone-bench", main, log)


if __name__ == "__main__":
    sys.exit(entry())
