#!/usr/bin/env bash
# systemd-sandbox-selftest.sh: prove Scripts/systemd-sandbox.sh on trivial units.
#
# Boots a sandbox with
#   sbtest-notify.service  Type=notify shell script (systemd-notify READY=1 +
#                          STATUS=hello; SIGHUP -> STATUS=reloaded), run from a
#                          folder under /tmp that is passed with --bind, like a
#                          CI clone would be;
#   sbtest-hello.socket    ListenStream=127.0.0.1:<free port>, Accept=yes: one
#                          sbtest-hello@.service per connection, says hello;
#   sbtest-listen.socket   ListenStream=127.0.0.1:<free port>, Accept=no: the
#                          listening fd goes to sbtest-listen.service (python3,
#                          the switchboard model); skipped without python3;
# then checks states, reload, restart, socket activation, the journal, that /tmp
# and / are private/read-only inside, and after `stop` that nothing of the
# sandbox is left and a canary file in the host's /tmp survived.
#
# Exit: 0 all passed, 1 a check failed, 77 sandbox unavailable here (skip).
# Last line: "N passed, N failed".
set -uo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SB=$HERE/systemd-sandbox.sh
PASS=0 FAIL=0
pass() { PASS=$((PASS + 1)); echo "ok   - $*"; }
fail() { FAIL=$((FAIL + 1)); echo "FAIL - $*"; }
check() {   # check DESCRIPTION COMMAND...
    local d=$1; shift
    if "$@"; then pass "$d"; else fail "$d"; fi
}
finish() {
    echo "$PASS passed, $FAIL failed"
    [ "$FAIL" -eq 0 ] && exit 0
    exit 1
}

free_port() {   # a port nobody listens on (connect refused), below the ephemeral range
    local p
    for _ in $(seq 1 50); do
        p=$((20000 + RANDOM % 12000))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then echo "$p"; return 0; fi
    done
    return 1
}

# Read one line from 127.0.0.1:PORT (after sending an optional line).
tcp_line() {
    local port=$1 send=${2:-} line=""
    exec 5<>"/dev/tcp/127.0.0.1/$port" || return 1
    [ -n "$send" ] && printf '%s\n' "$send" >&5
    IFS= read -r -t 10 line <&5 || true
    exec 5<&- 5>&-
    printf '%s\n' "${line%$'\r'}"
}

WORK=$(mktemp -d /tmp/sbselftest.XXXXXX)
CANARY_TMP=/tmp/sbselftest-canary-$$
CANARY_VARTMP=/var/tmp/sbselftest-canary-$$
PID1=""
# shellcheck disable=SC2317  # called by the EXIT trap
cleanup() {
    [ -n "$PID1" ] && "$SB" stop "$PID1" >/dev/null 2>&1
    rm -rf "$WORK" "$CANARY_TMP" "$CANARY_VARTMP"
}
trap cleanup EXIT

mkdir -p "$CANARY_TMP" "$CANARY_VARTMP"
echo canary > "$CANARY_TMP/file"
echo canary > "$CANARY_VARTMP/file"

# ---- units
UNITS=$WORK/units
mkdir -p "$UNITS" "$WORK/bin"
cat > "$WORK/bin/notify-daemon.sh" <<'EOF'
#!/bin/sh
# A Type=notify daemon in shell: READY=1 + STATUS=, and SIGHUP = reload.
trap 'systemd-notify --status="reloaded"; echo "notify-daemon: reloaded"' HUP
trap 'echo "notify-daemon: SIGTERM"; exit 0' TERM
echo "notify-daemon: starting"
systemd-notify --ready --status="hello"
while :; do
    sleep 3600 &
    wait $! || true
done
EOF
chmod 755 "$WORK/bin/notify-daemon.sh"
cat > "$UNITS/sbtest-notify.service" <<EOF
[Unit]
Description=sandbox selftest: Type=notify shell daemon

[Service]
Type=notify
NotifyAccess=all
ExecStart=$WORK/bin/notify-daemon.sh
ExecReload=/bin/kill -HUP \$MAINPID
KillMode=mixed
TimeoutStopSec=5s
EOF

PORT_HELLO=$(free_port) || { echo "no free port"; exit 1; }
PORT_LISTEN=$(free_port) || { echo "no free port"; exit 1; }
[ "$PORT_LISTEN" = "$PORT_HELLO" ] && PORT_LISTEN=$((PORT_HELLO + 1))
cat > "$UNITS/sbtest-hello.socket" <<EOF
[Unit]
Description=sandbox selftest: Accept=yes socket

