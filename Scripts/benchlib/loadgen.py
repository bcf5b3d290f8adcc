"""Load generators: wrk (with Scripts/bench/count.lua, or its own --latency text) and h2load. Command lines, one
bounded run that also measures the generator's own CPU time, and parsers of their output (tested on captured
samples in tests/)."""

from __future__ import annotations

import json
import os
import re
import resource
import shutil
import signal
import subprocess
import threading
import time
from dataclasses import dataclass

from . import SCRIPTS, BenchError, Log, procfs
from .servers import OWN_GROUP, Registry

LUA_SCRIPT = SCRIPTS / "bench" / "count.lua"
WRK_MARKER = "SWITCHBOARD_BENCH_JSON "  # count.lua's done() prints this, then one JSON object
MARKER_PERCENTILES = ("50", "75", "90", "99", "99.9")  # the latency percentiles count.lua's done() prints


def wrk_command(wrk: str, url: str, duration: int, connections: int, close: bool, script: bool = True,
                timeout_s: int | None = None, prefix: list[str] | tuple = ()) -> list[str]:
    """wrk with one thread and `connections` connections for `duration` s, with --latency; count.lua when
    `script`; `Connection: close` on every request when `close`; `prefix` (taskset ...) in front."""
    cmd = list(prefix) + [wrk, "-t", "1", "-c", str(connections), "-d", f"{duration}s", "--latency"]
    if timeout_s is not None:
        cmd += ["--timeout", f"{timeout_s}s"]
    if script:
        cmd += ["-s", str(LUA_SCRIPT)]
    if close:
        cmd += ["-H", "Connection: close"]
    return cmd + [url]


def h2load_command(url: str, duration: int, connections: int, streams: int, warm_up: int = 0) -> list[str]:
    """h2load for `duration` s after `warm_up` s. In its timing-based mode h2load (1.52) never stops a client whose
    connection is made after the duration ended: a TLS handshake slower than warm-up plus duration keeps it running
    for good (reproduced with a proxy that delays one of 32 connections by 2.5 s: `-D 1` ran until killed, with
    `--warm-up-time=3` it ended after 4 s). The warm-up gives slow handshakes that time."""
    warm = [f"--warm-up-time={warm_up}"] if warm_up > 0 else []
    return ["h2load", "-c", str(connections), "-m", str(streams), "-D", str(duration), *warm, url]


# --------------------------------------------------------------------------
# Running one

@dataclass
class Generated:
    out: str  # stdout and stderr together
    returncode: int
    cpu_s: float  # the generator's own CPU time (user + system)
    waiting: dict | None = None  # waiting_rate of its threads; None when they could not be sampled


def waiting_rate(first: dict[int, tuple[float, dict]], last: dict[int, tuple[float, dict]]) -> dict | None:
    """How long a process's threads together were runnable but waited for a CPU, in ms per s, and how many times
    they got one per s, from each thread's first and last sample (monotonic time in s, parse_schedstat's figures).
    A load generator that waits for a CPU adds that wait to the latency it measures: on CPUs it shares with the
    server, the tail follows this figure. None without a sampled interval."""
    wait_ns = slices = 0
    window = 0.0
    for tid, (t1, s1) in last.items():
        if tid not in first:
            continue
        t0, s0 = first[tid]
        wait_ns += s1["wait_ns"] - s0["wait_ns"]
        slices += s1["slices"] - s0["slices"]
        window = max(window, t1 - t0)
    if window <= 0:
        return None
    return {"waited_ms_per_s": wait_ns / 1e6 / window, "slices_per_s": slices / window, "window_s": window}


class SchedSampler:
    """Samples the scheduler's figures of each thread of `pid` every `interval` s, on a thread of its own, until
    stopped; keeps each thread's first and last sample. A thread's figures go with it when it exits, so the last
    sample is at most `interval` before its end. Sampling every 50 ms costs about 0.6 % of one core (28 ms of CPU
    in 5 s while sampling a `sleep 5`), 0.7 % with three companions (35 ms).

    With `companions` (a role, such as "workers", to the pids that play it) each sample also notes whether a process
    of a role last ran on the CPU that the busiest thread of `pid` (wrk's load thread) last ran on: unpinned, the
    keep-alive tail follows how often a server worker sits on wrk's CPU (BENCHMARKS.md, tail latency, twentieth
    part). `stop()` then adds each role's share of the samples as `on_its_cpu`."""

    def __init__(self, pid: int, interval: float = 0.05, companions: dict[str, list[int]] | None = None):
        self.pid, self.interval = pid, interval
        self.companions = {role: list(pids) for role, pids in (companions or {}).items() if pids}
        self.first: dict[int, tuple[float, dict]] = {}
        self.last: dict[int, tuple[float, dict]] = {}
        self.placement = PlacementCount()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while True:
            now = time.monotonic()
            figures_now = procfs.thread_schedstats(self.pid)
            for tid, figures in figures_now.items():
                self.first.setdefault(tid, (now, figures))
                self.last[tid] = (now, figures)
            if self.companions and figures_now:
                busiest = max(figures_now, key=lambda tid: figures_now[tid]["run_ns"])
                cpu = procfs.last_cpu(self.pid, busiest)
                if cpu is not None:
                    self.placement.add(cpu, {role: [procfs.last_cpu(p) for p in pids]
                                             for role, pids in self.companions.items()})
            if self._stop.wait(self.interval):
                return

    def start(self) -> SchedSampler:
        self._thread.start()
        return self

    def stop(self) -> dict | None:
        self._stop.set()
        self._thread.join()
        rate = waiting_rate(self.first, self.last)
        if rate is not None and self.companions:
            rate["on_its_cpu"] = self.placement.shares()
            rate["placement_samples"] = self.placement.samples
        return rate


