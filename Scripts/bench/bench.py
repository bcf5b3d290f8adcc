#!/usr/bin/env python3
"""Benchmark Switchboard's load-balancing modes against Node.js cluster.

Every subject serves `Handled by worker: <pid>` from W worker processes on
127.0.0.1. For each round and each subject: start it, wait for its ready line,
warm up, run a keep-alive load and a `Connection: close` load with wrk, stop
it. Prints Markdown tables, writes JSON with every raw number, and draws a PNG
chart when matplotlib is available (`bash Scripts/bootstrap.sh chart`).

Standard library only (matplotlib optional); the shared parts are the package
Scripts/benchlib. See Scripts/bench/README.md.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import hashlib
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # Scripts/, for benchlib

from benchlib import HOST, REPO_ROOT, BenchError, make_log  # noqa: E402
from benchlib import chart, loadgen, machine, procfs, report, servers, stats  # noqa: E402
from benchlib.report import fmt_num, fmt_ratio, fmt_spread, markdown_table, rel  # noqa: E402

HERE = Path(__file__).resolve().parent
NODE_SCRIPT = HERE / "node-cluster.js"

SWITCHBOARD_MODES = ["round-robin", "least-connections", "reuseport", "shared", "round-robin-nio", "reuseport-nio",
                     "round-robin-affinity", "reuseport-affinity", "round-robin-deferred", "reuseport-deferred"]
# Subjects named <mode>-nio run the built-in worker on SwiftNIO (`--worker nio`) instead of its own epoll loop.
NIO_SUFFIX = "-nio"
# Subjects named <mode>-affinity pin worker i to CPU i mod n (`--cpu-affinity auto`).
AFFINITY_SUFFIX = "-affinity"
# Subjects named <mode>-deferred accept a connection only once its request is there (`--defer-accept 1`).
DEFERRED_SUFFIX = "-deferred"
# With --base-binary, every Switchboard subject also runs from that binary as <mode>@base, in the same rounds: a
# before/after in one run, on a machine whose speed drifts between runs.
BASE_SUFFIX = "@base"
# Minimal C references (c-subjects.c, built with cc -O2 into bench-results/c/ on first use): the physical limit of
# each design on this machine. c-rr-close closes the master's copy right after sendmsg, c-rr-ack keeps it until the
# worker acknowledges (Switchboard's design), c-reuseport has one SO_REUSEPORT listener per worker.
# c-rr-close-deferred and c-reuseport-deferred set TCP_DEFER_ACCEPT (`--defer-accept 1`) like Switchboard's deferred
# subjects: their like-for-like reference. c-rr-close-slow is c-rr-close whose master spends C_SLOW_MASTER_NS more
# CPU time after each connection it accepts (`--master-work-ns`): how much the close tail depends on the master's CPU
# per connection, measured in the same rounds. c-rr-close-wslow and c-reuseport-wslow are the C pair whose workers
# spend C_SLOW_WORKER_NS more CPU time on each connection they take on (`--worker-work-ns`): how much the close tail,
# and the pair's ratio, depend on the workers' CPU per connection. c-rr-close-batch is c-rr-close whose master runs
# under SCHED_BATCH (`--master-batch`), as Switchboard's master does by default (`--master-scheduling batch`): what the
# policy gives the minimal master, measured in the same rounds.
C_SLOW_SUFFIX = "-slow"
C_SLOW_MASTER_NS = 2000
C_WORKER_SLOW_SUFFIX = "-wslow"
C_SLOW_WORKER_NS = 5000
C_BATCH_SUFFIX = "-batch"
C_MODES = ["c-rr-close", "c-rr-ack", "c-reuseport", "c-rr-close-deferred", "c-reuseport-deferred", "c-rr-close-slow",
           "c-rr-close-wslow", "c-reuseport-wslow", "c-rr-close-batch"]
C_SOURCE = HERE / "c-subjects.c"
C_BUILD_DIR = REPO_ROOT / "bench-results" / "c"
C_BINARY_NAME = "c-subjects"
C_FLAGS = ["-O2", "-Wall", "-Wextra"]
NODE_MODES = ["node-rr", "node-none"]
ALL_MODES = SWITCHBOARD_MODES + C_MODES + NODE_MODES
# Subjects whose master accepts and passes every connection on: only their master CPU per connection is compared.
PASSING_MODES = {"round-robin", "least-connections", "round-robin-nio", "round-robin-affinity", "round-robin-deferred",
                 "c-rr-close", "c-rr-ack", "c-rr-close-deferred", "c-rr-close-slow", "c-rr-close-wslow",
                 "c-rr-close-batch", "node-rr"}
# --sweep's subjects unless --modes names others.
SWEEP_DEFAULT_MODES = ["round-robin", "c-rr-close"]

WARMUP_S = 1
WRK_BOUND_PCT = 95.0  # wrk at this % of a core or more set the pace, not the server

# Ratios of medians reported in the second table: (numerator, denominator).
RATIO_PAIRS = [
    ("round-robin", "reuseport"),
    ("round-robin", "node-rr"),
    ("round-robin", "node-none"),
    ("reuseport", "node-rr"),
    ("least-connections", "round-robin"),
    ("reuseport", "round-robin"),
    ("shared", "round-robin"),
    ("node-rr", "node-none"),
    ("round-robin-nio", "reuseport-nio"),
    ("round-robin-nio", "node-rr"),
    ("c-rr-close", "c-reuseport"),
    ("c-rr-ack", "c-reuseport"),
    ("c-rr-ack", "c-rr-close"),
    ("round-robin", "c-rr-close"),
    ("round-robin-affinity", "round-robin"),
    ("reuseport-affinity", "reuseport"),
    ("round-robin-deferred", "reuseport-deferred"),
    ("round-robin-deferred", "round-robin"),
    ("reuseport-deferred", "reuseport"),
    ("round-robin-deferred", "c-rr-close"),
    ("c-rr-close-deferred", "c-reuseport-deferred"),
    ("round-robin-deferred", "c-rr-close-deferred"),
    ("reuseport-deferred", "c-reuseport-deferred"),
    ("round-robin", "c-rr-ack"),
    ("reuseport", "c-reuseport"),
    ("c-rr-close-slow", "c-rr-close"),
    ("c-rr-close-slow", "c-reuseport"),
    ("c-rr-close-wslow", "c-reuseport-wslow"),
    ("c-rr-close-wslow", "c-rr-close"),
    ("c-reuseport-wslow", "c-reuseport"),
    ("c-rr-close-batch", "c-reuseport"),
    ("c-rr-close-batch", "c-rr-close"),
    ("round-robin", "c-rr-close-batch"),
]
RATIO_METRICS = [
    ("close_conn_per_s", "close conn/s"),
    ("keepalive_req_per_s", "keep-alive req/s"),
    ("close_p99_ms", "close p99"),
    ("close_p99_9_ms", "close p99.9"),
    ("keepalive_p99_ms", "keep-alive p99"),
    ("keepalive_p99_9_ms", "keep-alive p99.9"),
    ("server_us_per_conn", "server CPU µs/conn"),
    ("master_us_per_conn", "master CPU µs/conn"),
]

# The table against the C references: Switchboard's passing/own-listener ratios beside the same ratios of the
# minimal C subjects (columns), for each figure of the close load (rows).
REFERENCE_PAIRS = [
    ("Switchboard", "round-robin", "reuseport"),
    ("C, close after send", "c-rr-close", "c-reuseport"),
    ("C, close on ack", "c-rr-ack", "c-reuseport"),
    ("Switchboard, deferred", "round-robin-deferred", "reuseport-deferred"),
    ("C, deferred", "c-rr-close-deferred", "c-reuseport-deferred"),
    ("C, master 2 µs slower", "c-rr-close-slow", "c-reuseport"),
    ("C, workers 5 µs slower", "c-rr-close-wslow", "c-reuseport-wslow"),
    ("C, master SCHED_BATCH", "c-rr-close-batch", "c-reuseport"),
]
REFERENCE_METRICS = [
    ("close_conn_per_s", "close conn/s"),
    ("close_p99_ms", "close p99"),
    ("close_p99_9_ms", "close p99.9"),
    ("server_us_per_conn", "server CPU µs/conn"),
    ("workers_us_per_conn", "workers CPU µs/conn"),
]
# Master CPU per passed connection against the C masters: (numerator, denominator).
MASTER_REFERENCE_PAIRS = [
    ("round-robin", "c-rr-close"),
    ("round-robin-deferred", "c-rr-close-deferred"),
    ("round-robin", "c-rr-ack"),
    ("c-rr-ack", "c-rr-close"),
    ("c-rr-close-slow", "c-rr-close"),
    ("round-robin", "c-rr-close-batch"),
    ("c-rr-close-batch", "c-rr-close"),
]

# Worker sweep: master CPU per passed connection at each worker count.
SWEEP_FIGURES = [
    ("master_us_per_conn", "master CPU µs per passed connection", 1),
    ("close_conn_per_s", "close conn/s", 0),
    ("workers_us_per_conn", "workers CPU µs per connection", 1),
    ("close_p99_ms", "close p99 ms", 2),
    ("close_p99_9_ms", "close p99.9 ms", 2),
]
# Shown in one table (median server % / median wrk %), without flatness: they say who set the pace.
SWEEP_CPU = [("server_cpu_pct_of_one_core", "server"), ("wrk_cpu_pct_of_one_core", "wrk")]
SWEEP_RATIO_PAIRS = [("round-robin", "c-rr-close"), ("round-robin", "c-rr-ack"), ("c-rr-ack", "c-rr-close")]

CLK_TCK = procfs.CLK_TCK

log = make_log("bench")


# --------------------------------------------------------------------------
# Settings: the command line resolved once (defaults, checks, subjects, CPU placement, paths); never changed after.

@dataclass(frozen=True)
class Pinning:
    """--pin SERVER:WRK: servers and wrk start under `taskset -c <cpus>` (taskset execs the command, so the master
    keeps the pid bench.py started; workers inherit the affinity)."""
    server_cpus: str
    wrk_cpus: str
    taskset: str

    def as_json(self) -> dict:
        return {"server_cpus": self.server_cpus, "wrk_cpus": self.wrk_cpus, "taskset": self.taskset}


@dataclass(frozen=True)
class Settings:
    duration: int
    count_duration: int
    rounds: int
    workers: int
    connections: int
    modes: list[str]
    quick: bool
    smoke: bool
    new_sessions: bool
    no_chart: bool
    sweep_counts: list[int] | None
    pin: Pinning | None
    binary: str | None  # --binary as given
    base_binary: str | None  # --base-binary as given
    json_path: Path
    chart_path: Path
    logdir: Path
    command: list[str]

    @property
    def popen_options(self) -> dict:
        # Subjects and wrk each lead a process group of their own (so everything a subject started can be found
        # and stopped), but stay in this session. A new session would also put each of them in an autogroup of
        # its own where the kernel has sched_autogroup_enabled=1, and on 2 cores shared with wrk that group
        # scheduling costs the designs whose processes hand work to each other (an accepting master and its
        # workers) 30-40% of their connection-per-request throughput, while barely touching the others. See
        # BENCHMARKS.md; --new-sessions measures it.
        return dict(servers.OWN_SESSION if self.new_sessions else servers.OWN_GROUP)

    @property
    def server_prefix(self) -> list[str]:
        return [self.pin.taskset, "-c", self.pin.server_cpus] if self.pin else []

    @property
    def wrk_prefix(self) -> list[str]:
        return [self.pin.taskset, "-c", self.pin.wrk_cpus] if self.pin else []

    @property
    def pin_json(self) -> dict | None:
        return self.pin.as_json() if self.pin else None

    @property
    def pin_label(self) -> str:
        return f"pinned {self.pin.server_cpus}:{self.pin.wrk_cpus}" if self.pin else "unpinned"


def parse_args(argv):
    p = argparse.ArgumentParser(
        description="Benchmark Switchboard modes against Node.js cluster and minimal C references "
                    "(loopback only).")
    p.add_argument("--duration", type=int, default=None,
                   help="seconds per load (default 10; --quick 2; --smoke 1; --sweep 5)")
    p.add_argument("--count-duration", type=int, default=None,
                   help="seconds of each load's second, counting pass that measures the "
                        "per-worker distribution (default: half of --duration, at least 1)")
    p.add_argument("--rounds", type=int, default=None,
                   help="interleaved rounds (default 3; --quick/--smoke 1)")
    p.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
    p.add_argument("--connections", type=int, default=50,
                   help="wrk connections (default 50)")
    p.add_argument("--modes", default=None,
                   help="comma list from: " + ",".join(ALL_MODES) + " (default: all; with --sweep: "
                        + ",".join(SWEEP_DEFAULT_MODES) + ")")
    p.add_argument("--base-binary", default=None, metavar="PATH",
                   help="also run each Switchboard subject of --modes from this binary (an earlier build) as "
                        "<mode>@base in the same rounds, with before/after ratios")
    p.add_argument("--binary", default=None,
                   help="switchboard binary (default: swift build -c release "
                        "--scratch-path .build-bench)")
    p.add_argument("--json", default=None,
                   help="JSON output (default bench-results/bench.json; with --sweep bench-results/sweep.json)")
    p.add_argument("--chart", default=None,
                   help="PNG chart (default: the JSON path with .png, bench-results/bench.png)")
    p.add_argument("--no-chart", action="store_true", help="do not draw the chart")
    p.add_argument("--quick", action="store_true", help="duration 2 s, 1 round")
    p.add_argument("--pin", nargs="?", const="0:1", default=None, metavar="SERVER_CPUS:WRK_CPUS",
                   help="pin the server processes (master and workers) and wrk to disjoint CPUs with taskset "
                        "(default 0:1: server on CPU 0, wrk on CPU 1), so that the server, not wrk, is the "
                        "bottleneck")
    p.add_argument("--sweep", default=None, metavar="W1,W2,...",
                   help="instead of the comparison, run the close load at each of these worker counts (e.g. "
                        "1,2,4,8,16) for round-robin and c-rr-close (or --modes) and report master CPU per "
                        "passed connection at each and its flatness (default 5 s per point, 3 rounds)")
    p.add_argument("--new-sessions", action="store_true",
                   help="start every subject and wrk in a session of its own (and so, where "
                        "sched_autogroup_enabled=1, in an autogroup of its own), to measure what "
                        "group scheduling does to each design")
    p.add_argument("--smoke", action="store_true",
                   help="CI check: 1 round of 1 s; fail unless every subject answered "
                        "without errors from every worker")
    return p.parse_args(argv)


def parse_sweep(text: str) -> list[int]:
    try:
        counts = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise BenchError(f"--sweep takes worker counts such as 1,2,4,8,16, got '{text}'")
    if not counts or any(w < 1 for w in counts):
        raise BenchError(f"--sweep takes worker counts >= 1, got '{text}'")
    return sorted(set(counts))


def resolve_durations(args, sweep_counts) -> tuple[int, int, int]:
    """(duration, count_duration, rounds): explicit flags, else the defaults of --smoke, --quick, --sweep or a full
    run; checked."""
    if args.quick or args.smoke:
        default_duration, default_rounds = (1, 1) if args.smoke else (2, 1)
    elif sweep_counts is not None:
        default_duration, default_rounds = 5, 3
    else:
        default_duration, default_rounds = 10, 3
    duration = default_duration if args.duration is None else args.duration
    rounds = default_rounds if args.rounds is None else args.rounds
    if duration < 1:
        raise BenchError("--duration must be a whole number of seconds >= 1")
    count_duration = max(1, duration // 2) if args.count_duration is None else args.count_duration
    if count_duration < 1:
        raise BenchError("--count-duration must be a whole number of seconds >= 1")
    if rounds < 1:
        raise BenchError("--rounds must be >= 1")
    if args.workers < 1:
        raise BenchError("--workers must be >= 1")
    if args.connections < 1:
        raise BenchError("--connections must be >= 1")
    return duration, count_duration, rounds


def select_modes(args, sweep_counts, node: str | None, cc: str | None) -> list[str]:
    """--modes checked against ALL_MODES and the tools found; without it: --smoke's, --sweep's or every subject
    whose tools are there."""
    if args.modes is None:
        if args.smoke:
            return ["round-robin"] + (["node-rr"] if node else [])
        modes = list(SWEEP_DEFAULT_MODES if sweep_counts is not None else ALL_MODES)
        if not node and any(m in NODE_MODES for m in modes):
            log("warning: node not found; skipping node-rr and node-none")
            modes = [m for m in modes if m not in NODE_MODES]
        if not cc and any(m in C_MODES for m in modes):
            log("warning: no C compiler (cc, gcc or clang) found; skipping " + ", ".join(C_MODES))
            modes = [m for m in modes if m not in C_MODES]
        return modes
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    if not modes:
        raise BenchError("--modes is empty")
    for m in modes:
        if m not in ALL_MODES:
            raise BenchError(f"unknown mode '{m}' (choose from {', '.join(ALL_MODES)})")
    modes = list(dict.fromkeys(modes))
    if any(m in NODE_MODES for m in modes) and not node:
        raise BenchError("node not found on PATH (needed for node-rr/node-none)")
    if any(m in C_MODES for m in modes) and not cc:
        raise BenchError("no C compiler (cc, gcc or clang) on PATH (needed for " + ", ".join(C_MODES) + ")")
    return modes


def setup_pinning(spec: str) -> Pinning:
    """--pin SERVER:WRK (default 0:1): checks taskset and the CPUs."""
    taskset = shutil.which("taskset")
    if not taskset:
        raise BenchError("--pin needs taskset (util-linux): apt-get install -y util-linux")
    if ":" not in spec:
        raise BenchError(f"--pin takes SERVER_CPUS:WRK_CPUS such as 0:1, got '{spec}'")
    server_text, wrk_text = (x.strip() for x in spec.split(":", 1))
    try:
        server, wrk = procfs.parse_cpu_list(server_text), procfs.parse_cpu_list(wrk_text)
    except ValueError as e:
        raise BenchError(f"--pin: {e}")
    available = os.sched_getaffinity(0)
    missing = (server | wrk) - available
    if missing:
        raise BenchError(f"--pin: CPU(s) {', '.join(map(str, sorted(missing)))} not available to this process "
                         f"(it may run on {', '.join(map(str, sorted(available)))})")
    if server & wrk:
        raise BenchError(f"--pin: the server and wrk CPUs overlap ({spec})")
    return Pinning(server_text, wrk_text, taskset)


def resolve_settings(args, argv, node: str | None, cc: str | None) -> Settings:
    sweep_counts = parse_sweep(args.sweep) if args.sweep is not None else None
    if sweep_counts is not None and args.smoke:
        raise BenchError("--sweep and --smoke do not go together")
    duration, count_duration, rounds = resolve_durations(args, sweep_counts)
    modes = select_modes(args, sweep_counts, node, cc)
    if args.base_binary:
        if sweep_counts is not None or args.smoke:
            raise BenchError("--base-binary goes with a normal run, not --sweep or --smoke")
        modes = [x for m in modes for x in ([m, m + BASE_SUFFIX] if m in SWITCHBOARD_MODES else [m])]
    pin = setup_pinning(args.pin) if args.pin is not None else None
    default_json = "sweep.json" if sweep_counts is not None else "bench.json"
    json_path = Path(args.json) if args.json else REPO_ROOT / "bench-results" / default_json
    return Settings(
        duration=duration, count_duration=count_duration, rounds=rounds, workers=args.workers,
        connections=args.connections, modes=modes, quick=args.quick, smoke=args.smoke,
        new_sessions=args.new_sessions, no_chart=args.no_chart, sweep_counts=sweep_counts, pin=pin,
        binary=args.binary, base_binary=args.base_binary, json_path=json_path,
        chart_path=Path(args.chart) if args.chart else json_path.with_suffix(".png"),
        logdir=json_path.resolve().parent / "logs",
        command=[sys.argv[0]] + (sys.argv[1:] if argv is None else list(argv)))


# --------------------------------------------------------------------------
# The run: settings, the tools and binaries found or built, the machine, and the registry of what it started.

@dataclass
class Run:
    settings: Settings
    registry: servers.Registry
    started: _dt.datetime
    wrk: str
    node: str | None
    binary: str | None
    c_binary: str | None
    c_build: dict | None
    base_binary: str | None = None
    info: dict = field(default_factory=dict)
    placement: str = ""

    def wrk_load(self, url: str, duration: int, close: bool, script: bool = True, count: bool = False,
                 companions: dict[str, list[int]] | None = None):
        s = self.settings
        return loadgen.run_wrk(self.wrk, url, duration, s.connections, close, self.registry, script=script,
                               count=count, prefix=s.wrk_prefix, popen_options=s.popen_options,
                               companions=companions)

    def server(self, mode: str, workers: int, logname: str) -> servers.Server:
        """The subject `mode` with `workers` workers, not started yet."""
        argv, env = subject_command(self, mode, workers)
        return servers.Server(mode, argv, env, self.settings.logdir / logname, workers, self.registry,
                              popen_options=self.settings.popen_options,
                              mode=base_mode(mode.removesuffix(BASE_SUFFIX)))

    def config(self) -> dict:
        s = self.settings
        return {
            "modes": s.modes, "rounds": s.rounds, "duration_s": s.duration,
            "warmup_s": WARMUP_S, "count_duration_s": s.count_duration,
            "workers": s.workers, "connections": s.connections,
            "wrk_threads": 1, "host": HOST, "quick": s.quick, "smoke": s.smoke,
            "new_sessions": s.new_sessions,
            "pinned": s.pin is not None, "pin": s.pin_json, "placement": self.placement,
            "sweep_workers": s.sweep_counts,
            "base_binary": self.base_binary,
            "command": s.command,
        }

    def document(self, body: dict, kind: str | None = None) -> dict:
        """The JSON document: schema (and kind), times, config, machine, then `body`."""
        finished = _dt.datetime.now().astimezone()
        head = {"schema": 1} if kind is None else {"schema": 1, "kind": kind}
        return {**head, "started": self.started.isoformat(timespec="seconds"),
                "finished": finished.isoformat(timespec="seconds"), "config": self.config(),
                "machine": self.info, **body}


def prepare_run(settings: Settings, registry: servers.Registry, started, node: str | None,
                cc: str | None) -> Run:
    """Finds or builds what the subjects need (switchboard, the C subjects, wrk) and describes the machine."""
    modes = settings.modes
    binary = None
    if any(m in SWITCHBOARD_MODES for m in modes):
        binary = checked_binary(settings.binary) if settings.binary else build_switchboard(settings.logdir)
    c_binary, c_build = None, None
    if any(m in C_MODES for m in modes):
        c_binary, c_build = build_c_subjects(settings.logdir, cc)
    elif settings.smoke and cc:
        # --smoke does not run the C subjects (each would add about 5 s), but checks that they build (well under
        # a second); without a compiler it skips that check.
        c_binary, c_build = build_c_subjects(settings.logdir, cc)
    wrk = loadgen.ensure_wrk(log)
    run = Run(settings, registry, started, wrk, node, binary, c_binary, c_build,
              base_binary=checked_binary(settings.base_binary) if settings.base_binary else None)
    run.info = machine.machine_info(wrk, node if any(m in NODE_MODES for m in modes) else None, binary, c_build,
                                    new_sessions=settings.new_sessions)
    run.placement = pin_description(settings.pin, run.info["nproc"])
    if settings.pin is None and run.info["nproc"] <= 2:
        log("note: unpinned on 2 CPUs, wrk competes with the servers for CPU; --pin puts them on separate CPUs")
    return run


def checked_binary(path: str) -> str:
    b = Path(path)
    if not b.is_file():
        raise BenchError(f"switchboard binary not found: {path}")
    if not os.access(b, os.X_OK):
        raise BenchError(f"switchboard binary is not executable: {path}")
    return str(b.resolve())


def pin_description(pin: Pinning | None, nproc: int) -> str:
    if pin is None:
        return f"unpinned (server processes and wrk may run on any of the {nproc} CPUs)"
    return (f"pinned with taskset: server processes (master and workers) on CPU {pin.server_cpus}, "
            f"wrk on CPU {pin.wrk_cpus}")


# --------------------------------------------------------------------------
# Subjects and their builds

def base_mode(mode: str) -> str:
    """The `--mode` a subject runs: its name without the -nio, -affinity, -deferred or (C) -slow, -wslow or -batch
    variant."""
    return (mode.removesuffix(NIO_SUFFIX).removesuffix(AFFINITY_SUFFIX).removesuffix(DEFERRED_SUFFIX)
            .removesuffix(C_WORKER_SLOW_SUFFIX).removesuffix(C_SLOW_SUFFIX).removesuffix(C_BATCH_SUFFIX))


def subject_command(run: Run, mode: str, workers: int) -> tuple[list[str], dict]:
    env = dict(os.environ)
    binary = run.base_binary if mode.endswith(BASE_SUFFIX) else run.binary
    mode = mode.removesuffix(BASE_SUFFIX)
    if mode in SWITCHBOARD_MODES:
        argv = [binary, "--host", HOST, "--port", "0", "--workers", str(workers),
                "--mode", base_mode(mode),
                "--worker", "nio" if mode.endswith(NIO_SUFFIX) else "native"]
        if mode.endswith(AFFINITY_SUFFIX):
            argv += ["--cpu-affinity", "auto"]
        if mode.endswith(DEFERRED_SUFFIX):
            argv += ["--defer-accept", "1"]
    elif mode in C_MODES:
        # The C master prints its --mode: `... with <n> workers (c-rr-close)`.
        argv = [run.c_binary, "--mode", base_mode(mode), "--host", HOST, "--port", "0", "--workers", str(workers)]
        if mode.endswith(DEFERRED_SUFFIX):
            argv += ["--defer-accept", "1"]
        if mode.endswith(C_WORKER_SLOW_SUFFIX):
            argv += ["--worker-work-ns", str(C_SLOW_WORKER_NS)]
        elif mode.endswith(C_SLOW_SUFFIX):
            argv += ["--master-work-ns", str(C_SLOW_MASTER_NS)]
        elif mode.endswith(C_BATCH_SUFFIX):
            argv += ["--master-batch"]
    else:
        env["NODE_CLUSTER_SCHED_POLICY"] = "rr" if mode == "node-rr" else "none"
        argv = [run.node, str(NODE_SCRIPT), "--host", HOST, "--port", "0", "--workers", str(workers)]
    return run.settings.server_prefix + argv, env


def find_c_compiler() -> str | None:
    """$CC if set (first word), else cc, gcc or clang from PATH."""
    cc_env = os.environ.get("CC", "").split()
    for name in ([cc_env[0]] if cc_env else []) + ["cc", "gcc", "clang"]:
        found = shutil.which(name)
        if found:
            return found
    return None


def build_c_subjects(logdir: Path, cc: str) -> tuple[str, dict]:
    """Builds c-subjects.c with `cc -O2` into bench-results/c/ unless a build of this very source with this compiler
    and these flags is there already (a stamp holds their sha256). Returns the binary's path and build info."""
    version = loadgen.tool_version([cc, "--version"])
    source = C_SOURCE.read_bytes()
    key = hashlib.sha256(
        "\0".join([cc, version, " ".join(C_FLAGS)]).encode() + b"\0" + source).hexdigest()
    C_BUILD_DIR.mkdir(parents=True, exist_ok=True)
    binary = C_BUILD_DIR / C_BINARY_NAME
    stamp = C_BUILD_DIR / (C_BINARY_NAME + ".stamp")
    info = {"compiler": cc, "compiler_version": version, "flags": C_FLAGS,
            "source_sha256": hashlib.sha256(source).hexdigest(), "binary": str(binary), "built": False}
    try:
        fresh = stamp.read_text().strip() == key and binary.is_file() and os.access(binary, os.X_OK)
    except OSError:
        fresh = False
    if not fresh:
        compile_c_subjects(logdir, cc, binary)
        stamp.write_text(key + "\n")
        info["built"] = True
    info["binary_sha256"] = hashlib.sha256(binary.read_bytes()).hexdigest()
    return str(binary), info


