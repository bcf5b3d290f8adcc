"""The faults. Each one runs in a fresh server, fills one Row and states its expectation."""

from __future__ import annotations

import os
import random
import resource
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from collections import Counter

from .clients import NormalClient, Flood, Pipeliner, Wrk, burst, http_get, p99, wrk_failures
from benchlib import procfs

from .common import (FD_SLACK, HOST, FaultServer, Row, Sampler, fd_count, log, nofile_limit,
                     pids_with_master_env, same_process, settle, start_time, status_kb)

RSS_LIMIT_KB = 8 * 1024  # "bounded" growth of one process during a fault
RSS_ABORT_KB = 2 * 1024 * 1024  # the pipelining fault stops early past this growth

# Lines of the master's log worth counting in the JSON (substring -> key).
LOG_MARKERS = {
    "worker forked": "forked", "worker ready": "ready", "killed by signal": "killed_by_signal",
    "exited with code": "exited", "restarting worker": "restarting", "rolling reload started": "reload_started",
    "rolling reload finished": "reload_finished", "rolling reload aborted": "reload_aborted",
    "queued": "reload_queued", "malformed": "malformed", "heartbeat": "heartbeat",
    "accept failed": "accept_failed", "crash": "crash_loop", "timed out": "timed_out",
}


class Spec:
    def __init__(self, key, title, expectation, fn, needs_flags=(), needs_wrk=False, smoke=False):
        self.key, self.title, self.expectation, self.fn = key, title, expectation, fn
        self.needs_flags, self.needs_wrk, self.smoke = tuple(needs_flags), needs_wrk, smoke


# --------------------------------------------------------------------------
# Shared steps


def _secs(ctx, full: float, minimum: float = 1.0) -> float:
    return max(minimum, full * ctx.scale)


def begin(row: Row, srv: FaultServer) -> tuple[list[int], Sampler]:
    workers = srv.live_workers()
    row.workers_before = len(workers)
    row.fds_before = fd_count(srv.pid)
    row.master_rss_before_kb = status_kb(srv.pid)
    rss = [r for r in (status_kb(p) for p in workers) if r is not None]
    row.worker_rss_before_kb = max(rss) if rss else None
    row.extra["master_nofile_limit"] = nofile_limit(srv.pid)
    row.extra["worker_pids_before"] = workers
    sampler = Sampler(srv)
    sampler.sample()
    sampler.start()
    return workers, sampler


def finish(ctx, row: Row, srv: FaultServer, sampler: Sampler, settle_timeout: float) -> None:
    """Waits for the server to settle, then records the after columns."""
    s = settle(srv, ctx.workers, row.fds_before, settle_timeout)
    sampler.sample()
    sampler.stop()
    row.workers_after = len(s["workers"])
    row.fds_after = s["fds"]
    row.master_alive = s["alive"]
    row.extra["settle_s"] = s["settle_s"]
    row.extra["worker_pids_after"] = s["workers"]
    row.extra["workers_min_during"] = sampler.workers_min
    record_rss(row, sampler)
    if not s["alive"]:
        row.master_exit = srv.proc.returncode


def record_rss(row: Row, sampler: Sampler) -> None:
    row.worker_rss_max_kb = sampler.worker_rss_max_kb()
    row.master_rss_max_kb = sampler.master_rss_max or None
    row.extra["worker_rss_growth_kb"] = sampler.worker_rss_growth_kb()
    row.extra["master_fds_max_during"] = sampler.master_fds_max or None
    row.extra["worker_fds_max_during"] = sampler.worker_fds_max or None


def expect_healthy(ctx, row: Row) -> None:
    """Master alive, worker count back to configured, master descriptors back to the baseline."""
    if not row.expect(bool(row.master_alive), f"master died (exit status {row.master_exit})"):
        return
    row.expect(row.workers_after == ctx.workers,
               f"{row.workers_after} workers at the end, configured {ctx.workers}")
    if row.fds_before is not None and row.fds_after is not None:
        row.expect(abs(row.fds_after - row.fds_before) <= FD_SLACK,
                   f"master fds {row.fds_before} → {row.fds_after} (slack ±{FD_SLACK})")


