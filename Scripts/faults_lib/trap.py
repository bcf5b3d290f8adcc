"""The trap fault: one request makes a framework application trap (`fatalError`, as a force-unwrap of nil or an index
out of range would), once with the application listening by itself (one multithreaded process, restarted as systemd's
`Restart=always` with `RestartSec=100ms` would) and once behind Switchboard with 2 workers. Rows per application of
benchlib.apps (one entry adds a framework); a framework whose binary is missing is n/a with the build command."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import threading
import time
from collections import Counter
from pathlib import Path

from benchlib import apps, procfs, stats

from .clients import NORMAL_THREADS, NormalClient, format_reasons, http_get
from .common import HOST, FaultError, FaultServer, Row, fd_count, same_process, start_time

SLOW_COUNT = 6  # slow requests in flight when the trap comes
SLOW_MS = 1500
SLOW_STAGGER_S = 0.05  # between the slow requests' connects, so that round-robin spreads them over the workers
RESTART_SEC = 0.1  # the restarter of the application alone: systemd's RestartSec=100ms
MAX_RESTARTS = 3
SERVE_TIMEOUT_S = 30.0  # a (re)started process must answer GET / within this
RECOVERY_TIMEOUT_S = 60.0  # from the trap until the service is whole again (the backtracer may take seconds)
AFTER_RECOVERY_S = 1.0  # the loop keeps running this long after the service is whole again
GAP_BOUND_S = 1.0  # behind Switchboard: the longest time without a successful loop request
WORKERS = 2
BACKTRACE_OFF = {"SWIFT_BACKTRACE": "enable=no"}


def free_port() -> int:
    """A port free on 127.0.0.1 now (the restarted application must listen on the same one, as a unit's would)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def _exit_text(code: int | None) -> str:
    if code is None:
        return "still running"
    return f"killed by {signal.Signals(-code).name}" if code < 0 else f"exit {code}"


class AloneServer(FaultServer):
    """The application listening by itself on a fixed port, and its restarter: when the process exits, it is started
    again after RESTART_SEC (at most MAX_RESTARTS times), as `Restart=always` with `RestartSec=100ms` does. Ready =
    answers GET / with 200."""

    def __init__(self, label: str, argv: list[str], port: int, logfile: Path, registry, env: dict):
        super().__init__(label, argv, logfile, 1, registry, {"process_group": 0})
        self.env = env
        self.port = port
        self.exits: list[dict] = []  # pid, exit status, when it ended, when its replacement started and served
        self._halt = threading.Event()
        self._watcher: threading.Thread | None = None

    def start(self) -> None:
        self.logfile.parent.mkdir(parents=True, exist_ok=True)
        self._log_fh = open(self.logfile, "ab", buffering=0)
        self._spawn()
        self.registry.servers.append(self)
        if self.serving_within(SERVE_TIMEOUT_S) is None:
            raise FaultError(f"{self.name}: did not answer GET / on port {self.port} within {SERVE_TIMEOUT_S:.0f} s "
                             f"({_exit_text(self.proc.poll())})")
        self._watcher = threading.Thread(target=self._restart_loop, daemon=True, name=f"restarter-{self.name}")
        self._watcher.start()

    def _spawn(self) -> None:
        self._log_fh.write(f"# {' '.join(self.argv)}\n".encode())
        try:
            self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=self._log_fh,
                                         stderr=subprocess.STDOUT, env=self.env, **self.popen_options)
        except OSError as e:
            raise FaultError(f"{self.name}: cannot start {self.argv[0]}: {e.strerror}")
        self.pgid = self.proc.pid
        self.master_started = start_time(self.proc.pid)

    def serving_within(self, timeout: float) -> float | None:
        """time.monotonic() when GET / first answered 200, polling every 10 ms; None when the process exited or the
        time ran out first."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not self._halt.is_set():
            if self.proc.poll() is not None:
                return None
            if http_get(self.port, "/", timeout=1.0).ok:
                return time.monotonic()
            time.sleep(0.01)
        return None

    def _restart_loop(self) -> None:
        while not self._halt.is_set():
            proc = self.proc
            while proc.poll() is None and not self._halt.is_set():
                time.sleep(0.005)
            if self._halt.is_set():
                return
            record = {"pid": proc.pid, "exit_status": proc.returncode, "ended_at": time.monotonic(),
                      "restarted_at": None, "serving_at": None}
            self.exits.append(record)
            if len(self.exits) > MAX_RESTARTS or self._halt.wait(RESTART_SEC):
                return
            self._spawn()
            record["restarted_at"] = time.monotonic()
            record["serving_at"] = self.serving_within(SERVE_TIMEOUT_S)

    def live_workers(self) -> list[int]:
        return [self.proc.pid] if self.master_alive() else []

    def stop(self) -> dict:
        self._halt.set()
        if self._watcher is not None:
            self._watcher.join(timeout=SERVE_TIMEOUT_S + 5)
        return super().stop()


class SlowRequests:
    """SLOW_COUNT requests of SLOW_MS, started SLOW_STAGGER_S apart; records each one's client port and result."""

    def __init__(self, port: int, path: str, timeout: float):
        self.port, self.path, self.timeout = port, path, timeout
        self.local_ports: list[int | None] = [None] * SLOW_COUNT
        self.results: list = [None] * SLOW_COUNT
        self._sent = threading.Semaphore(0)
        self._threads: list[threading.Thread] = []

    def start(self) -> "SlowRequests":
        for i in range(SLOW_COUNT):
            t = threading.Thread(target=self._one, args=(i,), daemon=True, name=f"slow-{i}")
            t.start()
            self._threads.append(t)
            time.sleep(SLOW_STAGGER_S)
        return self

    def _one(self, i: int) -> None:
        def connected(local_port):
            self.local_ports[i] = local_port

        self.results[i] = http_get(self.port, self.path, timeout=self.timeout, on_sent=self._sent.release,
                                   on_connected=connected)

    def wait_sent(self, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        return sum(1 for _ in range(SLOW_COUNT) if self._sent.acquire(timeout=max(0.0, deadline - time.monotonic())))

    def join(self) -> None:
        for t in self._threads:
            t.join(timeout=self.timeout + 5)


def wait_for_holders(port: int, client_ports: list[int], pids: list[int], timeout: float) -> dict[int, int | None]:
    """Which process holds the server side of each client port, polled until every one is held (or the time ends):
    in round-robin the master passes a connection on, and a worker holds it once it has received it."""
    deadline = time.monotonic() + timeout
    while True:
        held = procfs.holders_of_connections(port, client_ports, pids)
        if all(v is not None for v in held.values()) or time.monotonic() >= deadline:
            return held
        time.sleep(0.02)


def start_subject(ctx, row: Row, binary: str, arrangement: str, env: dict):
    if arrangement == "alone":
        port = free_port()
        argv = [binary, "--host", HOST, "--port", str(port), "--alone", "on", "--test-hooks", "on"]
        srv = AloneServer(row.key, argv, port, ctx.logdir / f"{row.key}.log", ctx.registry, env)
    else:
        argv = [binary, "--host", HOST, "--port", "0", "--workers", str(WORKERS), "--mode", "round-robin",
                "--test-hooks", "on"]
        srv = FaultServer(row.key, argv, ctx.logdir / f"{row.key}.log", WORKERS, ctx.registry)
        srv.env = env
    row.argv = argv
    try:
        srv.logfile.unlink()
    except FileNotFoundError:
        pass
    ctx.servers.append(srv)
    try:
        srv.start()
    except FaultError:
        if apps.built_without_trait(srv.log_text()):
            return None
        raise
    return srv


def trap(ctx, row: Row, app: apps.App, arrangement: str) -> None:
    """The fault itself: a loop of normal requests, SLOW_COUNT slow requests in flight, one GET /trap; then waits
    until the service is whole again (alone: restarted and answering; behind Switchboard: the trapping worker replaced)
    and measures what was lost and the longest time without a successful loop request."""
    backtracer = "off (SWIFT_BACKTRACE=enable=no)" if ctx.backtracer_off else "on (default)"
    how = ("alone (1 process, restarted 100 ms after it exits)" if arrangement == "alone"
           else f"behind Switchboard ({WORKERS} workers, round-robin)")
    row.title = (f"{app.name} {how}: /trap with {SLOW_COUNT} × {SLOW_MS} ms in flight, "
                 f"backtracer {backtracer.split(' ')[0]}")
    binary = ctx.app_binaries.get(app.name)
    if binary is None:
        row.not_applicable(app.missing_line())
        return
    env = dict(os.environ)
    if ctx.backtracer_off:
        env.update(BACKTRACE_OFF)
    srv = start_subject(ctx, row, binary, arrangement, env)
    if srv is None:
        row.not_applicable(f"{binary} was built without the {app.trait} trait: {app.build_command()}")
        return
    row.extra.update({"binary": binary, "arrangement": arrangement, "backtracer": backtracer,
                      "slow_count": SLOW_COUNT, "slow_ms": SLOW_MS, "gap_bound_s": GAP_BOUND_S})
    before = srv.live_workers()
    identities = {p: start_time(p) for p in before}
    row.workers_before = len(before)
    row.fds_before = fd_count(srv.pid) if arrangement == "cluster" else None
    row.extra["pids_before"] = before

    client = NormalClient(srv.port).start()
    slow = None
    trap_result: list = []
    try:
        time.sleep(0.5)
        slow = SlowRequests(srv.port, app.slow_path.format(ms=SLOW_MS), timeout=SLOW_MS / 1000 + 60).start()
        sent = slow.wait_sent(5)
        ports = [p for p in slow.local_ports if p is not None]
        holders = wait_for_holders(srv.port, ports, before, 2.0)
        trap_thread = threading.Thread(
            target=lambda: trap_result.append(http_get(srv.port, app.trap_path, timeout=RECOVERY_TIMEOUT_S)),
            daemon=True)
        t_trap = time.monotonic()
        trap_thread.start()
        outcome = (wait_alone(srv, t_trap) if arrangement == "alone"
                   else wait_cluster(srv, identities, t_trap))
        time.sleep(AFTER_RECOVERY_S)
    finally:
        if slow is not None:
            slow.join()  # the loop keeps running meanwhile: its window ends when it is told to stop
        t_end = time.monotonic()
        client.stop()
    trap_thread.join(timeout=5)

    # The loop: its longest time without a successful request, from its first success to its end.
    s = client.summary()
    first_ok = min(client.ok_at) if client.ok_at else t_trap
    gap = stats.longest_gap(client.ok_at, first_ok, t_end)
    gap_s, gap_from = (gap[0], gap[1] - t_trap) if gap else (None, None)
    before_trap = stats.longest_gap(client.ok_at, first_ok, t_trap)  # the same figure without a fault: the noise
    row.extra["gap_before_trap_s"] = None if before_trap is None else round(before_trap[0], 3)
    row.extra["gaps_over_100ms"] = [{"from_trap_s": round(at - t_trap, 3), "s": round(length, 3)}
                                    for at, length in stats.gaps_longer_than(client.ok_at, first_ok, t_end, 0.1)]
    loop_failed_after = Counter(reason for at, reason in client.failed_at if at >= t_trap)
    row.requests["loop"] = s["sent"]
    row.failures["loop"] = s["failed"]
    row.p99_ms = s["p99_ms"]
    row.extra["client"] = s
    row.extra["loop_failed_after_trap"] = dict(loop_failed_after)

    # The slow requests: which process held each, and which were lost.
    trapper = outcome["trapper"]
    held_by = [holders.get(p) if p is not None else None for p in slow.local_ports]
    lost = [i for i, r in enumerate(slow.results) if r is None or not r.ok]
    on_trapper = [i for i in range(SLOW_COUNT) if trapper is not None and held_by[i] == trapper]
    row.requests["slow in flight"] = SLOW_COUNT
    row.failures["slow in flight"] = dict(Counter(slow.results[i].reason if slow.results[i] else "no result"
                                                  for i in lost))
    row.requests["trap"] = 1
    tr = trap_result[0] if trap_result else None
    row.failures["trap"] = {"no result": 1} if tr is None else ({} if tr.ok else {tr.reason: 1})
    row.extra.update({
        "slow_sent_before_trap": sent, "slow_held_by": held_by, "slow_lost": lost, "slow_on_trapper": on_trapper,
        "slow_latencies_ms": [round(r.ms) if r else None for r in slow.results],
        "trap_result": None if tr is None else {"ok": tr.ok, "reason": tr.reason, "ms": round(tr.ms)},
        "gap_s": None if gap_s is None else round(gap_s, 3),
        "gap_began_after_trap_s": None if gap_from is None else round(gap_from, 3),
        **{k: v for k, v in outcome.items() if k != "trapper"}, "trapper": trapper})

    after = srv.live_workers()
    row.workers_after = len(after)
    row.master_alive = srv.master_alive()
    if arrangement == "cluster":
        row.fds_after = fd_count(srv.pid)
        if not row.master_alive:
            row.master_exit = srv.proc.returncode
    row.extra["pids_after"] = after
    describe(row, arrangement, outcome, held_by, lost, on_trapper, gap_s, gap_from, loop_failed_after, tr)
    judge(row, ctx.expect or arrangement, ctx.backtracer_off, outcome, lost, on_trapper, gap_s, loop_failed_after)


def wait_alone(srv: AloneServer, t_trap: float) -> dict:
    """Until the restarted process answers (or RECOVERY_TIMEOUT_S): when the process ended, how, and when its
    replacement served."""
    trapper = srv.proc.pid
    deadline = t_trap + RECOVERY_TIMEOUT_S
    while time.monotonic() < deadline:
        if srv.exits and srv.exits[0]["serving_at"] is not None:
            break
        if srv.exits and srv.exits[0]["restarted_at"] is not None and not srv.master_alive():
            break  # the replacement died as well
        time.sleep(0.02)
    e = srv.exits[0] if srv.exits else None

    def since(key):
        return None if e is None or e[key] is None else round(e[key] - t_trap, 3)

    return {"trapper": trapper, "trapper_exit": None if e is None else _exit_text(e["exit_status"]),
            "trapper_ended_after_s": since("ended_at"), "replacement_started_after_s": since("restarted_at"),
            "serving_again_after_s": since("serving_at"), "restarts": len(srv.exits),
            "replacement": srv.proc.pid if srv.master_alive() and srv.proc.pid != trapper else None}


def wait_cluster(srv: FaultServer, identities: dict, t_trap: float) -> dict:
    """Until the trapping worker is gone and the master has WORKERS live workers again (or RECOVERY_TIMEOUT_S)."""
    deadline = t_trap + RECOVERY_TIMEOUT_S
    trapper, ended, replaced, replacement = None, None, None, None
    while time.monotonic() < deadline and srv.master_alive():
        if trapper is None:
            gone = [p for p, t in identities.items() if not same_process(p, t)]
            if gone:
                trapper, ended = gone[0], time.monotonic()
        if trapper is not None:
            new = [p for p in srv.live_workers() if p not in identities]
            if new and len(srv.live_workers()) == WORKERS:
                replaced, replacement = time.monotonic(), new[0]
                break
        time.sleep(0.01)
    how = None
    if trapper is not None:
        lines = [ln for ln in srv.log_text().splitlines() if f"worker.pid={trapper}" in ln
                 and ("killed by signal" in ln or "exited with code" in ln or "timed out" in ln or "heartbeat" in ln)]
        how = lines[-1].split("[Switchboard] ", 1)[-1] if lines else None
    return {"trapper": trapper, "trapper_exit": how,
            "trapper_ended_after_s": None if ended is None else round(ended - t_trap, 3),
            "serving_again_after_s": None, "replacement": replacement,
            "replaced_after_s": None if replaced is None else round(replaced - t_trap, 3)}


def describe(row, arrangement, outcome, held_by, lost, on_trapper, gap_s, gap_from, loop_failed_after, tr) -> None:
    trapper = outcome["trapper"]
    spread = Counter(p for p in held_by if p is not None)
    who = "process" if arrangement == "alone" else "worker"
    row.note(f"backtracer {row.extra['backtracer']}")
    row.note("slow requests held: " + (", ".join(f"{n} by {'the trapping ' + who if p == trapper else 'pid ' + str(p)}"
                                                 for p, n in spread.items()) or "none found")
             + (f", {held_by.count(None)} not found" if None in held_by else ""))
    if arrangement == "alone":
        row.note(f"process {trapper} ended {outcome['trapper_ended_after_s']} s after the trap "
                 f"({outcome['trapper_exit']}); restarted at {outcome['replacement_started_after_s']} s, "
                 f"answering again at {outcome['serving_again_after_s']} s")
    else:
        row.note(f"worker {trapper} ended {outcome['trapper_ended_after_s']} s after the trap "
                 f"({outcome['trapper_exit'] or 'no log line'}); replaced by {outcome['replacement']} at "
                 f"{outcome['replaced_after_s']} s")
    row.note(f"lost: {len(lost)}/{SLOW_COUNT} slow in flight ({len(set(lost) & set(on_trapper))} of the "
             f"{len(on_trapper)} the trapping {who} held), "
             f"{sum(loop_failed_after.values())} loop requests after the trap"
             + (f" ({format_reasons(dict(loop_failed_after))})" if loop_failed_after else "")
             + f", the trap itself {'answered 200' if tr is not None and tr.ok else (tr.reason if tr else 'none')}")
    if gap_s is not None:
        row.note(f"time without service (longest gap between successful loop requests) {gap_s:.3f} s, "
                 f"starting {abs(gap_from):.3f} s {'after' if gap_from >= 0 else 'before'} the trap "
                 f"(longest before the trap: {row.extra['gap_before_trap_s']} s)")


def judge(row, expect, backtracer_off, outcome, lost, on_trapper, gap_s, loop_failed_after) -> None:
    row.expect(outcome["trapper"] is not None, "no process ended after the trap")
    if expect == "alone":
        row.expect(outcome.get("serving_again_after_s") is not None, "the restarted application never answered")
        if backtracer_off:
            row.expect(len(lost) == SLOW_COUNT, f"{SLOW_COUNT - len(lost)}/{SLOW_COUNT} slow requests in flight "
                                                "were answered: the trap did not take every in-flight request")
        else:
            # While the backtracer prints, the process's other threads may still answer what they hold.
            row.note(f"in flight and answered while the backtracer ran: {SLOW_COUNT - len(lost)}/{SLOW_COUNT} "
                     "(reported, not judged)")
        return
    row.expect(bool(row.master_alive), f"master died ({_exit_text(row.master_exit)})")
    row.expect(row.workers_after == WORKERS, f"{row.workers_after} workers at the end, configured {WORKERS}")
    row.expect(outcome.get("replacement") is not None, "the trapping worker was not replaced")
    elsewhere = [i for i in lost if i not in on_trapper]
    row.expect(not elsewhere, f"{len(elsewhere)} slow requests lost that the trapping worker did not hold")
    loop_lost = sum(loop_failed_after.values())
    row.expect(loop_lost <= NORMAL_THREADS, f"{loop_lost} loop requests failed after the trap (at most "
                                                  f"{NORMAL_THREADS}: one in flight per loop thread)")
    row.expect(gap_s is not None and gap_s <= GAP_BOUND_S,
               f"time without service {gap_s if gap_s is None else round(gap_s, 3)} s (bound {GAP_BOUND_S} s)")


def specs(spec_class) -> list:
    """Two rows per application: alone, then behind Switchboard."""
    out = []
    for app in apps.APPS:
        for arrangement in ("alone", "cluster"):
            out.append(spec_class(
                f"trap-{app.name}-{arrangement}",
                f"{app.name} {arrangement}: a request traps (fatalError)",
                (f"the process ends; the restarted process (100 ms after the exit) answers again; every one of the "
                 f"{SLOW_COUNT} in-flight slow requests lost (judged with the backtracer off; with it on, reported); "
                 f"loop failures and time without service reported"
                 if arrangement == "alone" else
                 f"only the trapping worker's in-flight requests lost (slow ones it held, at most "
                 f"{NORMAL_THREADS} loop requests, the trap), time without service ≤ {GAP_BOUND_S:g} s, the "
                 f"worker replaced, master alive with {WORKERS} workers"),
                lambda ctx, row, app=app, arrangement=arrangement: trap(ctx, row, app, arrangement),
                smoke=arrangement == "cluster" and app.name == "hummingbird"))
    return out