[Socket]
ListenStream=127.0.0.1:$PORT_HELLO
Accept=yes
EOF
cat > "$UNITS/sbtest-hello@.service" <<'EOF'
[Unit]
Description=sandbox selftest: per-connection hello

[Service]
ExecStart=/bin/echo hello-from-socket
StandardInput=socket
StandardOutput=socket
StandardError=journal
EOF
WANT_ARGS=(--target-wants sbtest-notify.service --target-wants sbtest-hello.socket)
# A DynamicUser= service sees neither /tmp (PrivateTmp) nor /root: the system
# python and a copy of the script (--install) under /usr/local/lib.
PY=""
[ -x /usr/bin/python3 ] && PY=/usr/bin/python3
INSTALL_ARGS=()
if [ -n "$PY" ]; then
    cat > "$WORK/bin/listen-daemon.py" <<'EOF'
import os, socket
# Accept=no socket activation: the listening socket is fd 3.
assert int(os.environ["LISTEN_PID"]) == os.getpid()
n = int(os.environ["LISTEN_FDS"])
names = os.environ.get("LISTEN_FDNAMES", "")
srv = socket.socket(fileno=3)
while True:
    conn, _ = srv.accept()
    conn.sendall(("listen-fds=%d names=%s pid=%d\n" % (n, names, os.getpid())).encode())
    conn.close()
EOF
    cat > "$UNITS/sbtest-listen.socket" <<EOF
[Unit]
Description=sandbox selftest: Accept=no socket

[Socket]
ListenStream=127.0.0.1:$PORT_LISTEN
FileDescriptorName=sbtest
EOF
    cat > "$UNITS/sbtest-listen.service" <<EOF
[Unit]
Description=sandbox selftest: socket-activated listener
Requires=sbtest-listen.socket

[Service]
ExecStart=$PY /usr/local/lib/sbtest/listen-daemon.py
DynamicUser=yes
EOF
    WANT_ARGS+=(--target-wants sbtest-listen.socket)
    INSTALL_ARGS+=(--install "$WORK/bin/listen-daemon.py:/usr/local/lib/sbtest/listen-daemon.py")
fi

# ---- start
OUT=$("$SB" start --units "$UNITS" --bind "$WORK" ${INSTALL_ARGS[@]+"${INSTALL_ARGS[@]}"} "${WANT_ARGS[@]}" 2>"$WORK/start.err")
RC=$?
if [ $RC -eq 77 ]; then
    echo "$OUT"
    echo "SKIP: sandbox unavailable"
    echo "0 passed, 0 failed"
    exit 77
fi
PID1=$(sed -n 's/^SANDBOX_PID=//p' <<<"$OUT")
LOG=$(sed -n 's/^SANDBOX_LOG=//p' <<<"$OUT")
if [ $RC -ne 0 ] || [ -z "$PID1" ]; then
    fail "start (rc $RC): $(cat "$WORK/start.err")"
    PID1=""
    finish
fi
pass "start: SANDBOX_PID=$PID1 SANDBOX_LOG=$LOG"
in_sb() { "$SB" exec "$PID1" -- "$@"; }
show() { in_sb systemctl show -p "$2" --value "$1"; }

check "PID 1 of a child PID namespace" grep -Eq "^NSpid:[[:space:]]+${PID1}[[:space:]]+1\$" "/proc/$PID1/status"
check "is-system-running = running" test "$(in_sb systemctl is-system-running)" = running

# Type=notify
PROPS=$(in_sb systemctl show -p ActiveState,SubState,StatusText,MainPID sbtest-notify.service)
while IFS= read -r l; do echo "       $l"; done <<<"$PROPS"
check "notify service active (READY=1 seen)" grep -qx 'ActiveState=active' <<<"$PROPS"
check "notify service StatusText=hello" grep -qx 'StatusText=hello' <<<"$PROPS"
MAIN1=$(sed -n 's/^MainPID=//p' <<<"$PROPS")
check "notify service has a MainPID" test "${MAIN1:-0}" -gt 0

# reload: ExecReload=kill -HUP $MAINPID, the daemon answers STATUS=reloaded
check "systemctl reload succeeds" in_sb systemctl reload sbtest-notify.service
ok=""
for _ in $(seq 1 50); do
    [ "$(show sbtest-notify.service StatusText)" = reloaded ] && { ok=1; break; }
    sleep 0.1
done
check "after reload StatusText=reloaded" test -n "$ok"
check "after reload same MainPID" test "$(show sbtest-notify.service MainPID)" = "$MAIN1"

