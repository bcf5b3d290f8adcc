"""Subjects under test (a master and its workers) and the registry of every process a run started.

A subject is started by its real pid (no shell in between: `taskset` execs the command), prints its ready line
`listening on <host>:<port> with <n> workers (<mode>)`, and is stopped with SIGTERM, then SIGKILL by pid for the
master and for any worker that outlives it. The registry is what the scripts' clean-up walks on any exit (an error,
Ctrl-C, SIGTERM, SIGHUP): it kills load generators by pid and stops every server still running.
"""

from __future__ import annotations

import os
import re
import selectors
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable

from . import REPO_ROOT, BenchError, Log, Terminated, make_log
from . import procfs
from .report import rel

READY_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0
READY_RE = re.compile(r"^listening on (\S+):(\d+) with (\d+) workers \(([^)]*)\)\s*$")

# How subjects and load generators are started by default: each leads a process group of its own (so everything a
# subject started can be found and stopped), but stays in this session. See bench.py's --new-sessions.
OWN_GROUP = {"process_group": 0}
OWN_SESSION = {"start_new_session": True}


def parse_ready_line(text: str) -> dict | None:
    """`listening on 127.0.0.1:8080 with 2 workers (round-robin)` -> host, port, workers, mode; None otherwise."""
    m = READY_RE.match(text.strip())
    if not m:
        return None
    return {"host": m.group(1), "port": int(m.group(2)), "workers": int(m.group(3)), "mode": m.group(4)}


def _on_signal(signum, frame):  # pragma: no cover - signal path
    raise Terminated(signum)


def install_signal_handlers() -> None:
    """SIGTERM and SIGHUP raise Terminated, so that every finally block (and the registry's clean-up) runs."""
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGHUP, _on_signal)


def ignore_signals() -> None:
    """Let the clean-up finish: a second Ctrl-C or SIGTERM no longer interrupts it."""
    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        signal.signal(sig, signal.SIG_IGN)


def run_with_cleanup(name: str, main: Callable[["Registry"], int], log: Log) -> int:
    """A script's entry point: runs `main` with a fresh registry and cleans up whatever it started on any exit.

    SIGTERM and SIGHUP end it like Ctrl-C (every `finally` runs; see install_signal_handlers), and SIGINT does too
    where the shell started it ignoring SIGINT. A BenchError is one line, `<name>: error: ...`, and exit status 1;
    Ctrl-C is `<name>: interrupted` and 130; a SIGTERM or SIGHUP is `<name>: stopped by signal SIGTERM` and 128 + its
    number. During the clean-up further signals are ignored, so that it finishes."""
    install_signal_handlers()
    signal.signal(signal.SIGINT, signal.default_int_handler)
    registry = Registry(log)
    try:
        return main(registry)
    except BenchError as e:
        print(f"{name}: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{name}: interrupted", file=sys.stderr)
        return 130
    except Terminated as t:
        print(f"{name}: stopped by signal {signal.Signals(t.signum).name}", file=sys.stderr)
        return 128 + t.signum
    finally:
        ignore_signals()
        registry.cleanup()


