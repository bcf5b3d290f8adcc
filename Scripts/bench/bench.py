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

SWITCHBOARD_MODES = ["round-robin", "least-connections", "reuseport", "shared", "round-robin-nio", "reuseport-nio"]
# Subjects named <mode>-nio run the built-in worker on SwiftNIO (`--worker nio`) instead of its own epoll loop.
NIO_SUFFIX = "-nio"
NODE_MODES = ["node-rr", "node-none"]
ALL_MODES = SWITCHBOARD_MODES + NODE_MODES

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
]
RATIO_METRICS = [
    ("close_conn_per_s", "close conn/s"),
    ("keepalive_req_per_s", "keep-alive req/s"),
    ("close_p99_ms", "close p99"),
    ("keepalive_p99_ms", "keep-alive p99"),
    ("server_us_per_conn", "server CPU µs/conn"),
]

CLK_TCK = os.sysconf("SC_CLK_TCK")


# Subjects and wrk each lead a process group of their own (so everything a subject started can be found and
# stopped), but stay in this session. A new session would also put each of them in an autogroup of its own where
# the kernel has sched_autogroup_enabled=1, and on 2 cores shared with wrk that group scheduling costs the designs
# whose processes hand work to each other (an accepting master and its workers) 30-40% of their
# connection-per-request throughput, while barely touching the others. See BENCHMARKS.md.
GROUP = {"process_group": 0}


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
        self.mode = mode if mode is not None else name.removesuffix(NIO_SUFFIX)
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
    cmd = [wrk, "-t", "1", "-c", str(connections), "-d", f"{duration}s", "--latency"]
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
        "alive_after_loads": srv.proc.poll() is None,
        **loads,
    }


def key_figures(r: dict) -> dict:
    ka, cl = r["keepalive"], r["close"]
    return {
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

def subject_command(mode: str, args, binary: str | None, node: str | None):
    env = dict(os.environ)
    if mode in SWITCHBOARD_MODES:
        argv = [binary, "--host", HOST, "--port", "0", "--workers", str(args.workers),
                "--mode", mode.removesuffix(NIO_SUFFIX),
                "--worker", "nio" if mode.endswith(NIO_SUFFIX) else "native"]
    else:
        env["NODE_CLUSTER_SCHED_POLICY"] = "rr" if mode == "node-rr" else "none"
        argv = [node, str(NODE_SCRIPT), "--host", HOST, "--port", "0",
                "--workers", str(args.workers)]
    return argv, env


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


def machine_info(wrk: str, node: str | None, binary: str | None) -> dict:
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
            "master µs/conn", "workers µs/conn", "errors"]
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
            fmt_num(err_total),
        ]) + " |")
    return "\n".join(lines)


def compute_ratios(subjects: dict) -> list[dict]:
    out = []
    for num, den in RATIO_PAIRS:
        if num not in subjects or den not in subjects:
            continue
        row = {"name": f"{num}/{den}", "numerator": num, "denominator": den}
        for key, _ in RATIO_METRICS:
            a, b = subjects[num]["median"].get(key), subjects[den]["median"].get(key)
            row[key] = a / b if a is not None and b else None
        out.append(row)
    return out


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
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(max(10, 2.4 * len(names) + 4), 5.2))

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

    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


# --------------------------------------------------------------------------
# Main