def compile_c_subjects(logdir: Path, cc: str, binary: Path) -> None:
    logdir.mkdir(parents=True, exist_ok=True)
    build_log = logdir / "c-build.log"
    tmp = C_BUILD_DIR / f".{C_BINARY_NAME}.{os.getpid()}.tmp"
    cmd = [cc] + C_FLAGS + ["-o", str(tmp), str(C_SOURCE)]
    log(f"building the C subjects: {' '.join([Path(cc).name] + cmd[1:])} (log: {rel(build_log)})")
    with open(build_log, "wb") as fh:
        fh.write(f"# {' '.join(cmd)}\n".encode())
        try:
            rc = subprocess.run(cmd, cwd=str(REPO_ROOT), stdin=subprocess.DEVNULL, stdout=fh,
                                stderr=subprocess.STDOUT, timeout=300).returncode
        except subprocess.TimeoutExpired:
            rc = "timeout"
    if rc != 0 or not tmp.is_file():
        try:
            tmp.unlink()
        except OSError:
            pass
        raise BenchError(f"building {rel(C_SOURCE)} failed ({rc}; log: {rel(build_log)})")
    os.replace(tmp, binary)


def build_switchboard(logdir: Path) -> str:
    swift = shutil.which("swift")
    if not swift:
        raise BenchError("swift not found; build switchboard elsewhere and pass --binary PATH")
    logdir.mkdir(parents=True, exist_ok=True)
    build_log = logdir / "build.log"
    cmd = [swift, "build", "-c", "release", "--scratch-path", ".build-bench",
           "--product", "switchboard"]
    log(f"building: {' '.join(cmd[1:])} (log: {rel(build_log)})")
    with open(build_log, "wb") as fh:
        rc = subprocess.run(cmd, cwd=str(REPO_ROOT), stdin=subprocess.DEVNULL,
                            stdout=fh, stderr=subprocess.STDOUT).returncode
    if rc != 0:
        raise BenchError(f"swift build failed with status {rc} (log: {rel(build_log)})")
    binary = REPO_ROOT / ".build-bench" / "release" / "switchboard"
    if not binary.is_file():
        raise BenchError(f"swift build succeeded but {rel(binary)} is missing")
    return str(binary)


