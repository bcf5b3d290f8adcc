#!/usr/bin/env bash
# The README's run command: installs what is missing, builds a release binary and starts it (default port 3000).
# Any argument is passed on to switchboard, e.g. `bash Scripts/run.sh --workers 4 --port 8080`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash Scripts/bootstrap.sh
swift build -c release --product switchboard
exec .build/release/switchboard "$@"
