"""Load and measurement clients. Every one talks to 127.0.0.1 only and is bounded in time."""

from __future__ import annotations

import errno
import os
import select
import socket
import subprocess
import threading
import time
from collections import Counter

from benchlib import loadgen, servers, stats

from .common import HOST, FaultError, log

# --------------------------------------------------------------------------
# One HTTP/1.1 request on a fresh connection


def _reason(e: BaseException) -> str:
    if isinstance(e, ConnectionRefusedError):
        return "refused"
    if isinstance(e, (ConnectionResetError, BrokenPipeError, ConnectionAbortedError)):
        return "reset"
    if isinstance(e, (socket.timeout, TimeoutError)):
        return "timeout"
    if isinstance(e, OSError) and e.errno:
        return errno.errorcode.get(e.errno, str(e.errno))
    return type(e).__name__


class Result:
    __slots__ = ("ok", "reason", "ms", "status", "body")

    def __init__(self, ok: bool, reason: str | None, ms: float, status: int | None = None, body: bytes = b""):
        self.ok, self.reason, self.ms, self.status, self.body = ok, reason, ms, status, body

    def worker_pid(self) -> int | None:
        text = self.body.decode("ascii", "replace")
        if "Handled by worker: " in text:
            digits = text.split("Handled by worker: ", 1)[1].strip().split()[0]
            return int(digits) if digits.isdigit() else None
        return None


def http_get(port: int, path: str = "/", timeout: float = 5.0, on_sent=None, on_connected=None) -> Result:
    """GET `path` on a new connection with `Connection: close`; the whole exchange must finish within `timeout`.
    Failure reasons: refused, reset, timeout, short read (closed before a complete response), non-200, or an errno
    name. `on_connected(local_port)` is called once connected, `on_sent()` once the request is written."""
    t0 = time.monotonic()
    deadline = t0 + timeout

    def done(ok, reason, status=None, body=b""):
        return Result(ok, reason, (time.monotonic() - t0) * 1000.0, status, body)

    try:
        s = socket.create_connection((HOST, port), timeout=timeout)
    except BaseException as e:  # noqa: BLE001 - every way a connect fails is a reason
        if isinstance(e, (KeyboardInterrupt, SystemExit)) or not isinstance(e, Exception):
            raise
        return done(False, _reason(e))
    buf = b""
    head_end = -1
    need = None
    with s:
        try:
            if on_connected is not None:
                on_connected(s.getsockname()[1])
            s.sendall(f"GET {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\nConnection: close\r\n\r\n".encode())
            if on_sent is not None:
                on_sent()
            while need is None or len(buf) < need:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return done(False, "timeout")
                s.settimeout(remaining)
                chunk = s.recv(65536)
                if not chunk:
                    break
                buf += chunk
                if head_end < 0:
                    head_end = buf.find(b"\r\n\r\n")
                    if head_end >= 0:
                        length = 0
                        for line in buf[:head_end].split(b"\r\n")[1:]:
                            name, _, value = line.partition(b":")
                            if name.strip().lower() == b"content-length" and value.strip().isdigit():
                                length = int(value.strip())
                        need = head_end + 4 + length
        except Exception as e:  # noqa: BLE001
            return done(False, _reason(e))
    if head_end < 0 or need is None or len(buf) < need:
        return done(False, "short read")
    parts = buf[:buf.find(b"\r\n")].split(b" ")
    status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else None
    body = buf[head_end + 4:need]
    if status != 200:
        return done(False, "non-200", status, body)
    return done(True, None, status, body)


def p99(latencies_ms: list[float]) -> float | None:
    """Nearest-rank 99th percentile."""
    return stats.percentile_or_none(latencies_ms, 99)


def format_reasons(reasons: dict[str, int]) -> str:
    return ", ".join(f"{n:,} {r}" for r, n in sorted(reasons.items(), key=lambda kv: (-kv[1], kv[0])) if n)


# --------------------------------------------------------------------------
# The normal client: a few threads of sequential requests, measuring


NORMAL_THREADS = 4  # the normal client's threads: at most this many of its requests are in flight at once


