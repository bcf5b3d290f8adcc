"""/proc readers. Each reader has a parser of the file's text beside it (tested on sample strings); a reader returns
None when the process or the file is gone."""

from __future__ import annotations

import os

CLK_TCK = os.sysconf("SC_CLK_TCK")


def _read(path: str, binary: bool = False) -> str | None:
    try:
        if binary:
            with open(path, "rb") as f:
                return f.read().decode("ascii", "replace")
        with open(path) as f:
            return f.read()
    except OSError:  # FileNotFoundError, ProcessLookupError, PermissionError: the process is gone or not ours
        return None


# --------------------------------------------------------------------------
# /proc/<pid>/stat

def parse_stat(text: str) -> list[str] | None:
    """Fields of a /proc/<pid>/stat line after the comm field: [state, ppid, pgrp, ...]. Index i here is field i + 3
    of proc(5) (state is field 3). The comm field may hold spaces and parentheses: it ends at the last `)`."""
    rparen = text.rfind(")")
    if rparen < 0:
        return None
    return text[rparen + 2:].split()


def stat_cpu_ticks(fields: list[str]) -> int:
    """utime + stime (proc(5) fields 14 and 15) in clock ticks."""
    return int(fields[11]) + int(fields[12])


def stat_start_time(fields: list[str]) -> int:
    """starttime (proc(5) field 22, clock ticks since boot): with the pid, it names one process for good."""
    return int(fields[19])


def stat_last_cpu(fields: list[str]) -> int:
    """processor (proc(5) field 39): the CPU the task last ran on, or runs on now."""
    return int(fields[36])


def stat_alive(fields: list[str] | None) -> bool:
    return fields is not None and fields[0] not in ("Z", "X")


def read_stat(pid: int, tid: int | None = None) -> list[str] | None:
    """parse_stat of /proc/<pid>/stat, or of its thread `tid`'s (/proc/<pid>/task/<tid>/stat)."""
    text = _read(f"/proc/{pid}/task/{tid}/stat" if tid is not None else f"/proc/{pid}/stat", binary=True)
    return None if text is None else parse_stat(text)


def last_cpu(pid: int, tid: int | None = None) -> int | None:
    """The CPU process `pid` (or its thread `tid`) last ran on; None when it is gone."""
    st = read_stat(pid, tid)
    return stat_last_cpu(st) if stat_alive(st) else None


def cpu_ticks(pid: int) -> int | None:
    st = read_stat(pid)
    return None if st is None else stat_cpu_ticks(st)


def total_ticks(pids: list[int]) -> int | None:
    """The sum of cpu_ticks over `pids`; None if any of them is gone."""
    total = 0
    for pid in pids:
        t = cpu_ticks(pid)
        if t is None:
            return None
        total += t
    return total


def start_time(pid: int) -> int | None:
    st = read_stat(pid)
    return None if st is None else stat_start_time(st)


def is_alive(pid: int) -> bool:
    return stat_alive(read_stat(pid))


def all_pids() -> list[int]:
    return [int(name) for name in os.listdir("/proc") if name.isdigit()]


def _live_with(field: int, value: int) -> list[int]:
    out = []
    for pid in all_pids():
        st = read_stat(pid)
        if stat_alive(st) and int(st[field]) == value:
            out.append(pid)
    return sorted(out)


def children_of(ppid: int) -> list[int]:
    """Live processes whose parent is `ppid`, sorted."""
    return _live_with(1, ppid)


def group_members(pgid: int) -> list[int]:
    """Live processes of process group `pgid`, sorted."""
    return _live_with(2, pgid)


# --------------------------------------------------------------------------
# /proc/<pid>/schedstat

def parse_schedstat(text: str) -> dict | None:
    """`run_ns wait_ns slices` of /proc/<pid>/schedstat: time on a CPU, time runnable but waiting for one, and how
    many times it got one."""
    try:
        run, wait, slices = (int(x) for x in text.split()[:3])
    except ValueError:
        return None
    return {"run_ns": run, "wait_ns": wait, "slices": slices}


def thread_schedstats(pid: int) -> dict[int, dict]:
    """parse_schedstat of each thread of `pid` (/proc/<pid>/task/<tid>/schedstat), by thread id; empty when the
    process is gone. A thread's figures are its own: /proc/<pid>/schedstat is the main thread's alone, which in wrk
    sleeps while its load thread works."""
    try:
        tids = [int(t) for t in os.listdir(f"/proc/{pid}/task")]
    except (OSError, ValueError):
        return {}
    out = {}
    for tid in tids:
        text = _read(f"/proc/{pid}/task/{tid}/schedstat")
        parsed = parse_schedstat(text) if text is not None else None
        if parsed is not None:
            out[tid] = parsed
    return out


def parse_context_switches(status_text: str) -> dict:
    """Voluntary (it blocked) and involuntary (it was preempted) context switches from a /proc/<pid>/status text."""
    out = {}
    for key, name in (("voluntary_ctxt_switches", "voluntary"), ("nonvoluntary_ctxt_switches", "involuntary")):
        value = parse_status_field(status_text, key)
        if value is not None and value.isdigit():
            out[name] = int(value)
    return out


def scheduling(pid: int) -> dict:
    """What the scheduler saw of `pid` so far: run_ns, wait_ns, slices, voluntary, involuntary, and user_ticks and
    system_ticks (its CPU time in user space and in the kernel, clock ticks; those readable; empty when the process is
    gone)."""
    out = {}
    text = _read(f"/proc/{pid}/schedstat")
    if text is not None:
        out.update(parse_schedstat(text) or {})
    fields = read_stat(pid)
    if fields is not None and len(fields) > 12:
        out["user_ticks"], out["system_ticks"] = int(fields[11]), int(fields[12])
    status = _read(f"/proc/{pid}/status")
    if status is not None:
        out.update(parse_context_switches(status))
    return out


