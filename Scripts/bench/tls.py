#!/usr/bin/env python3
"""HTTPS and HTTP/2 through the Hummingbird example: what fd passing costs when the worker does the TLS handshake.

Subjects: `switchboard-hummingbird-example --tls-cert --tls-key` with 2 workers in `round-robin` (the master accepts
and passes every connection to a worker over a socketpair) and in `reuseport` (each worker has its own SO_REUSEPORT
listener; the master only supervises). Loads, each run against each subject, subjects interleaved per round:

  https-keepalive  wrk -t1 -c32 over TLS (HTTP/1.1, no ALPN), keep-alive
  https-close      the same with `Connection: close`: one TCP connection and one TLS handshake per request
  h2               h2load -c32 -m10 (HTTP/2 chosen by ALPN)

For each timed load it reads the CPU ticks (utime + stime) of the master and of every worker before and after, and
reports CPU per request and the master's share of the server's CPU. Each timed load follows a 1 s warm-up of the
same kind. Prints a Markdown table, writes JSON with every raw number. Standard library only; 127.0.0.1 only.

  python3 Scripts/bench/tls.py --smoke
  python3 Scripts/bench/tls.py --binary .build-bench-tls/release/switchboard-hummingbird-example \\
      --rounds 3 --duration 8 --json docs/bench-tls.json
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import re
import resource
import selectors
import shutil
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parent.parent
PRODUCT = "switchboard-hummingbird-example"
BUILD_PATH = ".build-bench-tls"
HOST = "127.0.0.1"
MODES = ["round-robin", "reuseport"]
LOADS = ["https-keepalive", "https-close", "h2"]
WORKERS = 2
CONNECTIONS = 32
H2_STREAMS = 10
WARMUP_S = 1
READY_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0
READY_RE = re.compile(r"^listening on (\S+):(\d+) with (\d+) workers \(([^)]*)\)\s*$")
BODY_RE = re.compile(rb"Hello from Hummingbird worker (\d+)")
CLK_TCK = os.sysconf("SC_CLK_TCK")
GEN_BOUND_PCT = 95.0  # a load generator at >= this % of one core set the pace, not the server

_LIVE: list["Server"] = []
_GEN: list[subprocess.Popen] = []


class BenchError(Exception):
    pass


class Terminated(BaseException):
    pass


def _on_signal(signum, frame):  # pragma: no cover
    raise Terminated(signum)


def log(msg: str) -> None:
    print(f"[tls-bench] {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------- /proc

def read_stat(pid: int) -> list[str] | None:
    """Fields of /proc/<pid>/stat after the comm field (index i is proc(5) field i + 3)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read().decode("ascii", "replace")
    except OSError:
        return None
    return data[data.rfind(")") + 2:].split()


def cpu_ticks(pid: int) -> int | None:
    st = read_stat(pid)
    return None if st is None else int(st[11]) + int(st[12])  # utime + stime, fields 14 and 15


def children_of(ppid: int) -> list[int]:
    out = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            st = read_stat(int(name))
            if st is not None and st[0] not in ("Z", "X") and int(st[1]) == ppid:
                out.append(int(name))
    return sorted(out)


def is_alive(pid: int) -> bool:
    st = read_stat(pid)
    return st is not None and st[0] not in ("Z", "X")


# ---------------------------------------------------------------- subject

