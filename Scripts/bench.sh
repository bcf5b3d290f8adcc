#!/usr/bin/env bash
# Benchmark Switchboard against Node.js cluster; see Scripts/bench/README.md.
set -euo pipefail
cd "$(dirname "$0")/.."
exec python3 Scripts/bench/bench.py "$@"
