#!/usr/bin/env python3
"""Benchmark Switchboard's load-balancing modes against Node.js cluster.

Every subject serves `Handled by worker: <pid>` from W worker processes on
127.0.0.1. For each round and each subject: start it, wait for its ready line,
warm up, run a keep-alive load and a `Connection: close` load with wrk, stop
it. Prints Markdown tables, writes JSON with every raw number, and draws a PNG
chart when matplotlib is available.

Standard library only (matplotlib optional). See Scripts/bench/README.md.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import hashlib
import importlib
import json
import math
import os
import platform
import re
import resource
import selectors
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parent.parent
LUA_SCRIPT = HERE / "count.lua"
NODE_SCRIPT = HERE / "node-cluster.js"

SWITCHBOARD_MODES = ["round-robin", "least-connections", "reuseport", "shared", "round-robin-nio", "reuseport-nio",
                     "round-robin-affinity", "reuseport-affinity"]
# Subjects named <mode>-nio run the built-in worker on SwiftNIO (`--worker nio`) instead of its own epoll loop.
NIO_SUFFIX = "-nio"
# Subjects named <mode>-affinity pin worker i to CPU i mod n (`--cpu-affinity auto`).
AFFINITY_SUFFIX = "-affinity"
# Minimal C references (c-subjects.c, built with cc -O2 into bench-results/c/ on first use): the physical limit of
# each design on this machine. c-rr-close closes the master's copy right after sendmsg, c-rr-ack keeps it until the
# worker acknowledges (Switchboard's design), c-reuseport has one SO_REUSEPORT listener per worker.
C_MODES = ["c-rr-close", "c-rr-ack", "c-reuseport"]
C_SOURCE = HERE / "c-subjects.c"
C_BUILD_DIR = REPO_ROOT / "bench-results" / "c"
C_BINARY_NAME = "c-subjects"
C_FLAGS = ["-O2", "-Wall", "-Wextra"]
NODE_MODES = ["node-rr", "node-none"]
ALL_MODES = SWITCHBOARD_MODES + C_MODES + NODE_MODES
# Subjects whose master accepts and passes every connection on: only their master CPU per connection is compared.
PASSING_MODES = {"round-robin", "least-connections", "round-robin-nio", "round-robin-affinity", "c-rr-close", "c-rr-ack",
                 "node-rr"}
# --sweep's subjects unless --modes names others.
SWEEP_DEFAULT_MODES = ["round-robin", "c-rr-close"]

HOST = "127.0.0.1"
READY_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0
WARMUP_S = 1
READY_RE = re.compile(r"^listening on (\S+):(\d+) with (\d+) workers \(([^)]*)\)\s*$")
WRK_MARKER = "SWITCHBOARD_BENCH_JSON "

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
    ("round-robin", "c-rr-ack"),
    ("reuseport", "c-reuseport"),
]
RATIO_METRICS = [
    ("close_conn_per_s", "close conn/s"),
    ("keepalive_req_per_s", "keep-alive req/s"),
    ("close_p99_ms", "close p99"),
    ("keepalive_p99_ms", "keep-alive p99"),
    ("server_us_per_conn", "server CPU µs/conn"),
    ("master_us_per_conn", "master CPU µs/conn"),
]

# The table against the C references: Switchboard's passing/own-listener ratios beside the same ratios of the
# minimal C subjects (columns), for each figure of the close load (rows).
REFERENCE_PAIRS = [
    ("Switchboard", "round-robin", "reuseport"),
    ("C, close after send", "c-rr-close", "c-reuseport"),
    ("C, close on ack", "c-rr-ack", "c-reuseport"),
]
REFERENCE_METRICS = [
    ("close_conn_per_s", "close conn/s"),
    ("close_p99_ms", "close p99"),
    ("server_us_per_conn", "server CPU µs/conn"),
    ("workers_us_per_conn", "workers CPU µs/conn"),
]
# Master CPU per passed connection against the C masters: (numerator, denominator).
MASTER_REFERENCE_PAIRS = [
    ("round-robin", "c-rr-close"),
    ("round-robin", "c-rr-ack"),
    ("c-rr-ack", "c-rr-close"),
]

CLK_TCK = os.sysconf("SC_CLK_TCK")


# Subjects and wrk each lead a process group of their own (so everything a subject started can be found and
# stopped), but stay in this session. A new session would also put each of them in an autogroup of its own where
# the kernel has sched_autogroup_enabled=1, and on 2 cores shared with wrk that group scheduling costs the designs
# whose processes hand work to each other (an accepting master and its workers) 30-40% of their
# connection-per-request throughput, while barely touching the others. See BENCHMARKS.md.
GROUP = {"process_group": 0}

# --pin: commands that start the servers and wrk are prefixed with `taskset -c <cpus>` (taskset execs the command,
# so the master keeps the pid bench.py started; workers inherit the affinity). Empty: not pinned.
SERVER_PREFIX: list[str] = []
WRK_PREFIX: list[str] = []


class BenchError(Exception):
    """A fatal, user-facing error: printed as one line, non-zero exit."""


def log(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------
# /proc helpers

def read_stat(pid: int) -> list[str] | None:
    """Fields of /proc/<pid>/stat after the comm field: [state, ppid, pgrp, ...].

    Index i here is field i+3 of proc(5) (state is field 3).
    """
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read().decode("ascii", "replace")
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    rparen = data.rfind(")")
    if rparen < 0:
        return None
    return data[rparen + 2:].split()


def cpu_ticks(pid: int) -> int | None:
    """utime + stime (proc(5) fields 14 and 15) in clock ticks."""
    st = read_stat(pid)
    if st is None:
        return None
    return int(st[11]) + int(st[12])


def is_alive(pid: int) -> bool:
    st = read_stat(pid)
    return st is not None and st[0] not in ("Z", "X")


def all_pids() -> list[int]:
    return [int(name) for name in os.listdir("/proc") if name.isdigit()]


def children_of(ppid: int) -> list[int]:
    out = []
    for pid in all_pids():
        st = read_stat(pid)
        if st is not None and st[0] not in ("Z", "X") and int(st[1]) == ppid:
            out.append(pid)
    return sorted(out)


def group_members(pgid: int) -> list[int]:
    out = []
    for pid in all_pids():
        st = read_stat(pid)
        if st is not None and st[0] not in ("Z", "X") and int(st[2]) == pgid:
            out.append(pid)
    return out


# --------------------------------------------------------------------------
# Process registry: everything we start is killed on exit, by PID.

_LIVE: list["Server"] = []
_WRK: list[subprocess.Popen] = []


class Terminated(BaseException):
    """Raised from the SIGTERM/SIGHUP handler so that every finally block runs."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


def _on_signal(signum, frame):  # pragma: no cover - signal path
    raise Terminated(signum)