class Server:
    def __init__(self, mode: str, binary: str, cert: Path, key: Path, logfile: Path):
        self.mode = mode
        self.argv = [binary, "--host", HOST, "--port", "0", "--workers", str(WORKERS), "--mode", mode,
                     "--tls-cert", str(cert), "--tls-key", str(key)]
        self.logfile = logfile
        self.proc: subprocess.Popen | None = None
        self.port: int | None = None
        self.workers: list[int] = []
        self._log = None
        self._drain: threading.Thread | None = None

    def start(self) -> None:
        self._log = open(self.logfile, "ab", buffering=0)
        self._log.write(f"# {' '.join(self.argv)}\n".encode())
        self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=self._log,
                                     cwd=str(REPO_ROOT), process_group=0)
        _LIVE.append(self)
        fd = self.proc.stdout.fileno()
        sel = selectors.DefaultSelector()
        sel.register(fd, selectors.EVENT_READ)
        buf, deadline = b"", time.monotonic() + READY_TIMEOUT_S
        try:
            while self.port is None:
                if time.monotonic() > deadline:
                    raise BenchError(f"{self.mode}: no ready line within {READY_TIMEOUT_S:.0f} s (log {self.logfile})")
                if not sel.select(0.5):
                    continue
                chunk = os.read(fd, 4096)
                if not chunk:
                    raise BenchError(f"{self.mode}: exited {self.proc.wait(5)} before its ready line "
                                     f"(log {self.logfile})")
                self._log.write(chunk)
                buf += chunk
                for line in buf.split(b"\n")[:-1]:
                    m = READY_RE.match(line.decode("utf-8", "replace").strip())
                    if m:
                        self.port = int(m.group(2))
                        if m.group(4) != self.mode or int(m.group(3)) != WORKERS:
                            raise BenchError(f"{self.mode}: unexpected ready line {line!r}")
                buf = buf.rsplit(b"\n", 1)[-1]
        finally:
            sel.close()
        self._drain = threading.Thread(target=self._drain_stdout, daemon=True)
        self._drain.start()
        deadline = time.monotonic() + 3.0
        while len(self.workers) < WORKERS and time.monotonic() < deadline:
            self.workers = children_of(self.proc.pid)
            time.sleep(0.05)
        if len(self.workers) != WORKERS:
            raise BenchError(f"{self.mode}: found workers {self.workers}, expected {WORKERS}")

    def _drain_stdout(self) -> None:
        try:
            while chunk := os.read(self.proc.stdout.fileno(), 65536):
                self._log.write(chunk)
        except (OSError, ValueError, AttributeError):
            pass

    def stop(self) -> dict:
        info = {"graceful": None, "exit_status": None, "leftover_workers": []}
        if self.proc is None:
            return info
        workers = set(self.workers) | set(children_of(self.proc.pid))
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=STOP_TIMEOUT_S)
                info["graceful"] = True
            except subprocess.TimeoutExpired:
                info["graceful"] = False
                log(f"warning: {self.mode}: master {self.proc.pid} ignored SIGTERM; SIGKILL")
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=5)
        info["exit_status"] = self.proc.returncode
        deadline = time.monotonic() + 5.0
        while any(is_alive(p) for p in workers) and time.monotonic() < deadline:
            time.sleep(0.05)
        for pid in sorted(p for p in workers if is_alive(p)):
            log(f"warning: {self.mode}: worker {pid} outlived the master; SIGKILL")
            info["leftover_workers"].append(pid)
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if self._drain is not None:
            self._drain.join(timeout=2)
        self.proc.stdout.close()
        self._log.close()
        _LIVE.remove(self)
        return info


def cleanup_all() -> None:
    for p in list(_GEN):
        if p.poll() is None:
            os.kill(p.pid, signal.SIGKILL)
            p.wait()
    for srv in list(_LIVE):
        try:
            srv.stop()
        except Exception as e:  # keep cleaning up
            log(f"warning: cleanup of {srv.mode} failed: {e}")


# ---------------------------------------------------------------- load generators

def run_tool(cmd: list[str], timeout: float) -> tuple[str, float]:
    """Runs a load generator; returns its output and its own CPU seconds (only it is reaped meanwhile)."""
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                         process_group=0)
    _GEN.append(p)
    try:
        out, _ = p.communicate(timeout=timeout)
    except BaseException as e:
        if p.poll() is None:
            os.kill(p.pid, signal.SIGKILL)
        p.wait()
        if isinstance(e, subprocess.TimeoutExpired):
            raise BenchError(f"did not finish within {timeout:.0f} s: {' '.join(cmd)}")
        raise
    finally:
        _GEN.remove(p)
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    return out, (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)