# --------------------------------------------------------------------------
# One measurement of one subject

def summarize_load(raw: dict, counted: dict, workers: list[int], master_ticks: int | None,
                   worker_ticks: int | None) -> dict:
    """Throughput, latency and CPU come from the plain pass `raw`; the per-worker
    distribution and body checks from the counting pass `counted`; errors from both."""
    per_pid = {str(k): int(v) for k, v in counted["per_pid"].items()}
    worker_keys = [str(p) for p in workers]
    if worker_keys:
        counts = {k: per_pid.get(k, 0) for k in worker_keys}
    else:
        counts = dict(per_pid)
    unknown = {k: v for k, v in per_pid.items() if k not in counts}
    values = list(counts.values())
    total = sum(values)
    requests = int(raw["requests"])
    duration_s = raw["duration_us"] / 1e6 if raw["duration_us"] else None
    errors = {k: int(raw["errors"][k]) + int(counted["errors"][k]) for k in raw["errors"]}
    socket_errors = errors["connect"] + errors["read"] + errors["write"] + errors["timeout"]
    master_us = master_ticks * 1e6 / CLK_TCK if master_ticks is not None else None
    workers_us = worker_ticks * 1e6 / CLK_TCK if worker_ticks is not None else None
    counted_s = counted["duration_us"] / 1e6 if counted["duration_us"] else None
    return {
        "requests": requests,
        "duration_s": duration_s,
        "req_per_s": stats.per_unit(requests, duration_s),
        "latency_ms": loadgen.latency_ms(raw),
        "errors": errors,
        "socket_errors": socket_errors,
        # wrk counts HTTP statuses above 399 as status errors in both passes; the
        # counting pass also sees 1xx/3xx.
        "non2xx": int(counted["non2xx"]) + int(raw["errors"]["status"]),
        "unmatched_bodies": int(counted["unmatched"]),
        "counted_responses": int(counted["requests"]),
        "counted_req_per_s": stats.per_unit(counted["requests"], counted_s),
        "per_worker": counts,
        "unknown_pids": unknown,
        "shares": {k: (v / total if total else 0.0) for k, v in counts.items()},
        "jain": stats.jain(values),
        "max_min": stats.max_min(values),
        "wrk_cpu_s": raw.get("wrk_cpu_s"),
        "wrk_cpu_pct_of_one_core": stats.pct_of_core(raw.get("wrk_cpu_s"), duration_s),
        # wrk's threads runnable but waiting for a CPU, ms per s: where wrk shares a CPU with the server, the tail
        # it measures follows this (BENCHMARKS.md, tail latency, eighteenth part).
        "wrk_waited_ms_per_s": (raw.get("wrk_waiting") or {}).get("waited_ms_per_s"),
        # The share of wrk's samples that found a server worker (or the master) last run on wrk's CPU: unpinned, the
        # keep-alive tail follows it (BENCHMARKS.md, tail latency, twentieth part). Pinned apart from wrk, it is 0.
        "workers_on_wrk_cpu": on_wrk_cpu(raw, "workers"),
        "master_on_wrk_cpu": on_wrk_cpu(raw, "master"),
        "master_cpu_us": master_us,
        "workers_cpu_us": workers_us,
        "master_us_per_req": stats.per_unit(master_us, requests),
        "workers_us_per_req": stats.per_unit(workers_us, requests),
        "wrk": raw,
        "wrk_counting": counted,
    }


