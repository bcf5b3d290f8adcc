#!/usr/bin/env bash
# Checks the unit files with systemd's own tools: `systemd-analyze verify` in a throw-away root (it needs the
# ExecStart binary to exist; an empty stand-in plays it) and the `systemd-analyze security` exposure score.
# Usage: bash Scripts/systemd-verify.sh [units-folder]   (default: systemd/)
# Prints the verify output (nothing when clean) and `security: <score> <rating>`; exits 1 on any verify finding or
# a score above 4.9 (worse than "OK").
set -euo pipefail
cd "$(dirname "$0")/.."
units=${1:-systemd}
command -v systemd-analyze >/dev/null || { echo "systemd-verify: systemd-analyze is missing: apt-get install -y systemd"; exit 1; }
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
mkdir -p "$root/usr/local/bin" "$root/bin" "$root/lib/systemd" "$root/etc/systemd/system"
cp -a /lib/systemd/system "$root/lib/systemd/"
printf '#!/bin/sh\nexit 0\n' > "$root/usr/local/bin/switchboard"
chmod 755 "$root/usr/local/bin/switchboard"
cp /bin/kill "$root/bin/"
cp "$units/switchboard.service" "$units/switchboard.socket" "$root/etc/systemd/system/"
findings=$(systemd-analyze verify --root="$root" switchboard.service switchboard.socket 2>&1) || true
if [ -n "$findings" ]; then
    echo "$findings"
    echo "systemd-verify: systemd-analyze verify found problems in $units (above)"
    exit 1
fi
score_line=$(systemd-analyze security --offline=true "$units/switchboard.service" 2>/dev/null | grep -E "Overall exposure level" || true)
score=$(sed -E 's/.*: ([0-9.]+) .*/\1/' <<<"$score_line")
rating=$(sed -E 's/.*[0-9.]+ ([A-Z]+).*/\1/' <<<"$score_line")
echo "security: $score $rating"
awk -v s="$score" 'BEGIN { exit !(s != "" && s <= 4.9) }' || { echo "systemd-verify: exposure $score is worse than OK"; exit 1; }
