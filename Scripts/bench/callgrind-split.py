#!/usr/bin/env python3
"""Splits a Switchboard master's callgrind profile into its work per wake-up, per message sent and per connection.

The master's user-space instructions per connection depend on how many connections each wake-up accepts and each
`sendmsg` carries, which move from run to run. Split by what they are spent on, they do not:

- per connection: the accept loop without the sends (the scheduler, `accept4`'s wrapper, staging);
- per message sent: `sendOutboxes` (the frame, `sendmsg`'s wrapper, the closes, the queue's bookkeeping);
- per wake-up: everything else the loop runs (the timers' deadline, the wait's wrapper, the pump's set-up).

How the profile is taken (BENCHMARKS.md, "Tail latency", eighth and thirteenth parts): a release build whose
`LaunchPath.current` starts with `if let forced = Syscalls.environment("SB_MEASURE_WORKER_PATH") { return forced }`
(under valgrind `/proc/self/exe` is valgrind itself), stripped with `strip -g`, then

    SB_MEASURE_WORKER_PATH=<binary> valgrind --tool=callgrind --callgrind-out-file=<out> <binary> --port 0 --workers 2
    wrk -t1 -c20 -d11s -H 'Connection: close' http://127.0.0.1:<port>/
    callgrind_control -z <pid>   # after 2 s of load
    callgrind_control -d <pid>   # 8 s later

Usage: callgrind-split.py [--json OUT] PROFILE...
"""
import argparse
import json
import re
import subprocess
import sys


def number(text: str) -> int:
    return int(text.replace(",", ""))


def split(profile: str) -> dict:
    out = subprocess.run(
        ["callgrind_annotate", "--threshold=100", "--inclusive=yes", "--tree=calling", profile],
        capture_output=True, text=True, check=True).stdout
    total = number(re.search(r"([\d,]+) \(100.0%\)\s+PROGRAM TOTALS", out).group(1))
    calls: dict[str, list[int]] = {}
    for match in re.finditer(r"^\s*([\d,]+) \([\d. ]+%\)\s+>\s+\S+?:(\S+) \(([\d,]+)x\)", out, re.M):
        entry = calls.setdefault(match.group(2), [0, 0])
        entry[0] += number(match.group(1))
        entry[1] += number(match.group(3))

    def callee(pattern: str) -> list[int]:
        for name, entry in calls.items():
            if re.search(pattern, name):
                return entry
        return [0, 0]

    connections = callee(r"^close$")[1]  # the master closes its copy of each connection it sent
    wakeups = callee(r"sb_epoll_wait_signals")[1]
    sends = callee(r"^sb_send_message$")[1]
    accept = callee(r"ConnectionDispatcherV10acceptLoop")[0]
    outboxes = callee(r"ConnectionDispatcherV12sendOutboxes")[0]
    deadline = callee(r"MasterC17nextTimerDeadline")
    if not (connections and wakeups and sends):
        raise SystemExit(f"{profile}: no connections, wake-ups or sends found (is it a master's profile under load?)")
    return {
        "profile": profile,
        "connections": connections,
        "wakeupsPerConnection": wakeups / connections,
        "sendsPerConnection": sends / connections,
        "totalPerConnection": total / connections,
        "perWakeup": (total - accept) / wakeups,
        "perSend": outboxes / sends,
        "perConnection": (accept - outboxes) / connections,
        "timerDeadlinePerCall": deadline[0] / max(deadline[1], 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("profiles", nargs="+")
    parser.add_argument("--json")
    args = parser.parse_args()
    rows = [split(p) for p in args.profiles]
    print("| profile | wake-ups/conn | sends/conn | per wake-up | per send | per connection | total/conn |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['profile']} | {r['wakeupsPerConnection']:.2f} | {r['sendsPerConnection']:.2f} | "
              f"{r['perWakeup']:,.0f} | {r['perSend']:,.0f} | {r['perConnection']:,.0f} | {r['totalPerConnection']:,.0f} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