def load_command(load: str, port: int, duration: int) -> list[str]:
    url = f"https://{HOST}:{port}/"
    if load == "h2":
        return ["h2load", "-c", str(CONNECTIONS), "-m", str(H2_STREAMS), "-D", str(duration), url]
    cmd = ["wrk", "-t", "1", "-c", str(CONNECTIONS), "-d", f"{duration}s", "--latency"]
    if load == "https-close":
        cmd += ["-H", "Connection: close"]
    return cmd + [url]


def to_ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if not m:
        raise BenchError(f"cannot parse duration {text!r}")
    return float(m.group(1)) * {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4}[m.group(2)]


def parse_wrk(out: str) -> dict:
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


def run_load(load: str, port: int, duration: int) -> dict:
    cmd = load_command(load, port, duration)
    out, gen_cpu_s = run_tool(cmd, duration + 30)
    r = parse_h2load(out) if load == "h2" else parse_wrk(out)
    if load == "https-close":
        # The response carries no `Connection: close`, so wrk sends its next request on the connection the server
        # closes and counts one read error per connection, then reconnects. Those are expected: up to one per
        # completed request, plus one per connection in flight when the load ends. Only the excess is an error.
        read = r["errors"].get("read", 0)
        r["errors"]["read_expected"] = min(read, r["requests"] + CONNECTIONS)
        r["error_total"] -= r["errors"]["read_expected"]
    if load == "h2" and r["protocol"] != "h2":
        raise BenchError(f"h2load negotiated {r['protocol']!r}, not h2")
    r["generator_cpu_s"] = round(gen_cpu_s, 4)
    r["command"] = " ".join(cmd)
    return r


def measure(srv: Server, load: str, duration: int) -> dict:
    run_load(load, srv.port, WARMUP_S)
    time.sleep(0.2)
    workers = children_of(srv.proc.pid)
    m0, w0 = cpu_ticks(srv.proc.pid), {p: cpu_ticks(p) for p in workers}
    t0 = time.monotonic()
    r = run_load(load, srv.port, duration)
    wall = time.monotonic() - t0
    m1, w1 = cpu_ticks(srv.proc.pid), {p: cpu_ticks(p) for p in workers}
    if children_of(srv.proc.pid) != workers or None in w1.values():
        raise BenchError(f"{srv.mode}: workers changed during {load}: {workers} -> {children_of(srv.proc.pid)}")
    master = m1 - m0
    per_worker = {str(p): w1[p] - w0[p] for p in workers}
    wsum = sum(per_worker.values())
    n = max(r["requests"], 1)
    us = 1e6 / CLK_TCK
    r.update({
        "wall_s": round(wall, 3), "master_ticks": master, "worker_ticks": per_worker, "clk_tck": CLK_TCK,
        "master_us_per_req": master * us / n, "workers_us_per_req": wsum * us / n,
        "server_us_per_req": (master + wsum) * us / n,
        "master_share": master / (master + wsum) if master + wsum else None,
        "server_cpu_pct": (master + wsum) / CLK_TCK / wall * 100,
        "worker_cpu_max_over_min": (max(per_worker.values()) / min(per_worker.values())
                                    if min(per_worker.values()) > 0 else None),
        "generator_cpu_pct": r["generator_cpu_s"] / wall * 100,
    })
    return r


# ---------------------------------------------------------------- checks

def tls_get(port: int, alpn: list[str] | None) -> tuple[str | None, int | None]:
    """One TLS connection: returns (ALPN chosen, worker pid from the body of GET / over HTTP/1.1, or None)."""
    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    if alpn:
        ctx.set_alpn_protocols(alpn)
    with socket.create_connection((HOST, port), timeout=5) as raw, ctx.wrap_socket(raw) as s:
        chosen = s.selected_alpn_protocol()
        if chosen == "h2":
            return chosen, None
        s.sendall(f"GET / HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n".encode())
        data = b""
        try:
            while chunk := s.recv(65536):
                data += chunk
        except (ssl.SSLEOFError, ConnectionResetError):
            pass  # a close without close_notify still delivered the response
        m = BODY_RE.search(data)
        return chosen, int(m.group(1)) if data.startswith(b"HTTP/1.1 200") and m else None