class Server:
    """One running subject (master plus its workers)."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], logfile: Path,
                 workers: int, popen_options: dict | None = None, mode: str | None = None):
        self.name = name
        # How the master is started (default: leading its own process group) and the mode its ready line names.
        self.popen_options = popen_options if popen_options is not None else dict(GROUP)
        self.mode = mode if mode is not None else name.removesuffix(NIO_SUFFIX).removesuffix(AFFINITY_SUFFIX)
        self.argv = argv
        self.env = env
        self.logfile = logfile
        self.expected_workers = workers
        self.proc: subprocess.Popen | None = None
        self.pgid: int | None = None
        self.port: int | None = None
        self.ready_line: str | None = None
        self.ready_mode: str | None = None
        self.workers: list[int] = []
        self._log_fh = None
        self._drain: threading.Thread | None = None

    # -- start ------------------------------------------------------------
    def start(self) -> None:
        self.logfile.parent.mkdir(parents=True, exist_ok=True)
        self._log_fh = open(self.logfile, "ab", buffering=0)
        self._log_fh.write(f"# {' '.join(self.argv)}\n".encode())
        try:
            self.proc = subprocess.Popen(
                self.argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                stderr=self._log_fh, env=self.env, cwd=str(REPO_ROOT), **self.popen_options)
        except OSError as e:
            raise BenchError(f"{self.name}: cannot start {self.argv[0]}: {e.strerror}")
        self.pgid = self.proc.pid  # process_group=0: the master leads its own group
        _LIVE.append(self)
        self._wait_ready()
        self._drain = threading.Thread(target=self._drain_stdout, daemon=True)
        self._drain.start()
        # The ready line says every worker is up; allow a moment for /proc anyway.
        deadline = time.monotonic() + 2.0
        while True:
            self.workers = children_of(self.proc.pid)
            if len(self.workers) >= self.expected_workers or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        if len(self.workers) != self.expected_workers:
            log(f"warning: {self.name}: found {len(self.workers)} worker processes "
                f"(children of pid {self.proc.pid}), expected {self.expected_workers}")

    def _wait_ready(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        sel = selectors.DefaultSelector()
        sel.register(fd, selectors.EVENT_READ)
        buf = b""
        deadline = time.monotonic() + READY_TIMEOUT_S
        try:
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise BenchError(
                        f"{self.name}: no ready line within {READY_TIMEOUT_S:.0f} s "
                        f"(log: {rel(self.logfile)})")
                if not sel.select(min(remaining, 0.5)):
                    continue
                chunk = os.read(fd, 4096)
                if not chunk:
                    code = self.proc.wait(timeout=5)
                    raise BenchError(
                        f"{self.name}: exited with status {code} before its ready line "
                        f"(log: {rel(self.logfile)})")
                self._log_fh.write(chunk)
                buf += chunk
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    text = line.decode("utf-8", "replace").strip()
                    m = READY_RE.match(text)
                    if m:
                        self.ready_line = text
                        self.port = int(m.group(2))
                        n = int(m.group(3))
                        self.ready_mode = m.group(4)
                        if self.ready_mode != self.mode:
                            log(f"warning: {self.name}: ready line reports mode "
                                f"'{self.ready_mode}'")
                        if n != self.expected_workers:
                            log(f"warning: {self.name}: ready line reports {n} workers, "
                                f"expected {self.expected_workers}")
                        return
        finally:
            sel.close()

    def _drain_stdout(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        try:
            while True:
                chunk = os.read(fd, 65536)
                if not chunk:
                    break
                self._log_fh.write(chunk)
        except (OSError, ValueError):
            pass

    # -- stop -------------------------------------------------------------
    def stop(self) -> dict:
        """SIGTERM the master, wait, then SIGKILL whatever is left (by PID)."""
        info = {"graceful": None, "exit_status": None, "killed": []}
        if self.proc is None:
            return info
        if self.proc.poll() is None:
            try:
                os.kill(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=STOP_TIMEOUT_S)
                info["graceful"] = True
            except subprocess.TimeoutExpired:
                info["graceful"] = False
                log(f"warning: {self.name}: master {self.proc.pid} ignored SIGTERM for "
                    f"{STOP_TIMEOUT_S:.0f} s; sending SIGKILL")
                self._kill_pid(self.proc.pid, info)
                try:
                    self.proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    pass
        info["exit_status"] = self.proc.returncode
        # Workers should follow the master; give them a moment, then kill them.
        deadline = time.monotonic() + 5.0
        leftovers = self._leftovers()
        while leftovers and time.monotonic() < deadline:
            time.sleep(0.05)
            leftovers = self._leftovers()
        for pid in leftovers:
            log(f"warning: {self.name}: pid {pid} still alive after the master exited; "
                "sending SIGKILL")
            self._kill_pid(pid, info)
        if self._drain is not None:
            self._drain.join(timeout=2)
        try:
            if self.proc.stdout is not None:
                self.proc.stdout.close()
        except OSError:
            pass
        if self._log_fh is not None:
            self._log_fh.close()
            self._log_fh = None
        if self in _LIVE:
            _LIVE.remove(self)
        return info

    def _leftovers(self) -> list[int]:
        pids = set(p for p in self.workers if is_alive(p))
        if self.pgid is not None:
            pids.update(group_members(self.pgid))
        return sorted(pids)

    @staticmethod
    def _kill_pid(pid: int, info: dict) -> None:
        try:
            os.kill(pid, signal.SIGKILL)
            info["killed"].append(pid)
        except ProcessLookupError:
            pass


def cleanup_all() -> None:
    for p in list(_WRK):
        if p.poll() is None:
            try:
                os.kill(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
    _WRK.clear()
    for srv in list(_LIVE):
        try:
            srv.stop()
        except Exception as e:  # keep cleaning up the rest
            log(f"warning: cleanup of {srv.name} failed: {e}")


# --------------------------------------------------------------------------
# wrk

def run_wrk(wrk: str, url: str, duration: int, connections: int, close: bool,
            script: bool = True, count: bool = False) -> dict | None:
    """Runs wrk once. With `count` the Lua script tallies every response per
    worker pid, which makes wrk itself several times slower per response: use
    it for distribution only, never for throughput or latency."""
    cmd = WRK_PREFIX + [wrk, "-t", "1", "-c", str(connections), "-d", f"{duration}s", "--latency"]
    if script:
        cmd += ["-s", str(LUA_SCRIPT)]
    if close:
        cmd += ["-H", "Connection: close"]
    cmd.append(url)
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    env = dict(os.environ, SWITCHBOARD_BENCH_COUNT="1" if count else "0")
    p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True, env=env, **GROUP)
    _WRK.append(p)
    try:
        out, _ = p.communicate(timeout=duration + 30)
    except BaseException as e:  # timeout, Ctrl-C, SIGTERM: never leave wrk behind
        if p.poll() is None:
            os.kill(p.pid, signal.SIGKILL)
        p.wait()
        if isinstance(e, subprocess.TimeoutExpired):
            raise BenchError(f"wrk did not finish within {duration + 30} s: {' '.join(cmd)}")
        raise
    finally:
        if p in _WRK:
            _WRK.remove(p)
    if not script:
        return None
    # Only wrk is reaped while it runs, so the children's rusage delta is wrk's
    # own CPU time: a hint whether the load generator itself was the bottleneck.
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    wrk_cpu_s = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
    for line in out.splitlines():
        if line.startswith(WRK_MARKER):
            result = json.loads(line[len(WRK_MARKER):])
            result["wrk_cpu_s"] = round(wrk_cpu_s, 4)
            return result
    raise BenchError(f"wrk exited {p.returncode} without a result line: "
                     f"{out.strip().splitlines()[-1] if out.strip() else '(no output)'}")


def wrk_version(wrk: str) -> str:
    try:
        r = subprocess.run([wrk, "-v"], capture_output=True, text=True, timeout=10)
        first = (r.stdout + r.stderr).strip().splitlines()
        return first[0].split(" Copyright")[0].strip() if first else "unknown"
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"


def ensure_wrk() -> str:
    found = shutil.which("wrk")
    if found:
        return found
    cmd = ["apt-get", "install", "-y", "wrk"]
    if os.geteuid() != 0:
        raise BenchError("wrk not found; install it with: sudo apt-get install -y wrk")
    log("wrk not found; running: apt-get install -y wrk")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    ok = subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, timeout=600).returncode == 0
    if not ok:
        log("apt-get install failed; running apt-get update and trying once more")
        subprocess.run(["apt-get", "update"], env=env, stdout=subprocess.DEVNULL, timeout=600)
        subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, timeout=600)
    found = shutil.which("wrk")
    if not found:
        raise BenchError("wrk is still missing after: apt-get install -y wrk")
    return found


# --------------------------------------------------------------------------
# Statistics

def jain(values: list[float]) -> float | None:
    if not values:
        return None
    s = sum(values)
    sq = sum(v * v for v in values)
    if sq == 0:
        return None
    return (s * s) / (len(values) * sq)


def max_min(values: list[float]) -> float | None:
    """max/min over workers; None (shown as ∞) when a worker got nothing."""
    if not values:
        return None
    lo = min(values)
    if lo == 0:
        return None
    return max(values) / lo


def median_or_none(values):
    vals = [v for v in values if v is not None]
    return statistics.median(vals) if vals else None


def spread(values):
    vals = [v for v in values if v is not None]
    return [min(vals), max(vals)] if vals else None


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
    pct = raw["latency_us"]["percentiles"]
    master_us = master_ticks * 1e6 / CLK_TCK if master_ticks is not None else None
    workers_us = worker_ticks * 1e6 / CLK_TCK if worker_ticks is not None else None
    counted_s = counted["duration_us"] / 1e6 if counted["duration_us"] else None
    return {
        "requests": requests,
        "duration_s": duration_s,
        "req_per_s": requests / duration_s if duration_s else None,
        "latency_ms": {
            "p50": pct["50"] / 1000.0, "p75": pct["75"] / 1000.0, "p90": pct["90"] / 1000.0,
            "p99": pct["99"] / 1000.0, "p99.9": pct["99.9"] / 1000.0,
            "mean": raw["latency_us"]["mean"] / 1000.0, "max": raw["latency_us"]["max"] / 1000.0,
        },
        "errors": errors,
        "socket_errors": socket_errors,
        # wrk counts HTTP statuses above 399 as status errors in both passes; the
        # counting pass also sees 1xx/3xx.
        "non2xx": int(counted["non2xx"]) + int(raw["errors"]["status"]),
        "unmatched_bodies": int(counted["unmatched"]),
        "counted_responses": int(counted["requests"]),
        "counted_req_per_s": counted["requests"] / counted_s if counted_s else None,
        "per_worker": counts,
        "unknown_pids": unknown,
        "shares": {k: (v / total if total else 0.0) for k, v in counts.items()},
        "jain": jain(values),
        "max_min": max_min(values),
        "wrk_cpu_s": raw.get("wrk_cpu_s"),
        "wrk_cpu_pct_of_one_core": (100.0 * raw["wrk_cpu_s"] / duration_s
                                    if raw.get("wrk_cpu_s") is not None and duration_s else None),
        "master_cpu_us": master_us,
        "workers_cpu_us": workers_us,
        "master_us_per_req": master_us / requests if master_us is not None and requests else None,
        "workers_us_per_req": workers_us / requests if workers_us is not None and requests else None,
        "wrk": raw,
        "wrk_counting": counted,
    }


def total_ticks(pids: list[int]) -> int | None:
    total = 0
    for pid in pids:
        t = cpu_ticks(pid)
        if t is None:
            return None
        total += t
    return total


def measure(srv: Server, wrk: str, args, round_no: int) -> dict:
    url = f"http://{HOST}:{srv.port}/"
    master = srv.proc.pid
    run_wrk(wrk, url, WARMUP_S, args.connections, close=False, script=False)

    loads = {}
    for load, close in (("keepalive", False), ("close", True)):
        m0, w0 = cpu_ticks(master), total_ticks(srv.workers)
        raw = run_wrk(wrk, url, args.duration, args.connections, close=close)
        m1, w1 = cpu_ticks(master), total_ticks(srv.workers)
        counted = run_wrk(wrk, url, args.count_duration, args.connections, close=close,
                          count=True)
        loads[load] = summarize_load(
            raw, counted, srv.workers,
            m1 - m0 if m0 is not None and m1 is not None else None,
            w1 - w0 if w0 is not None and w1 is not None else None)
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


def server_affinity(srv: Server) -> dict:
    """Where the master and each worker may run (Cpus_allowed_list): shows --pin took effect."""
    return {str(pid): cpus_allowed(pid) for pid in [srv.proc.pid] + list(srv.workers)}


def check_affinity(name: str, affinity: dict, pin: dict | None) -> None:
    if pin is None:
        return
    wrong = {pid: cpus for pid, cpus in affinity.items()
             if cpus is not None and parse_cpu_list(cpus) != parse_cpu_list(pin["server_cpus"])}
    if wrong:
        log(f"warning: {name}: not pinned to CPU {pin['server_cpus']}: "
            + ", ".join(f"pid {pid} on {cpus}" for pid, cpus in wrong.items()))


def cpu_pct(load: dict) -> tuple[float | None, float | None]:
    """Percent of one core the server (master + workers) and wrk used during a timed load. A wrk near 100 was the
    bottleneck: with one wrk thread it cannot go faster whatever the server does."""
    dur = load.get("duration_s")
    server = None
    if dur and load.get("master_cpu_us") is not None and load.get("workers_cpu_us") is not None:
        server = 100.0 * (load["master_cpu_us"] + load["workers_cpu_us"]) / 1e6 / dur
    return server, load.get("wrk_cpu_pct_of_one_core")


WRK_BOUND_PCT = 95.0


def key_figures(r: dict) -> dict:
    ka, cl = r["keepalive"], r["close"]
    close_server_pct, close_wrk_pct = cpu_pct(cl)
    ka_server_pct, ka_wrk_pct = cpu_pct(ka)
    return {
        "close_server_cpu_pct": close_server_pct,
        "close_wrk_cpu_pct": close_wrk_pct,
        "keepalive_server_cpu_pct": ka_server_pct,
        "keepalive_wrk_cpu_pct": ka_wrk_pct,
        "keepalive_req_per_s": ka["req_per_s"],
        "keepalive_p50_ms": ka["latency_ms"]["p50"],
        "keepalive_p99_ms": ka["latency_ms"]["p99"],
        "close_conn_per_s": cl["req_per_s"],
        "close_p50_ms": cl["latency_ms"]["p50"],
        "close_p99_ms": cl["latency_ms"]["p99"],
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
# Subjects

def subject_command(mode: str, args, binary: str | None, node: str | None, c_binary: str | None = None,
                    workers: int | None = None):
    env = dict(os.environ)
    workers = args.workers if workers is None else workers
    if mode in SWITCHBOARD_MODES:
        argv = [binary, "--host", HOST, "--port", "0", "--workers", str(workers),
                "--mode", mode.removesuffix(NIO_SUFFIX).removesuffix(AFFINITY_SUFFIX),
                "--worker", "nio" if mode.endswith(NIO_SUFFIX) else "native"]
        if mode.endswith(AFFINITY_SUFFIX):
            argv += ["--cpu-affinity", "auto"]
    elif mode in C_MODES:
        # The C master prints the subject's own name as its mode: `... with <n> workers (c-rr-close)`.
        argv = [c_binary, "--mode", mode, "--host", HOST, "--port", "0", "--workers", str(workers)]
    else:
        env["NODE_CLUSTER_SCHED_POLICY"] = "rr" if mode == "node-rr" else "none"
        argv = [node, str(NODE_SCRIPT), "--host", HOST, "--port", "0",
                "--workers", str(workers)]
    return SERVER_PREFIX + argv, env


def find_c_compiler() -> str | None:
    """$CC if set (first word), else cc, gcc or clang from PATH."""
    cc_env = os.environ.get("CC", "").split()
    for name in ([cc_env[0]] if cc_env else []) + ["cc", "gcc", "clang"]:
        found = shutil.which(name)
        if found:
            return found
    return None


def c_compiler_version(cc: str) -> str:
    try:
        r = subprocess.run([cc, "--version"], capture_output=True, text=True, timeout=10)
        first = r.stdout.strip().splitlines()
        return first[0] if first else "unknown"
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"


def build_c_subjects(logdir: Path, cc: str) -> tuple[str, dict]:
    """Builds c-subjects.c with `cc -O2` into bench-results/c/ unless a build of this very source with this compiler
    and these flags is there already (a stamp holds their sha256). Returns the binary's path and build info."""
    version = c_compiler_version(cc)
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
        stamp.write_text(key + "\n")
        info["built"] = True
    info["binary_sha256"] = hashlib.sha256(binary.read_bytes()).hexdigest()
    return str(binary), info