def on_wrk_cpu(raw: dict, role: str) -> float | None:
    """The share of wrk's samples (0 to 1) that found a process of `role` last run on wrk's CPU; None when the load
    was run without companions or had no sample."""
    shares = (raw.get("wrk_waiting") or {}).get("on_its_cpu") or {}
    return shares.get(role)


def _delta(before: int | None, after: int | None) -> int | None:
    return after - before if before is not None and after is not None else None


def measure(run: Run, srv: servers.Server, round_no: int) -> dict:
    url = f"http://{HOST}:{srv.port}/"
    master = srv.proc.pid
    run.wrk_load(url, WARMUP_S, close=False, script=False)
    loads = {}
    for load, close in (("keepalive", False), ("close", True)):
        m0, w0 = procfs.cpu_ticks(master), procfs.total_ticks(srv.workers)
        raw = run.wrk_load(url, run.settings.duration, close=close,
                           companions={"master": [master], "workers": list(srv.workers)})
        m1, w1 = procfs.cpu_ticks(master), procfs.total_ticks(srv.workers)
        counted = run.wrk_load(url, run.settings.count_duration, close=close, count=True)
        loads[load] = summarize_load(raw, counted, srv.workers, _delta(m0, m1), _delta(w0, w1))
    return {
        "round": round_no,
        "port": srv.port,
        "ready_line": srv.ready_line,
        "master_pid": master,
        "worker_pids": srv.workers,
        "cpus_allowed": server_affinity(srv),
        "alive_after_loads": srv.proc.poll() is None,
        **loads,
    }


