#!/usr/bin/env python3
"""Where a keep-alive tail comes from (issue 23): each subject pinned to one CPU, wrk on the other, and for every
worker what the scheduler saw (/proc/<pid>/schedstat: time on the CPU, time waiting for it, slices; voluntary and
involuntary context switches from /proc/<pid>/status) beside wrk's p50/p99/p99.9. Switchboard's built-in worker also
reports its own loop (SWITCHBOARD_LOOP_STATS: how long each iteration ran between two epoll_wait calls, how many events
each wait returned, how many waits blocked).

    python3 Scripts/bench/tail-evidence.py --binary .build-bench/release/switchboard [--duration 5] [--connections 50]
        [--load keepalive|close] [--pin SERVER_CPUS:WRK_CPUS] [--rounds N]

`--load close` sends `Connection: close` on every request, so each request is a new connection: there the master's
row (round-robin and c-rr-close, whose master accepts and passes every connection) shows what its path adds.
`--pin 0-1:0-1` leaves everything on both CPUs (unpinned). `--rounds N` runs the subjects in turn N times and reports
the median round of each (by p99).

A subject named `<mode>-deferred` runs with `--defer-accept 1` (`TCP_DEFER_ACCEPT`; the C subjects take the same
flag). A C subject named `<mode>-wslow` has workers that spend 5 µs more CPU on each connection (as in `bench.py`).
A second table divides each role's CPU and wake-ups (voluntary switches: the process blocked, then was woken) by the
requests wrk completed, which under `--load close` are connections: CPU per connection = wake-ups per
connection × CPU per wake-up, so it tells a path that wakes more often from one that costs more each time; and the
CPU time's split between user space and the kernel (/proc/<pid>/stat's utime and stime, in clock ticks of 10 ms).

`--syscalls` also counts each process's system calls during the load (`perf stat` on the `syscalls:sys_enter_*`
tracepoints: counters, not a trace, so the processes run as they would; `benchlib.syscounts`) and prints them per
request (per connection under `--load close`) for the master and for the workers together.

`--runtime-calls` counts the same way how often each process enters two Swift run-time functions its hot path should
not reach: `swift_beginAccess` (a run-time exclusivity check) and `swift_getGenericMetadata` (a generic type's metadata
looked up). They are uprobes (`perf probe -x` on the binary's libswiftCore.so, removed afterwards), and each probed
call traps into the kernel: the counts are exact, but a process that makes many runs slower while counted, so read no
timings from such a run (twenty-fourth part of the tail-latency section of BENCHMARKS.md).

`--sched-trace SECONDS` also records the scheduler (`perf sched record -a`, from 1.5 s into the load, for SECONDS) and
reads it back with `benchlib.schedtrace`: how long wrk's load thread was ready to run but not running, in ms per s,
and who ran on its CPU meanwhile (the master, a worker, idle, anything else); and per 250 ms, each CPU's share per
role. wrk times requests, so its own wait for a CPU is in every latency it reports: unpinned (`--pin 0-1:0-1`) this
says which server process shared wrk's CPU (eighteenth part of the tail-latency section of BENCHMARKS.md).

A worker that never blocks runs until the scheduler preempts it at the end of its slice (an involuntary switch), and
every connection the other worker on that CPU holds waits that long: many involuntary switches per second and few
blocking waits point there; voluntary switches (the worker waited in epoll_wait) point the other way.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from benchlib import loadgen, make_log, procfs, schedtrace, servers, syscounts  # noqa: E402

log = make_log("tail-evidence")
# Subjects named <mode>-deferred run with `--defer-accept 1` (Switchboard and the C subjects alike).
DEFERRED = "-deferred"
# C subjects named <mode>-wslow: workers that spend 5 µs more CPU on each connection (bench.py's C_SLOW_WORKER_NS).
WORKERS_SLOWER = "-wslow"
C_SLOW_WORKER_NS = 5000
TICKS_PER_S = os.sysconf("SC_CLK_TCK")


def run_subject(name: str, argv: list[str], env: dict, wrk: str, duration: int, connections: int, workers: int,
                server_cpu: str, wrk_cpu: str, workdir: Path, close: bool, registry: servers.Registry,
                trace_s: float = 0, count_syscalls: bool = False, probes: tuple[str, ...] = ()) -> dict:
    logfile = workdir / f"{name}.log"
    server = servers.Server(name, ["taskset", "-c", server_cpu] + argv, env, logfile, workers, registry,
                            mode=name.removesuffix(DEFERRED).removesuffix(WORKERS_SLOWER))
    server.start()
    try:
        time.sleep(0.5)
        processes = [server.proc.pid] + server.workers
        counting = count_syscalls or bool(probes)
        counters = start_counting(processes, workdir, name, registry, count_syscalls, probes) if counting else []
        before = {pid: procfs.scheduling(pid) for pid in processes}
        t0 = time.monotonic()
        trace_file = workdir / f"{name}.sched.data"
        during = (lambda: record_scheduler(trace_file, trace_s, registry)) if trace_s > 0 else None
        res = wrk_once(wrk, server.port, duration, connections, wrk_cpu, close, during, registry)
        elapsed = time.monotonic() - t0
        after = {pid: procfs.scheduling(pid) for pid in processes}
        calls = stop_counting(counters, registry)
    finally:
        server.stop()
    stats = [line for line in logfile.read_text(errors="replace").splitlines() if "loop-stats" in line]
    per_process = []
    for pid in processes:
        a, b = after.get(pid, {}), before.get(pid, {})
        if not a or not b:
            continue
        d = {k: a[k] - b[k] for k in a if k in b}
        slices = max(d.get("slices", 0), 1)
        per_process.append({
            "pid": pid,
            "role": "master" if pid == server.proc.pid else "worker",
            "cpu_ms": d.get("run_ns", 0) / 1e6,
            "waited_for_cpu_ms": d.get("wait_ns", 0) / 1e6,
            "slices": d.get("slices", 0),
            "avg_slice_us": d.get("run_ns", 0) / slices / 1e3,
            "voluntary": d.get("voluntary", 0),
            "voluntary_per_s": d.get("voluntary", 0) / elapsed,
            "involuntary_per_s": d.get("involuntary", 0) / elapsed,
            # /proc/<pid>/stat's utime and stime: the CPU time's split between user space and the kernel.
            "user_ms": d.get("user_ticks", 0) * 1e3 / TICKS_PER_S,
            "system_ms": d.get("system_ticks", 0) * 1e3 / TICKS_PER_S,
        })
    out = {"subject": name, "wrk": res, "processes": per_process,
           "loop_stats": [s.split("loop-stats ", 1)[1] for s in stats]}
    if trace_s > 0:
        out["sched_trace"] = read_trace(trace_file, server.proc.pid, server.workers)
    if counting:
        out["syscalls"] = {role: {} for role in ("master", "worker")}
        for pid, counts in calls.items():
            role = out["syscalls"]["master" if pid == server.proc.pid else "worker"]
            for call, count in counts.items():
                role[call] = role.get(call, 0) + count
    return out


def start_counting(pids: list[int], workdir: Path, name: str, registry: servers.Registry, count_syscalls: bool = True,
                   probes: tuple[str, ...] = ()) -> list:
    """One `perf stat` per process, counting its system calls (and the functions `probes`) until `stop_counting`."""
    counters = []
    calls = syscounts.CALLS if count_syscalls else ()
    for pid in pids:
        output = workdir / f"{name}.{pid}.syscalls"
        p = subprocess.Popen(syscounts.perf_command(pid, str(output), calls, probes), stdin=subprocess.DEVNULL,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        registry.add_proc(p)
        counters.append((pid, p, output))
    time.sleep(0.3)  # perf attaches before the load starts
    return counters


def stop_counting(counters: list, registry: servers.Registry) -> dict[int, dict[str, int]]:
    """Stops each `perf stat` (SIGINT: it writes its counts) and reads them back, by pid."""
    calls: dict[int, dict[str, int]] = {}
    for pid, p, output in counters:
        p.send_signal(signal.SIGINT)
    for pid, p, output in counters:
        try:
            _, err = p.communicate(timeout=30)
        finally:
            registry.remove_proc(p)
        if not output.exists():
            raise SystemExit(f"tail-evidence: perf stat counted nothing for {pid}: {err.strip()[-300:]} "
                             f"(apt-get install -y linux-perf; it needs root or kernel.perf_event_paranoid <= -1)")
        calls[pid] = syscounts.parse(output.read_text())
        output.unlink()
    return calls


def record_scheduler(path: Path, seconds: float, registry: servers.Registry) -> None:
    """`perf sched record -a` for `seconds`, from 1.5 s into the load (wrk's connections are open by then)."""
    time.sleep(1.5)
    cmd = ["perf", "sched", "record", "-a", "-o", str(path), "--", "sleep", str(seconds)]
    p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                         text=True)
    registry.add_proc(p)
    try:
        _, err = p.communicate(timeout=seconds + 60)
    finally:
        registry.remove_proc(p)
    if p.returncode != 0:
        raise SystemExit(f"tail-evidence: perf sched record failed: {err.strip()[-300:]} "
                         f"(apt-get install -y linux-perf; it needs root or kernel.perf_event_paranoid <= -1)")


