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
same kind. Prints a Markdown table, writes JSON with every raw number. Standard library only (the shared parts are
the package Scripts/benchlib); 127.0.0.1 only.

  python3 Scripts/bench/tls.py --smoke
  python3 Scripts/bench/tls.py --binary .build-bench-tls/release/switchboard-hummingbird-example \\
      --rounds 3 --duration 8 --json docs/bench-tls.json
"""

from __future__ import annotations

import argparse
import datetime as _dt
import os
import platform
import re
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # Scripts/, for benchlib

from benchlib import HOST, REPO_ROOT, BenchError, make_log  # noqa: E402
from benchlib import loadgen, procfs, report, servers, stats  # noqa: E402
from benchlib.machine import run_text  # noqa: E402
from benchlib.report import fmt_fixed as fmt  # noqa: E402

PRODUCT = "switchboard-hummingbird-example"
BUILD_PATH = ".build-bench-tls"
MODES = ["round-robin", "reuseport"]
LOADS = ["https-keepalive", "https-close", "h2"]
WORKERS = 2
CONNECTIONS = 32
H2_STREAMS = 10
H2_WARM_UP_S = 2  # within h2load's own run, so that every connection is made before its duration starts
WARMUP_S = 1
BODY_RE = re.compile(rb"Hello from Hummingbird worker (\d+)")
CLK_TCK = procfs.CLK_TCK
GEN_BOUND_PCT = 95.0  # a load generator at >= this % of one core set the pace, not the server

log = make_log("tls-bench")


# ---------------------------------------------------------------- subject

def start_subject(mode: str, binary: str, cert: Path, key: Path, logfile: Path,
                  registry: servers.Registry) -> servers.Server:
    """The example with TLS in `mode`; its ready line must name that mode and WORKERS workers, all found in /proc
    within 3 s."""
    argv = [binary, "--host", HOST, "--port", "0", "--workers", str(WORKERS), "--mode", mode,
            "--tls-cert", str(cert), "--tls-key", str(key)]
    srv = servers.Server(mode, argv, None, logfile, WORKERS, registry, mode=mode, strict=True, worker_wait_s=3.0)
    srv.start()
    return srv


def stop_subject(srv: servers.Server) -> dict:
    info = srv.stop()
    return {"graceful": info["graceful"], "exit_status": info["exit_status"], "leftover_workers": srv.outlived}


# ---------------------------------------------------------------- load generators

def load_command(load: str, port: int, duration: int) -> list[str]:
    url = f"https://{HOST}:{port}/"
    if load == "h2":
        return loadgen.h2load_command(url, duration, CONNECTIONS, H2_STREAMS, warm_up=H2_WARM_UP_S)
    return loadgen.wrk_command("wrk", url, duration, CONNECTIONS, close=load == "https-close", script=False)


def run_load(load: str, port: int, duration: int, registry: servers.Registry) -> dict:
    cmd = load_command(load, port, duration)
    run = loadgen.run_generator(cmd, duration + 30, registry)
    r = loadgen.parse_h2load(run.out) if load == "h2" else loadgen.parse_wrk_text(run.out)
    if load == "https-close":
        # The response carries no `Connection: close`, so wrk sends its next request on the connection the server
        # closes and counts one read error per connection, then reconnects. Those are expected: up to one per
        # completed request, plus one per connection in flight when the load ends. Only the excess is an error.
        read = r["errors"].get("read", 0)
        r["errors"]["read_expected"] = min(read, r["requests"] + CONNECTIONS)
        r["error_total"] -= r["errors"]["read_expected"]
    if load == "h2" and r["protocol"] != "h2":
        raise BenchError(f"h2load negotiated {r['protocol']!r}, not h2")
    r["generator_cpu_s"] = round(run.cpu_s, 4)
    r["command"] = " ".join(cmd)
    return r


def measure(srv: servers.Server, load: str, duration: int, registry: servers.Registry) -> dict:
    run_load(load, srv.port, WARMUP_S, registry)
    time.sleep(0.2)
    master_pid = srv.proc.pid
    workers = procfs.children_of(master_pid)
    m0, w0 = procfs.cpu_ticks(master_pid), {p: procfs.cpu_ticks(p) for p in workers}
    t0 = time.monotonic()
    r = run_load(load, srv.port, duration, registry)
    wall = time.monotonic() - t0
    m1, w1 = procfs.cpu_ticks(master_pid), {p: procfs.cpu_ticks(p) for p in workers}
    if procfs.children_of(master_pid) != workers or None in w1.values():
        raise BenchError(f"{srv.mode}: workers changed during {load}: {workers} -> "
                         f"{procfs.children_of(master_pid)}")
    master = m1 - m0
    per_worker = {str(p): w1[p] - w0[p] for p in workers}
    wsum = sum(per_worker.values())
    n = max(r["requests"], 1)
    us = 1e6 / CLK_TCK
    r.update({
        "wall_s": round(wall, 3), "master_ticks": master, "worker_ticks": per_worker, "clk_tck": CLK_TCK,
        "master_us_per_req": master * us / n, "workers_us_per_req": wsum * us / n,
        "server_us_per_req": (master + wsum) * us / n,
        "master_share": stats.ratio(master, master + wsum),
        "server_cpu_pct": (master + wsum) / CLK_TCK / wall * 100,
        "worker_cpu_max_over_min": stats.max_min(list(per_worker.values())),
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


def check_subject(srv: servers.Server) -> list[str]:
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

def machine_info(binary: str) -> dict:
    st = os.stat(binary)
    return {
        "commit": run_text(["git", "rev-parse", "--short", "HEAD"]),
        "commit_time": run_text(["git", "log", "-1", "--format=%cI"]),
        # A binary built before HEAD was committed may not be HEAD's code: compare its time with commit_time.
        "binary_older_than_commit": st.st_mtime < float(run_text(["git", "log", "-1", "--format=%ct"]) or 0),
        "worktree_dirty": bool(run_text(["git", "status", "--porcelain", "--untracked-files=no"])),
        "binary": binary, "binary_mtime": _dt.datetime.fromtimestamp(st.st_mtime).isoformat(timespec="seconds"),
        "wrk": loadgen.wrk_version("wrk"),
        "h2load": loadgen.tool_version(["h2load", "--version"]),
        "openssl": run_text(["openssl", "version"]),
        "nproc": os.cpu_count(), "cpu": procfs.cpu_model() or "unknown", "kernel": platform.release(),
        "os": platform.platform(), "python": platform.python_version(), "clk_tck": CLK_TCK,
        "loadavg_at_start": os.getloadavg(),
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


def summarize(raw: dict) -> dict:
    out = {}
    for load in LOADS:
        for mode in MODES:
            rounds = raw[load][mode]
            out.setdefault(load, {})[mode] = {
                "median": {k: stats.median_or_none([r[k] for r in rounds]) for k in KEYS},
                "min_max": {k: stats.spread([r[k] for r in rounds]) for k in KEYS},
                "errors": sum(r["error_total"] for r in rounds),
                "generator_bound_rounds": sum(1 for r in rounds if r["generator_cpu_pct"] >= GEN_BOUND_PCT),
            }
    return out


def ratios(summary: dict) -> dict:
    out = {}
    for load in LOADS:
        a, b = summary[load]["round-robin"]["median"], summary[load]["reuseport"]["median"]
        out[load] = {f"{k}_rr_over_reuseport": stats.ratio(a[k], b[k])
                     for k in ("req_per_s", "server_us_per_req", "workers_us_per_req", "p99_ms", "mean_ms")}
    return out


def table(summary: dict, rounds: int) -> str:
    show = rounds > 1
    head = ["load", "mode", "req/s", "mean ms", "p99 ms", "master µs/req", "workers µs/req", "master share",
            "server CPU % / client CPU %", "worker CPU max/min", "errors"]
    rows = []
    for load in LOADS:
        for mode in MODES:
            s = summary[load][mode]
            m, mm = s["median"], s["min_max"]
            share = m["master_share"]
            share_mm = [x * 100 for x in mm["master_share"]] if mm["master_share"] else None
            rows.append([
                load, mode, fmt(m["req_per_s"], 0, mm["req_per_s"] if show else None), fmt(m["mean_ms"], 2),
                fmt(m["p99_ms"], 2), fmt(m["master_us_per_req"], 1, mm["master_us_per_req"] if show else None),
                fmt(m["workers_us_per_req"], 1),
                (fmt(share * 100, 1, share_mm if show else None) + " %") if share is not None else "–",
                f"{fmt(m['server_cpu_pct'])} / {fmt(m['generator_cpu_pct'])}", fmt(m["worker_cpu_max_over_min"], 2),
                str(s["errors"])])
    return report.markdown_table(head, report.first_left(len(head), 2), rows)


def ratio_table(r: dict) -> str:
    rows = [[load, fmt(r[load]["req_per_s_rr_over_reuseport"], 2),
             fmt(r[load]["server_us_per_req_rr_over_reuseport"], 2)] for load in LOADS]
    return report.markdown_table(["load", "round-robin / reuseport req/s",
                                  "round-robin / reuseport server µs per request"], report.first_left(3), rows)


# ---------------------------------------------------------------- main

def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--binary", help=f"the subject (default: build it into {BUILD_PATH})")
    p.add_argument("--rounds", type=int, default=None, help="interleaved rounds (default 3; --smoke 1)")
    p.add_argument("--duration", type=int, default=None, help="seconds per timed load (default 8; --smoke 1)")
    p.add_argument("--json", default=None, help="JSON output (default bench-results/bench-tls.json)")
    p.add_argument("--smoke", action="store_true",
                   help="1 round of 1 s loads: every subject and load answers with 0 errors, or exit 1")
    return p.parse_args(argv)


def run_rounds(binary: str, cert: Path, key: Path, workdir: Path, rounds: int, duration: int,
               registry: servers.Registry) -> tuple[dict, list[str], list[dict]]:
    """Every load against every subject, subjects interleaved per round: the raw results per load and mode, the
    problems seen and how each subject stopped."""
    raw = {load: {mode: [] for mode in MODES} for load in LOADS}
    problems, stops = [], []
    for rnd in range(rounds):
        order = MODES if rnd % 2 == 0 else MODES[::-1]  # alternate which subject goes first
        for mode in order:
            srv = start_subject(mode, binary, cert, key, workdir / f"{mode}.log", registry)
            try:
                problems += check_subject(srv)
                for load in LOADS:
                    problems += run_one_load(srv, load, duration, rnd + 1, raw, registry)
            finally:
                info_stop = stop_subject(srv)
            info_stop.update({"mode": mode, "round": rnd + 1})
            stops.append(info_stop)
            if info_stop["leftover_workers"] or not info_stop["graceful"]:
                problems.append(f"{mode} round {rnd + 1}: stop {info_stop}")
    return raw, problems, stops


def run_one_load(srv: servers.Server, load: str, duration: int, round_no: int, raw: dict,
                 registry: servers.Registry) -> list[str]:
    r = measure(srv, load, duration, registry)
    r["round"] = round_no
    raw[load][srv.mode].append(r)
    log(f"round {round_no} {srv.mode:11} {load:15} {r['req_per_s']:9,.0f} req/s  "
        f"master {r['master_us_per_req']:6.1f} µs/req  workers {r['workers_us_per_req']:7.1f} "
        f"µs/req  share {100 * (r['master_share'] or 0):4.1f} %  "
        f"server {r['server_cpu_pct']:3.0f} % client {r['generator_cpu_pct']:3.0f} %  "
        f"errors {r['error_total']}")
    if r["error_total"] or r["requests"] == 0:
        return [f"{srv.mode} {load} round {round_no}: {r['requests']} requests, errors {r['errors']}"]
    return []


def print_report(summary: dict, rat: dict, info: dict, rounds: int, duration: int, json_path: Path) -> None:
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


def main(registry: servers.Registry, argv=None) -> int:
    args = parse_args(argv)
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
    started = time.monotonic()
    raw, problems, stops = run_rounds(binary, cert, key, workdir, rounds, duration, registry)
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
    report.write_json(json_path, doc, newline=False)
    print_report(summary, rat, info, rounds, duration, json_path)
    if problems:
        for pr in problems:
            print(f"problem: {pr}")
        return 1
    if args.smoke:
        print("smoke: every subject answered every load with 0 errors")
    return 0


def entry() -> int:
    return servers.run_with_cleanup("tls-bench", main, log)


if __name__ == "__main__":
    sys.exit(entry())