def parse_args(argv):
    p = argparse.ArgumentParser(
        description="Benchmark Switchboard modes against Node.js cluster (loopback only).")
    p.add_argument("--duration", type=int, default=None,
                   help="seconds per load (default 10; --quick 2; --smoke 1)")
    p.add_argument("--count-duration", type=int, default=None,
                   help="seconds of each load's second, counting pass that measures the "
                        "per-worker distribution (default: half of --duration, at least 1)")
    p.add_argument("--rounds", type=int, default=None,
                   help="interleaved rounds (default 3; --quick/--smoke 1)")
    p.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
    p.add_argument("--connections", type=int, default=50,
                   help="wrk connections (default 50)")
    p.add_argument("--modes", default=None,
                   help="comma list from: " + ",".join(ALL_MODES) + " (default: all)")
    p.add_argument("--binary", default=None,
                   help="switchboard binary (default: swift build -c release "
                        "--scratch-path .build-bench)")
    p.add_argument("--json", default=None, help="JSON output (default bench-results/bench.json)")
    p.add_argument("--chart", default=None,
                   help="PNG chart (default: the JSON path with .png, bench-results/bench.png)")
    p.add_argument("--no-chart", action="store_true", help="do not draw the chart")
    p.add_argument("--quick", action="store_true", help="duration 2 s, 1 round")
    p.add_argument("--new-sessions", action="store_true",
                   help="start every subject and wrk in a session of its own (and so, where "
                        "sched_autogroup_enabled=1, in an autogroup of its own), to measure what "
                        "group scheduling does to each design")
    p.add_argument("--smoke", action="store_true",
                   help="CI check: 1 round of 1 s; fail unless every subject answered "
                        "without errors from every worker")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    started = _dt.datetime.now().astimezone()
    if args.new_sessions:
        GROUP.clear()
        GROUP["start_new_session"] = True

    node = shutil.which("node")
    if args.quick or args.smoke:
        default_duration, default_rounds = (1, 1) if args.smoke else (2, 1)
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
            modes = list(ALL_MODES)
            if not node:
                log("warning: node not found; skipping node-rr and node-none")
                modes = SWITCHBOARD_MODES[:]
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

    out_dir_default = REPO_ROOT / "bench-results"
    json_path = Path(args.json) if args.json else out_dir_default / "bench.json"
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

    wrk = ensure_wrk()
    info = machine_info(wrk, node if any(m in NODE_MODES for m in modes) else None, binary)
    log(f"modes {','.join(modes)}; {args.rounds} round(s) x ({args.duration} s timed + "
        f"{args.count_duration} s counting) per load; "
        f"{args.workers} workers; {args.connections} connections; "
        f"{info['nproc']} CPUs ({info['cpu_model']}); {info['wrk']}")

    subjects = {m: {"rounds": []} for m in modes}
    for rnd in range(1, args.rounds + 1):
        for mode in modes:
            argv_, env = subject_command(mode, args, binary, node)
            srv = Server(mode, argv_, env, logdir / f"{mode}-round{rnd}.log", args.workers)
            try:
                srv.start()
                result = measure(srv, wrk, args, rnd)
            finally:
                stop_info = srv.stop()
            result["stop"] = stop_info
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

    print(f"## Switchboard benchmark ({args.rounds} round(s), {args.duration} s per load, "
          f"{args.workers} workers, {args.connections} connections)")
    print()
    print(f"Machine: {info['nproc']} CPUs, {info['cpu_model']}, Linux {info['kernel']}; "
          f"{info['wrk']}" + (f"; node {info['node']}" if info["node"] else ""))
    print()
    print(results_table(subjects, args.rounds))
    print()
    print("Throughput, latency and CPU come from a plain wrk pass; Jain and max/min from a second pass "
          "whose Lua script tallies every response by worker pid (too costly for wrk to time with).")
    print()
    if args.rounds > 1:
        print("Figures are medians over rounds; (min–max) shows the spread.")
        print()
    if ratios:
        print(ratio_table(ratios))
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
        smoke = {"ok": not problems, "problems": problems}

    finished = _dt.datetime.now().astimezone()
    doc = {
        "schema": 1,
        "started": started.isoformat(timespec="seconds"),
        "finished": finished.isoformat(timespec="seconds"),
        "config": {
            "modes": modes, "rounds": args.rounds, "duration_s": args.duration,
            "warmup_s": WARMUP_S, "count_duration_s": args.count_duration,
            "workers": args.workers, "connections": args.connections,
            "wrk_threads": 1, "host": HOST, "quick": args.quick, "smoke": args.smoke,
            "new_sessions": args.new_sessions,
            "command": [sys.argv[0]] + (sys.argv[1:] if argv is None else list(argv)),
        },
        "machine": info,
        "subjects": subjects,
        "ratios": ratios,
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
        title = (f"Switchboard vs Node cluster — {args.workers} workers, {args.connections} conns, "
                 f"{args.duration} s x {args.rounds} round(s), {info['nproc']} CPUs")
        draw_chart(subjects, chart_path, args.workers, title)
        print(f"Chart: {rel(chart_path)}")
    else:
        print("Chart: skipped (matplotlib not available)")

    if smoke is not None:
        if smoke["ok"]:
            print("SMOKE OK: every subject answered with zero errors from every worker")
            return 0
        for p in smoke["problems"]:
            print(f"SMOKE FAIL: {p}", file=sys.stderr)
        return 1
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