class PlacementCount:
    """How many samples found a process of each role on the sampled thread's CPU."""

    def __init__(self):
        self.samples = 0
        self.hits: dict[str, int] = {}

    def add(self, cpu: int, roles: dict[str, list[int | None]]) -> None:
        """One sample: the sampled thread last ran on `cpu`, each role's processes on theirs (None: gone)."""
        self.samples += 1
        for role, cpus in roles.items():
            self.hits[role] = self.hits.get(role, 0) + (1 if cpu in cpus else 0)

    def shares(self) -> dict[str, float] | None:
        """Each role's share of the samples (0 to 1); None without a sample."""
        if self.samples == 0:
            return None
        return {role: hits / self.samples for role, hits in self.hits.items()}


def run_generator(cmd: list[str], timeout: float, registry: Registry, env: dict | None = None,
                  popen_options: dict | None = None, companions: dict[str, list[int]] | None = None) -> Generated:
    """Runs a load generator to its end (at most `timeout` s) and returns its output and CPU time. The CPU time is
    the children's rusage delta, which is the generator's own as long as nothing else is reaped meanwhile: a hint
    whether the generator itself was the bottleneck. On a time-out, Ctrl-C or SIGTERM it is killed by pid."""
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         text=True, env=env, **(popen_options if popen_options is not None else OWN_GROUP))
    registry.add_proc(p)
    sampler = SchedSampler(p.pid, companions=companions).start()
    try:
        out, _ = p.communicate(timeout=timeout)
    except BaseException as e:  # timeout, Ctrl-C, SIGTERM: never leave it behind
        if p.poll() is None:
            os.kill(p.pid, signal.SIGKILL)
        p.wait()
        if isinstance(e, subprocess.TimeoutExpired):
            raise BenchError(f"did not finish within {timeout:.0f} s: {' '.join(cmd)}")
        raise
    finally:
        waiting = sampler.stop()
        registry.remove_proc(p)
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    return Generated(out, p.returncode, (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime), waiting)


def run_wrk(wrk: str, url: str, duration: int, connections: int, close: bool, registry: Registry,
            script: bool = True, count: bool = False, prefix: list[str] | tuple = (),
            popen_options: dict | None = None, companions: dict[str, list[int]] | None = None) -> dict | None:
    """Runs wrk once with count.lua and returns its result line (see parse_marker) plus `wrk_cpu_s`; without
    `script` (a warm-up) returns None. With `count` the Lua script tallies every response per worker pid, which
    makes wrk itself several times slower per response: use it for distribution only, never for throughput or
    latency. `companions` (role -> pids, such as the server's master and workers) go to the SchedSampler: the result's
    `wrk_waiting` then has each role's share of the samples that found it on wrk's CPU."""
    cmd = wrk_command(wrk, url, duration, connections, close, script=script, prefix=prefix)
    env = dict(os.environ, SWITCHBOARD_BENCH_COUNT="1" if count else "0")
    run = run_generator(cmd, duration + 30, registry, env=env, popen_options=popen_options, companions=companions)
    if not script:
        return None
    result = parse_marker(run.out)
    if result is None:
        raise BenchError(f"wrk exited {run.returncode} without a result line: {last_line(run.out)}")
    result["wrk_cpu_s"] = round(run.cpu_s, 4)
    result["wrk_waiting"] = run.waiting
    return result


def last_line(out: str) -> str:
    return out.strip().splitlines()[-1] if out.strip() else "(no output)"


# --------------------------------------------------------------------------
# Parsing output

def parse_marker(out: str) -> dict | None:
    """count.lua's line `SWITCHBOARD_BENCH_JSON {...}`: duration_us, requests, bytes, errors {connect, read, write,
    status, timeout}, non2xx, unmatched, latency_us {min, max, mean, stdev, percentiles {50, 75, 90, 99, 99.9}},
    per_pid; None when the output has no such line."""
    for line in out.splitlines():
        if line.startswith(WRK_MARKER):
            return json.loads(line[len(WRK_MARKER):])
    return None


