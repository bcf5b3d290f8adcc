#!/usr/bin/env bash
# The supervisor simulation (Tests/SwitchboardSimulationTests) for a long run, built for release:
#   bash Scripts/simulate.sh [schedules, default 10000000] [first seed, default 1]
# The test suite runs 30,000 schedules from seed 1 in every `swift test`; a failure prints its seed and the shrunk
# schedule. Report long runs in RELIABILITY.md.
set -euo pipefail
cd "$(dirname "$0")/.."
schedules=${1:-10000000}
seed=${2:-1}
start=$(date +%s)
SWITCHBOARD_SIMULATION_SCHEDULES=$schedules SWITCHBOARD_SIMULATION_SEED=$seed \
  swift test -c release -Xswiftc -enable-testing --scratch-path .build-simulate --filter SimulationTests
echo "simulate: $schedules schedules from seed $seed passed in $(( $(date +%s) - start )) s"