def read_trace(path: Path, master: int, workers: list[int]) -> dict:
    """What the scheduler trace says about wrk's wait for a CPU: ms per s ready but not running, by who ran on its
    CPU meanwhile; and each CPU's share per role in 250 ms bins."""
    text = subprocess.run(["perf", "script", "-i", str(path), "-F", "cpu,time,event,trace"], capture_output=True,
                          text=True, timeout=300).stdout
    path.unlink(missing_ok=True)
    events = schedtrace.parse(text)
    switches = [e for e in events if isinstance(e, schedtrace.Switch)]
    wrk_tid = schedtrace.busiest(events, "wrk")
    if not switches or wrk_tid is None:
        return {"error": "no context switches of wrk in the trace"}
    span = switches[-1].time - switches[0].time
    roles = {w: "worker" for w in workers}
    roles[master], roles[wrk_tid] = "master", "wrk"
    runs = schedtrace.runs(events)
    intervals = schedtrace.ready_intervals(events, wrk_tid)
    by_pid = schedtrace.blame(runs, intervals)
    by_role: dict[str, float] = {}
    for pid, seconds in by_pid.items():
        role = schedtrace.role_of(roles, pid)
        by_role[role] = by_role.get(role, 0.0) + seconds * 1e3 / span
    bins = schedtrace.layout(runs, roles, 0.25, switches[0].time)
    moves: dict[str, float] = {}
    for pid, count in schedtrace.migrations(events).items():
        role = roles.get(pid)
        if role is not None:
            moves[role] = moves.get(role, 0.0) + count / span
    return {"span_s": span, "wrk_tid": wrk_tid, "migrations_per_s": moves,
            "wrk_ready_ms_per_s": sum(t1 - t0 for t0, t1, _ in intervals) * 1e3 / span,
            "wrk_ready_by_role_ms_per_s": by_role,
            "layout_250ms": [{str(cpu): shares for cpu, shares in b.items()} for b in bins]}


