"""What `perf sched record` saw (issue 23): which process ran on which CPU, and who ran while wrk waited for one.

wrk times a request from its write to the response's read, so whatever runs on wrk's CPU while wrk is ready to run
adds to the latency wrk reports. `perf script -F cpu,time,event,trace` of a `perf sched record -a` gives every
context switch and every wake-up; from them this module rebuilds, per CPU, who ran when (`runs`), the intervals in
which a thread was ready but not running (`ready_intervals`: from being preempted, or from being woken, to running
again), what ran on the CPU it then ran on during each such interval (`blame`), and each CPU's share per role in
fixed bins of time (`layout`), and how often each process moved between CPUs (`migrations`). Only sched_switch,
sched_waking and sched_migrate_task lines are read; others are skipped.
"""

from __future__ import annotations

import bisect
import re
from collections import Counter, defaultdict
from dataclasses import dataclass

_SWITCH = re.compile(r"\[(\d+)\]\s+([\d.]+):\s+sched:sched_switch: prev_comm=(.*?) prev_pid=(\d+) prev_prio=-?\d+ "
                     r"prev_state=(\S+) ==> next_comm=(.*?) next_pid=(\d+)")
_WAKING = re.compile(r"\[(\d+)\]\s+([\d.]+):\s+sched:sched_waking: comm=(.*?) pid=(\d+) ")
_MIGRATE = re.compile(r"\[(\d+)\]\s+([\d.]+):\s+sched:sched_migrate_task: comm=(.*?) pid=(\d+) prio=-?\d+ "
                      r"orig_cpu=(\d+) dest_cpu=(\d+)")


@dataclass(frozen=True)
class Switch:
    cpu: int
    time: float
    prev_comm: str
    prev_pid: int
    prev_state: str
    next_comm: str
    next_pid: int


@dataclass(frozen=True)
class Waking:
    time: float
    pid: int


@dataclass(frozen=True)
class Migration:
    time: float
    pid: int
    origin: int
    destination: int


def parse(text: str) -> list[Switch | Waking | Migration]:
    """The switches, wake-ups and moves between CPUs of a `perf script -F cpu,time,event,trace` text, in its
    order."""
    out: list[Switch | Waking | Migration] = []
    for line in text.splitlines():
        m = _SWITCH.search(line)
        if m:
            out.append(Switch(int(m[1]), float(m[2]), m[3], int(m[4]), m[5], m[6], int(m[7])))
            continue
        m = _WAKING.search(line)
        if m:
            out.append(Waking(float(m[2]), int(m[4])))
            continue
        m = _MIGRATE.search(line)
        if m:
            out.append(Migration(float(m[2]), int(m[4]), int(m[5]), int(m[6])))
    return out


def migrations(events: list) -> Counter:
    """How many times each pid was moved from one CPU to another."""
    return Counter(e.pid for e in events if isinstance(e, Migration) and e.origin != e.destination)


def runs(events: list) -> dict[int, list[tuple[float, float, int]]]:
    """Per CPU, (start, end, pid) of each stretch a task ran, from one switch to the next on that CPU (pid 0: idle).
    The stretch before a CPU's first switch is unknown and left out."""
    current: dict[int, tuple[int, float]] = {}
    out: dict[int, list[tuple[float, float, int]]] = defaultdict(list)
    for e in events:
        if not isinstance(e, Switch):
            continue
        if e.cpu in current:
            pid, since = current[e.cpu]
            out[e.cpu].append((since, e.time, pid))
        current[e.cpu] = (e.next_pid, e.time)
    return dict(out)


def busiest(events: list, comm: str) -> int | None:
    """The thread named `comm` that ran longest (wrk's load thread, not its main thread)."""
    ran: Counter = Counter()
    since: dict[int, float] = {}
    for e in events:
        if not isinstance(e, Switch):
            continue
        if e.prev_comm == comm and e.cpu in since:
            ran[e.prev_pid] += e.time - since.pop(e.cpu)
        if e.next_comm == comm:
            since[e.cpu] = e.time
    return ran.most_common(1)[0][0] if ran else None


def ready_intervals(events: list, tid: int) -> list[tuple[float, float, int]]:
    """(ready since, ran at, CPU it ran on) for each time `tid` was ready but not running: switched out still
    runnable (state R, preempted) or woken, until it was switched in again."""
    out = []
    ready: float | None = None
    for e in events:
        if isinstance(e, Waking):
            if e.pid == tid and ready is None:
                ready = e.time
            continue
        if not isinstance(e, Switch):
            continue
        if e.prev_pid == tid:
            ready = e.time if e.prev_state.startswith("R") else None
        if e.next_pid == tid:
            if ready is not None and e.time > ready:
                out.append((ready, e.time, e.cpu))
            ready = None
    return out


def blame(cpu_runs: dict[int, list[tuple[float, float, int]]],
          intervals: list[tuple[float, float, int]]) -> Counter:
    """Seconds of the intervals, by the pid that ran on the interval's CPU meanwhile (0: the CPU was idle, as
    between a wake-up and the switch it causes)."""
    out: Counter = Counter()
    starts = {cpu: [r[0] for r in rs] for cpu, rs in cpu_runs.items()}
    for t0, t1, cpu in intervals:
        rs = cpu_runs.get(cpu, [])
        i = max(bisect.bisect_right(starts.get(cpu, []), t0) - 1, 0)
        while i < len(rs) and rs[i][0] < t1:
            start, end, pid = rs[i]
            overlap = min(end, t1) - max(start, t0)
            if overlap > 0:
                out[pid] += overlap
            i += 1
    return out


def role_of(roles: dict[int, str], pid: int) -> str:
    """`pid`'s role: its name in `roles`, else "idle" for pid 0 and "other" for anything else."""
    return roles.get(pid, "idle" if pid == 0 else "other")


def layout(cpu_runs: dict[int, list[tuple[float, float, int]]], roles: dict[int, str], bin_s: float,
           start: float) -> list[dict[int, dict[str, float]]]:
    """For each bin of `bin_s` seconds from `start`: per CPU, the share of the bin each role ran (roles maps pid
    to a name; pid 0 is "idle", any other pid "other")."""
    bins: dict[int, dict[int, Counter]] = defaultdict(lambda: defaultdict(Counter))
    for cpu, rs in cpu_runs.items():
        for s, e, pid in rs:
            role = role_of(roles, pid)
            t = s
            while t < e:
                index = int((t - start) // bin_s)
                edge = start + (index + 1) * bin_s
                if edge <= t:  # rounding put t on the next bin's edge
                    index, edge = index + 1, edge + bin_s
                piece = min(e, edge) - t
                if index >= 0:
                    bins[index][cpu][role] += piece
                t += piece
    if not bins:
        return []
    return [{cpu: {role: v / bin_s for role, v in bins[i][cpu].items()} for cpu in sorted(bins[i])}
            for i in range(max(bins) + 1)]
