"""What every fault shares: the server (benchlib's), /proc readers, the sampler, a result row."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from benchlib import HOST, REPO_ROOT, BenchError, make_log  # noqa: F401  (HOST and REPO_ROOT: for the suite)
from benchlib import procfs, servers
from benchlib.procfs import fd_count, nofile_limit, start_time, status_kb  # noqa: F401  (re-exported for faults)

FD_SLACK = 2  # master descriptors after a fault may differ from before by this much


class FaultError(BenchError):
    pass


log = make_log("faults")


# --------------------------------------------------------------------------
# /proc

def same_process(pid: int, started: int | None) -> bool:
    return started is not None and procfs.is_alive(pid) and start_time(pid) == started


def pids_with_master_env(master: int) -> list[int]:
    """Live processes whose environment says they were started as workers of `master` (wherever they were
    reparented to): the master sets SWITCHBOARD_MASTER_PID in every worker it spawns."""
    return procfs.pids_with_env(f"SWITCHBOARD_MASTER_PID={master}".encode())


# --------------------------------------------------------------------------
# The server under test

class FaultServer(servers.Server):
    """benchlib's Server with extra Popen options (own session, preexec_fn) and a record of every worker pid seen
    together with its start time, so that clean-up only ever signals processes this run started."""

    def __init__(self, label: str, argv: list[str], logfile: Path, workers: int, registry: servers.Registry,
                 popen_options: dict | None = None):
        super().__init__(label, argv, None, logfile, workers, registry, popen_options, mode="round-robin")
        self.seen: dict[int, int | None] = {}  # worker pid -> start time
        self.master_started: int | None = None
        self._seen_lock = threading.Lock()

    def start(self) -> None:
        try:
            super().start()
        except BenchError as e:
            raise FaultError(str(e))
        self.master_started = start_time(self.proc.pid)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def master_alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def live_workers(self) -> list[int]:
        """Live children of the master now (every one is noted for clean-up)."""
        if self.proc is None:
            return []
        pids = procfs.children_of(self.proc.pid) if self.master_alive() else []
        with self._seen_lock:
            for p in pids:
                if p not in self.seen:
                    self.seen[p] = start_time(p)
        return pids

    def _leftovers(self) -> list[int]:
        with self._seen_lock:
            seen = dict(self.seen)
        pids = {p for p, t in seen.items() if same_process(p, t)}
        if self.pgid is not None and self.master_started is not None:
            for p in procfs.group_members(self.pgid):  # only processes started after the master
                t = start_time(p)
                if t is not None and t >= self.master_started:
                    pids.add(p)
        if self.proc is not None and self.master_started is not None:
            for p in pids_with_master_env(self.proc.pid):
                t = start_time(p)
                if t is not None and t >= self.master_started:
                    pids.add(p)
        if self.proc is not None:
            pids.discard(self.proc.pid)  # the master is stopped (and reaped) by Server.stop itself
        return sorted(pids)

    def log_text(self) -> str:
        try:
            return self.logfile.read_text(errors="replace")
        except OSError:
            return ""


# --------------------------------------------------------------------------
# Sampling the master and its workers while a fault runs

class Sampler(threading.Thread):
    """Every `interval` s: live workers, their VmRSS, the master's VmRSS and descriptor count."""

    def __init__(self, srv: FaultServer, interval: float = 0.1, max_seconds: float = 900):
        super().__init__(daemon=True)
        self.srv = srv
        self.interval = interval
        self.max_seconds = max_seconds
        self._halt = threading.Event()
        self.worker_rss_first: dict[int, int] = {}
        self.worker_rss_max: dict[int, int] = {}
        self.master_rss_max = 0
        self.master_fds_max = 0
        self.worker_fds_max = 0
        self.workers_min: int | None = None
        self.workers_max = 0
        self.samples = 0

    def sample(self) -> None:
        workers = self.srv.live_workers()
        self.workers_min = len(workers) if self.workers_min is None else min(self.workers_min, len(workers))
        self.workers_max = max(self.workers_max, len(workers))
        for p in workers:
            rss = status_kb(p)
            if rss is None:
                continue
            self.worker_rss_first.setdefault(p, rss)
            self.worker_rss_max[p] = max(self.worker_rss_max.get(p, 0), rss)
            self.worker_fds_max = max(self.worker_fds_max, fd_count(p) or 0)
        if self.srv.master_alive():
            rss = status_kb(self.srv.pid)
            fds = fd_count(self.srv.pid)
            if rss is not None:
                self.master_rss_max = max(self.master_rss_max, rss)
            if fds is not None:
                self.master_fds_max = max(self.master_fds_max, fds)
        self.samples += 1

    def run(self) -> None:
        end = time.monotonic() + self.max_seconds
        while not self._halt.is_set() and time.monotonic() < end:
            try:
                self.sample()
            except Exception:  # a process vanishing between two reads; keep sampling
                pass
            self._halt.wait(self.interval)

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=5)

    def worker_rss_max_kb(self) -> int | None:
        return max(self.worker_rss_max.values()) if self.worker_rss_max else None

    def worker_rss_growth_kb(self) -> int | None:
        """Largest growth of one worker: its highest VmRSS minus its first sample."""
        growth = [self.worker_rss_max[p] - self.worker_rss_first[p] for p in self.worker_rss_max]
        return max(growth) if growth else None