# --------------------------------------------------------------------------
# /proc/<pid>/status, limits, fd, environ

def parse_status_field(text: str, key: str) -> str | None:
    """The value of `key:` in a /proc/<pid>/status text (`VmRSS`, `Threads`, `Cpus_allowed_list`, ...)."""
    for line in text.splitlines():
        if line.startswith(key + ":"):
            return line.split(":", 1)[1].strip()
    return None


def parse_status_kb(text: str, key: str = "VmRSS") -> int | None:
    """A `kB` figure of /proc/<pid>/status, such as `VmRSS:     1234 kB`."""
    value = parse_status_field(text, key)
    try:
        return int(value.split()[0]) if value else None
    except (ValueError, IndexError):
        return None


def status_kb(pid: int, key: str = "VmRSS") -> int | None:
    text = _read(f"/proc/{pid}/status")
    return None if text is None else parse_status_kb(text, key)


def cpus_allowed(pid: int) -> str | None:
    """Cpus_allowed_list from /proc/<pid>/status: where the scheduler may run it."""
    text = _read(f"/proc/{pid}/status")
    return None if text is None else parse_status_field(text, "Cpus_allowed_list")


def parse_nofile_limit(text: str) -> str | None:
    """`soft/hard` of the `Max open files` line of /proc/<pid>/limits."""
    for line in text.splitlines():
        if line.startswith("Max open files"):
            try:
                soft, hard = line.split()[3:5]
            except ValueError:
                return None
            return f"{soft}/{hard}"
    return None


def nofile_limit(pid: int) -> str | None:
    text = _read(f"/proc/{pid}/limits")
    return None if text is None else parse_nofile_limit(text)


def fd_count(pid: int) -> int | None:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None


def pids_with_env(needle: bytes) -> list[int]:
    """Live processes with the environment entry `needle` (such as b"SWITCHBOARD_MASTER_PID=123"), sorted."""
    out = []
    for pid in all_pids():
        try:
            with open(f"/proc/{pid}/environ", "rb") as f:
                env = f.read()
        except OSError:
            continue
        if needle in env.split(b"\0") and is_alive(pid):
            out.append(pid)
    return sorted(out)


# --------------------------------------------------------------------------
# /proc/net/tcp and socket descriptors: which process holds the server side of a client's connection

TCP_ESTABLISHED = 1


def parse_net_tcp(text: str) -> list[tuple[int, int, int, int]]:
    """The sockets of /proc/net/tcp or /proc/net/tcp6 as (local port, remote port, state, inode); the header line and
    malformed lines are skipped. State 1 is ESTABLISHED, 10 LISTEN (include/net/tcp_states.h)."""
    out = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 10 or ":" not in fields[1] or ":" not in fields[2]:
            continue
        try:
            local = int(fields[1].rsplit(":", 1)[1], 16)
            remote = int(fields[2].rsplit(":", 1)[1], 16)
            out.append((local, remote, int(fields[3], 16), int(fields[9])))
        except ValueError:
            continue
    return out


def tcp_sockets() -> list[tuple[int, int, int, int]]:
    """parse_net_tcp over /proc/net/tcp and /proc/net/tcp6 (this network namespace)."""
    out = []
    for path in ("/proc/net/tcp", "/proc/net/tcp6"):
        text = _read(path)
        if text is not None:
            out += parse_net_tcp(text)
    return out


def parse_socket_link(target: str) -> int | None:
    """The inode of a descriptor's link `socket:[12345]`; None for anything else (files, pipes, anon inodes)."""
    if target.startswith("socket:[") and target.endswith("]"):
        digits = target[len("socket:["):-1]
        return int(digits) if digits.isdigit() else None
    return None


def socket_inodes(pid: int) -> set[int]:
    """The inodes of the sockets `pid` holds open (empty when it is gone or not ours)."""
    out: set[int] = set()
    try:
        names = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return out
    for name in names:
        try:
            inode = parse_socket_link(os.readlink(f"/proc/{pid}/fd/{name}"))
        except OSError:
            continue
        if inode is not None:
            out.add(inode)
    return out


def holders_of_connections(server_port: int, client_ports: list[int], pids: list[int]) -> dict[int, int | None]:
    """For each client port: which of `pids` holds the server side of its established connection to `server_port`
    (None when no one of them does, yet or any more)."""
    inode_of = {remote: inode for local, remote, state, inode in tcp_sockets()
                if local == server_port and state == TCP_ESTABLISHED and remote in client_ports}
    held = {pid: socket_inodes(pid) for pid in pids}
    out: dict[int, int | None] = {}
    for port in client_ports:
        inode = inode_of.get(port)
        out[port] = next((pid for pid, inodes in held.items() if inode is not None and inode in inodes), None)
    return out


# --------------------------------------------------------------------------
# CPU lists, /proc/cpuinfo, /proc/meminfo

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


def parse_cpu_model(text: str) -> str | None:
    """The CPU's name from /proc/cpuinfo (`model name` on x86, `Hardware`/`cpu model` elsewhere)."""
    for line in text.splitlines():
        key = line.split(":", 1)[0].strip().lower()
        if key in ("model name", "hardware", "cpu model", "processor") and ":" in line:
            value = line.split(":", 1)[1].strip()
            if key == "processor" and value.isdigit():
                continue
            return value
    return None


def cpu_model() -> str | None:
    text = _read("/proc/cpuinfo")
    return None if text is None else parse_cpu_model(text)


def mem_total_kb() -> int | None:
    text = _read("/proc/meminfo")
    return None if text is None else parse_status_kb(text, "MemTotal")


def read_first_line(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.readline().strip()
    except OSError:
        return None