def check_subject(srv: Server) -> list[str]:
    problems = []
    seen = set()
    for _ in range(20):
        _, pid = tls_get(srv.port, None)
        if pid is None or pid not in srv.workers:
            problems.append(f"{srv.mode}: GET / over TLS answered from pid {pid}, workers are {srv.workers}")
            break
        seen.add(pid)
        if seen == set(srv.workers):
            break
    if not problems and seen != set(srv.workers):
        problems.append(f"{srv.mode}: 20 TLS connections reached only workers {sorted(seen)} of {srv.workers}")
    chosen, _ = tls_get(srv.port, ["h2", "http/1.1"])
    if chosen != "h2":
        problems.append(f"{srv.mode}: ALPN chose {chosen!r}, not h2")
    return problems


# ---------------------------------------------------------------- environment

def run_text(cmd: list[str]) -> str:
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=30, cwd=str(REPO_ROOT))
        return (r.stdout + r.stderr).strip()
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"


def machine_info(binary: str) -> dict:
    cpu = "unknown"
    try:
        cpu = next(l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name"))
    except (OSError, StopIteration):
        pass
    st = os.stat(binary)
    return {
        "commit": run_text(["git", "rev-parse", "--short", "HEAD"]),
        "commit_time": run_text(["git", "log", "-1", "--format=%cI"]),
        # A binary built before HEAD was committed may not be HEAD's code: compare its time with commit_time.
        "binary_older_than_commit": st.st_mtime < float(run_text(["git", "log", "-1", "--format=%ct"]) or 0),
        "worktree_dirty": bool(run_text(["git", "status", "--porcelain", "--untracked-files=no"])),
        "binary": binary, "binary_mtime": _dt.datetime.fromtimestamp(st.st_mtime).isoformat(timespec="seconds"),
        "wrk": run_text(["wrk", "-v"]).splitlines()[0].split(" Copyright")[0],
        "h2load": run_text(["h2load", "--version"]).splitlines()[0],
        "openssl": run_text(["openssl", "version"]),
        "nproc": os.cpu_count(), "cpu": cpu, "kernel": platform.release(), "os": platform.platform(),
        "python": platform.python_version(), "clk_tck": CLK_TCK, "loadavg_at_start": os.getloadavg(),
    }


def build_binary(logdir: Path) -> str:
    cmd = ["swift", "build", "-c", "release", "--traits", "Hummingbird", "--product", PRODUCT,
           "--build-path", BUILD_PATH]
    log(f"building: {' '.join(cmd)} (log {logdir / 'build.log'})")
    with open(logdir / "build.log", "wb") as f:
        if subprocess.run(cmd, cwd=str(REPO_ROOT), stdout=f, stderr=subprocess.STDOUT).returncode != 0:
            raise BenchError(f"build failed (log {logdir / 'build.log'})")
    return str(REPO_ROOT / BUILD_PATH / "release" / PRODUCT)


def make_certificate(d: Path) -> tuple[Path, Path]:
    cert, key = d / "cert.pem", d / "key.pem"
    r = subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out",
                        str(cert), "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
                       capture_output=True, text=True)
    if r.returncode != 0:
        raise BenchError(f"openssl req failed: {r.stderr.strip()}")
    return cert, key


# ---------------------------------------------------------------- summary

KEYS = ["req_per_s", "mean_ms", "p99_ms", "master_us_per_req", "workers_us_per_req", "server_us_per_req",
        "master_share", "server_cpu_pct", "generator_cpu_pct", "worker_cpu_max_over_min"]


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def summarize(raw: dict) -> dict:
    out = {}
    for load in LOADS:
        for mode in MODES:
            rounds = raw[load][mode]
            out.setdefault(load, {})[mode] = {
                "median": {k: median([r[k] for r in rounds]) for k in KEYS},
                "min_max": {k: ([min(v), max(v)] if (v := [r[k] for r in rounds if r[k] is not None]) else None)
                            for k in KEYS},
                "errors": sum(r["error_total"] for r in rounds),
                "generator_bound_rounds": sum(1 for r in rounds if r["generator_cpu_pct"] >= GEN_BOUND_PCT),
            }
    return out


