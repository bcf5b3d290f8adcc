#!/usr/bin/env bash
# Checks the rules a compiler does not: `unsafe` only in the C interop layers (Syscalls/: the kernel; Systemd/Systemd.swift:
# libsystemd), every @unchecked Sendable has a reason,
# no Package.resolved or .build committed.
set -uo pipefail
cd "$(dirname "$0")/.."
fail=0

unsafe_elsewhere=$(grep -rnw --include='*.swift' 'unsafe' Sources | grep -v '^Sources/Switchboard/Syscalls/' | grep -v '^Sources/Switchboard/Systemd/Systemd.swift:' | grep -v '///' | grep -v '// ' || true)
if [ -n "$unsafe_elsewhere" ]; then
    echo "soundness: 'unsafe' outside Sources/Switchboard/Syscalls/ and Systemd/Systemd.swift (move the pointer code into those layers):"
    echo "$unsafe_elsewhere"
    fail=1
fi

while IFS= read -r hit; do
    file=${hit%%:*}
    rest=${hit#*:}
    line=${rest%%:*}
    next=$(sed -n "$((line + 1))p" "$file")
    if ! grep -q '// @unchecked:' <<<"$(sed -n "$((line)),$((line + 1))p" "$file")"; then
        echo "soundness: $file:$line: @unchecked Sendable without a '// @unchecked: <what protects the state>' comment"
        fail=1
    fi
done < <(grep -rn --include='*.swift' '@unchecked Sendable' Sources Tests | grep -v '^\S*:[0-9]*:\s*//' )

for tracked in Package.resolved .build; do
    if [ -n "$(git ls-files "$tracked" 2>/dev/null | head -1)" ]; then
        echo "soundness: $tracked is committed: git rm -r --cached $tracked"
        fail=1
    fi
done

[ $fail -eq 0 ] && echo "soundness: ok"
exit $fail
