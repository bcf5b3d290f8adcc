#!/usr/bin/env bash
# The README's test command: installs what is missing, builds with warnings as errors, runs the whole suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash Scripts/bootstrap.sh
# The fleet test runs against Debian's real haproxy; without it (not root, no package) that test is skipped.
bash Scripts/bootstrap.sh haproxy || echo "test.sh: haproxy is missing: the HAProxy fleet test will be skipped" >&2
# The HTTPS and HTTP/2 tests run real clients (curl, h2load, nghttp) against certificates made by openssl.
bash Scripts/bootstrap.sh tls || echo "test.sh: openssl, curl or nghttp2-client is missing: the TLS tests will be skipped" >&2
# The deploy examples' test parses the Kubernetes manifest with PyYAML.
bash Scripts/bootstrap.sh yaml
# The upgrade-under-load test runs wrk beside its client loop.
bash Scripts/bootstrap.sh wrk
bash Scripts/soundness.sh
# The benchmark and fault scripts' shared package: statistics, output parsers, formats (Python stdlib, < 1 s).
python3 -m unittest discover -s Scripts/benchlib/tests -q
# With the Hummingbird trait, so SwitchboardHummingbird, its example and its tests are built and run too.
swift build --build-tests --traits Hummingbird,Vapor -Xswiftc -warnings-as-errors
# The end-to-end tests start the built `switchboard` binaries next to the test bundle.
swift test --skip-build --traits Hummingbird,Vapor "$@"
# The simulation of the core, release-built (about a minute to build, seconds to run): 100,000 seeded schedules.
if [ $# -eq 0 ]; then
    bash Scripts/simulate.sh 100000 1
fi