def server_affinity(srv: servers.Server) -> dict:
    """Where the master and each worker may run (Cpus_allowed_list): shows --pin took effect."""
    return {str(pid): procfs.cpus_allowed(pid) for pid in [srv.proc.pid] + list(srv.workers)}


def check_affinity(name: str, affinity: dict, pin: Pinning | None) -> None:
    if pin is None:
        return
    wanted = procfs.parse_cpu_list(pin.server_cpus)
    wrong = {pid: cpus for pid, cpus in affinity.items()
             if cpus is not None and procfs.parse_cpu_list(cpus) != wanted}
    if wrong:
        log(f"warning: {name}: not pinned to CPU {pin.server_cpus}: "
            + ", ".join(f"pid {pid} on {cpus}" for pid, cpus in wrong.items()))


def cpu_pct(load: dict) -> tuple[float | None, float | None]:
    """Percent of one core the server (master + workers) and wrk used during a timed load. A wrk near 100 was the
    bottleneck: with one wrk thread it cannot go faster whatever the server does."""
    dur = load.get("duration_s")
    server = None
    if dur and load.get("master_cpu_us") is not None and load.get("workers_cpu_us") is not None:
        server = 100.0 * (load["master_cpu_us"] + load["workers_cpu_us"]) / 1e6 / dur
    return server, load.get("wrk_cpu_pct_of_one_core")


def pct(share: float | None) -> float | None:
    return None if share is None else 100.0 * share


def key_figures(r: dict) -> dict:
    ka, cl = r["keepalive"], r["close"]
    close_server_pct, close_wrk_pct = cpu_pct(cl)
    ka_server_pct, ka_wrk_pct = cpu_pct(ka)
    return {
        "close_server_cpu_pct": close_server_pct,
        "close_wrk_cpu_pct": close_wrk_pct,
        "keepalive_server_cpu_pct": ka_server_pct,
        "keepalive_wrk_cpu_pct": ka_wrk_pct,
        "keepalive_wrk_waited_ms_per_s": ka.get("wrk_waited_ms_per_s"),
        "close_wrk_waited_ms_per_s": cl.get("wrk_waited_ms_per_s"),
        "keepalive_workers_on_wrk_cpu_pct": pct(ka.get("workers_on_wrk_cpu")),
        "close_workers_on_wrk_cpu_pct": pct(cl.get("workers_on_wrk_cpu")),
        "close_master_on_wrk_cpu_pct": pct(cl.get("master_on_wrk_cpu")),
        "keepalive_req_per_s": ka["req_per_s"],
        "keepalive_p50_ms": ka["latency_ms"]["p50"],
        "keepalive_p99_ms": ka["latency_ms"]["p99"],
        "keepalive_p99_9_ms": ka["latency_ms"]["p99.9"],
        "close_conn_per_s": cl["req_per_s"],
        "close_p50_ms": cl["latency_ms"]["p50"],
        "close_p99_ms": cl["latency_ms"]["p99"],
        "close_p99_9_ms": cl["latency_ms"]["p99.9"],
        "jain_close": cl["jain"],
        "jain_keepalive": ka["jain"],
        "max_min_close": cl["max_min"],
        "max_min_keepalive": ka["max_min"],
        "master_us_per_conn": cl["master_us_per_req"],
        "master_us_per_req_keepalive": ka["master_us_per_req"],
        "workers_us_per_conn": cl["workers_us_per_req"],
        "workers_us_per_req_keepalive": ka["workers_us_per_req"],
        "server_us_per_conn": (cl["master_us_per_req"] or 0) + cl["workers_us_per_req"]
        if cl["workers_us_per_req"] is not None else None,
        "errors": ka["socket_errors"] + cl["socket_errors"],
        "non2xx": ka["non2xx"] + cl["non2xx"],
    }


# --------------------------------------------------------------------------
# The comparison: every subject, round after round

def measure_subjects(run: Run) -> dict:
    """Rounds are interleaved (A B C, A B C, ...) so slow drifts of the machine hit every subject alike."""
    s = run.settings
    subjects = {m: {"rounds": []} for m in s.modes}
    for rnd in range(1, s.rounds + 1):
        for mode in s.modes:
            srv = run.server(mode, s.workers, f"{mode}-round{rnd}.log")
            try:
                srv.start()
                result = measure(run, srv, rnd)
            finally:
                stop_info = srv.stop()
            result["stop"] = stop_info
            check_affinity(mode, result["cpus_allowed"], s.pin)
            subjects[mode]["rounds"].append(result)
            kf = key_figures(result)
            log(f"round {rnd}/{s.rounds} {mode:17s} keep-alive "
                f"{kf['keepalive_req_per_s']:>9,.0f} req/s  close {kf['close_conn_per_s']:>8,.0f} "
                f"conn/s  master {fmt_num(kf['master_us_per_conn'], 1)} µs/conn  "
                f"errors {kf['errors'] + kf['non2xx']}")
    return subjects