def latency_ms(marker: dict) -> dict:
    """count.lua's latency_us (see parse_marker) in milliseconds: p50, p75, p90, p99, p99.9 (the tail wrk's own
    --latency text does not print), mean and max. A result line without one of those percentiles is an error: the
    count.lua in use is not this one."""
    lat = marker["latency_us"]
    pct = lat["percentiles"]
    missing = [p for p in MARKER_PERCENTILES if p not in pct]
    if missing:
        raise BenchError(f"wrk's result line has no latency percentile {', '.join(missing)}: "
                         f"{LUA_SCRIPT} must print {', '.join(MARKER_PERCENTILES)}")
    out = {f"p{p}": pct[p] / 1000.0 for p in MARKER_PERCENTILES}
    out["mean"], out["max"] = lat["mean"] / 1000.0, lat["max"] / 1000.0
    return out


def parse_non2xx(out: str) -> int:
    """wrk's `Non-2xx or 3xx responses: N` line (absent when there were none)."""
    for line in out.splitlines():
        if "Non-2xx or 3xx responses:" in line:
            return int(line.split(":")[1].strip())
    return 0


def to_ms(text: str) -> float:
    """A wrk or h2load duration (`812.00us`, `1.25ms`, `2.00s`, `1.50m`) in milliseconds."""
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if not m:
        raise BenchError(f"cannot parse duration {text!r}")
    return float(m.group(1)) * {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4}[m.group(2)]


def parse_wrk_text(out: str) -> dict:
    """wrk's own report with --latency: requests, duration, req/s, mean/p50/p99/max latency in ms, socket errors
    and non-2xx/3xx responses."""
    m = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m)", out)
    if not m:
        raise BenchError(f"wrk: no result in output: {out.strip()[-300:]}")
    requests = int(m.group(1))
    duration_s = to_ms(m.group(2) + m.group(3)) / 1e3
    lat = re.search(r"Latency\s+(\S+)\s+(\S+)\s+(\S+)", out)
    p50 = re.search(r"^\s*50%\s+(\S+)", out, re.M)
    p99 = re.search(r"^\s*99%\s+(\S+)", out, re.M)
    errs = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = {k: int(v) for k, v in zip(("connect", "read", "write", "timeout"), errs.groups())} if errs else {}
    errors["non2xx"] = int(non2xx.group(1)) if non2xx else 0
    if not errs and re.search(r"(?i)error", out.split("requests in")[0]):
        raise BenchError(f"wrk reported an error: {out.strip()[:300]}")
    return {"requests": requests, "duration_s": duration_s, "req_per_s": requests / duration_s,
            "mean_ms": to_ms(lat.group(1)) if lat else None, "p50_ms": to_ms(p50.group(1)) if p50 else None,
            "p99_ms": to_ms(p99.group(1)) if p99 else None, "max_ms": to_ms(lat.group(3)) if lat else None,
            "errors": errors, "error_total": sum(errors.values())}


def parse_h2load(out: str) -> dict:
    """h2load's report: succeeded requests, duration, req/s, status codes, the protocol ALPN chose, mean and max
    time per request (h2load gives no percentiles), and its failure counters."""
    fin = re.search(r"finished in ([\d.]+)(us|ms|s|m), ([\d.]+) req/s", out)
    req = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, "
                    r"(\d+) errored, (\d+) timeout", out)
    codes = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", out)
    rt = re.search(r"time for request:\s+(\S+)\s+(\S+)\s+(\S+)", out)
    proto = re.search(r"Application protocol: (\S+)", out)
    if not (fin and req and codes):
        raise BenchError(f"h2load: no result in output: {out.strip()[-300:]}")
    duration_s = to_ms(fin.group(1) + fin.group(2)) / 1e3
    total, started, done, ok, failed, errored, tmo = map(int, req.groups())
    c2, c3, c4, c5 = map(int, codes.groups())
    errors = {"failed": failed, "errored": errored, "timeout": tmo, "non2xx": c3 + c4 + c5}
    return {"requests": ok, "duration_s": duration_s, "req_per_s": ok / duration_s,
            "h2load_req_per_s": float(fin.group(3)), "requests_total": total, "requests_started": started,
            "requests_done": done, "status_2xx": c2, "protocol": proto.group(1) if proto else None,
            "mean_ms": to_ms(rt.group(3)) if rt else None, "p50_ms": None, "p99_ms": None,
            "max_ms": to_ms(rt.group(2)) if rt else None, "errors": errors,
            "error_total": failed + errored + tmo + c3 + c4 + c5}


# --------------------------------------------------------------------------
# The tools themselves

def tool_version(cmd: list[str]) -> str:
    """The first line a `--version`-like command prints (stdout, then stderr), or `unknown`."""
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    lines = (r.stdout + r.stderr).strip().splitlines()
    return lines[0] if lines else "unknown"


def wrk_version(wrk: str) -> str:
    """`wrk 4.1.0 [epoll]`, without the copyright that follows on the same line."""
    return tool_version([wrk, "-v"]).split(" Copyright")[0].strip()


def ensure_wrk(log: Log) -> str:
    """wrk's path; as root it is installed with apt-get when missing, otherwise the error says how."""
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
