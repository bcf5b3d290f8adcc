"""System calls counted per process without tracing them: `perf stat` on the kernel's `syscalls:sys_enter_*`
tracepoints (counters, no per-call record), as `tail-evidence.py --syscalls` reads them (issue 23, BENCHMARKS.md
"Tail latency", twenty-third part). strace would stop the process at every call and change the very batching it
counts (a master under strace accepted 16 connections per wake-up where it accepts 1.3 without)."""

from __future__ import annotations

# What the servers' hot paths call: the master's accept loop and sends, the workers' receives, reads, writes and
# epoll upkeep, the built-in engine's yields and timers.
CALLS = ("accept4", "sendmsg", "recvmsg", "read", "sendto", "write", "close", "epoll_wait", "epoll_pwait",
         "epoll_ctl", "setsockopt", "ioctl", "sched_yield", "timerfd_settime")


def perf_command(pid: int, output: str, calls: tuple[str, ...] = CALLS) -> list[str]:
    """`perf stat` counting `calls` of process `pid` into `output` (CSV) until it gets SIGINT."""
    events = [arg for call in calls for arg in ("-e", f"syscalls:sys_enter_{call}")]
    return ["perf", "stat", "-x", ",", "-o", output, "-p", str(pid)] + events


def parse(text: str) -> dict[str, int]:
    """The counts of a `perf stat -x ,` output by system call name; an event perf could not count is left out."""
    counts: dict[str, int] = {}
    for line in text.splitlines():
        fields = line.split(",")
        if len(fields) < 3 or not fields[0].strip().isdigit():
            continue  # comments, blank lines, "<not counted>", "<not supported>"
        event = fields[2].strip()
        prefix = "syscalls:sys_enter_"
        if event.startswith(prefix):
            name = event[len(prefix):]
            counts[name] = counts.get(name, 0) + int(fields[0])
    return counts