def ratios(summary: dict) -> dict:
    out = {}
    for load in LOADS:
        a, b = summary[load]["round-robin"]["median"], summary[load]["reuseport"]["median"]
        out[load] = {f"{k}_rr_over_reuseport": (a[k] / b[k] if a[k] is not None and b[k] else None)
                     for k in ("req_per_s", "server_us_per_req", "workers_us_per_req", "p99_ms", "mean_ms")}
    return out


def fmt(v, digits=0, spread=None) -> str:
    if v is None:
        return "–"
    s = f"{v:,.{digits}f}"
    if spread and spread[0] != spread[1]:
        s += f" ({spread[0]:,.{digits}f}–{spread[1]:,.{digits}f})"
    return s


def table(summary: dict, rounds: int) -> str:
    show = rounds > 1
    head = ["load", "mode", "req/s", "mean ms", "p99 ms", "master µs/req", "workers µs/req", "master share",
            "server CPU % / client CPU %", "worker CPU max/min", "errors"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---", "---"] + ["---:"] * (len(head) - 2)) + "|"]
    for load in LOADS:
        for mode in MODES:
            s = summary[load][mode]
            m, mm = s["median"], s["min_max"]
            share = m["master_share"]
            share_mm = [x * 100 for x in mm["master_share"]] if mm["master_share"] else None
            lines.append("| " + " | ".join([
                load, mode, fmt(m["req_per_s"], 0, mm["req_per_s"] if show else None), fmt(m["mean_ms"], 2),
                fmt(m["p99_ms"], 2), fmt(m["master_us_per_req"], 1, mm["master_us_per_req"] if show else None),
                fmt(m["workers_us_per_req"], 1),
                (fmt(share * 100, 1, share_mm if show else None) + " %") if share is not None else "–",
                f"{fmt(m['server_cpu_pct'])} / {fmt(m['generator_cpu_pct'])}", fmt(m["worker_cpu_max_over_min"], 2),
                str(s["errors"])]) + " |")
    return "\n".join(lines)


def ratio_table(r: dict) -> str:
    lines = ["| load | round-robin / reuseport req/s | round-robin / reuseport server µs per request |",
             "|---|---:|---:|"]
    for load in LOADS:
        x = r[load]
        lines.append(f"| {load} | {fmt(x['req_per_s_rr_over_reuseport'], 2)} | "
                     f"{fmt(x['server_us_per_req_rr_over_reuseport'], 2)} |")
    return "\n".join(lines)


# ---------------------------------------------------------------- main

def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--binary", help=f"the subject (default: build it into {BUILD_PATH})")
    p.add_argument("--rounds", type=int, default=None, help="interleaved rounds (default 3; --smoke 1)")
    p.add_argument("--duration", type=int, default=None, help="seconds per timed load (default 8; --smoke 1)")
    p.add_argument("--json", default=None, help="JSON output (default bench-results/bench-tls.json)")
    p.add_argument("--smoke", action="store_true",
                   help="1 round of 1 s loads: every subject and load answers with 0 errors, or exit 1")
    args = p.parse_args(argv)
    rounds = args.rounds or (1 if args.smoke else 3)
    duration = args.duration or (1 if args.smoke else 8)
    if rounds < 1 or duration < 1:
        raise BenchError("--rounds and --duration must be at least 1")
    for tool in ("wrk", "h2load", "openssl"):
        if not shutil.which(tool):
            raise BenchError(f"{tool} not found (apt-get install -y wrk nghttp2-client openssl)")
    json_path = Path(args.json) if args.json else REPO_ROOT / "bench-results" / "bench-tls.json"
    workdir = Path(tempfile.mkdtemp(prefix="switchboard-bench-tls-"))
    log(f"certificate and logs in {workdir}")
    binary = args.binary or build_binary(workdir)
    if not os.access(binary, os.X_OK):
        raise BenchError(f"{binary} is not an executable")
    cert, key = make_certificate(workdir)
    info = machine_info(binary)
    raw = {load: {mode: [] for mode in MODES} for load in LOADS}
    problems, stops = [], []
    started = time.monotonic()
    for rnd in range(rounds):
        order = MODES if rnd % 2 == 0 else MODES[::-1]  # alternate which subject goes first
        for mode in order:
            srv = Server(mode, binary, cert, key, workdir / f"{mode}.log")
            srv.start()
            try:
                problems += check_subject(srv)
                for load in LOADS:
                    r = measure(srv, load, duration)
                    r["round"] = rnd + 1
                    raw[load][mode].append(r)
                    log(f"round {rnd + 1} {mode:11} {load:15} {r['req_per_s']:9,.0f} req/s  "
                        f"master {r['master_us_per_req']:6.1f} µs/req  workers {r['workers_us_per_req']:7.1f} "
                        f"µs/req  share {100 * (r['master_share'] or 0):4.1f} %  "
                        f"server {r['server_cpu_pct']:3.0f} % client {r['generator_cpu_pct']:3.0f} %  "
                        f"errors {r['error_total']}")
                    if r["error_total"] or r["requests"] == 0:
                        problems.append(f"{mode} {load} round {rnd + 1}: {r['requests']} requests, "
                                        f"errors {r['errors']}")
            finally:
                info_stop = srv.stop()
            info_stop.update({"mode": mode, "round": rnd + 1})
            stops.append(info_stop)
            if info_stop["leftover_workers"] or not info_stop["graceful"]:
                problems.append(f"{mode} round {rnd + 1}: stop {info_stop}")
    summary = summarize(raw)
    rat = ratios(summary)
    doc = {
        "benchmark": "tls", "date": _dt.datetime.now().isoformat(timespec="seconds"),
        "command": " ".join([sys.executable] + sys.argv), "machine": info,
        "config": {"workers": WORKERS, "connections": CONNECTIONS, "h2_streams_per_connection": H2_STREAMS,
                   "rounds": rounds, "duration_s": duration, "warmup_s": WARMUP_S, "host": HOST,
                   "modes": MODES, "loads": LOADS, "smoke": args.smoke, "certificate": "RSA 2048, self-signed",
                   "commands": {load: " ".join(load_command(load, 0, duration)).replace(":0/", ":<port>/")
                                for load in LOADS}},
        "elapsed_s": round(time.monotonic() - started, 1),
        "raw": raw, "summary": summary, "ratios": rat, "stops": stops, "problems": problems, "logs": str(workdir),
    }
    json_path.parent.mkdir(parents=True, exist_ok=True)
    with open(json_path, "w") as f:
        json.dump(doc, f, indent=2, allow_nan=False)
    print(f"## HTTPS and HTTP/2, {WORKERS} workers, {CONNECTIONS} connections "
          f"(medians of {rounds} round{'s' if rounds > 1 else ''}, {duration} s each"
          f"{', min–max in brackets' if rounds > 1 else ''})\n")
    print(table(summary, rounds) + "\n")
    print("https-close: one connection and one TLS handshake per request, so req/s is connections/s and µs/req is "
          "µs per connection; its errors leave out wrk's one expected read error per connection (the response has "
          "no `Connection: close`). h2: h2load gives no percentiles (mean only). Master share = master CPU / "
          "(master + workers CPU). Server CPU % and client CPU % are of one core (2 cores in all).\n")
    print(ratio_table(rat) + "\n")
    if info["binary_older_than_commit"]:
        print(f"note: the binary ({info['binary_mtime']}) is older than commit {info['commit']} "
              f"({info['commit_time']}): it may not be that commit's code\n")
    print(f"commit {info['commit']}{' (dirty work tree)' if info['worktree_dirty'] else ''}, {info['wrk']}, "
          f"{info['h2load']}, {info['openssl']}, {info['nproc']} CPUs, kernel {info['kernel']}")
    print(f"JSON: {json_path}")
    if problems:
        for pr in problems:
            print(f"problem: {pr}")
        return 1
    if args.smoke:
        print("smoke: every subject answered every load with 0 errors")
    return 0


def entry() -> int:
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGHUP, _on_signal)
    try:
        return main()
    except BenchError as e:
        log(f"error: {e}")
        return 1
    except (KeyboardInterrupt, Terminated):
        log("interrupted")
        return 130
    finally:
        cleanup_all()


if __name__ == "__main__":
    sys.exit(entry())
