#!/usr/bin/env bash
# Benchmark Switchboard against Node.js cluster; see Scripts/bench/README.md.
set -euo pipefail
cd "$(dirname "$0")/.."
# The chart needs matplotlib (Debian's python3-matplotlib); without it bench.py skips the chart and says how to get it.
case " $* " in
    *" --no-chart "*) ;;
    *) bash Scripts/bootstrap.sh chart || echo "bench.sh: matplotlib is missing: the chart will be skipped" >&2 ;;
esac
exec python3 Scripts/bench/bench.py "$@"