def take_client(row: Row, client: NormalClient) -> dict:
    s = client.summary()
    row.requests["client"] = s["sent"]
    row.failures["client"] = s["failed"]
    row.p99_ms = s["p99_ms"]
    row.extra["client"] = s
    return s


def finish_under_wrk(ctx, row, srv, sampler, settle_s, client, wrk_result) -> dict:
    """The common end of a fault run under wrk: settle and record, take the client's and wrk's figures, count the
    log lines that matter."""
    finish(ctx, row, srv, sampler, settle_s)
    take_client(row, client)
    take_wrk(row, wrk_result)
    return count_log(row, srv)


def workers_left_after_master(row, srv, sampler, identities) -> list[int]:
    """One second after the master ended: the workers (known by pid and start time, or naming the master in their
    environment) still alive; records them and the master's state in the row."""
    time.sleep(1.0)
    remaining = [p for p, t in identities.items() if same_process(p, t)]
    remaining += [p for p in pids_with_master_env(srv.pid) if p not in remaining]
    sampler.stop()
    record_rss(row, sampler)
    row.workers_after = len(remaining)
    row.master_alive = srv.master_alive()
    return remaining


def take_wrk(row: Row, r: dict) -> None:
    row.requests["wrk"] = int(r["requests"])
    row.failures["wrk"] = wrk_failures(r)
    pct = r["latency_us"]["percentiles"]
    row.extra["wrk"] = {"requests": int(r["requests"]), "errors": r["errors"],
                        "non2xx_or_3xx": r.get("non2xx_or_3xx", 0),
                        "p50_ms": pct["50"] / 1000, "p99_ms": pct["99"] / 1000,
                        "max_ms": r["latency_us"]["max"] / 1000}
    row.note(f"wrk p99 {pct['99'] / 1000:,.1f} ms, max {r['latency_us']['max'] / 1000:,.0f} ms")


def count_log(row: Row, srv: FaultServer) -> Counter:
    counts = Counter()
    for line in srv.log_text().splitlines():
        for needle, key in LOG_MARKERS.items():
            if needle in line:
                counts[key] += 1
    row.extra["log_counts"] = dict(counts)
    return counts


def flag_args(ctx, flag: str, value) -> list[str]:
    return [flag, _num(value)] if flag in ctx.flags else []


def _num(v) -> str:
    return str(int(v)) if float(v).is_integer() else str(v)


# --------------------------------------------------------------------------
# 1. idle flood


def idle_flood(ctx, row: Row) -> None:
    ht = ctx.header_timeout if "--header-timeout" in ctx.flags else None
    n = 300 if ctx.smoke else 1500
    hold = max(_secs(ctx, 20, 2), (ht + 3) if ht else 0)
    row.title = f"idle flood: {n:,} half requests held {hold:.0f} s"
    srv = ctx.server(row, flag_args(ctx, "--header-timeout", ht) if ht else [])
    _, sampler = begin(row, srv)
    client = NormalClient(srv.port).start()
    flood = Flood(srv.port, n, hold)
    try:
        flood.start()
        flood.join(hold + 15)
    finally:
        flood.stop()
        client.stop()
    finish(ctx, row, srv, sampler, 10)
    c = take_client(row, client)
    f = flood.summary()
    row.extra["flood"] = f
    row.requests["flood (half requests)"] = f["established"]
    closed = f["closed_by_server_total"]
    how = ", ".join(f"{v} {k}" for k, v in f["closed_by_server"].items())
    row.note(f"flood: {f['established']:,}/{n:,} connections established, {closed:,} closed by the server"
             + (f" ({how}; {f['close_after_s_min']}–{f['close_after_s_max']} s after their half request)"
                if closed else "") + f", held {hold:.0f} s")
    row.note(f"descriptors max during: master {row.extra['master_fds_max_during']}, one worker "
             f"{row.extra['worker_fds_max_during']}")
    if f["responses"]:
        row.note("flood responses: " + ", ".join(f"{v} × {k}" for k, v in f["responses"].items()))
    if f["connect_failures"]:
        row.note("flood connect failures: " + ", ".join(f"{v} {k}" for k, v in f["connect_failures"].items()))
    expect_healthy(ctx, row)
    row.expect(sum(c["failed"].values()) == 0, "normal client had failures")
    if ht:
        row.expect(f["established"] == n and closed == f["established"],
                   f"server closed {closed:,} of {f['established']:,} flood connections within {hold:.0f} s")
    else:
        row.not_applicable("flag missing: --header-timeout (the server holds idle connections forever)")