# --------------------------------------------------------------------------
# Waiting for the server to settle after a fault

def settle(srv: FaultServer, expected_workers: int, fds_baseline: int | None, timeout: float) -> dict:
    """Waits (at most `timeout` s) until the master has `expected_workers` live children and its descriptor count is
    back within FD_SLACK of `fds_baseline`; returns what it saw last."""
    t0 = time.monotonic()
    deadline = t0 + timeout
    workers, fds = [], None
    while True:
        alive = srv.master_alive()
        workers = srv.live_workers() if alive else []
        fds = fd_count(srv.pid) if alive else None
        ok_workers = len(workers) == expected_workers
        ok_fds = fds_baseline is None or (fds is not None and abs(fds - fds_baseline) <= FD_SLACK)
        if not alive or (ok_workers and ok_fds) or time.monotonic() >= deadline:
            break
        time.sleep(0.1)
    return {"workers": workers, "fds": fds, "alive": srv.master_alive(),
            "settle_s": round(time.monotonic() - t0, 2)}


# --------------------------------------------------------------------------
# One row of the table

class Row:
    def __init__(self, key: str, title: str, expectation: str):
        self.key = key
        self.title = title
        self.expectation = expectation
        self.status = "pass"  # pass, fail, n/a
        self.problems: list[str] = []
        self.na_reason: str | None = None
        self.requests: dict[str, int] = {}  # source -> requests sent
        self.failures: dict[str, dict[str, int]] = {}  # source -> reason -> count
        self.p99_ms: float | None = None
        self.workers_before: int | None = None
        self.workers_after: int | None = None
        self.fds_before: int | None = None
        self.fds_after: int | None = None
        self.worker_rss_before_kb: int | None = None
        self.worker_rss_max_kb: int | None = None
        self.master_rss_before_kb: int | None = None
        self.master_rss_max_kb: int | None = None
        self.master_alive: bool | None = None
        self.master_exit: int | None = None
        self.detail: list[str] = []
        self.extra: dict = {}
        self.argv: list[str] = []
        self.seconds: float | None = None

    def expect(self, ok: bool, problem: str) -> bool:
        if not ok:
            self.problems.append(problem)
            self.status = "fail"
        return ok

    def not_applicable(self, reason: str) -> None:
        if self.status != "fail":
            self.status = "n/a"
        self.na_reason = reason

    def note(self, text: str) -> None:
        self.detail.append(text)

    def failed_total(self) -> int:
        return sum(sum(r.values()) for r in self.failures.values())

    def to_json(self) -> dict:
        return {
            "key": self.key, "fault": self.title, "expectation": self.expectation, "status": self.status,
            "problems": self.problems, "na_reason": self.na_reason,
            "requests_sent": self.requests, "requests_sent_total": sum(self.requests.values()),
            "failed": self.failures, "failed_total": self.failed_total(),
            "client_p99_ms": self.p99_ms,
            "workers_before": self.workers_before, "workers_after": self.workers_after,
            "master_fds_before": self.fds_before, "master_fds_after": self.fds_after,
            "worker_rss_before_kb": self.worker_rss_before_kb, "worker_rss_max_kb": self.worker_rss_max_kb,
            "master_rss_before_kb": self.master_rss_before_kb, "master_rss_max_kb": self.master_rss_max_kb,
            "master_alive_at_end": self.master_alive, "master_exit_status": self.master_exit,
            "detail": self.detail, "extra": self.extra, "server_argv": self.argv, "seconds": self.seconds,
        }