class Registry:
    """Everything a run started and has not stopped yet: servers, and load generators (by their Popen)."""

    def __init__(self, log: Log | None = None):
        self.log = log or make_log("bench")
        self.servers: list["Server"] = []
        self.procs: list[subprocess.Popen] = []

    def add_proc(self, p: subprocess.Popen) -> None:
        self.procs.append(p)

    def remove_proc(self, p: subprocess.Popen) -> None:
        if p in self.procs:
            self.procs.remove(p)

    def cleanup(self) -> None:
        """SIGKILL every load generator still running (by pid), then stop every server."""
        for p in list(self.procs):
            if p.poll() is None:
                try:
                    os.kill(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                try:
                    p.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    pass
        self.procs.clear()
        for srv in list(self.servers):
            try:
                srv.stop()
            except Exception as e:  # keep cleaning up the rest
                self.log(f"warning: cleanup of {srv.name} failed: {e}")


class Server:
    """One running subject (master plus its workers).

    `mode` is what its ready line should name (default: `name` without -nio/-affinity). With `strict`, a ready line
    naming another mode or worker count, or fewer workers found in /proc than expected, is an error; otherwise a
    warning."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str] | None, logfile: Path, workers: int,
                 registry: Registry, popen_options: dict | None = None, mode: str | None = None,
                 strict: bool = False, worker_wait_s: float = 2.0):
        self.name = name
        self.argv = argv
        self.env = env
        self.logfile = logfile
        self.expected_workers = workers
        self.registry = registry
        self.log = registry.log
        self.popen_options = dict(popen_options) if popen_options is not None else dict(OWN_GROUP)
        self.mode = mode if mode is not None else name.removesuffix("-nio").removesuffix("-affinity")
        self.strict = strict
        self.worker_wait_s = worker_wait_s
        self.proc: subprocess.Popen | None = None
        self.pgid: int | None = None
        self.port: int | None = None
        self.ready_line: str | None = None
        self.ready_mode: str | None = None
        self.workers: list[int] = []
        self.outlived: list[int] = []  # processes still alive after the master exited, killed by stop()
        self._watch: set[int] = set()  # the master's children when stop() began
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
        self.pgid = self.proc.pid  # process_group=0 or a new session: the master leads its own group
        self.registry.servers.append(self)
        self._wait_ready()
        self._drain = threading.Thread(target=self._drain_stdout, daemon=True)
        self._drain.start()
        self._find_workers()

    def _problem(self, text: str) -> None:
        if self.strict:
            raise BenchError(f"{self.name}: {text}")
        self.log(f"warning: {self.name}: {text}")

    def _find_workers(self) -> None:
        # The ready line says every worker is up; allow a moment for /proc anyway.
        deadline = time.monotonic() + self.worker_wait_s
        while True:
            self.workers = procfs.children_of(self.proc.pid)
            if len(self.workers) >= self.expected_workers or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        if len(self.workers) != self.expected_workers:
            self._problem(f"found {len(self.workers)} worker processes (children of pid {self.proc.pid}), "
                          f"expected {self.expected_workers}")

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
                    raise BenchError(f"{self.name}: no ready line within {READY_TIMEOUT_S:.0f} s "
                                     f"(log: {rel(self.logfile)})")
                if not sel.select(min(remaining, 0.5)):
                    continue
                chunk = os.read(fd, 4096)
                if not chunk:
                    code = self.proc.wait(timeout=5)
                    raise BenchError(f"{self.name}: exited with status {code} before its ready line "
                                     f"(log: {rel(self.logfile)})")
                self._log_fh.write(chunk)
                buf += chunk
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    text = line.decode("utf-8", "replace").strip()
                    ready = parse_ready_line(text)
                    if ready:
                        self.ready_line = text
                        self.port = ready["port"]
                        self.ready_mode = ready["mode"]
                        if self.ready_mode != self.mode:
                            self._problem(f"ready line reports mode '{self.ready_mode}'")
                        if ready["workers"] != self.expected_workers:
                            self._problem(f"ready line reports {ready['workers']} workers, "
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
        """SIGTERM the master, wait, then SIGKILL whatever is left (by pid). Returns graceful (the master exited on
        SIGTERM within STOP_TIMEOUT_S), its exit status and the pids killed; `outlived` keeps the pids that were
        still alive after the master exited."""
        info = {"graceful": None, "exit_status": None, "killed": []}
        if self.proc is None:
            return info
        if self.proc.poll() is None:
            # Workers started since start() (a restart during the loads) are the master's children now.
            self._watch = set(procfs.children_of(self.proc.pid))
            try:
                os.kill(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=STOP_TIMEOUT_S)
                info["graceful"] = True
            except subprocess.TimeoutExpired:
                info["graceful"] = False
                self.log(f"warning: {self.name}: master {self.proc.pid} ignored SIGTERM for "
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
            self.log(f"warning: {self.name}: pid {pid} still alive after the master exited; sending SIGKILL")
            self.outlived.append(pid)
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
        if self in self.registry.servers:
            self.registry.servers.remove(self)
        return info

    def _leftovers(self) -> list[int]:
        pids = set(p for p in list(self.workers) + list(self._watch) if procfs.is_alive(p))
        if self.pgid is not None:
            pids.update(procfs.group_members(self.pgid))
        return sorted(pids)

    @staticmethod
    def _kill_pid(pid: int, info: dict) -> None:
        try:
            os.kill(pid, signal.SIGKILL)
            info["killed"].append(pid)
        except ProcessLookupError:
            pass
