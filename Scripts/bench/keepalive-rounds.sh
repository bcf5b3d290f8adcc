#!/usr/bin/env bash
# Keep-alive only, round by round: each round starts every subject afresh, warms it for 1 s and times
# `wrk -t1 -c50 -d5 --latency` against it; one line per subject and round: `<round> <name> <req/s> <p99>`.
# Quicker than bench.py when only the keep-alive load is in question (issue 23). Loopback only; each server is
# started here, by pid, and stopped by pid.
#
#   bash Scripts/bench/keepalive-rounds.sh [--pin] [--close] ROUNDS NAME=SERVER_COMMAND ...
#
# SERVER_COMMAND is a binary and its arguments, split at spaces (so no spaces in paths), that takes
# `--host 127.0.0.1 --port 0 --workers 2` and prints `127.0.0.1:<port>`, as Switchboard and
# bench-results/c/c-subjects (with its --mode) do: `reuseport="/path/switchboard --mode reuseport"`.
# --pin: servers on CPU 0 and wrk on CPU 1 (taskset), as bench.py --pin.
# --close: the `Connection: close` load instead, warm-up included (the figures are then connections a second and the
# close p99). The first line says which load: `# load: keepalive` or `# load: close`. paired-rounds.py reads either;
# tail-rounds.py takes the close load's ratio q from subjects named as bench.py's modes (round-robin, reuseport,
# c-rr-close, c-reuseport).
set -euo pipefail
server_cpu=() wrk_cpu=() header=() load=keepalive
while [ $# -gt 0 ]; do
    case "$1" in
        --pin) server_cpu=(taskset -c 0) wrk_cpu=(taskset -c 1); shift ;;
        --close) header=(-H "Connection: close") load=close; shift ;;
        *) break ;;
    esac
done
rounds=${1:?usage: keepalive-rounds.sh [--pin] [--close] ROUNDS NAME=SERVER_COMMAND ...}; shift
echo "# load: $load"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
for round in $(seq "$rounds"); do
    for subject in "$@"; do
        name=${subject%%=*}
        read -r -a command <<< "${subject#*=}"
        "${server_cpu[@]}" "${command[@]}" --host 127.0.0.1 --port 0 --workers 2 > "$log" 2>&1 &
        pid=$!
        port=""
        for _ in $(seq 200); do
            port=$(grep -oE '127\.0\.0\.1:[0-9]+' "$log" | head -1 | cut -d: -f2 || true)
            [ -n "$port" ] && break
            sleep 0.05
        done
        if [ -z "$port" ]; then echo "keepalive-rounds: $name did not say its port" >&2; kill "$pid"; exit 1; fi
        sleep 0.3
        "${wrk_cpu[@]}" wrk -t1 -c50 -d1 "${header[@]}" "http://127.0.0.1:$port/" > /dev/null
        out=$("${wrk_cpu[@]}" wrk -t1 -c50 -d5 --latency "${header[@]}" "http://127.0.0.1:$port/")
        rps=$(awk '/Requests\/sec/ {print int($2)}' <<<"$out")
        p99=$(awk '$1 == "99%" {print $2}' <<<"$out")
        echo "$round $name $rps $p99"
        kill "$pid"
        wait "$pid" 2>/dev/null || true
    done
done
