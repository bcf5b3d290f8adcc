"""System calls counted per process without tracing them: `perf stat` on the kernel's `syscalls:sys_enter_*`
tracepoints (counters, no per-call record), as `tail-evidence.py --syscalls` reads them (issue 23, BENCHMARKS.md
"Tail latency", twenty-third part). strace would stop the process at every call and change the very batching it
counts (a master under strace accepted 16 connections per wake-up where it accepts 1.3 without)."""

from __future__ import annotations

# What the servers' hot paths call: the master's accept loop and sends, the workers' receives, reads, writes and
# epoll upkeep, the built-in engine's yields and timers.
CALLS = ("accept4", "sendmsg", "recvmsg", "read", "sendto", "write", "close", "epoll_wait", "epoll_pwait",
         "epoll_ctl", "setsockopt", "ioctl", "sched_yield", "timerfd_settime")


# Swift run-time entry points a server's hot path should not reach (twenty-fourth part): a run-time exclusivity check
# (a class's stored property, or a global, the optimizer could not prove safe), and a generic type's metadata looked
# up (a cached lookup, about 330 instructions here, e.g. for a closure that captured a generic struct). Counted with
# uprobes (`perf probe -x <libswiftCore.so>`) in the group PROBE_GROUP.
RUNTIME_CALLS = ("swift_beginAccess", "swift_getGenericMetadata")
PROBE_GROUP = "switchboard"


def perf_command(pid: int, output: str, calls: tuple[str, ...] = CALLS, probes: tuple[str, ...] = ()) -> list[str]:
    """`perf stat` counting `calls` of process `pid` into `output` (CSV) until it gets SIGINT, and the user-space
    functions `probes` (added with `probe_add_commands`)."""
    events = [arg for call in calls for arg in ("-e", f"syscalls:sys_enter_{call}")]
    events += [arg for probe in probes for arg in ("-e", f"{PROBE_GROUP}:{probe}")]
    return ["perf", "stat", "-x", ",", "-o", output, "-p", str(pid)] + events


def runtime_library(ldd_output: str, binary: str) -> str:
    """Where a Swift binary's run time lives, from `ldd <binary>`: libswiftCore.so, or the binary itself when it was
    linked with the standard library inside (`-static-stdlib`)."""
    for line in ldd_output.splitlines():
        name, _, rest = line.strip().partition(" => ")
        if name.startswith("libswiftCore.so") and rest:
            return rest.split(" (")[0].strip()
    return binary


def probe_add_commands(library: str, functions: tuple[str, ...] = RUNTIME_CALLS) -> list[list[str]]:
    """The `perf probe` commands that add a uprobe on each of `functions` in `library`, named
    `PROBE_GROUP:<function>`."""
    return [["perf", "probe", "-q", "-x", library, "-a", f"{PROBE_GROUP}:{f}={f}"] for f in functions]


def probe_delete_command() -> list[str]:
    """The `perf probe` command that removes every probe of PROBE_GROUP."""
    return ["perf", "probe", "-q", "-d", f"{PROBE_GROUP}:*"]


def parse(text: str) -> dict[str, int]:
    """The counts of a `perf stat -x ,` output by system call name (and probed function name); an event perf could not
    count is left out."""
    counts: dict[str, int] = {}
    for line in text.splitlines():
        fields = line.split(",")
        if len(fields) < 3 or not fields[0].strip().isdigit():
            continue  # comments, blank lines, "<not counted>", "<not supported>"
        event = fields[2].strip()
        for prefix in ("syscalls:sys_enter_", f"{PROBE_GROUP}:"):
            if event.startswith(prefix):
                name = event[len(prefix):]
                counts[name] = counts.get(name, 0) + int(fields[0])
    return counts