def summarize_subjects(subjects: dict) -> None:
    """Adds each subject's key figures per round, their medians and their spreads (min–max over rounds)."""
    for s in subjects.values():
        figs = [key_figures(r) for r in s["rounds"]]
        keys = figs[0].keys()
        s["median"] = {k: stats.median_or_none([f[k] for f in figs]) for k in keys}
        s["spread"] = {k: stats.spread([f[k] for f in figs]) for k in keys}
        s["per_round"] = figs


def ratio_pairs(subjects: dict) -> list[tuple[str, str]]:
    """RATIO_PAIRS, and with --base-binary the same pairs among the base subjects (against the same C and Node
    references) and each subject against its base."""
    pairs = list(RATIO_PAIRS)
    if any(m.endswith(BASE_SUFFIX) for m in subjects):
        def base(m: str) -> str:
            return m + BASE_SUFFIX if m in SWITCHBOARD_MODES else m
        pairs += [(base(n), base(d)) for n, d in RATIO_PAIRS if n in SWITCHBOARD_MODES]
        pairs += [(m, m + BASE_SUFFIX) for m in subjects if m + BASE_SUFFIX in subjects]
    return pairs


def compute_ratios(subjects: dict) -> list[dict]:
    out = []
    for num, den in ratio_pairs(subjects):
        if num not in subjects or den not in subjects:
            continue
        row = {"name": f"{num}/{den}", "numerator": num, "denominator": den}
        for key, _ in RATIO_METRICS:
            row[key] = stats.ratio(subjects[num]["median"].get(key), subjects[den]["median"].get(key))
            if key == "master_us_per_conn" and not (num.removesuffix(BASE_SUFFIX) in PASSING_MODES
                                                    and den.removesuffix(BASE_SUFFIX) in PASSING_MODES):
                row[key] = None  # a master that does not accept spends ~0 per connection: no ratio
        out.append(row)
    return out


def ratio_with_spread(subjects: dict, num: str, den: str, key: str) -> dict:
    """Ratio of medians, and the min–max of the per-round ratios (rounds are interleaved, so round i of one subject
    ran right beside round i of the other)."""
    a, b = subjects[num]["median"].get(key), subjects[den]["median"].get(key)
    per_round = stats.paired_ratios([f.get(key) for f in subjects[num]["per_round"]],
                                    [f.get(key) for f in subjects[den]["per_round"]])
    return {"numerator": num, "denominator": den, "metric": key,
            "numerator_median": a, "denominator_median": b,
            "ratio": stats.ratio(a, b),
            "per_round": per_round, "per_round_spread": stats.spread(per_round)}


def compute_reference(subjects: dict) -> dict | None:
    """Switchboard against the minimal C subjects: passing/own-listener ratios side by side, and the master's CPU
    per passed connection against the C masters."""
    columns = []
    for label, num, den in REFERENCE_PAIRS:
        if num in subjects and den in subjects:
            columns.append({"label": label, "numerator": num, "denominator": den,
                            "figures": {key: ratio_with_spread(subjects, num, den, key)
                                        for key, _ in REFERENCE_METRICS}})
    master = {"us_per_conn": {}, "ratios": []}
    for m in ("round-robin", "c-rr-close", "c-rr-ack", "round-robin-deferred", "c-rr-close-deferred",
              "c-rr-close-slow", "c-rr-close-wslow", "c-rr-close-batch"):
        if m in subjects:
            master["us_per_conn"][m] = {"median": subjects[m]["median"].get("master_us_per_conn"),
                                        "spread": subjects[m]["spread"].get("master_us_per_conn")}
    for num, den in MASTER_REFERENCE_PAIRS:
        if num in subjects and den in subjects:
            master["ratios"].append(ratio_with_spread(subjects, num, den, "master_us_per_conn"))
    if not columns and not master["ratios"]:
        return None
    return {"columns": columns, "master": master}


def smoke_verdict(subjects: dict, workers: int) -> dict:
    """--smoke: every subject answered both loads, with no errors, from every worker and from workers only.
    Node's cluster is a reference, not a subject under test: its hiccups (on a loaded 2-CPU machine its workers can
    miss a 1 s load altogether) are reported, and fail the smoke only for our own subjects."""
    problems = []
    for mode, s in subjects.items():
        for r in s["rounds"]:
            problems += round_problems(mode, r, workers)
    reference_problems = [p for p in problems if p.split(" ")[0].rstrip(":") in NODE_MODES]
    problems = [p for p in problems if p not in reference_problems]
    for problem in reference_problems:
        log(f"smoke: reference subject only, not counted: {problem}")
    return {"ok": not problems, "problems": problems, "reference_problems": reference_problems}


def round_problems(mode: str, r: dict, workers: int) -> list[str]:
    problems = []
    if len(r["worker_pids"]) != workers:
        problems.append(f"{mode}: {len(r['worker_pids'])} worker processes, expected {workers}")
    for load in ("keepalive", "close"):
        L = r[load]
        if L["requests"] == 0:
            problems.append(f"{mode} {load}: no responses")
        if L["socket_errors"] or L["non2xx"] or L["unmatched_bodies"]:
            problems.append(f"{mode} {load}: {L['socket_errors']} socket errors "
                            f"{L['errors']}, {L['non2xx']} non-2xx, "
                            f"{L['unmatched_bodies']} unexpected bodies")
        missing = [p for p, n in L["per_worker"].items() if n == 0]
        if missing:
            problems.append(f"{mode} {load}: no response from worker(s) {', '.join(missing)}")
        if L["unknown_pids"]:
            problems.append(f"{mode} {load}: responses from pids that are not "
                            f"workers: {', '.join(L['unknown_pids'])}")
    if not r["alive_after_loads"]:
        problems.append(f"{mode}: master exited during the loads")
    return problems


# --------------------------------------------------------------------------
# The comparison's tables

def results_table(subjects: dict, rounds: int) -> str:
    show = rounds > 1
    head = ["subject", "keep-alive req/s", "ka p50 ms", "ka p99 ms", "ka p99.9 ms", "close conn/s",
            "close p50 ms", "close p99 ms", "close p99.9 ms", "Jain close / ka", "max/min close / ka",
            "master µs/conn", "workers µs/conn", "close CPU % server / wrk", "wrk waited ms/s ka / close",
            "a worker on wrk's CPU % ka / close", "errors"]
    rows = []
    for name, s in subjects.items():
        m, sp = s["median"], s["spread"]
        err_total = sum(key_figures(r)["errors"] + key_figures(r)["non2xx"]
                        + r["keepalive"]["unmatched_bodies"] + r["close"]["unmatched_bodies"]
                        for r in s["rounds"])
        rows.append([
            name,
            fmt_spread(m["keepalive_req_per_s"], sp["keepalive_req_per_s"], 0, show),
            fmt_num(m["keepalive_p50_ms"], 2),
            fmt_spread(m["keepalive_p99_ms"], sp["keepalive_p99_ms"], 2, show),
            fmt_spread(m["keepalive_p99_9_ms"], sp["keepalive_p99_9_ms"], 2, show),
            fmt_spread(m["close_conn_per_s"], sp["close_conn_per_s"], 0, show),
            fmt_num(m["close_p50_ms"], 2),
            fmt_spread(m["close_p99_ms"], sp["close_p99_ms"], 2, show),
            fmt_spread(m["close_p99_9_ms"], sp["close_p99_9_ms"], 2, show),
            f"{fmt_num(m['jain_close'], 3)} / {fmt_num(m['jain_keepalive'], 3)}",
            f"{fmt_num(m['max_min_close'], -1)} / {fmt_num(m['max_min_keepalive'], -1)}",
            fmt_spread(m["master_us_per_conn"], sp["master_us_per_conn"], 1, show),
            fmt_num(m["workers_us_per_conn"], 1),
            f"{fmt_num(m['close_server_cpu_pct'])} / {fmt_num(m['close_wrk_cpu_pct'])}",
            f"{fmt_num(m['keepalive_wrk_waited_ms_per_s'], 1)} / {fmt_num(m['close_wrk_waited_ms_per_s'], 1)}",
            f"{fmt_num(m['keepalive_workers_on_wrk_cpu_pct'], 1)} / {fmt_num(m['close_workers_on_wrk_cpu_pct'], 1)}",
            fmt_num(err_total),
        ])
    return markdown_table(head, report.first_left(len(head)), rows)


