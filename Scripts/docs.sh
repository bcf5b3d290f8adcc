#!/usr/bin/env bash
# Builds the DocC documentation of the public modules with the toolchain's docc, warnings as errors.
# Usage: bash Scripts/docs.sh [output-folder]   (default .build-docs/site)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-.build-docs/site}
graphs=$PWD/.build-docs/symbol-graphs
rm -rf "$graphs" && mkdir -p "$graphs/all" "$out"
# Graphs are only written when a module compiles: make our two modules compile again. Their build folders go, and so
# does the build description, or SwiftPM would look for the output file maps it no longer has.
rm -rf .build-docs/*/debug/Switchboard.build .build-docs/*/debug/SwitchboardNIO.build \
    .build-docs/*/debug/description.json .build-docs/debug.yaml .build-docs/build.db
# One build emits every module's symbol graph (a separate scratch path keeps the main build's flags intact).
swift build --scratch-path .build-docs --target SwitchboardNIO \
    -Xswiftc -emit-symbol-graph -Xswiftc -emit-symbol-graph-dir -Xswiftc "$graphs/all" | grep -E "error|warning:" || true
failed=0
for module in Switchboard SwitchboardNIO; do
    # Only the module's own graph: the dependencies' graphs land in the same folder.
    mkdir -p "$graphs/$module"
    cp "$graphs/all/$module.symbols.json" "$graphs/$module/"
    if ! docc convert "Sources/$module/Docs.docc" \
        --additional-symbol-graph-dir "$graphs/$module" \
        --fallback-display-name "$module" --fallback-bundle-identifier "dev.switchboard.$module" \
        --output-path "$out/$module.doccarchive" --warnings-as-errors; then
        echo "docs: $module has documentation warnings (above)"
        failed=1
    fi
done
[ $failed -eq 0 ] && echo "docs: built $out"
exit $failed