class NormalClient:
    """`threads` threads, each sending GET / on a fresh connection, then pausing `pause` s. Moderate on purpose:
    it measures the service while a fault runs, it is not the load."""

    def __init__(self, port: int, threads: int = NORMAL_THREADS, pause: float = 0.02, timeout: float = 5.0,
                 max_seconds: float = 600):
        self.port, self.nthreads, self.pause, self.timeout = port, threads, pause, timeout
        self.max_seconds = max_seconds
        self._halt = threading.Event()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self.sent = 0
        self.latencies: list[float] = []
        self.ok_at: list[float] = []  # time.monotonic() when each successful request ended
        self.failed_at: list[tuple[float, str]] = []  # when each failed request ended, and why
        self.failures: Counter = Counter()
        self.statuses: Counter = Counter()

    def start(self) -> "NormalClient":
        for i in range(self.nthreads):
            t = threading.Thread(target=self._loop, name=f"normal-client-{i}", daemon=True)
            t.start()
            self._threads.append(t)
        return self

    def _loop(self) -> None:
        end = time.monotonic() + self.max_seconds
        while not self._halt.is_set() and time.monotonic() < end:
            r = http_get(self.port, "/", self.timeout)
            ended = time.monotonic()
            with self._lock:
                self.sent += 1
                if r.ok:
                    self.latencies.append(r.ms)
                    self.ok_at.append(ended)
                else:
                    self.failures[r.reason] += 1
                    self.failed_at.append((ended, r.reason))
                    if r.status is not None:
                        self.statuses[r.status] += 1
            self._halt.wait(self.pause)

    def stop(self) -> "NormalClient":
        self._halt.set()
        for t in self._threads:
            t.join(timeout=self.timeout + 2)
        return self

    def p99(self) -> float | None:
        with self._lock:
            return p99(self.latencies)

    def summary(self) -> dict:
        with self._lock:
            return {"sent": self.sent, "ok": len(self.latencies), "failed": dict(self.failures),
                    "non_200_statuses": {str(k): v for k, v in self.statuses.items()},
                    "p50_ms": _round(stats.upper_median(self.latencies)),
                    "p99_ms": _round(p99(self.latencies)),
                    "max_ms": _round(max(self.latencies) if self.latencies else None)}


def _round(v, digits=2):
    return None if v is None else round(v, digits)


def burst(port: int, n: int, path: str = "/", timeout: float = 5.0, threads: int = 4) -> list[Result]:
    """`n` requests over `threads` threads; returns every result."""
    results: list[Result] = []
    lock = threading.Lock()
    todo = list(range(n))

    def work():
        while True:
            with lock:
                if not todo:
                    return
                todo.pop()
            r = http_get(port, path, timeout)
            with lock:
                results.append(r)

    ts = [threading.Thread(target=work, daemon=True) for _ in range(min(threads, n))]
    for t in ts:
        t.start()
    for t in ts:
        t.join(timeout=timeout * n + 5)
    return results


# --------------------------------------------------------------------------
# Floods of connections that send part of a request and then nothing


CONNECTING, HELD = 0, 1