# restart
check "systemctl restart succeeds" in_sb systemctl restart sbtest-notify.service
MAIN2=$(show sbtest-notify.service MainPID)
check "after restart active" test "$(show sbtest-notify.service ActiveState)" = active
check "after restart new MainPID ($MAIN1 -> $MAIN2)" test "${MAIN2:-0}" -gt 0 -a "$MAIN2" != "$MAIN1"
check "after restart StatusText=hello" test "$(show sbtest-notify.service StatusText)" = hello

# journal
check "journal has the daemon's output" bash -c \
    "'$SB' exec '$PID1' -- journalctl -u sbtest-notify.service --no-pager -o cat | grep -q 'notify-daemon: reloaded'"

# socket activation, Accept=yes, from the host's network namespace
LINE=$(tcp_line "$PORT_HELLO")
check "Accept=yes socket answers on 127.0.0.1:$PORT_HELLO ('$LINE')" test "$LINE" = hello-from-socket

if [ -n "$PY" ]; then
    check "Accept=no socket listening, service not started yet" \
        test "$(show sbtest-listen.service ActiveState)" = inactive
    LINE=$(tcp_line "$PORT_LISTEN")
    check "Accept=no socket activates the service ('$LINE')" grep -Eq '^listen-fds=1 names=sbtest pid=[0-9]+$' <<<"$LINE"
    check "socket-activated service now active" test "$(show sbtest-listen.service ActiveState)" = active
    LINE2=$(tcp_line "$PORT_LISTEN")
    check "second connection, same service process" test "${LINE2##*pid=}" = "${LINE##*pid=}"
else
    echo "skip - python3 not found: Accept=no socket checks"
fi

# isolation
check "sandbox /tmp is private (canary not visible inside)" bash -c "! '$SB' exec '$PID1' -- test -e '$CANARY_TMP/file'"
check "--bind brings $WORK back inside" in_sb test -x "$WORK/bin/notify-daemon.sh"
if [ -n "$PY" ]; then
    check "--install copied the listener under /usr/local/lib" in_sb test -f /usr/local/lib/sbtest/listen-daemon.py
    check "--install did not touch the host's /usr/local/lib" test ! -e /usr/local/lib/sbtest
fi
in_sb sh -c 'echo inside > /tmp/sbselftest-inside' || true
check "a file written to the sandbox's /tmp is not on the host" test ! -e /tmp/sbselftest-inside
check "host file system is read-only inside" bash -c "! '$SB' exec '$PID1' -- touch /etc/sbselftest-probe 2>/dev/null"
check "/proc/sys is read-only inside" bash -c "! '$SB' exec '$PID1' -- sh -c 'echo 1 > /proc/sys/kernel/core_uses_pid' 2>/dev/null"
check "exec passes the exit status" bash -c "'$SB' exec '$PID1' -- sh -c 'exit 3'; test \$? -eq 3"

# ---- diagnostics, then stop
if [ "$FAIL" -gt 0 ]; then
    echo "---- diagnostics: failed units, sbtest units, console log tail"
    in_sb systemctl --failed --no-legend 2>&1 | sed 's/^/   | /'
    in_sb systemctl status --no-pager --lines=5 'sbtest*' 2>&1 | sed 's/^/   | /'
    tail -n 30 "$LOG" 2>/dev/null | sed 's/^/   | /'
fi
# ---- stop
PIDNS=$(readlink "/proc/$PID1/ns/pid")
STATE=${LOG%/console.log}
CG=$(awk -F: '$1 == "0" { print $3 }' "/proc/$PID1/cgroup")
check "stop succeeds" "$SB" stop "$PID1"
STOPPED=$PID1
PID1=""
check "sandbox PID 1 is gone" test ! -d "/proc/$STOPPED"
left=$(for p in /proc/[0-9]*; do [ "$(readlink "$p/ns/pid" 2>/dev/null)" = "$PIDNS" ] && echo "${p#/proc/}"; done)
check "no process of the sandbox's PID namespace remains" test -z "$left"
check "no process of the test's units remains" bash -c "! pgrep -f 'notify-daemon[.]sh|listen-daemon[.]py' >/dev/null"
check "sandbox state dir removed" test ! -e "$STATE"
CGROOT=/sys/fs/cgroup
[ "$(stat -fc %T /sys/fs/cgroup)" = cgroup2fs ] || CGROOT=/sys/fs/cgroup/unified
check "sandbox cgroup removed (${CG%%/init.scope*})" test ! -e "$CGROOT${CG%%/init.scope*}"
check "host /tmp canary survived" test "$(cat "$CANARY_TMP/file" 2>/dev/null)" = canary
check "host /var/tmp canary survived" test "$(cat "$CANARY_VARTMP/file" 2>/dev/null)" = canary
check "host / still writable" bash -c "touch '$WORK/rw-probe' && rm '$WORK/rw-probe'"

finish