def bottleneck_note(subjects: dict, pin: Pinning | None) -> str:
    """Which timed loads wrk itself limited (wrk at >= WRK_BOUND_PCT % of a core)."""
    bound, total = [], 0
    for name, s in subjects.items():
        for f in s["per_round"]:
            for load in ("close", "keepalive"):
                total += 1
                w = f.get(f"{load}_wrk_cpu_pct")
                if w is not None and w >= WRK_BOUND_PCT:
                    bound.append(f"{name} {load}")
    where = (f"the server's CPU {pin.server_cpus}" if pin else "the machine's CPUs")
    text = (f"CPU % is of one core (server = master + workers; with --pin the server's ceiling is 100 × the number of "
            f"its CPUs). wrk used >= {WRK_BOUND_PCT:.0f}% of a core in {len(bound)} of {total} timed loads")
    if not bound:
        return text + ": the server set the pace everywhere."
    names = sorted(set(bound))
    return (text + f" ({', '.join(names)}): there one wrk thread, not the server, set the pace, and throughput "
            f"compares wrk's cost per request more than the servers'; the CPU per connection still compares the "
            f"servers. A server well below its ceiling on {where} had room to spare.")


def ratio_table(ratios: list[dict]) -> str:
    head = ["ratio of medians"] + [label for _, label in RATIO_METRICS]
    rows = [[r["name"]] + [fmt_ratio(r[k]) for k, _ in RATIO_METRICS] for r in ratios]
    return markdown_table(head, report.first_left(len(head)), rows)


def _fmt_ratio_spread(r: dict, show_spread: bool) -> str:
    text = fmt_ratio(r["ratio"])
    sp = r["per_round_spread"]
    if show_spread and sp is not None and len(r["per_round"]) > 1 and fmt_ratio(sp[0]) != fmt_ratio(sp[1]):
        text += f" ({fmt_ratio(sp[0])}–{fmt_ratio(sp[1])})"
    return text


def reference_tables(ref: dict, rounds: int) -> str:
    show = rounds > 1
    parts = []
    if ref["columns"]:
        head = ["close load: ratio of medians"] + [f"{c['label']}: {c['numerator']} / {c['denominator']}"
                                                   for c in ref["columns"]]
        rows = [[label] + [_fmt_ratio_spread(c["figures"][key], show) for c in ref["columns"]]
                for key, label in REFERENCE_METRICS]
        parts.append(markdown_table(head, report.first_left(len(head)), rows))
    m = ref["master"]
    if m["us_per_conn"] or m["ratios"]:
        rows = [[f"{name}, µs/conn", fmt_spread(v["median"], v["spread"], 1, show)]
                for name, v in m["us_per_conn"].items()]
        rows += [[f"{r['numerator']} / {r['denominator']}", _fmt_ratio_spread(r, show)] for r in m["ratios"]]
        parts.append(markdown_table(["master CPU per passed connection (close load)", "value"],
                                    report.first_left(2), rows))
    return "\n\n".join(parts)


def print_comparison(run: Run, subjects: dict, ratios: list[dict], reference: dict | None) -> None:
    s, info = run.settings, run.info
    print(f"## Switchboard benchmark ({s.rounds} round(s), {s.duration} s per load, "
          f"{s.workers} workers, {s.connections} connections, "
          f"{'pinned' if s.pin else 'unpinned'})")
    print()
    print(f"Machine: {info['nproc']} CPUs, {info['cpu_model']}, Linux {info['kernel']}; "
          f"{info['wrk']}" + (f"; node {info['node']}" if info["node"] else "")
          + (f"; {run.c_build['compiler_version']}" if run.c_build else ""))
    print()
    print(f"CPU placement: {run.placement}.")
    print()
    print(results_table(subjects, s.rounds))
    print()
    print("Throughput, latency and CPU come from a plain wrk pass; Jain and max/min from a second pass "
          "whose Lua script tallies every response by worker pid (too costly for wrk to time with).")
    print()
    if s.rounds > 1:
        print("Figures are medians over rounds; (min–max) shows the spread.")
        print()
    print(bottleneck_note(subjects, s.pin))
    print()
    if ratios:
        print(ratio_table(ratios))
        print()
    if reference:
        print("Against the C references (ratios of medians" + ("; per-round min–max in brackets" if
                                                                s.rounds > 1 else "") + "):")
        print()
        print(reference_tables(reference, s.rounds))
        print()


def draw_chart(run: Run, kind: str, data: dict) -> None:
    """Prints `Chart: <path>`, or `Chart: skipped (<why, and the install command>)`."""
    if run.settings.no_chart:
        return
    why_not = chart.render(kind, data, run.settings.chart_path)
    print(f"Chart: {rel(run.settings.chart_path)}" if why_not is None else f"Chart: skipped ({why_not})")


def run_comparison(run: Run) -> int:
    s, info = run.settings, run.info
    log(f"modes {','.join(s.modes)}; {s.rounds} round(s) x ({s.duration} s timed + "
        f"{s.count_duration} s counting) per load; "
        f"{s.workers} workers; {s.connections} connections; "
        f"{info['nproc']} CPUs ({info['cpu_model']}); {info['wrk']}; {run.placement}")
    subjects = measure_subjects(run)
    summarize_subjects(subjects)
    ratios = compute_ratios(subjects)
    reference = compute_reference(subjects)
    print_comparison(run, subjects, ratios, reference)
    smoke = smoke_verdict(subjects, s.workers) if s.smoke else None
    doc = run.document({"subjects": subjects, "ratios": ratios, "reference": reference})
    if smoke is not None:
        doc["smoke"] = smoke
    report.write_json(s.json_path, doc)
    print(f"JSON: {rel(s.json_path)}")
    draw_chart(run, "comparison", {
        "subjects": subjects, "workers": s.workers,
        "title": f"Switchboard vs Node cluster and C references — {s.workers} workers, {s.connections} conns, "
                 f"{s.duration} s x {s.rounds} round(s), {info['nproc']} CPUs, {s.pin_label}"})
    return smoke_exit(run, smoke) if smoke is not None else 0


def smoke_exit(run: Run, smoke: dict) -> int:
    if smoke["ok"]:
        if run.c_build is not None and not any(m in C_MODES for m in run.settings.modes):
            print(f"C subjects: {rel(C_SOURCE)} builds ({run.c_build['compiler_version']}); not run in --smoke")
        print("SMOKE OK: every subject answered with zero errors from every worker")
        return 0
    for p in smoke["problems"]:
        print(f"SMOKE FAIL: {p}", file=sys.stderr)
    return 1


# --------------------------------------------------------------------------
# Worker sweep: master CPU per passed connection at each worker count

def measure_close(run: Run, srv: servers.Server, round_no: int, workers: int) -> dict:
    """One sweep point: 1 s warm-up, then the timed close load only (no counting pass)."""
    url = f"http://{HOST}:{srv.port}/"
    master = srv.proc.pid
    run.wrk_load(url, WARMUP_S, close=False, script=False)
    m0 = procfs.cpu_ticks(master)
    w0 = {pid: procfs.cpu_ticks(pid) for pid in srv.workers}
    raw = run.wrk_load(url, run.settings.duration, close=True)
    m1 = procfs.cpu_ticks(master)
    w1 = {pid: procfs.cpu_ticks(pid) for pid in srv.workers}
    requests = int(raw["requests"])
    duration_s = raw["duration_us"] / 1e6 if raw["duration_us"] else None
    master_ticks = _delta(m0, m1)
    master_us = master_ticks * 1e6 / CLK_TCK if master_ticks is not None else None
    per_worker = {str(pid): _delta(w0[pid], w1[pid]) for pid in srv.workers}
    workers_us = (sum(per_worker.values()) * 1e6 / CLK_TCK
                  if per_worker and None not in per_worker.values() else None)
    socket_errors = sum(int(raw["errors"][k]) for k in ("connect", "read", "write", "timeout"))
    latency = loadgen.latency_ms(raw)
    return {
        "round": round_no, "workers": workers, "found_workers": len(srv.workers),
        "master_pid": master, "worker_pids": srv.workers, "cpus_allowed": server_affinity(srv),
        "alive_after_load": srv.proc.poll() is None,
        "requests": requests, "duration_s": duration_s,
        "close_conn_per_s": stats.per_unit(requests, duration_s),
        "close_p50_ms": latency["p50"], "close_p99_ms": latency["p99"], "close_p99_9_ms": latency["p99.9"],
        "errors": socket_errors + int(raw["errors"]["status"]),
        "master_cpu_us": master_us, "workers_cpu_us": workers_us,
        "master_us_per_conn": stats.per_unit(master_us, requests),
        "workers_us_per_conn": stats.per_unit(workers_us, requests),
        "worker_cpu_ticks": per_worker,
        "server_cpu_pct_of_one_core": (100.0 * (master_us + workers_us) / 1e6 / duration_s
                                       if master_us is not None and workers_us is not None and duration_s
                                       else None),
        "wrk_cpu_pct_of_one_core": stats.pct_of_core(raw.get("wrk_cpu_s"), duration_s),
        "wrk": raw,
    }