class Flood(threading.Thread):
    """Opens `target` connections, sends `payload` on each, then holds them silently for `duration` s, counting
    which ones the server closes. With `reopen`, it keeps `target` open by opening a new one for each that closes
    or fails. At most `max_pending` connects are in progress at a time."""

    def __init__(self, port: int, target: int, duration: float, payload: bytes = b"GET / HT",
                 reopen: bool = False, max_pending: int = 64, connect_timeout: float = 3.0):
        super().__init__(daemon=True, name="flood")
        self.port, self.target, self.duration, self.payload = port, target, duration, payload
        self.reopen, self.max_pending, self.connect_timeout = reopen, max_pending, connect_timeout
        self._halt = threading.Event()
        self.opened = 0
        self.established = 0
        self.connect_failures: Counter = Counter()
        self.closed_by_server: Counter = Counter()  # fin, reset
        self.responses: Counter = Counter()  # status codes the server sent on flood connections
        self.close_after_s: list[float] = []  # from the partial request to the server's close
        self.held_max = 0
        self.open_at_end = 0
        self.all_established_after_s: float | None = None
        self.error: str | None = None

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=10)

    def _want_more(self, open_now: int) -> bool:
        return open_now < self.target if self.reopen else self.opened < self.target

    def run(self) -> None:
        ep = select.epoll()
        conns: dict[int, list] = {}  # fd -> [socket, state, time]
        t_start = time.monotonic()
        deadline = t_start + self.duration

        def drop(fd):
            c = conns.pop(fd)
            try:
                ep.unregister(fd)
            except OSError:
                pass
            c[0].close()

        try:
            while not self._halt.is_set() and time.monotonic() < deadline:
                pending = sum(1 for c in conns.values() if c[1] == CONNECTING)
                while self._want_more(len(conns)) and pending < self.max_pending:
                    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                    s.setblocking(False)
                    err = s.connect_ex((HOST, self.port))
                    self.opened += 1
                    if err not in (0, errno.EINPROGRESS):
                        self.connect_failures[errno.errorcode.get(err, str(err))] += 1
                        s.close()
                        break
                    conns[s.fileno()] = [s, CONNECTING, time.monotonic()]
                    ep.register(s.fileno(), select.EPOLLOUT)
                    pending += 1
                now = time.monotonic()
                for fd, ev in ep.poll(0.05):
                    c = conns.get(fd)
                    if c is None:
                        continue
                    s = c[0]
                    if c[1] == CONNECTING:
                        err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                        if err:
                            self.connect_failures[errno.errorcode.get(err, str(err))] += 1
                            drop(fd)
                            continue
                        try:
                            s.send(self.payload)
                        except OSError as e:
                            self.connect_failures["send " + _reason(e)] += 1
                            drop(fd)
                            continue
                        c[1], c[2] = HELD, now
                        self.established += 1
                        ep.modify(fd, select.EPOLLIN | select.EPOLLRDHUP)
                        continue
                    try:
                        data = s.recv(65536)
                    except BlockingIOError:
                        continue
                    except OSError as e:
                        self.closed_by_server["reset" if _reason(e) == "reset" else _reason(e)] += 1
                        self.close_after_s.append(now - c[2])
                        drop(fd)
                        continue
                    if not data:
                        self.closed_by_server["fin"] += 1
                        self.close_after_s.append(now - c[2])
                        drop(fd)
                        continue
                    if data.startswith(b"HTTP/1.") and len(data) > 12 and data[9:12].isdigit():
                        self.responses[int(data[9:12])] += 1
                for fd in [fd for fd, c in conns.items()
                           if c[1] == CONNECTING and now - c[2] > self.connect_timeout]:
                    self.connect_failures["connect timeout"] += 1
                    drop(fd)
                held = sum(1 for c in conns.values() if c[1] == HELD)
                self.held_max = max(self.held_max, held)
                if (self.all_established_after_s is None and not self.reopen
                        and self.established >= self.target):
                    self.all_established_after_s = time.monotonic() - t_start
        except Exception as e:  # noqa: BLE001 - reported, never raised out of the thread
            self.error = f"{type(e).__name__}: {e}"
        finally:
            self.open_at_end = sum(1 for c in conns.values() if c[1] == HELD)
            for fd in list(conns):
                drop(fd)
            ep.close()

    def summary(self) -> dict:
        closes = sorted(self.close_after_s)
        return {
            "target": self.target, "opened": self.opened, "established": self.established,
            "held_max": self.held_max, "open_at_end": self.open_at_end,
            "closed_by_server": dict(self.closed_by_server),
            "closed_by_server_total": sum(self.closed_by_server.values()),
            "responses": {str(k): v for k, v in self.responses.items()},
            "connect_failures": dict(self.connect_failures),
            "close_after_s_min": _round(closes[0] if closes else None),
            "close_after_s_max": _round(closes[-1] if closes else None),
            "all_established_after_s": _round(self.all_established_after_s),
            "error": self.error,
        }


# --------------------------------------------------------------------------
# Pipelining without ever reading


