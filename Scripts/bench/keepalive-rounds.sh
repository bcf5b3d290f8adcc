#!/usr/bin/env bash
# Keep-alive only, round by round: each round starts every subject afresh, warms it for 1 s and times
# `wrk -t1 -c50 -d5 --latency` against it; one line per subject and round: `<round> <name> <req/s> <p99>`.
# Quicker than bench.py when only the keep-alive load is in question (issue 23). Loopback only; each server is
# started here, by pid, and stopped by pid.
#
#   bash Scripts/bench/keepalive-rounds.sh [--pin] ROUNDS NAME=SERVER_COMMAND ...
#
# SERVER_COMMAND is a binary (or a wrapper script) that takes `--host 127.0.0.1 --port 0 --workers 2` and prints
# `127.0.0.1:<port>`, as Switchboard and bench-results/c/c-subjects (through a wrapper that adds its --mode) do.
# --pin: servers on CPU 0 and wrk on CPU 1 (taskset), as bench.py --pin.
set -euo pipefail
server_cpu=() wrk_cpu=()
if [ "${1:-}" = "--pin" ]; then server_cpu=(taskset -c 0); wrk_cpu=(taskset -c 1); shift; fi
rounds=${1:?usage: keepalive-rounds.sh [--pin] ROUNDS NAME=SERVER_COMMAND ...}; shift
log=$(mktemp)
trap 'rm -f "$log"' EXIT
for round in $(seq "$rounds"); do
    for subject in "$@"; do
        name=${subject%%=*} command=${subject#*=}
        "${server_cpu[@]}" "$command" --host 127.0.0.1 --port 0 --workers 2 > "$log" 2>&1 &
        pid=$!
        port=""
        for _ in $(seq 200); do
            port=$(grep -oE '127\.0\.0\.1:[0-9]+' "$log" | head -1 | cut -d: -f2 || true)
            [ -n "$port" ] && break
            sleep 0.05
        done
        if [ -z "$port" ]; then echo "keepalive-rounds: $name did not say its port" >&2; kill "$pid"; exit 1; fi
        sleep 0.3
        "${wrk_cpu[@]}" wrk -t1 -c50 -d1 "http://127.0.0.1:$port/" > /dev/null
        out=$("${wrk_cpu[@]}" wrk -t1 -c50 -d5 --latency "http://127.0.0.1:$port/")
        rps=$(awk '/Requests\/sec/ {print int($2)}' <<<"$out")
        p99=$(awk '$1 == "99%" {print $2}' <<<"$out")
        echo "$round $name $rps $p99"
        kill "$pid"
        wait "$pid" 2>/dev/null || true
    done
done