# --------------------------------------------------------------------------
# 2. fd-limit flood


def _nofile_256():  # runs in the child between fork and exec
    resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256))


def fd_limit_flood(ctx, row: Row) -> None:
    duration = _secs(ctx, 30, 3)
    row.title = f"fd-limit flood: ulimit -n 256, 400 half-open for {duration:.0f} s"
    srv = ctx.server(row, [], popen_options={"process_group": 0, "preexec_fn": _nofile_256})
    before, sampler = begin(row, srv)
    identities = {p: start_time(p) for p in before}
    client = NormalClient(srv.port).start()
    flood = Flood(srv.port, 400, duration, reopen=True)
    try:
        flood.start()
        flood.join(duration + 15)
    finally:
        flood.stop()
        client.stop()
    time.sleep(1.0)
    final = burst(srv.port, 20) if srv.master_alive() else []
    finish(ctx, row, srv, sampler, 10)
    take_client(row, client)
    f = flood.summary()
    row.extra["flood"] = f
    row.requests["flood (half requests)"] = f["established"]
    row.requests["final burst"] = len(final)
    ok = sum(1 for r in final if r.ok)
    burst_fail = Counter(r.reason for r in final if not r.ok)
    if burst_fail:
        row.failures["final burst"] = dict(burst_fail)
    exited = [p for p, t in identities.items() if not same_process(p, t)]
    new = sorted(set(srv.seen) - set(identities))
    row.note(f"ulimit -n {row.extra['master_nofile_limit']}; flood: {f['established']:,} connections established "
             f"over {duration:.0f} s (≤400 at a time, held max {f['held_max']}), {f['closed_by_server_total']:,} "
             f"closed by the server, {sum(f['connect_failures'].values()):,} failed to connect"
             + (f" ({', '.join(f'{v} {k}' for k, v in f['connect_failures'].items())})"
                if f["connect_failures"] else ""))
    row.note(f"descriptors max during: master {row.extra['master_fds_max_during']}, one worker "
             f"{row.extra['worker_fds_max_during']}")
    row.note(f"final burst: {ok}/{len(final)} answered 200; workers exited: {exited or 'none'}, "
             f"new workers: {new or 'none'}")
    row.extra.update({"final_burst_ok": ok, "workers_exited": exited, "workers_new": new})
    count_log(row, srv)
    expect_healthy(ctx, row)
    row.expect(not exited and not new, f"worker(s) exited during the flood: {exited}, replaced by {new}")
    row.expect(len(final) == 20 and ok == 20, f"final burst: {ok}/20 answered 200")


# --------------------------------------------------------------------------
# 3. pipelining without reading


def pipelining(ctx, row: Row) -> None:
    st = ctx.send_timeout if "--send-timeout" in ctx.flags else None
    duration = max(_secs(ctx, 10, 2), (st + 3) if st else 0)
    row.title = f"pipelining without reading for {duration:.0f} s"
    srv = ctx.server(row, flag_args(ctx, "--send-timeout", st) if st else [])
    _, sampler = begin(row, srv)
    client = NormalClient(srv.port).start()
    pipe = Pipeliner(srv.port, duration)
    aborted = None
    try:
        pipe.start()
        end = time.monotonic() + duration + 10
        while pipe.is_alive() and time.monotonic() < end:
            growth = sampler.worker_rss_growth_kb() or 0
            if growth > RSS_ABORT_KB:  # keep the machine usable: the verdict is already clear
                aborted = round(time.monotonic() - (end - duration - 10), 1)
                break
            pipe.join(0.1)
    finally:
        pipe.stop()
        client.stop()
    finish(ctx, row, srv, sampler, 10)
    take_client(row, client)
    p = pipe.summary()
    row.extra["pipeliner"] = p
    row.requests["pipelined"] = p["requests_sent"]
    growth = row.extra["worker_rss_growth_kb"]
    row.note(f"pipelined {p['requests_sent']:,} requests ({p['bytes_sent'] / 1e6:,.1f} MB); "
             f"server stopped reading after {p['last_send_progress_s']} s; "
             + (f"server cut the connection ({p['cut_by_server']}) after {p['cut_after_s']} s"
                if p["cut_by_server"] else "server did not cut the connection")
             + (f"; worker RSS growth {growth:,} kB" if growth is not None else ""))
    if aborted is not None:
        row.note(f"stopped early after {aborted} s: a worker grew more than {RSS_ABORT_KB // 1024:,} MB")
        row.extra["aborted_after_s"] = aborted
    if p["error"]:
        row.note(f"pipeliner error: {p['error']}")
    expect_healthy(ctx, row)
    row.expect(growth is not None and growth < RSS_LIMIT_KB,
               f"worker RSS grew {growth} kB (limit {RSS_LIMIT_KB} kB)")
    row.expect(sum(row.failures["client"].values()) == 0, "normal client had failures")
    if st:
        row.expect(bool(p["cut_by_server"]), f"--send-timeout {st} passed but the server kept the connection")
    else:
        row.note("--send-timeout missing: not passed")


