#!/usr/bin/env bash
# The deterministic simulation of the core (Sources/SwitchboardSimulation), release-built, for a long run:
#   bash Scripts/simulate.sh [schedules, default 10000000] [first seed, default 1]
# The test command runs 100,000 schedules from seed 1 the same way (and the debug test suite a smoke of 5,000); a
# failure prints its seed and the shrunk schedule, to replay as a unit test in Tests/SwitchboardSimulationTests.
# Report long runs in RELIABILITY.md.
set -euo pipefail
cd "$(dirname "$0")/.."
schedules=${1:-10000000}
seed=${2:-1}
swift build -c release --scratch-path .build-simulate --product SwitchboardSimulator -Xswiftc -warnings-as-errors
.build-simulate/release/SwitchboardSimulator "$schedules" "$seed"
