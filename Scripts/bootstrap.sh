#!/usr/bin/env bash
# Installs what Switchboard needs to build and test on Debian 12 + Swift 6.3: libsystemd-dev and pkg-config.
# Idempotent: does nothing when everything is there. As root it installs with apt-get; otherwise it prints the command.
set -euo pipefail

need=()
command -v swift >/dev/null 2>&1 || { echo "bootstrap: swift is not on PATH: install Swift 6.3 (https://swift.org/install) and retry" >&2; exit 1; }
command -v pkg-config >/dev/null 2>&1 || need+=(pkg-config)
pkg-config --exists libsystemd 2>/dev/null || need+=(libsystemd-dev)
for extra in "$@"; do
    case "$extra" in
        wrk) command -v wrk >/dev/null 2>&1 || need+=(wrk) ;;
        node) command -v node >/dev/null 2>&1 || need+=(nodejs) ;;
        systemd) command -v systemd-socket-activate >/dev/null 2>&1 || need+=(systemd) ;;
        haproxy) command -v haproxy >/dev/null 2>&1 || [ -x /usr/sbin/haproxy ] || need+=(haproxy) ;;
        # The HTTPS and HTTP/2 tests: certificates by openssl, clients curl, h2load and nghttp, a close_notify probe
        # in python3.
        tls)
            command -v openssl >/dev/null 2>&1 || need+=(openssl)
            command -v curl >/dev/null 2>&1 || need+=(curl)
            command -v python3 >/dev/null 2>&1 || need+=(python3)
            { command -v h2load >/dev/null 2>&1 && command -v nghttp >/dev/null 2>&1; } || need+=(nghttp2-client) ;;
        # The benchmark's chart (Scripts/benchlib/chart.py): Debian's matplotlib, which /usr/bin/python3 imports; the
        # chart uses it through that interpreter when the python3 first on PATH (pyenv, a venv) cannot.
        chart)
            { python3 -c 'import matplotlib' || /usr/bin/python3 -c 'import matplotlib'; } >/dev/null 2>&1 \
                || need+=(python3-matplotlib) ;;
        # The deploy examples' test reads docs/deploy/deployment.yaml with PyYAML.
        yaml)
            { python3 -c 'import yaml' || /usr/bin/python3 -c 'import yaml'; } >/dev/null 2>&1 || need+=(python3-yaml) ;;
        *) echo "bootstrap: unknown extra '$extra' (known: wrk, node, systemd, haproxy, tls, chart, yaml)" >&2; exit 64 ;;
    esac
done

[ ${#need[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
    echo "bootstrap: missing ${need[*]}: run 'sudo apt-get update && sudo apt-get install -y ${need[*]}' and retry" >&2
    exit 1
fi
echo "bootstrap: installing ${need[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
if ! apt-get install -y -qq "${need[@]}" >/dev/null 2>&1; then
    apt-get update -qq >/dev/null
    apt-get install -y -qq "${need[@]}" >/dev/null
fi