# --------------------------------------------------------------------------
# 4. Ctrl-C on the process group


def ctrl_c(ctx, row: Row) -> None:
    slow_ms = int(max(1000, 3000 * ctx.scale))
    srv = ctx.server(row, ["--test-hooks"], popen_options={"start_new_session": True})
    before, sampler = begin(row, srv)
    identities = {p: start_time(p) for p in before}
    results: list = [None] * 10
    sent = threading.Semaphore(0)

    def one(i):
        results[i] = http_get(srv.port, f"/slow?ms={slow_ms}", timeout=slow_ms / 1000 + 40,
                              on_sent=sent.release)

    threads = [threading.Thread(target=one, args=(i,), daemon=True) for i in range(10)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 5
    in_flight = sum(1 for _ in range(10) if sent.acquire(timeout=max(0.0, deadline - time.monotonic())))
    time.sleep(0.3)  # let the master pass them and the workers read them
    exited_at: list[float] = []

    def watch_exit():
        try:
            srv.proc.wait(timeout=slow_ms / 1000 + 45)
            exited_at.append(time.monotonic())
        except Exception:  # noqa: BLE001 - subprocess.TimeoutExpired: reported as "did not exit"
            pass

    t_sig = time.monotonic()
    os.killpg(srv.pgid, signal.SIGINT)  # what a shell does on Ctrl-C: the whole foreground job
    watcher = threading.Thread(target=watch_exit, daemon=True)
    watcher.start()
    for t in threads:
        t.join(timeout=slow_ms / 1000 + 45)
    watcher.join(timeout=slow_ms / 1000 + 50)
    code = srv.proc.returncode if exited_at else None
    exit_after = exited_at[0] - t_sig if exited_at else None
    remaining = workers_left_after_master(row, srv, sampler, identities)
    row.master_exit = code
    done = [r for r in results if r is not None]
    ok = sum(1 for r in done if r.ok)
    row.requests["slow requests"] = 10
    row.failures["slow requests"] = dict(Counter(r.reason for r in done if not r.ok)
                                         + Counter({"no result": 10 - len(done)}))
    row.extra.update({"slow_ms": slow_ms, "in_flight_at_signal": in_flight, "master_exit_after_s":
                      None if exit_after is None else round(exit_after, 2), "workers_remaining": remaining,
                      "slow_latencies_ms": [round(r.ms) for r in done]})
    counts = count_log(row, srv)
    row.note(f"SIGINT to the process group with {in_flight}/10 requests of {slow_ms} ms in flight; "
             f"{ok}/10 answered 200; master "
             + (f"exited {code} {exit_after:.1f} s after the signal" if exit_after is not None
                else "did not exit in time")
             + f"; workers left 1 s later: {remaining or 'none'}; log: {counts.get('killed_by_signal', 0)} "
               f"'killed by signal'")
    row.expect(ok == 10, f"{ok}/10 slow requests answered 200")
    row.expect(code == 0, f"master exit status {code} (expected 0)")
    row.expect(not remaining, f"workers still running after the master exited: {remaining}")


# --------------------------------------------------------------------------
# 5. kill -9 one worker per second


def kill_workers(ctx, row: Row) -> None:
    seconds = int(round(_secs(ctx, 30, 3)))
    row.title = f"kill -9 one worker per second for {seconds} s"
    srv = ctx.server(row, [])
    _, sampler = begin(row, srv)
    rng = random.Random(1)
    wrk = Wrk(ctx.wrk, srv.port, seconds + 2, registry=ctx.registry).start()
    client = NormalClient(srv.port).start()
    kills, no_target, master_gone = [], 0, 0
    try:
        time.sleep(1.0)
        t0 = time.monotonic()
        for i in range(seconds):
            workers = srv.live_workers()
            if not srv.master_alive():
                master_gone += 1
            elif not workers:
                no_target += 1
            else:
                pid = rng.choice(workers)
                if same_process(pid, srv.seen.get(pid)):
                    os.kill(pid, signal.SIGKILL)
                    kills.append(pid)
            time.sleep(max(0.0, t0 + i + 1 - time.monotonic()))
        r = wrk.result()
    finally:
        wrk.kill()
        client.stop()
    counts = finish_under_wrk(ctx, row, srv, sampler, 25, client, r)
    row.extra.update({"kills": kills, "seconds_without_a_worker_to_kill": no_target,
                      "seconds_after_the_master_exited": master_gone})
    row.note(f"killed {len(kills)} workers in {seconds} s (wrk -t1 -c20 with 'Connection: close')"
             + (f"; at {no_target} of those seconds the master had no live worker" if no_target else "")
             + (f"; the master had exited for the last {master_gone} s" if master_gone else "")
             + f"; log: {counts.get('restarting', 0)} restarts; requests in flight on a killed worker are "
               "inherently lost, so failures are reported, not judged")
    if row.master_exit == 70:
        row.note("master halted with exit 70: crash-loop limit (kills within --min-uptime count as early exits)")
    expect_healthy(ctx, row)


# --------------------------------------------------------------------------
# 6. SIGSTOP one worker for 15 s


def sigstop(ctx, row: Row) -> None:
    stop_s = _secs(ctx, 15, 2)
    pre, post = 3.0, 5.0
    seconds = int(round(pre + stop_s + post))
    row.title = f"SIGSTOP one worker {stop_s:.0f} s, then SIGCONT"
    srv = ctx.server(row, [])
    before, sampler = begin(row, srv)
    wrk = Wrk(ctx.wrk, srv.port, seconds, timeout_s=30, registry=ctx.registry).start()
    client = NormalClient(srv.port).start()
    target, target_t, gone_after = before[0], srv.seen.get(before[0]), None
    resumed = False
    try:
        time.sleep(pre)
        t0 = time.monotonic()
        if same_process(target, target_t):
            os.kill(target, signal.SIGSTOP)
        while time.monotonic() - t0 < stop_s:
            if gone_after is None and not same_process(target, target_t):
                gone_after = time.monotonic() - t0
            time.sleep(0.1)
        if same_process(target, target_t):
            os.kill(target, signal.SIGCONT)
            resumed = True
        r = wrk.result()
    finally:
        if same_process(target, target_t):
            os.kill(target, signal.SIGCONT)  # never leave it stopped
        wrk.kill()
        client.stop()
    counts = finish_under_wrk(ctx, row, srv, sampler, 20, client, r)
    row.extra.update({"stopped_worker": target, "stop_s": stop_s, "replaced_after_s":
                      None if gone_after is None else round(gone_after, 1), "resumed": resumed})
    row.note(f"worker {target} stopped {stop_s:.0f} s under wrk -t1 -c20 --timeout 30s ('Connection: close'): "
             + (f"the master killed it after {gone_after:.1f} s" if gone_after is not None
                else "SIGCONT resumed it")
             + f"; log: {counts.get('heartbeat', 0)} heartbeat lines")
    expect_healthy(ctx, row)


# --------------------------------------------------------------------------
# 7. SIGHUP x10


def sighup(ctx, row: Row) -> None:
    n = 3 if ctx.smoke else 10
    seconds = int(round(1 + n * 0.5 + 5))
    row.title = f"SIGHUP ×{n}, one per 0.5 s"
    srv = ctx.server(row, [])
    _, sampler = begin(row, srv)
    wrk = Wrk(ctx.wrk, srv.port, seconds, registry=ctx.registry).start()
    client = NormalClient(srv.port).start()
    try:
        time.sleep(1.0)
        for _ in range(n):
            if srv.master_alive():
                os.kill(srv.pid, signal.SIGHUP)
            time.sleep(0.5)
        r = wrk.result()
    finally:
        wrk.kill()
        client.stop()
    counts = finish_under_wrk(ctx, row, srv, sampler, 40, client, r)
    row.note(f"{n} × SIGHUP every 0.5 s under wrk -t1 -c20 ('Connection: close'); log: "
             f"{counts.get('reload_started', 0)} reloads started, {counts.get('reload_finished', 0)} finished, "
             f"{counts.get('reload_aborted', 0)} aborted, {counts.get('reload_queued', 0)} queued")
    expect_healthy(ctx, row)
    row.expect(row.failed_total() == 0, "requests failed during the reloads")


# --------------------------------------------------------------------------
# 8. 1,000,000 malformed frames


def malformed_frames(ctx, row: Row) -> None:
    count = 1_000_000
    srv = ctx.server(row, ["--test-hooks"])
    before, sampler = begin(row, srv)
    identities = {p: start_time(p) for p in before}
    cpu0 = procfs.cpu_ticks(srv.pid)
    client = NormalClient(srv.port).start()
    try:
        time.sleep(0.5)
        r = http_get(srv.port, f"/test/malformed-frames?count={count}", timeout=30)
        deadline = time.monotonic() + (3 if ctx.smoke else 10)
        gone = []
        while time.monotonic() < deadline:
            gone = [p for p, t in identities.items() if not same_process(p, t)]
            if gone:
                break
            time.sleep(0.1)
        time.sleep(1.0)
    finally:
        client.stop()
    cpu1 = procfs.cpu_ticks(srv.pid)
    finish(ctx, row, srv, sampler, 15)
    take_client(row, client)
    counts = count_log(row, srv)
    growth = (row.master_rss_max_kb - row.master_rss_before_kb
              if row.master_rss_max_kb is not None and row.master_rss_before_kb is not None else None)
    cpu_s = (cpu1 - cpu0) / procfs.CLK_TCK if cpu0 is not None and cpu1 is not None else None
    row.requests["hook request"] = 1
    if not r.ok:
        row.failures["hook request"] = {r.reason: 1}
    row.extra.update({"hook_status": r.status, "hook_reason": r.reason, "workers_gone": gone,
                      "master_rss_growth_kb": growth, "master_cpu_s": cpu_s})
    row.note(f"hook request: {r.status if r.status else r.reason}; workers replaced: {gone or 'none'}; "
             f"master RSS growth {growth} kB, master CPU {cpu_s:.2f} s; log: {counts.get('malformed', 0)} "
             f"'malformed' lines")
    expect_healthy(ctx, row)
    row.expect(growth is not None and growth < RSS_LIMIT_KB, f"master RSS grew {growth} kB (limit {RSS_LIMIT_KB})")
    if r.status == 404:
        row.not_applicable("hook missing: /test/malformed-frames answered 404")
    elif not gone:
        row.not_applicable("hook missing: /test/malformed-frames answered "
                           f"{r.status if r.status else r.reason} and no worker was replaced")


# --------------------------------------------------------------------------
# 9. a worker leaking memory under load


def memory_leak(ctx, row: Row) -> None:
    """Under wrk, one worker is made to keep 100 MiB more (`/grow?mb=100`, a leak) with `--max-worker-memory 64M`:
    the master must recycle it (its replacement ready before it drains) with nothing lost, and leave the other alone."""
    srv = ctx.server(row, ["--test-hooks", "--max-worker-memory", "64M", "--min-uptime", "1"])
    before, sampler = begin(row, srv)
    identities = {p: start_time(p) for p in before}
    seconds = 8 if ctx.smoke else 15
    wrk = Wrk(ctx.wrk, srv.port, seconds, registry=ctx.registry).start()
    client = NormalClient(srv.port).start()
    grown, replaced_after = None, None
    try:
        time.sleep(1.5)  # past --min-uptime: over the limit is a leak, not a low limit
        r = http_get(srv.port, "/grow?mb=100", timeout=10)
        t0 = time.monotonic()
        grown = r.worker_pid() if r.ok else None
        while grown is not None and time.monotonic() - t0 < seconds - 2:
            if not same_process(grown, identities.get(grown)):
                replaced_after = time.monotonic() - t0
                break
            time.sleep(0.1)
        res = wrk.result()
    finally:
        wrk.kill()
        client.stop()
    counts = finish_under_wrk(ctx, row, srv, sampler, 20, client, res)
    others = [p for p in before if p != grown]
    untouched = [p for p in others if same_process(p, identities[p])]
    recycles = sum(1 for line in srv.log_text().splitlines() if "recycling worker (memory" in line)
    row.requests["grow request"] = 1
    row.extra.update({"grown_worker": grown, "replaced_after_s": replaced_after, "others_untouched": untouched,
                      "memory_recycles": recycles})
    row.note(f"worker {grown} grew by 100 MiB under wrk -t1 -c20 ('Connection: close') with --max-worker-memory 64M: "
             f"{'replaced after %.1f s' % replaced_after if replaced_after is not None else 'not replaced'}; "
             f"other workers untouched: {len(untouched)}/{len(others)}; log: {recycles} memory recycles, "
             f"{counts.get('forked', 0)} forked")
    expect_healthy(ctx, row)
    row.expect(grown is not None, f"the grow request failed: {r.reason}")
    row.expect(replaced_after is not None, "the leaking worker was not replaced")
    row.expect(len(untouched) == len(others), "another worker was replaced too")
    row.expect(row.failed_total() == 0, "requests failed while the leaking worker was recycled")


# --------------------------------------------------------------------------
# 10. master SIGKILL


def master_kill(ctx, row: Row) -> None:
    srv = ctx.server(row, [])
    before, sampler = begin(row, srv)
    identities = {p: start_time(p) for p in before}
    os.kill(srv.pid, signal.SIGKILL)
    try:
        srv.proc.wait(timeout=5)
    except Exception:  # noqa: BLE001
        pass
    remaining = workers_left_after_master(row, srv, sampler, identities)
    row.master_exit = srv.proc.returncode
    row.extra["workers_remaining"] = remaining
    row.note(f"workers left 1 s after kill -9 of the master: {remaining or 'none'}")
    row.expect(not remaining, f"workers still running 1 s after the master died: {remaining}")


# --------------------------------------------------------------------------
# 11. upgrade the master in place under load


def _write_build(source: str, marker: bytes, path: Path) -> int:
    """A copy of `source` with `marker` appended (another file, the same program) at `path`: its inode."""
    shutil.copyfile(source, path)
    with open(path, "ab") as fh:
        fh.write(marker)
    os.chmod(path, 0o755)
    return os.stat(path).st_ino


def _exe_inode(pid: int) -> int | None:
    try:
        return os.stat(f"/proc/{pid}/exe").st_ino
    except OSError:
        return None


def upgrade(ctx, row: Row) -> None:
    """Under wrk and the normal client, a new build renamed over the file the master was started from, then
    `switchboard upgrade`: the master execs it as the same process (its workers, listener and queued connections
    handed over), then a rolling reload moves the workers onto it. Nothing may fail."""
    folder = Path(tempfile.mkdtemp(prefix="sb-faults-upgrade-"))
    try:
        path = folder / "switchboard"
        socket = folder / "control.sock"
        _write_build(ctx.binary, b"release 1", path)
        srv = ctx.server(row, ["--control-socket", str(socket)], binary=str(path))
        before, sampler = begin(row, srv)
        seconds = 6 if ctx.smoke else 15
        wrk = Wrk(ctx.wrk, srv.port, seconds, registry=ctx.registry).start()
        client = NormalClient(srv.port).start()
        moved_after, answer = None, None
        try:
            time.sleep(1.5)
            staged = folder / "switchboard.new"
            new_inode = _write_build(ctx.binary, b"release 2", staged)
            os.rename(staged, path)  # the deploy: install(1) and package managers rename over the file
            t0 = time.monotonic()
            answer = subprocess.run([ctx.binary, "upgrade", "--control-socket", str(socket)], capture_output=True,
                                    text=True, timeout=60, stdin=subprocess.DEVNULL)
            command_s = time.monotonic() - t0
            while time.monotonic() - t0 < seconds:
                live = srv.live_workers()
                if (len(live) == ctx.workers and not set(live) & set(before)
                        and all(_exe_inode(p) == new_inode for p in live)):
                    moved_after = time.monotonic() - t0
                    break
                time.sleep(0.05)
            res = wrk.result()
        finally:
            wrk.kill()
            client.stop()
        counts = finish_under_wrk(ctx, row, srv, sampler, 20, client, res)
        master_inode = _exe_inode(srv.pid)
        took = None
        for word, following in zip(answer.stdout.split(), answer.stdout.split()[1:]):
            if following == "ms," and word.isdigit():
                took = int(word)
        upgraded = srv.log_text().count("master upgraded in place")
        row.extra.update({"upgrade_exit": answer.returncode, "upgrade_stdout": answer.stdout.strip(),
                          "upgrade_stderr": answer.stderr.strip(), "master_upgrade_ms": took,
                          "upgrade_command_s": round(command_s, 3),
                          "workers_moved_after_s": None if moved_after is None else round(moved_after, 2),
                          "master_runs_new_file": master_inode == new_inode})
        row.note(f"new build renamed over the file, then `switchboard upgrade` under wrk -t1 -c20 ('Connection: close')"
                 f": master exec + adoption {took} ms (same pid {srv.pid}), command {command_s:.2f} s; every worker "
                 + (f"on the new file after {moved_after:.1f} s" if moved_after is not None else "NOT moved")
                 + f"; log: {upgraded} 'master upgraded in place', {counts.get('reload_finished', 0)} reloads finished")
        expect_healthy(ctx, row)
        row.expect(answer.returncode == 0, f"switchboard upgrade exited {answer.returncode}: {answer.stderr.strip()[:200]}")
        row.expect(master_inode == new_inode, "the master does not run the new file")
        row.expect(upgraded == 1, f"{upgraded} 'master upgraded in place' lines")
        row.expect(moved_after is not None, "the workers were not all moved onto the new file")
        row.expect(row.failed_total() == 0, "requests failed during the upgrade")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


# --------------------------------------------------------------------------

SPECS = [
    Spec("idle-flood", "idle flood: 1,500 half requests held",
         "master alive, workers and fds back, normal client 0 failed, every flood socket closed by the server "
         "(--header-timeout)", idle_flood, smoke=True),
    Spec("fd-limit", "fd-limit flood: ulimit -n 256, 400 half-open",
         "master alive, no worker exits, fds back, final 20 requests all 200", fd_limit_flood),
    Spec("pipelining", "pipelining without reading",
         "worker RSS growth < 8 MB, master alive, workers and fds back, normal client 0 failed; cut with "
         "--send-timeout", pipelining, smoke=True),
    Spec("ctrl-c", "Ctrl-C: SIGINT to the process group",
         "10/10 slow requests 200, master exits 0, no worker left", ctrl_c, needs_flags=["--test-hooks"],
         smoke=True),
    Spec("kill-workers", "kill -9 one worker per second",
         "master alive, workers and fds back (lost in-flight requests reported, not judged)", kill_workers,
         needs_wrk=True, smoke=True),
    Spec("sigstop", "SIGSTOP one worker 15 s, then SIGCONT",
         "master alive, workers and fds back", sigstop, needs_wrk=True),
    Spec("sighup", "SIGHUP ×10, one per 0.5 s",
         "0 failed (wrk and client), master alive, workers and fds back", sighup, needs_wrk=True, smoke=True),
    Spec("malformed-frames", "1,000,000 malformed frames from a worker",
         "master alive, workers and fds back, master RSS growth < 8 MB", malformed_frames,
         needs_flags=["--test-hooks"], smoke=True),
    Spec("memory-leak", "a worker leaking memory under load",
         "the leaking worker recycled (--max-worker-memory), the others untouched, 0 failed (wrk and client), "
         "master alive, workers and fds back", memory_leak, needs_flags=["--test-hooks", "--max-worker-memory"],
         needs_wrk=True, smoke=True),
    Spec("master-kill", "kill -9 the master", "no worker left 1 s later", master_kill, smoke=True),
    Spec("upgrade", "upgrade the master in place under load",
         "`switchboard upgrade` exits 0, the master keeps its pid and runs the new file, every worker moved onto it, "
         "0 failed (wrk and client), workers and fds back", upgrade, needs_flags=["--control-socket"],
         needs_wrk=True, smoke=True),
]