def parse_cpu_list(text: str) -> set[int]:
    """A taskset/cpuset list such as `0`, `0-3` or `0,2-3`."""
    cpus: set[int] = set()
    for part in text.split(","):
        part = part.strip()
        if not part:
            raise ValueError(f"empty element in CPU list '{text}'")
        if "-" in part:
            lo, hi = part.split("-", 1)
            a, b = int(lo), int(hi)
            if a > b:
                raise ValueError(f"bad CPU range '{part}'")
            cpus.update(range(a, b + 1))
        else:
            cpus.add(int(part))
    return cpus


def cpus_allowed(pid: int) -> str | None:
    """Cpus_allowed_list from /proc/<pid>/status: where the scheduler may run it."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("Cpus_allowed_list:"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        return None
    return None


def setup_pinning(spec: str) -> dict:
    """--pin SERVER:WRK (default 0:1): checks taskset and the CPUs, sets the command prefixes, returns the config."""
    taskset = shutil.which("taskset")
    if not taskset:
        raise BenchError("--pin needs taskset (util-linux): apt-get install -y util-linux")
    if ":" not in spec:
        raise BenchError(f"--pin takes SERVER_CPUS:WRK_CPUS such as 0:1, got '{spec}'")
    server_text, wrk_text = (x.strip() for x in spec.split(":", 1))
    try:
        server, wrk = parse_cpu_list(server_text), parse_cpu_list(wrk_text)
    except ValueError as e:
        raise BenchError(f"--pin: {e}")
    available = os.sched_getaffinity(0)
    missing = (server | wrk) - available
    if missing:
        raise BenchError(f"--pin: CPU(s) {', '.join(map(str, sorted(missing)))} not available to this process "
                         f"(it may run on {', '.join(map(str, sorted(available)))})")
    if server & wrk:
        raise BenchError(f"--pin: the server and wrk CPUs overlap ({spec})")
    SERVER_PREFIX[:] = [taskset, "-c", server_text]
    WRK_PREFIX[:] = [taskset, "-c", wrk_text]
    return {"server_cpus": server_text, "wrk_cpus": wrk_text, "taskset": taskset}


def pin_description(pin: dict | None, nproc: int) -> str:
    if pin is None:
        return f"unpinned (server processes and wrk may run on any of the {nproc} CPUs)"
    return (f"pinned with taskset: server processes (master and workers) on CPU {pin['server_cpus']}, "
            f"wrk on CPU {pin['wrk_cpus']}")


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
# Machine info

def _read_first_line(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.readline().strip()
    except OSError:
        return None


def machine_info(wrk: str, node: str | None, binary: str | None, c_build: dict | None = None) -> dict:
    cpu_model = None
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key = line.split(":", 1)[0].strip().lower()
                if key in ("model name", "hardware", "cpu model", "processor") and ":" in line:
                    value = line.split(":", 1)[1].strip()
                    if key == "processor" and value.isdigit():
                        continue
                    cpu_model = value
                    break
    except OSError:
        pass
    mem_kb = None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    mem_kb = int(line.split()[1])
    except OSError:
        pass
    node_version = None
    if node:
        try:
            node_version = subprocess.run([node, "--version"], capture_output=True, text=True,
                                          timeout=10).stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            pass
    bin_info = None
    if binary:
        try:
            data = Path(binary).read_bytes()
            st = os.stat(binary)
            bin_info = {"path": binary, "size": st.st_size,
                        "mtime": _dt.datetime.fromtimestamp(st.st_mtime).isoformat(),
                        "sha256": hashlib.sha256(data).hexdigest()}
        except OSError:
            bin_info = {"path": binary}
    git_rev = None
    try:
        r = subprocess.run(["git", "-C", str(REPO_ROOT), "rev-parse", "HEAD"],
                           capture_output=True, text=True, timeout=10)
        if r.returncode == 0:
            git_rev = r.stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        pass
    return {
        "nproc": len(os.sched_getaffinity(0)),
        "cpu_count": os.cpu_count(),
        "cpu_model": cpu_model,
        "mem_total_kb": mem_kb,
        "kernel": platform.release(),
        "uname": " ".join(platform.uname()),
        "loadavg_at_start": os.getloadavg(),
        "python": platform.python_version(),
        "wrk": wrk_version(wrk),
        "node": node_version,
        "switchboard_binary": bin_info,
        "c_subjects": c_build,
        "git_commit": git_rev,
        "sched_autogroup_enabled": _read_first_line("/proc/sys/kernel/sched_autogroup_enabled"),
        "new_sessions": "start_new_session" in GROUP,
        "clk_tck": CLK_TCK,
    }


# --------------------------------------------------------------------------
# Output

def rel(p: Path) -> str:
    try:
        return str(Path(p).resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(p)


def fmt_num(v, digits=0) -> str:
    if v is None:
        return "∞" if digits == -1 else "–"
    if digits == -1:
        digits = 2
    if digits == 0:
        return f"{v:,.0f}"
    return f"{v:,.{digits}f}"


def fmt_spread(med, sp, digits, show_spread) -> str:
    s = fmt_num(med, digits)
    if show_spread and sp is not None and sp[0] != sp[1]:
        s += f" ({fmt_num(sp[0], digits)}–{fmt_num(sp[1], digits)})"
    return s


def results_table(subjects: dict, rounds: int) -> str:
    show = rounds > 1
    head = ["subject", "keep-alive req/s", "ka p50 ms", "ka p99 ms", "close conn/s",
            "close p50 ms", "close p99 ms", "Jain close / ka", "max/min close / ka",
            "master µs/conn", "workers µs/conn", "close CPU % server / wrk", "errors"]
    lines = ["| " + " | ".join(head) + " |",
             "|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|"]
    for name, s in subjects.items():
        m, sp = s["median"], s["spread"]
        err_total = sum(key_figures(r)["errors"] + key_figures(r)["non2xx"]
                        + r["keepalive"]["unmatched_bodies"] + r["close"]["unmatched_bodies"]
                        for r in s["rounds"])
        lines.append("| " + " | ".join([
            name,
            fmt_spread(m["keepalive_req_per_s"], sp["keepalive_req_per_s"], 0, show),
            fmt_num(m["keepalive_p50_ms"], 2),
            fmt_spread(m["keepalive_p99_ms"], sp["keepalive_p99_ms"], 2, show),
            fmt_spread(m["close_conn_per_s"], sp["close_conn_per_s"], 0, show),
            fmt_num(m["close_p50_ms"], 2),
            fmt_spread(m["close_p99_ms"], sp["close_p99_ms"], 2, show),
            f"{fmt_num(m['jain_close'], 3)} / {fmt_num(m['jain_keepalive'], 3)}",
            f"{fmt_num(m['max_min_close'], -1)} / {fmt_num(m['max_min_keepalive'], -1)}",
            fmt_spread(m["master_us_per_conn"], sp["master_us_per_conn"], 1, show),
            fmt_num(m["workers_us_per_conn"], 1),
            f"{fmt_num(m['close_server_cpu_pct'])} / {fmt_num(m['close_wrk_cpu_pct'])}",
            fmt_num(err_total),
        ]) + " |")
    return "\n".join(lines)


def bottleneck_note(subjects: dict, pin: dict | None) -> str:
    """Which timed loads wrk itself limited (wrk at >= WRK_BOUND_PCT % of a core)."""
    bound, total = [], 0
    for name, s in subjects.items():
        for f in s["per_round"]:
            for load in ("close", "keepalive"):
                total += 1
                w = f.get(f"{load}_wrk_cpu_pct")
                if w is not None and w >= WRK_BOUND_PCT:
                    bound.append(f"{name} {load}")
    where = (f"the server's CPU {pin['server_cpus']}" if pin else "the machine's CPUs")
    text = (f"CPU % is of one core (server = master + workers; with --pin the server's ceiling is 100 × the number of "
            f"its CPUs). wrk used >= {WRK_BOUND_PCT:.0f}% of a core in {len(bound)} of {total} timed loads")
    if not bound:
        return text + ": the server set the pace everywhere."
    names = sorted(set(b for b in bound))
    return (text + f" ({', '.join(names)}): there one wrk thread, not the server, set the pace, and throughput "
            f"compares wrk's cost per request more than the servers'; the CPU per connection still compares the "
            f"servers. A server well below its ceiling on {where} had room to spare.")


def compute_ratios(subjects: dict) -> list[dict]:
    out = []
    for num, den in RATIO_PAIRS:
        if num not in subjects or den not in subjects:
            continue
        row = {"name": f"{num}/{den}", "numerator": num, "denominator": den}
        for key, _ in RATIO_METRICS:
            a, b = subjects[num]["median"].get(key), subjects[den]["median"].get(key)
            row[key] = a / b if a is not None and b else None
            if key == "master_us_per_conn" and not (num in PASSING_MODES and den in PASSING_MODES):
                row[key] = None  # a master that does not accept spends ~0 per connection: no ratio
        out.append(row)
    return out


def _ratio_with_spread(subjects: dict, num: str, den: str, key: str) -> dict:
    """Ratio of medians, and the min–max of the per-round ratios (rounds are interleaved, so round i of one subject
    ran right beside round i of the other)."""
    a, b = subjects[num]["median"].get(key), subjects[den]["median"].get(key)
    per_round = []
    for fa, fb in zip(subjects[num]["per_round"], subjects[den]["per_round"]):
        x, y = fa.get(key), fb.get(key)
        if x is not None and y:
            per_round.append(x / y)
    return {"numerator": num, "denominator": den, "metric": key,
            "numerator_median": a, "denominator_median": b,
            "ratio": a / b if a is not None and b else None,
            "per_round": per_round, "per_round_spread": spread(per_round)}


def compute_reference(subjects: dict) -> dict | None:
    """Switchboard against the minimal C subjects: passing/own-listener ratios side by side, and the master's CPU
    per passed connection against the C masters."""
    columns = []
    for label, num, den in REFERENCE_PAIRS:
        if num in subjects and den in subjects:
            columns.append({"label": label, "numerator": num, "denominator": den,
                            "figures": {key: _ratio_with_spread(subjects, num, den, key)
                                        for key, _ in REFERENCE_METRICS}})
    master = {"us_per_conn": {}, "ratios": []}
    for m in ("round-robin", "c-rr-close", "c-rr-ack"):
        if m in subjects:
            master["us_per_conn"][m] = {"median": subjects[m]["median"].get("master_us_per_conn"),
                                        "spread": subjects[m]["spread"].get("master_us_per_conn")}
    for num, den in MASTER_REFERENCE_PAIRS:
        if num in subjects and den in subjects:
            master["ratios"].append(_ratio_with_spread(subjects, num, den, "master_us_per_conn"))
    if not columns and not master["ratios"]:
        return None
    return {"columns": columns, "master": master}


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
        lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] + ["---:"] * len(ref["columns"])) + "|"]
        for key, label in REFERENCE_METRICS:
            lines.append("| " + " | ".join([label] + [_fmt_ratio_spread(c["figures"][key], show)
                                                      for c in ref["columns"]]) + " |")
        parts.append("\n".join(lines))
    m = ref["master"]
    if m["us_per_conn"] or m["ratios"]:
        lines = ["| master CPU per passed connection (close load) | value |", "|---|---:|"]
        for name, v in m["us_per_conn"].items():
            lines.append(f"| {name}, µs/conn | {fmt_spread(v['median'], v['spread'], 1, show)} |")
        for r in m["ratios"]:
            lines.append(f"| {r['numerator']} / {r['denominator']} | {_fmt_ratio_spread(r, show)} |")
        parts.append("\n".join(lines))
    return "\n\n".join(parts)


def fmt_ratio(v) -> str:
    if v is None:
        return "–"
    return f"{v:.2f}" if v >= 0.1 else f"{v:.2g}"


def ratio_table(ratios: list[dict]) -> str:
    head = ["ratio of medians"] + [label for _, label in RATIO_METRICS]
    lines = ["| " + " | ".join(head) + " |",
             "|" + "|".join(["---"] + ["---:"] * len(RATIO_METRICS)) + "|"]
    for r in ratios:
        lines.append("| " + " | ".join(
            [r["name"]] + [fmt_ratio(r[k]) for k, _ in RATIO_METRICS]) + " |")
    return "\n".join(lines)


def ensure_matplotlib(allow_install: bool):
    try:
        import matplotlib  # noqa: F401
        return True
    except ImportError:
        pass
    if not allow_install:
        return False
    log("matplotlib not importable; trying once: python3 -m pip install matplotlib")
    try:
        r = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "matplotlib"],
                           stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE, text=True, timeout=600)
        if r.returncode != 0:
            tail = r.stderr.strip().splitlines()[-1:] or ["(no message)"]
            log(f"pip install matplotlib failed: {tail[0]}")
            return False
    except (OSError, subprocess.TimeoutExpired) as e:
        log(f"pip install matplotlib failed: {e}")
        return False
    importlib.invalidate_caches()
    try:
        import matplotlib  # noqa: F401,F811
        return True
    except ImportError:
        return False


def draw_chart(subjects: dict, path: Path, workers: int, title: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(subjects)
    x = list(range(len(names)))
    fig, (ax1, ax2, ax3) = plt.subplots(1, 3, figsize=(max(15, 3.4 * len(names) + 4), 5.4))

    width = 0.38
    for offset, key, label, color in ((-width / 2, "keepalive_req_per_s", "keep-alive req/s",
                                       "#4c72b0"),
                                      (width / 2, "close_conn_per_s", "close conn/s",
                                       "#dd8452")):
        meds = [subjects[n]["median"][key] or 0 for n in names]
        lo = [max(0, m - (subjects[n]["spread"][key] or [m, m])[0]) for n, m in zip(names, meds)]
        hi = [max(0, (subjects[n]["spread"][key] or [m, m])[1] - m) for n, m in zip(names, meds)]
        bars = ax1.bar([i + offset for i in x], meds, width, label=label, color=color,
                       yerr=[lo, hi], capsize=3)
        for b, m in zip(bars, meds):
            ax1.annotate(f"{m:,.0f}", (b.get_x() + b.get_width() / 2, b.get_height()),
                         ha="center", va="bottom", fontsize=7, xytext=(0, 2),
                         textcoords="offset points")
    ax1.set_xticks(x)
    ax1.set_xticklabels(names, rotation=20, ha="right")
    ax1.set_ylabel("per second (median over rounds, bars = min–max)")
    ax1.set_title("Throughput")
    ax1.legend(fontsize=8)

    # Per-worker share: workers sorted by share (busiest first) in every round,
    # averaged over rounds; one stacked bar per load.
    def avg_sorted_shares(rounds, load):
        per_round = [sorted(r[load]["shares"].values(), reverse=True) for r in rounds]
        n = max((len(s) for s in per_round), default=0)
        return [statistics.mean([s[i] if i < len(s) else 0.0 for s in per_round])
                for i in range(n)]

    cmap = plt.get_cmap("tab10")
    for offset, load, hatch in ((-width / 2, "keepalive", ""), (width / 2, "close", "//")):
        for i, n in enumerate(names):
            shares = avg_sorted_shares(subjects[n]["rounds"], load)
            bottom = 0.0
            for w, share in enumerate(shares):
                ax2.bar(i + offset, share, width, bottom=bottom, color=cmap(w % 10),
                        hatch=hatch, edgecolor="white", linewidth=0.5)
                bottom += share
    if workers > 1:
        for k in range(1, workers):
            ax2.axhline(k / workers, color="grey", linestyle=":", linewidth=0.8)
    ax2.set_xticks(x)
    ax2.set_xticklabels(names, rotation=20, ha="right")
    ax2.set_ylim(0, 1)
    ax2.set_ylabel("share of responses")
    ax2.set_title("Per-worker share (left: keep-alive, right/hatched: close;\n"
                  "workers ordered busiest first; dotted = even split)", fontsize=9)

    # Server CPU per connection of the close load: master and workers stacked.
    master = [subjects[n]["median"]["master_us_per_conn"] or 0 for n in names]
    workers_cpu = [subjects[n]["median"]["workers_us_per_conn"] or 0 for n in names]
    ax3.bar(x, master, 0.6, label="master", color="#c44e52")
    bars = ax3.bar(x, workers_cpu, 0.6, bottom=master, label="workers", color="#55a868")
    for b, m_, w_ in zip(bars, master, workers_cpu):
        ax3.annotate(f"{m_ + w_:.1f}" + (f"\n(m {m_:.1f})" if m_ >= 0.5 else ""),
                     (b.get_x() + b.get_width() / 2, m_ + w_), ha="center", va="bottom", fontsize=7,
                     xytext=(0, 2), textcoords="offset points")
    ax3.set_xticks(x)
    ax3.set_xticklabels(names, rotation=20, ha="right")
    ax3.set_ylabel("CPU µs per connection (close load, median)")
    ax3.set_title("Server CPU per connection (master + workers)", fontsize=9)
    ax3.legend(fontsize=8)

    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


# --------------------------------------------------------------------------
# Worker sweep: master CPU per passed connection at each worker count

SWEEP_FIGURES = [
    ("master_us_per_conn", "master CPU µs per passed connection", 1),
    ("close_conn_per_s", "close conn/s", 0),
    ("workers_us_per_conn", "workers CPU µs per connection", 1),
    ("close_p99_ms", "close p99 ms", 2),
]
# Shown in one table (median server % / median wrk %), without flatness: they say who set the pace.
SWEEP_CPU = [("server_cpu_pct_of_one_core", "server"), ("wrk_cpu_pct_of_one_core", "wrk")]


def measure_close(srv: Server, wrk: str, args, round_no: int, workers: int) -> dict:
    """One sweep point: 1 s warm-up, then the timed close load only (no counting pass)."""
    url = f"http://{HOST}:{srv.port}/"
    master = srv.proc.pid
    run_wrk(wrk, url, WARMUP_S, args.connections, close=False, script=False)
    m0 = cpu_ticks(master)
    w0 = {pid: cpu_ticks(pid) for pid in srv.workers}
    raw = run_wrk(wrk, url, args.duration, args.connections, close=True)
    m1 = cpu_ticks(master)
    w1 = {pid: cpu_ticks(pid) for pid in srv.workers}
    requests = int(raw["requests"])
    duration_s = raw["duration_us"] / 1e6 if raw["duration_us"] else None
    master_us = (m1 - m0) * 1e6 / CLK_TCK if m0 is not None and m1 is not None else None
    per_worker = {str(pid): (w1[pid] - w0[pid]) if w0[pid] is not None and w1[pid] is not None else None
                  for pid in srv.workers}
    workers_us = (sum(per_worker.values()) * 1e6 / CLK_TCK
                  if per_worker and None not in per_worker.values() else None)
    socket_errors = sum(int(raw["errors"][k]) for k in ("connect", "read", "write", "timeout"))
    return {
        "round": round_no, "workers": workers, "found_workers": len(srv.workers),
        "master_pid": master, "worker_pids": srv.workers, "cpus_allowed": server_affinity(srv),
        "alive_after_load": srv.proc.poll() is None,
        "requests": requests, "duration_s": duration_s,
        "close_conn_per_s": requests / duration_s if duration_s else None,
        "close_p50_ms": raw["latency_us"]["percentiles"]["50"] / 1000.0,
        "close_p99_ms": raw["latency_us"]["percentiles"]["99"] / 1000.0,
        "errors": socket_errors + int(raw["errors"]["status"]),
        "master_cpu_us": master_us, "workers_cpu_us": workers_us,
        "master_us_per_conn": master_us / requests if master_us is not None and requests else None,
        "workers_us_per_conn": workers_us / requests if workers_us is not None and requests else None,
        "worker_cpu_ticks": per_worker,
        "server_cpu_pct_of_one_core": (100.0 * (master_us + workers_us) / 1e6 / duration_s
                                       if master_us is not None and workers_us is not None and duration_s
                                       else None),
        "wrk_cpu_pct_of_one_core": (100.0 * raw["wrk_cpu_s"] / duration_s
                                    if raw.get("wrk_cpu_s") is not None and duration_s else None),
        "wrk": raw,
    }


def run_sweep(args, modes, counts, binary, c_binary, node, wrk, logdir) -> dict:
    """For each round, each worker count and each subject (interleaved): start, warm up, one timed close load."""
    points = {m: {w: [] for w in counts} for m in modes}
    total = args.rounds * len(counts) * len(modes)
    done = 0
    for rnd in range(1, args.rounds + 1):
        for w in counts:
            for mode in modes:
                argv_, env = subject_command(mode, args, binary, node, c_binary, workers=w)
                srv = Server(mode, argv_, env, logdir / f"sweep-{mode}-w{w}-round{rnd}.log", w)
                try:
                    srv.start()
                    result = measure_close(srv, wrk, args, rnd, w)
                finally:
                    stop_info = srv.stop()
                result["stop"] = stop_info
                check_affinity(f"{mode} w{w}", result["cpus_allowed"], args.pin_config)
                points[mode][w].append(result)
                done += 1
                log(f"sweep {done}/{total} round {rnd} {mode:12s} {w:>3} workers: close "
                    f"{fmt_num(result['close_conn_per_s'])} conn/s  master "
                    f"{fmt_num(result['master_us_per_conn'], 1)} µs/conn  workers "
                    f"{fmt_num(result['workers_us_per_conn'], 1)} µs/conn  errors {result['errors']}")
    out = {}
    for mode in modes:
        per_count = {}
        for w in counts:
            rs = points[mode][w]
            per_count[str(w)] = {
                "rounds": rs,
                "median": {k: median_or_none([r[k] for r in rs])
                           for k in [f[0] for f in SWEEP_FIGURES] + [c[0] for c in SWEEP_CPU]},
                "spread": {k: spread([r[k] for r in rs])
                           for k in [f[0] for f in SWEEP_FIGURES] + [c[0] for c in SWEEP_CPU]},
                "errors": sum(r["errors"] for r in rs),
            }
        flat = {}
        for k, _, _ in SWEEP_FIGURES:
            meds = [per_count[str(w)]["median"][k] for w in counts]
            meds = [v for v in meds if v is not None]
            flat[k] = max(meds) / min(meds) if meds and min(meds) > 0 else None
        out[mode] = {"points": per_count, "flatness": flat}
    ratios = []
    for num, den in (("round-robin", "c-rr-close"), ("round-robin", "c-rr-ack"), ("c-rr-ack", "c-rr-close")):
        if num in out and den in out:
            per_w = {}
            for w in counts:
                a = out[num]["points"][str(w)]["median"]["master_us_per_conn"]
                b = out[den]["points"][str(w)]["median"]["master_us_per_conn"]
                per_w[str(w)] = a / b if a is not None and b else None
            ratios.append({"name": f"{num}/{den}", "metric": "master_us_per_conn", "per_workers": per_w})
    return {"counts": counts, "subjects": out, "ratios": ratios}


def sweep_tables(sweep: dict, rounds: int) -> str:
    counts = sweep["counts"]
    show = rounds > 1
    parts = []
    for key, label, digits in SWEEP_FIGURES:
        head = [label] + [f"{w} worker{'s' if w != 1 else ''}" for w in counts] + ["flatness (max/min)"]
        lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] + ["---:"] * (len(counts) + 1)) + "|"]
        for mode, sub in sweep["subjects"].items():
            cells = [fmt_spread(sub["points"][str(w)]["median"][key], sub["points"][str(w)]["spread"][key],
                                digits, show) for w in counts]
            lines.append("| " + " | ".join([mode] + cells + [fmt_ratio(sub["flatness"][key])]) + " |")
        if key == "master_us_per_conn":
            for r in sweep["ratios"]:
                lines.append("| " + " | ".join([r["name"]] + [fmt_ratio(r["per_workers"][str(w)]) for w in counts]
                                               + [""]) + " |")
        parts.append("\n".join(lines))
    head = ["close CPU % of one core, server / wrk"] + [str(w) for w in counts]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] + ["---:"] * len(counts)) + "|"]
    for mode, sub in sweep["subjects"].items():
        cells = [" / ".join(fmt_num(sub["points"][str(w)]["median"][k]) for k, _ in SWEEP_CPU) for w in counts]
        lines.append("| " + " | ".join([mode] + cells) + " |")
    parts.append("\n".join(lines))
    errors = {m: sum(p["errors"] for p in sub["points"].values()) for m, sub in sweep["subjects"].items()}
    parts.append("Errors (wrk socket errors + non-2xx, all points): "
                 + ", ".join(f"{m} {n}" for m, n in errors.items()))
    return "\n\n".join(parts)


def draw_sweep_chart(sweep: dict, path: Path, title: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    counts = sweep["counts"]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.8))
    for ax, (key, label, _) in zip(axes, SWEEP_FIGURES[:3]):
        for mode, sub in sweep["subjects"].items():
            meds = [sub["points"][str(w)]["median"][key] for w in counts]
            lo = [m - (sub["points"][str(w)]["spread"][key] or [m, m])[0] if m is not None else 0
                  for w, m in zip(counts, meds)]
            hi = [(sub["points"][str(w)]["spread"][key] or [m, m])[1] - m if m is not None else 0
                  for w, m in zip(counts, meds)]
            ys = [m if m is not None else float("nan") for m in meds]
            ax.errorbar(counts, ys, yerr=[lo, hi], marker="o", capsize=3, label=mode)
        ax.set_xscale("log", base=2)
        ax.set_xticks(counts)
        ax.set_xticklabels([str(w) for w in counts])
        ax.set_xlabel("workers")
        ax.set_ylabel(label)
        ax.set_ylim(bottom=0)
        ax.set_title(label + " (close load)", fontsize=9)
        ax.legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


# --------------------------------------------------------------------------
# Main

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


def main(argv=None) -> int:
    args = parse_args(argv)
    started = _dt.datetime.now().astimezone()
    if args.new_sessions:
        GROUP.clear()
        GROUP["start_new_session"] = True
    sweep_counts = parse_sweep(args.sweep) if args.sweep is not None else None
    if sweep_counts is not None and args.smoke:
        raise BenchError("--sweep and --smoke do not go together")

    node = shutil.which("node")
    cc = find_c_compiler()
    if args.quick or args.smoke:
        default_duration, default_rounds = (1, 1) if args.smoke else (2, 1)
    elif sweep_counts is not None:
        default_duration, default_rounds = 5, 3
    else:
        default_duration, default_rounds = 10, 3
    args.duration = default_duration if args.duration is None else args.duration
    args.rounds = default_rounds if args.rounds is None else args.rounds
    if args.duration < 1:
        raise BenchError("--duration must be a whole number of seconds >= 1")
    if args.count_duration is None:
        args.count_duration = max(1, args.duration // 2)
    if args.count_duration < 1:
        raise BenchError("--count-duration must be a whole number of seconds >= 1")
    if args.rounds < 1:
        raise BenchError("--rounds must be >= 1")
    if args.workers < 1:
        raise BenchError("--workers must be >= 1")
    if args.connections < 1:
        raise BenchError("--connections must be >= 1")

    if args.modes is None:
        if args.smoke:
            modes = ["round-robin"] + (["node-rr"] if node else [])
        else:
            modes = list(SWEEP_DEFAULT_MODES if sweep_counts is not None else ALL_MODES)
            if not node and any(m in NODE_MODES for m in modes):
                log("warning: node not found; skipping node-rr and node-none")
                modes = [m for m in modes if m not in NODE_MODES]
            if not cc and any(m in C_MODES for m in modes):
                log("warning: no C compiler (cc, gcc or clang) found; skipping " + ", ".join(C_MODES))
                modes = [m for m in modes if m not in C_MODES]
    else:
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

    args.pin_config = setup_pinning(args.pin) if args.pin is not None else None

    out_dir_default = REPO_ROOT / "bench-results"
    default_json = "sweep.json" if sweep_counts is not None else "bench.json"
    json_path = Path(args.json) if args.json else out_dir_default / default_json
    chart_path = Path(args.chart) if args.chart else json_path.with_suffix(".png")
    logdir = json_path.resolve().parent / "logs"

    binary = None
    if any(m in SWITCHBOARD_MODES for m in modes):
        if args.binary:
            b = Path(args.binary)
            if not b.is_file():
                raise BenchError(f"switchboard binary not found: {args.binary}")
            if not os.access(b, os.X_OK):
                raise BenchError(f"switchboard binary is not executable: {args.binary}")
            binary = str(b.resolve())
        else:
            binary = build_switchboard(logdir)
    c_binary, c_build = None, None
    if any(m in C_MODES for m in modes):
        c_binary, c_build = build_c_subjects(logdir, cc)
    elif args.smoke and cc:
        # --smoke does not run the C subjects (each would add about 5 s), but checks that they build (well under
        # a second); without a compiler it skips that check.
        c_binary, c_build = build_c_subjects(logdir, cc)

    wrk = ensure_wrk()
    info = machine_info(wrk, node if any(m in NODE_MODES for m in modes) else None, binary, c_build)
    placement = pin_description(args.pin_config, info["nproc"])
    if args.pin_config is None and info["nproc"] <= 2:
        log("note: unpinned on 2 CPUs, wrk competes with the servers for CPU; --pin puts them on separate CPUs")
    config = {
        "modes": modes, "rounds": args.rounds, "duration_s": args.duration,
        "warmup_s": WARMUP_S, "count_duration_s": args.count_duration,
        "workers": args.workers, "connections": args.connections,
        "wrk_threads": 1, "host": HOST, "quick": args.quick, "smoke": args.smoke,
        "new_sessions": args.new_sessions,
        "pinned": args.pin_config is not None, "pin": args.pin_config, "placement": placement,
        "sweep_workers": sweep_counts,
        "command": [sys.argv[0]] + (sys.argv[1:] if argv is None else list(argv)),
    }

    if sweep_counts is not None:
        return sweep_main(args, modes, sweep_counts, binary, c_binary, node, wrk, info, placement, config,
                          started, json_path, chart_path, logdir)

    log(f"modes {','.join(modes)}; {args.rounds} round(s) x ({args.duration} s timed + "
        f"{args.count_duration} s counting) per load; "
        f"{args.workers} workers; {args.connections} connections; "
        f"{info['nproc']} CPUs ({info['cpu_model']}); {info['wrk']}; {placement}")

    subjects = {m: {"rounds": []} for m in modes}
    for rnd in range(1, args.rounds + 1):
        for mode in modes:
            argv_, env = subject_command(mode, args, binary, node, c_binary)
            srv = Server(mode, argv_, env, logdir / f"{mode}-round{rnd}.log", args.workers)
            try:
                srv.start()
                result = measure(srv, wrk, args, rnd)
            finally:
                stop_info = srv.stop()
            result["stop"] = stop_info
            check_affinity(mode, result["cpus_allowed"], args.pin_config)
            subjects[mode]["rounds"].append(result)
            kf = key_figures(result)
            log(f"round {rnd}/{args.rounds} {mode:17s} keep-alive "
                f"{kf['keepalive_req_per_s']:>9,.0f} req/s  close {kf['close_conn_per_s']:>8,.0f} "
                f"conn/s  master {fmt_num(kf['master_us_per_conn'], 1)} µs/conn  "
                f"errors {kf['errors'] + kf['non2xx']}")

    for mode, s in subjects.items():
        figs = [key_figures(r) for r in s["rounds"]]
        keys = figs[0].keys()
        s["median"] = {k: median_or_none([f[k] for f in figs]) for k in keys}
        s["spread"] = {k: spread([f[k] for f in figs]) for k in keys}
        s["per_round"] = figs
    ratios = compute_ratios(subjects)
    reference = compute_reference(subjects)

    print(f"## Switchboard benchmark ({args.rounds} round(s), {args.duration} s per load, "
          f"{args.workers} workers, {args.connections} connections, "
          f"{'pinned' if args.pin_config else 'unpinned'})")
    print()
    print(f"Machine: {info['nproc']} CPUs, {info['cpu_model']}, Linux {info['kernel']}; "
          f"{info['wrk']}" + (f"; node {info['node']}" if info["node"] else "")
          + (f"; {c_build['compiler_version']}" if c_build else ""))
    print()
    print(f"CPU placement: {placement}.")
    print()
    print(results_table(subjects, args.rounds))
    print()
    print("Throughput, latency and CPU come from a plain wrk pass; Jain and max/min from a second pass "
          "whose Lua script tallies every response by worker pid (too costly for wrk to time with).")
    print()
    if args.rounds > 1:
        print("Figures are medians over rounds; (min–max) shows the spread.")
        print()
    print(bottleneck_note(subjects, args.pin_config))
    print()
    if ratios:
        print(ratio_table(ratios))
        print()
    if reference:
        print("Against the C references (ratios of medians" + ("; per-round min–max in brackets" if
                                                                args.rounds > 1 else "") + "):")
        print()
        print(reference_tables(reference, args.rounds))
        print()

    smoke = None
    if args.smoke:
        problems = []
        for mode, s in subjects.items():
            for r in s["rounds"]:
                if len(r["worker_pids"]) != args.workers:
                    problems.append(f"{mode}: {len(r['worker_pids'])} worker processes, "
                                    f"expected {args.workers}")
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
                        problems.append(f"{mode} {load}: no response from worker(s) "
                                        f"{', '.join(missing)}")
                    if L["unknown_pids"]:
                        problems.append(f"{mode} {load}: responses from pids that are not "
                                        f"workers: {', '.join(L['unknown_pids'])}")
                if not r["alive_after_loads"]:
                    problems.append(f"{mode}: master exited during the loads")
        # Node's cluster is a reference, not a subject under test: its hiccups (on a loaded 2-CPU machine its
        # workers can miss a 1 s load altogether) are reported, and fail the smoke only for our own subjects.
        reference_problems = [p for p in problems if p.split(" ")[0].rstrip(":") in NODE_MODES]
        problems = [p for p in problems if p not in reference_problems]
        for problem in reference_problems:
            log(f"smoke: reference subject only, not counted: {problem}")
        smoke = {"ok": not problems, "problems": problems, "reference_problems": reference_problems}

    finished = _dt.datetime.now().astimezone()
    doc = {
        "schema": 1,
        "started": started.isoformat(timespec="seconds"),
        "finished": finished.isoformat(timespec="seconds"),
        "config": config,
        "machine": info,
        "subjects": subjects,
        "ratios": ratios,
        "reference": reference,
    }
    if smoke is not None:
        doc["smoke"] = smoke
    json_path.parent.mkdir(parents=True, exist_ok=True)
    with open(json_path, "w") as f:
        json.dump(doc, f, indent=2, allow_nan=False)
        f.write("\n")
    print(f"JSON: {rel(json_path)}")

    if args.no_chart:
        pass
    elif ensure_matplotlib(allow_install=not args.smoke):
        title = (f"Switchboard vs Node cluster and C references — {args.workers} workers, "
                 f"{args.connections} conns, {args.duration} s x {args.rounds} round(s), {info['nproc']} CPUs, "
                 f"{'pinned ' + args.pin_config['server_cpus'] + ':' + args.pin_config['wrk_cpus'] if args.pin_config else 'unpinned'}")
        draw_chart(subjects, chart_path, args.workers, title)
        print(f"Chart: {rel(chart_path)}")
    else:
        print("Chart: skipped (matplotlib not available)")

    if smoke is not None:
        if smoke["ok"]:
            if c_build is not None and not any(m in C_MODES for m in modes):
                print(f"C subjects: {rel(C_SOURCE)} builds ({c_build['compiler_version']}); not run in --smoke")
            print("SMOKE OK: every subject answered with zero errors from every worker")
            return 0
        for p in smoke["problems"]:
            print(f"SMOKE FAIL: {p}", file=sys.stderr)
        return 1
    return 0


def sweep_main(args, modes, counts, binary, c_binary, node, wrk, info, placement, config, started,
               json_path, chart_path, logdir) -> int:
    log(f"sweep: modes {','.join(modes)}; workers {','.join(map(str, counts))}; {args.rounds} round(s) x "
        f"{args.duration} s close load per point (+{WARMUP_S} s warm-up); {args.connections} connections; "
        f"{info['nproc']} CPUs; {placement}; {args.rounds * len(counts) * len(modes)} points")
    sweep = run_sweep(args, modes, counts, binary, c_binary, node, wrk, logdir)
    print(f"## Worker sweep ({args.rounds} round(s), {args.duration} s close load per point, "
          f"{args.connections} connections, {'pinned' if args.pin_config else 'unpinned'})")
    print()
    print(f"Machine: {info['nproc']} CPUs, {info['cpu_model']}, Linux {info['kernel']}; {info['wrk']}"
          + (f"; {info['c_subjects']['compiler_version']}" if info.get("c_subjects") else ""))
    print()
    print(f"CPU placement: {placement}.")
    print()
    if args.rounds > 1:
        print("Figures are medians over rounds; (min–max) shows the spread. Flatness is the largest median over "
              "the smallest across the worker counts (1.00 = the cost per connection does not depend on them).")
    else:
        print("Flatness is the largest figure over the smallest across the worker counts (1.00 = the cost per "
              "connection does not depend on them).")
    print()
    print(sweep_tables(sweep, args.rounds))
    print()
    finished = _dt.datetime.now().astimezone()
    doc = {
        "schema": 1,
        "kind": "sweep",
        "started": started.isoformat(timespec="seconds"),
        "finished": finished.isoformat(timespec="seconds"),
        "config": config,
        "machine": info,
        "sweep": sweep,
    }
    json_path.parent.mkdir(parents=True, exist_ok=True)
    with open(json_path, "w") as f:
        json.dump(doc, f, indent=2, allow_nan=False)
        f.write("\n")
    print(f"JSON: {rel(json_path)}")
    if args.no_chart:
        pass
    elif ensure_matplotlib(allow_install=True):
        title = (f"Worker sweep — close load, {args.connections} conns, {args.duration} s x {args.rounds} "
                 f"round(s), {info['nproc']} CPUs, "
                 f"{'pinned ' + args.pin_config['server_cpus'] + ':' + args.pin_config['wrk_cpus'] if args.pin_config else 'unpinned'}")
        draw_sweep_chart(sweep, chart_path, title)
        print(f"Chart: {rel(chart_path)}")
    else:
        print("Chart: skipped (matplotlib not available)")
    return 0


def entry() -> int:
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGHUP, _on_signal)
    try:
        return main()
    except BenchError as e:
        print(f"bench: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("bench: interrupted", file=sys.stderr)
        return 130
    except Terminated as t:
        print(f"bench: stopped by signal {signal.Signals(t.signum).name}", file=sys.stderr)
        return 128 + t.signum
    finally:
        for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
            signal.signal(sig, signal.SIG_IGN)  # let the clean-up finish
        cleanup_all()


if __name__ == "__main__":
    sys.exit(entry())
