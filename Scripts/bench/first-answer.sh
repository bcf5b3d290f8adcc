#!/usr/bin/env bash
# Times the README's run command on a fresh clone of COMMIT until the first request on PORT is answered, and prints
# the release binary's size: what a newcomer waits for.
#
#   bash Scripts/bench/first-answer.sh COMMIT [PORT]
set -u
commit=${1:?usage: first-answer.sh COMMIT [PORT]}
port=${2:-13101}
repo=$(cd "$(dirname "$0")/../.." && pwd)
dir=$(mktemp -d)/clone
git clone -q "$repo" "$dir" && cd "$dir" && git checkout -q "$commit" || exit 1
start=$(date +%s.%N)
bash Scripts/run.sh --port "$port" --workers 2 > run.log 2>&1 &
pid=$!  # run.sh execs the server: this is its pid once it runs
until curl -s -m 1 "127.0.0.1:$port/" > /dev/null 2>&1; do
    sleep 0.5
    kill -0 "$pid" 2>/dev/null || { echo "run.sh ended before answering: $dir/run.log"; exit 1; }
done
end=$(date +%s.%N)
echo "commit $commit: first answer after $(echo "$end - $start" | bc) s;" \
    "binary $(stat -c %s .build/release/switchboard) bytes; load $(cut -d' ' -f1-3 /proc/loadavg)"
kill -TERM "$pid"
wait "$pid" 2>/dev/null
rm -rf "$(dirname "$dir")"
