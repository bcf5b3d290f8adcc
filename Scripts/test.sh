#!/usr/bin/env bash
# The README's test command: installs what is missing, builds with warnings as errors, runs the whole suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash Scripts/bootstrap.sh
bash Scripts/soundness.sh
swift build --build-tests -Xswiftc -warnings-as-errors
# The end-to-end tests start the built `switchboard` binary next to the test bundle.
swift test --skip-build "$@"