def wrk_once(wrk: str, port: int, duration: int, connections: int, wrk_cpu: str, close: bool,
             during=None, registry: servers.Registry | None = None) -> dict:
    """One timed wrk run; `during()`, if given, runs while wrk does."""
    cmd = loadgen.wrk_command(wrk, f"http://127.0.0.1:{port}/", duration, connections, close,
                              prefix=["taskset", "-c", wrk_cpu])
    env = dict(os.environ, SWITCHBOARD_BENCH_COUNT="0")
    p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                         text=True, env=env)
    if registry is not None:
        registry.add_proc(p)
    try:
        if during is not None:
            during()
        out, _ = p.communicate(timeout=duration + 30)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        if registry is not None:
            registry.remove_proc(p)
    marker = loadgen.parse_marker(out)
    if marker is None:
        raise SystemExit(f"wrk gave no result line: {out.strip()[-300:]}")
    lat = loadgen.latency_ms(marker)
    return {"requests": marker["requests"], "requests_per_s": marker["requests"] / (marker["duration_us"] / 1e6),
            "p50_ms": lat["p50"], "p99_ms": lat["p99"], "p99_9_ms": lat["p99.9"], "max_ms": lat["max"]}


def main(registry: servers.Registry) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--binary", required=True, help="the switchboard binary (release)")
    p.add_argument("--c-binary", default=str(HERE.parent.parent / "bench-results" / "c" / "c-subjects"),
                   help="the C subjects (bench.py builds them into bench-results/c/)")
    p.add_argument("--duration", type=int, default=5)
    p.add_argument("--connections", type=int, default=50)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--pin", default="0:1", help="SERVER_CPU:WRK_CPU")
    p.add_argument("--modes", default="round-robin,c-rr-close,reuseport,c-reuseport")
    p.add_argument("--load", choices=["keepalive", "close"], default="keepalive")
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--sched-trace", type=float, default=0, metavar="SECONDS",
                   help="also record the scheduler for SECONDS during each load (perf sched; see above)")
    p.add_argument("--syscalls", action="store_true",
                   help="also count each process's system calls during the load (perf stat; see above)")
    p.add_argument("--runtime-calls", action="store_true",
                   help="also count each process's calls of two Swift run-time functions (uprobes; see above)")
    p.add_argument("--json", default=None)
    args = p.parse_args()
    if args.sched_trace > 0 and args.sched_trace > args.duration - 2:
        p.error("--sched-trace must end before the load does: at most --duration minus 2 s")
    if (args.sched_trace > 0 or args.syscalls or args.runtime_calls) and not shutil.which("perf"):
        print("tail-evidence: perf is missing: apt-get install -y linux-perf", file=sys.stderr)
        return 1
    wrk = shutil.which("wrk")
    if not wrk:
        print("tail-evidence: wrk is missing: apt-get install -y wrk", file=sys.stderr)
        return 1
    server_cpu, wrk_cpu = args.pin.split(":")
    workdir = Path(tempfile.mkdtemp(prefix="sb-tail-"))
    env = dict(os.environ, SWITCHBOARD_LOOP_STATS="1")
    modes = args.modes.split(",")
    for mode in modes:
        if mode.endswith(WORKERS_SLOWER) and not mode.startswith("c-"):
            p.error(f"{mode}: only the C subjects have a {WORKERS_SLOWER} variant")
    rounds: dict[str, list[dict]] = {mode: [] for mode in modes}
    close = args.load == "close"
    probes = add_probes(args.binary) if args.runtime_calls else ()
    try:
        run_rounds(args, modes, rounds, env, wrk, server_cpu, wrk_cpu, workdir, close, registry, probes)
    finally:
        if probes:
            subprocess.run(syscounts.probe_delete_command(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    report(args, rounds, close, server_cpu, wrk_cpu)
    shutil.rmtree(workdir, ignore_errors=True)
    return 0


def add_probes(binary: str) -> tuple[str, ...]:
    """Adds a uprobe on each of `syscounts.RUNTIME_CALLS` in the run time `binary` uses (removing stale ones first)."""
    ldd = subprocess.run(["ldd", binary], capture_output=True, text=True).stdout
    library = syscounts.runtime_library(ldd, binary)
    subprocess.run(syscounts.probe_delete_command(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for cmd in syscounts.probe_add_commands(library):
        added = subprocess.run(cmd, capture_output=True, text=True)
        if added.returncode != 0:
            raise SystemExit(f"tail-evidence: cannot probe {cmd[-1].split('=')[-1]} in {library}: "
                             f"{added.stderr.strip()[-200:]} (perf probe needs root and uprobes in the kernel)")
    return syscounts.RUNTIME_CALLS


def run_rounds(args, modes: list[str], rounds: dict[str, list[dict]], env: dict, wrk: str, server_cpu: str,
               wrk_cpu: str, workdir: Path, close: bool, registry: servers.Registry, probes: tuple[str, ...]) -> None:
    for _ in range(max(args.rounds, 1)):
        for mode in modes:
            binary = args.c_binary if mode.startswith("c-") else args.binary
            argv = [binary, "--mode", mode.removesuffix(DEFERRED).removesuffix(WORKERS_SLOWER),
                    "--host", "127.0.0.1", "--port", "0", "--workers", str(args.workers)]
            if mode.endswith(WORKERS_SLOWER):
                argv += ["--worker-work-ns", str(C_SLOW_WORKER_NS)]
            if mode.endswith(DEFERRED):
                argv += ["--defer-accept", "1"]
            rounds[mode].append(run_subject(mode, argv, env, wrk, args.duration, args.connections, args.workers,
                                            server_cpu, wrk_cpu, workdir, close, registry, args.sched_trace,
                                            args.syscalls, probes))


def report(args, rounds: dict[str, list[dict]], close: bool, server_cpu: str, wrk_cpu: str) -> None:
    # The median round of each subject, by p99 (with one round, that round).
    results = [sorted(rs, key=lambda r: r["wrk"]["p99_ms"])[len(rs) // 2] for rs in rounds.values()]
    load = "close (Connection: close)" if close else "keep-alive"
    print(f"{load}, wrk -t1 -c{args.connections} -d{args.duration}s on CPU {wrk_cpu}, servers on CPU {server_cpu}"
          + (f", median round of {args.rounds} by p99" if args.rounds > 1 else "") + "\n")
    print("| subject | req/s | p50 ms | p99 ms | p99.9 ms | process | CPU ms | waited for CPU ms | slices "
          "| avg slice µs | voluntary/s | involuntary/s |")
    print("|---|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|")
    for r in results:
        w0 = r["wrk"]
        for i, w in enumerate(r["processes"]):
            head = (f"| {r['subject']} | {w0['requests_per_s']:,.0f} | {w0['p50_ms']:.2f} | {w0['p99_ms']:.2f} | "
                    f"{w0['p99_9_ms']:.2f}") if i == 0 else "| | | | |"
            print(f"{head} | {w['role']} {w['pid']} | {w['cpu_ms']:,.0f} | {w['waited_for_cpu_ms']:,.0f} | "
                  f"{w['slices']:,} | {w['avg_slice_us']:,.0f} | {w['voluntary_per_s']:,.0f} | "
                  f"{w['involuntary_per_s']:,.0f} |")
    print("\nPer request (with --load close, per connection): CPU, wake-ups (voluntary switches: the process blocked "
          "and was woken) and CPU per wake-up, the workers summed\n")
    print("| subject | requests | master µs | master wake-ups | master µs/wake-up | master user / kernel µs "
          "| workers µs | workers wake-ups | workers µs/wake-up | workers user / kernel µs |")
    print("|---|---:|---:|---:|---:|---|---:|---:|---:|---|")
    for r in results:
        n = max(r["wrk"].get("requests", 0), 1)
        cells = []
        for role in ("master", "worker"):
            ps = [w for w in r["processes"] if w["role"] == role]
            cpu_us = sum(w["cpu_ms"] for w in ps) * 1e3
            wakes = sum(w["voluntary"] for w in ps)
            user_us = sum(w.get("user_ms", 0) for w in ps) * 1e3
            system_us = sum(w.get("system_ms", 0) for w in ps) * 1e3
            cells += ([f"{cpu_us / n:.2f}", f"{wakes / n:.2f}", f"{cpu_us / max(wakes, 1):.2f}",
                       f"{user_us / n:.2f} / {system_us / n:.2f}"] if ps else ["–"] * 4)
        print(f"| {r['subject']} | {n:,} | " + " | ".join(cells) + " |")
    for r in results:
        for line in r["loop_stats"]:
            print(f"{r['subject']}: {line}")
    if args.syscalls:
        print_counts(results, syscounts.CALLS, "System calls per request (with --load close, per connection), counted "
                     "untraced (perf stat), the workers summed", compact=True)
    if args.runtime_calls:
        print_counts(results, syscounts.RUNTIME_CALLS, "Swift run-time calls per request (with --load close, per "
                     "connection), counted with uprobes (a process making many runs slower meanwhile), the workers "
                     "summed", compact=False)
    if args.sched_trace > 0:
        print_traces(results)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"load": args.load, "pin": args.pin, "median_rounds": results,
                                               "rounds": rounds}, indent=2))


def print_counts(results: list[dict], names: list[str], heading: str, *, compact: bool) -> None:
    """One table of counts per request, a row per subject and process (the workers summed). `compact` drops the
    columns and rows that are zero throughout and adds a column with the row's sum (system calls); otherwise every
    name keeps its column, a zero being the finding (run-time calls)."""
    counted = [r for r in results if r.get("syscalls")]
    roles = ("master", "worker")
    columns = [c for c in names if not compact
               or any(r["syscalls"][role].get(c, 0) for r in counted for role in roles)]
    print(f"\n{heading}\n")
    print("| subject | process | " + " | ".join(columns) + (" | all |" if compact else " |"))
    print("|---|---|" + "---:|" * (len(columns) + compact))
    for r in counted:
        n = max(r["wrk"].get("requests", 0), 1)
        for role in roles:
            # The same counts hold system calls and, with --runtime-calls, the probed functions: only `names`.
            counts = {c: r["syscalls"][role].get(c, 0) for c in names}
            if not any(w["role"] == role for w in r["processes"]) or (compact and not any(counts.values())):
                continue
            cells = [f"{counts[c] / n:.2f}" for c in columns] + ([f"{sum(counts.values()) / n:.2f}"] if compact else [])
            label = "master" if role == "master" else "workers"
            print(f"| {r['subject']} | {label} | " + " | ".join(cells) + " |")


def print_traces(results: list[dict]) -> None:
    print(f"\nwrk's load thread ready to run but not running (perf sched), ms per s, by who ran on its CPU "
          f"meanwhile\n")
    roles = ("master", "worker", "idle", "other")
    print("| subject | p99 ms | wrk ready, not running | " + " | ".join(roles)
          + " | moves between CPUs per s: master / workers / wrk |")
    print("|---|---:|---:|" + "---:|" * len(roles) + "---|")
    for r in results:
        t = r.get("sched_trace") or {}
        if "wrk_ready_ms_per_s" not in t:
            print(f"| {r['subject']} | {r['wrk']['p99_ms']:.2f} | {t.get('error', '–')} |" + " |" * (len(roles) + 1))
            continue
        by, moves = t["wrk_ready_by_role_ms_per_s"], t.get("migrations_per_s", {})
        print(f"| {r['subject']} | {r['wrk']['p99_ms']:.2f} | {t['wrk_ready_ms_per_s']:.1f} | "
              + " | ".join(f"{by.get(role, 0.0):.1f}" for role in roles) + " | "
              + " / ".join(f"{moves.get(role, 0.0):.1f}" for role in ("master", "worker", "wrk")) + " |")
    for r in results:
        t = r.get("sched_trace") or {}
        if not t.get("layout_250ms"):
            continue
        print(f"\n{r['subject']}: each CPU's share per 250 ms (% of the bin)")
        for i, b in enumerate(t["layout_250ms"]):
            cells = []
            for cpu, shares in sorted(b.items()):
                parts = " ".join(f"{role} {100 * v:.0f}" for role, v in sorted(shares.items(), key=lambda kv: -kv[1])
                                 if v >= 0.03)
                cells.append(f"CPU {cpu}: {parts}")
            print(f"  {i * 0.25:4.2f} s  " + "  |  ".join(cells))


def entry() -> int:
    return servers.run_with_cleanup("tail-evidence", main, log)


if __name__ == "__main__":
    sys.exit(entry())