class Pipeliner(threading.Thread):
    """One connection that sends pipelined `GET / HTTP/1.1` requests for `duration` s and never reads. A small
    receive buffer makes the server's unread responses back up quickly."""

    REQUEST = f"GET / HTTP/1.1\r\nHost: {HOST}\r\n\r\n".encode()

    def __init__(self, port: int, duration: float, rcvbuf: int = 65536):
        super().__init__(daemon=True, name="pipeliner")
        self.port, self.duration, self.rcvbuf = port, duration, rcvbuf
        self._halt = threading.Event()
        self.bytes_sent = 0
        self.cut: str | None = None  # how the server cut the connection: fin, reset, ...
        self.cut_after_s: float | None = None
        self.last_progress_s: float | None = None  # when the last byte went out (the server stopped reading)
        self.error: str | None = None

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=10)

    def run(self) -> None:
        chunk = self.REQUEST * 512
        t0 = time.monotonic()
        deadline = t0 + self.duration
        try:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        except OSError as e:
            self.error = _reason(e)
            return
        try:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.rcvbuf)
            s.settimeout(5)
            s.connect((HOST, self.port))
            s.setblocking(False)
            poller = select.poll()
            poller.register(s.fileno(), select.POLLOUT | select.POLLRDHUP)
            pos = 0
            while not self._halt.is_set() and time.monotonic() < deadline:
                for _fd, ev in poller.poll(100):
                    if ev & (select.POLLRDHUP | select.POLLHUP | select.POLLERR):
                        err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                        self.cut = "reset" if err == errno.ECONNRESET or ev & select.POLLERR else "fin"
                        break
                    if ev & select.POLLOUT:
                        try:
                            n = s.send(chunk[pos:])
                        except BlockingIOError:
                            continue
                        except OSError as e:
                            self.cut = _reason(e)
                            break
                        if n > 0:
                            self.bytes_sent += n
                            self.last_progress_s = time.monotonic() - t0
                            pos = (pos + n) % len(chunk)
                if self.cut:
                    self.cut_after_s = time.monotonic() - t0
                    break
        except Exception as e:  # noqa: BLE001
            self.error = _reason(e)
        finally:
            s.close()

    def summary(self) -> dict:
        return {"bytes_sent": self.bytes_sent, "requests_sent": self.bytes_sent // len(self.REQUEST),
                "cut_by_server": self.cut, "cut_after_s": _round(self.cut_after_s),
                "last_send_progress_s": _round(self.last_progress_s), "error": self.error}


# --------------------------------------------------------------------------
# wrk in the background


class Wrk:
    """wrk -t1 with bench's count.lua (only its JSON summary line), started now, read later."""

    def __init__(self, wrk: str, port: int, duration: int, registry: servers.Registry, connections: int = 20,
                 timeout_s: int = 5, close: bool = True):
        self.cmd = loadgen.wrk_command(wrk, f"http://{HOST}:{port}/", duration, connections, close,
                                       timeout_s=timeout_s)
        self.duration = duration
        self.registry = registry
        self.proc: subprocess.Popen | None = None

    def start(self) -> "Wrk":
        env = dict(os.environ, SWITCHBOARD_BENCH_COUNT="0")
        self.proc = subprocess.Popen(self.cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True, env=env, **servers.OWN_GROUP)
        self.registry.add_proc(self.proc)
        return self

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.kill(self.proc.pid, 9)
            except ProcessLookupError:
                pass
            self.proc.wait(timeout=5)
        if self.proc is not None:
            self.registry.remove_proc(self.proc)

    def result(self) -> dict:
        assert self.proc is not None
        try:
            out, _ = self.proc.communicate(timeout=self.duration + 30)
        except subprocess.TimeoutExpired:
            self.kill()
            raise FaultError(f"wrk did not finish within {self.duration + 30} s: {' '.join(self.cmd)}")
        finally:
            self.registry.remove_proc(self.proc)
        r = loadgen.parse_marker(out)
        if r is not None:
            r["non2xx_or_3xx"] = loadgen.parse_non2xx(out)
            return r
        tail = loadgen.last_line(out)
        log(f"wrk exited {self.proc.returncode} without a result line: {tail}")
        raise FaultError(f"wrk gave no result: {tail}")


def wrk_failures(r: dict) -> dict[str, int]:
    """wrk's error counters by type (socket errors: connect, read, write, timeout; and non-2xx/3xx responses)."""
    e = r["errors"]
    out = {k: int(e[k]) for k in ("connect", "read", "write", "timeout") if int(e[k])}
    non = max(int(r.get("non2xx_or_3xx", 0)), int(e.get("status", 0)))
    if non:
        out["non-2xx"] = non
    return out