def measure_sweep_points(run: Run) -> dict:
    """For each round, each worker count and each subject (interleaved): start, warm up, one timed close load."""
    s = run.settings
    counts = s.sweep_counts
    points = {m: {w: [] for w in counts} for m in s.modes}
    total = s.rounds * len(counts) * len(s.modes)
    done = 0
    for rnd in range(1, s.rounds + 1):
        for w in counts:
            for mode in s.modes:
                srv = run.server(mode, w, f"sweep-{mode}-w{w}-round{rnd}.log")
                try:
                    srv.start()
                    result = measure_close(run, srv, rnd, w)
                finally:
                    stop_info = srv.stop()
                result["stop"] = stop_info
                check_affinity(f"{mode} w{w}", result["cpus_allowed"], s.pin)
                points[mode][w].append(result)
                done += 1
                log(f"sweep {done}/{total} round {rnd} {mode:12s} {w:>3} workers: close "
                    f"{fmt_num(result['close_conn_per_s'])} conn/s  master "
                    f"{fmt_num(result['master_us_per_conn'], 1)} µs/conn  workers "
                    f"{fmt_num(result['workers_us_per_conn'], 1)} µs/conn  errors {result['errors']}")
    return points


def summarize_sweep(points: dict, counts: list[int]) -> dict:
    """Medians and spreads per subject and worker count, each figure's flatness across the counts, and the master
    CPU ratios against the C masters at each count."""
    keys = [f[0] for f in SWEEP_FIGURES] + [c[0] for c in SWEEP_CPU]
    out = {}
    for mode, per_w in points.items():
        per_count = {}
        for w in counts:
            rs = per_w[w]
            per_count[str(w)] = {
                "rounds": rs,
                "median": {k: stats.median_or_none([r[k] for r in rs]) for k in keys},
                "spread": {k: stats.spread([r[k] for r in rs]) for k in keys},
                "errors": sum(r["errors"] for r in rs),
            }
        flat = {k: stats.flatness(per_count[str(w)]["median"][k] for w in counts) for k, _, _ in SWEEP_FIGURES}
        out[mode] = {"points": per_count, "flatness": flat}
    ratios = []
    for num, den in SWEEP_RATIO_PAIRS:
        if num in out and den in out:
            per_w = {str(w): stats.ratio(out[num]["points"][str(w)]["median"]["master_us_per_conn"],
                                         out[den]["points"][str(w)]["median"]["master_us_per_conn"])
                     for w in counts}
            ratios.append({"name": f"{num}/{den}", "metric": "master_us_per_conn", "per_workers": per_w})
    return {"counts": counts, "subjects": out, "ratios": ratios}


def sweep_tables(sweep: dict, rounds: int) -> str:
    counts = sweep["counts"]
    show = rounds > 1
    parts = []
    for key, label, digits in SWEEP_FIGURES:
        head = [label] + [f"{w} worker{'s' if w != 1 else ''}" for w in counts] + ["flatness (max/min)"]
        rows = []
        for mode, sub in sweep["subjects"].items():
            cells = [fmt_spread(sub["points"][str(w)]["median"][key], sub["points"][str(w)]["spread"][key],
                                digits, show) for w in counts]
            rows.append([mode] + cells + [fmt_ratio(sub["flatness"][key])])
        if key == "master_us_per_conn":
            rows += [[r["name"]] + [fmt_ratio(r["per_workers"][str(w)]) for w in counts] + [""]
                     for r in sweep["ratios"]]
        parts.append(markdown_table(head, report.first_left(len(head)), rows))
    head = ["close CPU % of one core, server / wrk"] + [str(w) for w in counts]
    rows = [[mode] + [" / ".join(fmt_num(sub["points"][str(w)]["median"][k]) for k, _ in SWEEP_CPU)
                      for w in counts]
            for mode, sub in sweep["subjects"].items()]
    parts.append(markdown_table(head, report.first_left(len(head)), rows))
    errors = {m: sum(p["errors"] for p in sub["points"].values()) for m, sub in sweep["subjects"].items()}
    parts.append("Errors (wrk socket errors + non-2xx, all points): "
                 + ", ".join(f"{m} {n}" for m, n in errors.items()))
    return "\n\n".join(parts)


def print_sweep(run: Run, sweep: dict) -> None:
    s, info = run.settings, run.info
    print(f"## Worker sweep ({s.rounds} round(s), {s.duration} s close load per point, "
          f"{s.connections} connections, {'pinned' if s.pin else 'unpinned'})")
    print()
    print(f"Machine: {info['nproc']} CPUs, {info['cpu_model']}, Linux {info['kernel']}; {info['wrk']}"
          + (f"; {info['c_subjects']['compiler_version']}" if info.get("c_subjects") else ""))
    print()
    print(f"CPU placement: {run.placement}.")
    print()
    if s.rounds > 1:
        print("Figures are medians over rounds; (min–max) shows the spread. Flatness is the largest median over "
              "the smallest across the worker counts (1.00 = the cost per connection does not depend on them).")
    else:
        print("Flatness is the largest figure over the smallest across the worker counts (1.00 = the cost per "
              "connection does not depend on them).")
    print()
    print(sweep_tables(sweep, s.rounds))
    print()


def run_sweep(run: Run) -> int:
    s, info = run.settings, run.info
    counts = s.sweep_counts
    log(f"sweep: modes {','.join(s.modes)}; workers {','.join(map(str, counts))}; {s.rounds} round(s) x "
        f"{s.duration} s close load per point (+{WARMUP_S} s warm-up); {s.connections} connections; "
        f"{info['nproc']} CPUs; {run.placement}; {s.rounds * len(counts) * len(s.modes)} points")
    sweep = summarize_sweep(measure_sweep_points(run), counts)
    print_sweep(run, sweep)
    report.write_json(s.json_path, run.document({"sweep": sweep}, kind="sweep"))
    print(f"JSON: {rel(s.json_path)}")
    draw_chart(run, "sweep", {
        "sweep": sweep, "figures": [[key, label] for key, label, _ in SWEEP_FIGURES[:3]],
        "title": f"Worker sweep — close load, {s.connections} conns, {s.duration} s x {s.rounds} round(s), "
                 f"{info['nproc']} CPUs, {s.pin_label}"})
    return 0


# --------------------------------------------------------------------------
# Main

def main(registry: servers.Registry, argv=None) -> int:
    """Everything this run starts is in `registry`; the caller cleans it up, whatever happens."""
    args = parse_args(argv)
    started = _dt.datetime.now().astimezone()
    node, cc = shutil.which("node"), find_c_compiler()
    settings = resolve_settings(args, argv, node, cc)
    run = prepare_run(settings, registry, started, node, cc)
    return run_sweep(run) if settings.sweep_counts is not None else run_comparison(run)


def entry() -> int:
    return servers.run_with_cleanup("bench", main, log)


if __name__ == "__main__":
    sys.exit(entry())
