#!/usr/bin/env bash
# shellcheck disable=SC1090,SC1091,SC2154
# ($state/config, written by `start` with declare -p, defines abs_binds,
# install_src, install_dest, wants, cgdir, lifetime and host_mntns.)
# systemd-sandbox.sh: boot a REAL systemd as PID 1 of private namespaces, for tests.
#
#   systemd-sandbox.sh start --units DIR [--bind PATH]... [--install SRC:DEST]...
#                            [--target-wants UNIT]... [--timeout SECONDS] [--lifetime SECONDS]
#       Boots systemd with the unit files of DIR and waits (default 30 s) until
#       `systemctl is-system-running` is past "initializing"/"starting".
#       --bind PATH: the host's PATH, visible and writable inside (needed for
#         paths under /tmp, /var/tmp, /run, which are private tmpfs inside).
#       --install SRC:DEST: a COPY of the host's file (or folder) SRC at DEST
#         inside, e.g. .build/release/switchboard:/usr/local/bin/switchboard;
#         DEST's folder gets a private overlay, the host's is not changed. Use it
#         for binaries that live under /tmp: a unit with PrivateTmp=yes (or
#         DynamicUser=yes) does not see the sandbox's /tmp, binds included.
#       --target-wants UNIT: what sbtest.target pulls in at boot (default: every
#         non-template unit file of DIR).
#       --lifetime SECONDS: kill the sandbox after that long if nobody stopped it
#         (default 3600; 0 = never).
#       stdout, one line each:   SANDBOX_PID=<host pid of the sandbox's systemd>
#                                SANDBOX_LOG=<console log: manager + service output>
#       Exit 0: booted (the sandbox keeps running, detached).
#       Exit 77: namespaces not available here; prints SANDBOX_UNAVAILABLE: <reason>.
#       Exit 1: anything else (diagnostics on stderr).
#   systemd-sandbox.sh exec <pid> -- <command...>
#       Runs the command inside the sandbox (its mount/PID/UTS/IPC namespaces, a
#       clean environment) and exits with its status: `systemctl` and
#       `journalctl` talk to the sandbox's manager/journal there. There is no
#       D-Bus inside: what needs it (systemd-run, busctl, hostnamectl) fails.
#   systemd-sandbox.sh stop <pid> [--keep-log]
#       SIGKILLs the sandbox's PID 1 (the kernel then kills every process of its
#       PID namespace), waits until all are gone, removes its cgroup and state.
#   systemd-sandbox.sh list
#       Prints the host pids of the sandboxes that are running.
#
# What the sandbox is (see systemd/README.md, "Testing under a real systemd"):
#   * new PID, mount, UTS, IPC and cgroup namespaces; the host's NETWORK namespace
#     is shared, so 127.0.0.1:<port> inside is 127.0.0.1:<port> on the host;
#   * private tmpfs on /tmp, /var/tmp, /run, /dev, /var/lib/systemd and
#     /var/log/journal; the rest of / is visible but READ-ONLY (a per-mount flag
#     of this namespace only); --bind PATH makes PATH (and what is under it)
#     visible and writable inside (needed for paths under /tmp, e.g. a CI clone);
#   * /proc/sys and /sys read-only, its own cgroup2 tree (a child of the host's),
#     its own devpts;
#   * a hermetic unit set: SYSTEMD_UNIT_PATH holds only the caller's units
#     (copied to /run/systemd/system), a minimal base (sysinit/basic/sockets/
#     shutdown targets, journald) and sbtest.target, which Wants= the caller's
#     units; no generators. Host units (systemd-tmpfiles-*, udev, getty, logind,
#     timers such as apt-daily, fstab mounts, swap...) do not exist in there.
#
# Environment: SANDBOX_TMPDIR (default /tmp) holds the state dirs and logs;
#              SANDBOX_SYSTEMD (default /lib/systemd/systemd); SANDBOX_DEBUG=1
#              traces the namespace set-up into the log.
set -euo pipefail

SELF=$(readlink -f "${BASH_SOURCE[0]}")
BASH_BIN=${BASH:-/bin/bash}
SYSTEMD_BIN=${SANDBOX_SYSTEMD:-/lib/systemd/systemd}
TMPBASE=${SANDBOX_TMPDIR:-/tmp}
CONTAINER_NAME=switchboard-sandbox
INNER_PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

say() { echo "systemd-sandbox: $*" >&2; }
die() { say "$*"; exit 1; }
unavailable() { echo "SANDBOX_UNAVAILABLE: $*"; exit 77; }

usage() {
    sed -n '5,/^# What the sandbox is/p' "$SELF" | sed '$d; s/^# \{0,1\}//' >&2
    exit "${1:-2}"
}

# The cgroup2 hierarchy of the host ("" if none): pure v2 or the "unified" one of
# a hybrid set-up.
cgroup2_root() {
    if [ "$(stat -fc %T /sys/fs/cgroup 2>/dev/null)" = cgroup2fs ]; then
        echo /sys/fs/cgroup
    elif [ "$(stat -fc %T /sys/fs/cgroup/unified 2>/dev/null)" = cgroup2fs ]; then
        echo /sys/fs/cgroup/unified
    fi
}

# Succeeds if <pid> is PID 1 of a child PID namespace.
is_ns_init() {
    local ns
    ns=$(awk '/^NSpid:/ { if (NF >= 3) print $NF; else print "x" }' "/proc/$1/status" 2>/dev/null) || return 1
    [ "$ns" = 1 ]
}

# State dir of the sandbox whose PID 1 is <pid> (read from its unshare parent's
# command line: `unshare ... bash systemd-sandbox.sh __init STATE`); fails if <pid>
# is not one of ours.
sandbox_state_of() {
    local pid=$1 ppid args
    is_ns_init "$pid" || return 1
    ppid=$(awk '{ print $4 }' "/proc/$pid/stat" 2>/dev/null) || return 1
    mapfile -d '' -t args < "/proc/$ppid/cmdline" 2>/dev/null || return 1
    [ "${#args[@]}" -ge 3 ] || return 1
    [ "${args[0]##*/}" = unshare ] || return 1
    [ "${args[${#args[@]}-2]}" = __init ] || return 1
    printf '%s\n' "${args[${#args[@]}-1]}"
}

alive() {   # running (not gone, not a zombie)
    local st
    st=$(awk '{ print $3 }' "/proc/$1/stat" 2>/dev/null) || return 1
    [ -n "$st" ] && [ "$st" != Z ] && [ "$st" != X ]
}

# Remove a cgroup tree bottom-up (all its processes must be gone).
remove_cgroup_tree() {
    local dir=$1 i
    [ -d "$dir" ] || return 0
    for i in $(seq 1 100); do
        find "$dir" -depth -type d -exec rmdir {} + 2>/dev/null || true
        [ -d "$dir" ] || return 0
        sleep 0.1
    done
    say "could not remove cgroup $dir (processes left: $(tr '\n' ' ' < "$dir/cgroup.procs" 2>/dev/null))"
    return 1
}

inner_exec() {   # inner_exec PID CMD... : run CMD in the sandbox
    local pid=$1; shift
    nsenter -t "$pid" -m -p -u -i --wd=/ -- /usr/bin/env -i \
        PATH="$INNER_PATH" LANG=C.UTF-8 TERM=dumb SYSTEMD_PAGER= SYSTEMD_COLORS=0 \
        container="$CONTAINER_NAME" "$@"
}

# ---------------------------------------------------------------------- start
cmd_start() {
    local units_dir="" timeout=30 lifetime=3600
    local -a binds=() wants=() installs=()
    while [ $# -gt 0 ]; do
        case $1 in
            --units) units_dir=${2:?--units needs a directory}; shift 2 ;;
            --bind) binds+=("${2:?--bind needs a path}"); shift 2 ;;
            --install) installs+=("${2:?--install needs SRC:DEST}"); shift 2 ;;
            --target-wants) wants+=("${2:?--target-wants needs a unit}"); shift 2 ;;
            --timeout) timeout=${2:?}; shift 2 ;;
            --lifetime) lifetime=${2:?}; shift 2 ;;
            -h|--help) usage 0 ;;
            *) die "start: unknown argument '$1'" ;;
        esac
    done
    [ -n "$units_dir" ] || die "start: --units DIR is required"
    [ -d "$units_dir" ] || die "start: '$units_dir' is not a directory"

    # ---- can we do it at all?
    [ "$(id -u)" = 0 ] || unavailable "must run as root (uid $(id -u))"
    local c
    for c in unshare nsenter mount findmnt; do
        command -v "$c" >/dev/null || unavailable "'$c' not found"
    done
    [ -x "$SYSTEMD_BIN" ] || unavailable "$SYSTEMD_BIN not found"
    local cgroot
    cgroot=$(cgroup2_root)
    [ -n "$cgroot" ] || unavailable "no cgroup2 hierarchy mounted (need /sys/fs/cgroup or /sys/fs/cgroup/unified)"
    [ -w "$cgroot" ] || unavailable "$cgroot is not writable"
    local err
    # The probe mounts a tmpfs on /tmp, but inside a private mount namespace
    # (--propagation private): the host's /tmp is not touched.
    if ! err=$(unshare --pid --fork --mount --uts --ipc --cgroup --propagation private \
            /bin/sh -c 'mount -t tmpfs sandbox-probe /tmp && umount -l /sys && mount -t sysfs -o ro sysfs /sys' 2>&1); then
        unavailable "cannot create namespaces/mounts: ${err//$'\n'/ }"
    fi

    # ---- state dir
    mkdir -p "$TMPBASE"
    local state name cgdir log
    state=$(mktemp -d "$TMPBASE/systemd-sandbox.XXXXXX")
    name=${state##*/}
    cgdir=$cgroot/$name
    log=$state/console.log
    : > "$log"
    mkdir "$state/units"
    cp -a "$units_dir"/. "$state/units/"

    local -a abs_binds=()
    local b rb
    for b in ${binds[@]+"${binds[@]}"}; do
        rb=$(readlink -f "$b") || die "--bind $b: cannot resolve"
        [ -e "$rb" ] || die "--bind $b: does not exist"
        case $rb in
            /|/proc|/proc/*|/sys|/sys/*|/dev|/dev/*) die "--bind $b: not allowed" ;;
        esac
        abs_binds+=("$rb")
    done
    local -a install_src=() install_dest=()
    local spec src dest
    for spec in ${installs[@]+"${installs[@]}"}; do
        src=${spec%%:*}; dest=${spec#*:}
        if [ "$src" = "$spec" ] || [ -z "$src" ] || [ -z "$dest" ]; then
            die "--install $spec: want SRC:DEST"
        fi
        if ! src=$(readlink -f "$src") || [ ! -e "$src" ]; then
            die "--install $spec: $src does not exist"
        fi
        case $dest in
            /*) ;;
            *) die "--install $spec: DEST must be absolute" ;;
        esac
        case $dest in
            /|/proc|/proc/*|/sys|/sys/*|/dev|/dev/*) die "--install $spec: DEST not allowed" ;;
        esac
        install_src+=("$src"); install_dest+=("$dest")
    done
    if [ ${#wants[@]} -eq 0 ]; then   # default: every non-template unit of DIR
        local f base
        for f in "$units_dir"/*; do
            base=${f##*/}
            [ -f "$f" ] || continue
            case $base in
                *@.*) ;;
                *.service|*.socket|*.target|*.timer|*.path|*.mount) wants+=("$base") ;;
            esac
        done
    fi
    {
        declare -p abs_binds install_src install_dest wants cgdir lifetime
        printf 'host_mntns=%q\n' "$(readlink /proc/self/ns/mnt)"
    } > "$state/config"

    mkdir "$cgdir" || die "cannot create cgroup $cgdir"

    # ---- launch, detached: supervisor -> script (console pty) -> unshare -> systemd
    setsid "$BASH_BIN" "$SELF" __supervise "$state" </dev/null >>"$log" 2>&1 &

    # ---- find the sandbox's PID 1 (child of unshare)
    local upid="" pid1="" i
    for i in $(seq 1 200); do
        if [ -z "$upid" ] && [ -s "$state/unshare.pid" ]; then upid=$(cat "$state/unshare.pid"); fi
        if [ -n "$upid" ]; then
            for c in $(ps -o pid= --ppid "$upid" 2>/dev/null); do
                if is_ns_init "$c"; then pid1=$c; break; fi
            done
        fi
        [ -n "$pid1" ] && break
        [ -e "$state/exited" ] && break
        sleep 0.05
    done
    if [ -z "$pid1" ]; then
        say "the sandbox did not start; log $log:"
        tail -n 40 "$log" >&2 || true
        [ -e "$state/exited" ] || sleep 1
        remove_cgroup_tree "$cgdir" || true
        exit 1
    fi
    echo "$pid1" > "$state/pid1"

    # ---- wait for the boot to settle
    local deadline=$((SECONDS + timeout)) st=""
    while :; do
        if ! alive "$pid1"; then
            say "the sandbox's systemd died while booting; log $log:"
            tail -n 60 "$log" >&2 || true
            cmd_stop "$pid1" --keep-log >/dev/null 2>&1 || true
            exit 1
        fi
        st=$(inner_exec "$pid1" systemctl is-system-running 2>/dev/null || true)
        case $st in
            running|degraded|maintenance) break ;;
        esac
        if [ $SECONDS -ge $deadline ]; then
            say "boot did not settle within ${timeout}s (state '${st:-unknown}'); jobs:"
            inner_exec "$pid1" systemctl list-jobs --no-legend >&2 2>/dev/null || true
            tail -n 60 "$log" >&2 || true
            cmd_stop "$pid1" --keep-log >/dev/null 2>&1 || true
            say "log kept: $log"
            exit 1
        fi
        sleep 0.1
    done
    if [ "$st" != running ]; then
        say "system state is '$st'; failed units:"
        inner_exec "$pid1" systemctl --failed --no-legend >&2 2>/dev/null || true
    fi
    echo "SANDBOX_PID=$pid1"
    echo "SANDBOX_LOG=$log"
}

# ---------------------------------------------------- __supervise (detached)
cmd_supervise() {
    local state=$1 log=$1/console.log
    # shellcheck disable=SC1090
    . "$state/config"
    local child rc=0 started=$SECONDS killed=""
    if command -v script >/dev/null; then
        # `script` gives the sandbox a pty that becomes its /dev/console and copies
        # everything written there (manager status, service output forwarded by
        # journald) to the log.
        local cmd
        printf -v cmd 'exec %q %q __launch %q' "$BASH_BIN" "$SELF" "$state"
        SHELL=$BASH_BIN script -q -f -a -e -E never -c "$cmd" "$log" </dev/null >/dev/null 2>&1 &
    else
        "$BASH_BIN" "$SELF" __launch "$state" </dev/null >>"$log" 2>&1 &
    fi
    child=$!
    while kill -0 "$child" 2>/dev/null; do
        if [ "$lifetime" -gt 0 ] && [ -z "$killed" ] && [ $((SECONDS - started)) -ge "$lifetime" ] \
                && [ -s "$state/pid1" ]; then
            say "lifetime of ${lifetime}s is over: killing the sandbox"
            kill -KILL "$(cat "$state/pid1")" 2>/dev/null || true
            killed=1
        fi
        sleep 0.2
    done
    wait "$child" || rc=$?
    say "sandbox ended (status $rc)"
    remove_cgroup_tree "$cgdir" || true
    touch "$state/exited"
}

# ------------------------------------- __launch (inside script's pty, host side)
cmd_launch() {
    local state=$1
    # shellcheck disable=SC1090
    . "$state/config"
    echo $$ > "$state/unshare.pid"          # exec keeps the pid: this is unshare's
    echo $$ > "$cgdir/cgroup.procs"         # the cgroup namespace is rooted here
    exec unshare --pid --fork --kill-child --mount-proc --mount --uts --ipc --cgroup \
        --propagation private -- "$BASH_BIN" "$SELF" __init "$state"
}

# ------------------------------- __init (PID 1 of the new namespaces, pre-exec)
write_base_units() {
    local d=$1 w
    cat > "$d/sbtest.target" <<EOF
[Unit]
Description=systemd-sandbox test target
AllowIsolate=yes
EOF
    for w in ${wants[@]+"${wants[@]}"}; do echo "Wants=$w" >> "$d/sbtest.target"; done
    cat > "$d/sysinit.target" <<'EOF'
[Unit]
Description=System Initialization (sandbox: nothing but the journal)
Wants=systemd-journald.service systemd-journald.socket systemd-journald-dev-log.socket
EOF
    cat > "$d/basic.target" <<'EOF'
[Unit]
Description=Basic System (sandbox)
Requires=sysinit.target
Wants=sockets.target
After=sysinit.target sockets.target
EOF
    cat > "$d/sockets.target" <<'EOF'
[Unit]
Description=Socket Units
EOF
    cat > "$d/shutdown.target" <<'EOF'
[Unit]
Description=System Shutdown
DefaultDependencies=no
RefuseManualStart=yes
EOF
    local u
    for u in multi-user.target network.target network-online.target local-fs.target \
             remote-fs.target nss-user-lookup.target time-sync.target; do
        printf '[Unit]\nDescription=%s (sandbox: empty)\n' "$u" > "$d/$u"
    done
    # journald from the host's unit files, minus the audit socket (it would read
    # the HOST's kernel audit stream).
    for u in systemd-journald.service systemd-journald.socket systemd-journald-dev-log.socket; do
        if [ -f "/lib/systemd/system/$u" ]; then
            sed -e 's/ *systemd-journald-audit\.socket//g' "/lib/systemd/system/$u" > "$d/$u"
        fi
    done
}

cmd_init() {
    local state=$1
    [ "${SANDBOX_DEBUG:-0}" = 1 ] && set -x
    # shellcheck disable=SC1090
    . "$state/config"

    # Safety first: never touch a mount table that is not private to us.
    [ $$ = 1 ] || { say "__init: not PID 1 of a new PID namespace"; exit 1; }
    if [ "$(readlink /proc/self/ns/mnt)" = "$host_mntns" ]; then
        say "__init: still in the host's mount namespace: refusing to mount anything"
        exit 1
    fi
    mount --make-rprivate /

    # Handles on what we need from the host before /tmp, /run and /dev are covered.
    local -a bind_fds=()
    local b fd state_fd con_fd=""
    exec {state_fd}<"$state"
    for b in ${abs_binds[@]+"${abs_binds[@]}"}; do
        exec {fd}<"$b"
        bind_fds+=("$fd")
    done
    # The console pty: reopened by path, since a bind mount needs a file opened
    # through THIS namespace's mounts (script opened it in the host's).
    local tty_path
    local -a install_fds=()
    for b in ${install_src[@]+"${install_src[@]}"}; do
        exec {fd}<"$b"
        install_fds+=("$fd")
    done
    if [ -t 1 ] && tty_path=$(readlink /proc/$$/fd/1) && [ -c "$tty_path" ]; then
        exec {con_fd}<>"$tty_path"
    fi

    # Private, empty: /run /tmp /var/tmp /dev, and the places systemd and journald
    # would write on the host's disk.
    mount -t tmpfs -o mode=0755,nosuid,nodev tmpfs /run
    mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs /tmp
    mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs /var/tmp
    [ -d /var/lib/systemd ] && mount -t tmpfs -o mode=0755,nosuid,nodev tmpfs /var/lib/systemd
    [ -d /var/log/journal ] && mount -t tmpfs -o mode=2755,nosuid,nodev tmpfs /var/log/journal
    mkdir -m 1777 /run/lock

    mount -t tmpfs -o mode=0755,nosuid tmpfs /dev
    mknod -m 666 /dev/null c 1 3
    mknod -m 666 /dev/zero c 1 5
    mknod -m 666 /dev/full c 1 7
    mknod -m 666 /dev/random c 1 8
    mknod -m 666 /dev/urandom c 1 9
    mknod -m 666 /dev/tty c 5 0
    mkdir -m 755 /dev/pts /dev/shm /dev/mqueue
    mount -t devpts -o newinstance,ptmxmode=0666,mode=620,gid=5 devpts /dev/pts
    ln -s pts/ptmx /dev/ptmx
    mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs /dev/shm
    mount -t mqueue -o nosuid,nodev,noexec mqueue /dev/mqueue || true
    ln -s /proc/self/fd /dev/fd
    ln -s /proc/self/fd/0 /dev/stdin
    ln -s /proc/self/fd/1 /dev/stdout
    ln -s /proc/self/fd/2 /dev/stderr
    if [ -n "$con_fd" ]; then
        touch /dev/console
        mount --no-canonicalize --bind "/proc/self/fd/$con_fd" /dev/console
    fi

    # Kernel knobs are host-wide: make them read-only. Own cgroup2 tree.
    umount -l /sys      # the kernel refuses a second sysfs on top of the same one
    mount -t sysfs -o ro,nosuid,nodev,noexec sysfs /sys
    mount -t cgroup2 -o nosuid,nodev,noexec cgroup2 /sys/fs/cgroup
    mount --bind /proc/sys /proc/sys
    mount -o remount,bind,ro,nosuid,nodev,noexec /proc/sys
    if [ -e /proc/sysrq-trigger ]; then
        mount --bind /proc/sysrq-trigger /proc/sysrq-trigger
        mount -o remount,bind,ro /proc/sysrq-trigger
    fi

    # The caller's paths, back in place and writable.
    local i target src
    for i in "${!bind_fds[@]}"; do
        target=${abs_binds[$i]}
        src=/proc/self/fd/${bind_fds[$i]}
        if [ -d "$src" ]; then mkdir -p "$target"; else mkdir -p "${target%/*}"; [ -e "$target" ] || touch "$target"; fi
        mount --no-canonicalize --bind "$src" "$target"
    done

    # --install: copies, in folders made writable by a private overlay (upper
    # layer on the sandbox's /run) unless they are on one of our tmpfs already.
    mkdir -p /run/systemd-sandbox/overlay
    local dest dir n=0 fstype
    for i in "${!install_fds[@]}"; do
        dest=${install_dest[$i]}
        src=/proc/self/fd/${install_fds[$i]}
        dir=${dest%/*}; dir=${dir:-/}
        while [ ! -d "$dir" ]; do dir=${dir%/*}; dir=${dir:-/}; done
        fstype=$(findmnt -n -o FSTYPE -T "$dir")
        if [ "$fstype" != tmpfs ] && [ "$fstype" != overlay ]; then
            n=$((n + 1))
            mkdir -p "/run/systemd-sandbox/overlay/$n/upper" "/run/systemd-sandbox/overlay/$n/work"
            mount -t overlay overlay -o "lowerdir=$dir,upperdir=/run/systemd-sandbox/overlay/$n/upper,workdir=/run/systemd-sandbox/overlay/$n/work" "$dir"
        fi
        mkdir -p "${dest%/*}/"
        if [ -d "$src" ]; then
            mkdir -p "$dest"
            cp -a "$src/." "$dest/"
        else
            cp --preserve=mode,timestamps "$src" "$dest"
        fi
    done

    # Units and configuration.
    mkdir -p /run/systemd/system /run/systemd/sandbox-base /run/systemd/sandbox-empty \
             /run/systemd/system.conf.d /run/systemd/journald.conf.d
    cp -a "/proc/$$/fd/$state_fd/units/." /run/systemd/system/
    write_base_units /run/systemd/sandbox-base
    cat > /run/systemd/system.conf.d/zz-sandbox.conf <<'EOF'
[Manager]
LogColor=no
ShowStatus=no
DumpCore=no
CrashReboot=no
RuntimeWatchdogSec=off
RebootWatchdogSec=off
CtrlAltDelBurstAction=none
DefaultTimeoutStartSec=30s
DefaultTimeoutStopSec=15s
EOF
    cat > /run/systemd/journald.conf.d/zz-sandbox.conf <<'EOF'
[Journal]
Storage=volatile
ReadKMsg=no
ForwardToSyslog=no
ForwardToWall=no
ForwardToConsole=yes
TTYPath=/dev/console
MaxLevelConsole=debug
EOF

    # Everything else of / read-only (remount,BIND: the flag of OUR copy of the
    # mount; a plain remount,ro would turn the host's file system read-only).
    mount -o remount,bind,ro /

    exec {state_fd}<&-
    for fd in ${bind_fds[@]+"${bind_fds[@]}"} ${install_fds[@]+"${install_fds[@]}"}; do exec {fd}<&-; done
    [ -n "$con_fd" ] && exec {con_fd}>&-
    cd /
    echo "systemd-sandbox: namespaces ready, exec $SYSTEMD_BIN"
    local unit_path=/run/systemd/system.control:/run/systemd/transient:/run/systemd/system:/run/systemd/sandbox-base
    exec /usr/bin/env -i \
        container="$CONTAINER_NAME" TERM=dumb LANG=C.UTF-8 PATH="$INNER_PATH" \
        SYSTEMD_UNIT_PATH="$unit_path" \
        SYSTEMD_GENERATOR_PATH=/run/systemd/sandbox-empty \
        SYSTEMD_ENVIRONMENT_GENERATOR_PATH=/run/systemd/sandbox-empty \
        "$SYSTEMD_BIN" --unit=sbtest.target --log-level=info --log-color=no --show-status=no
}

# ----------------------------------------------------------------------- exec
cmd_exec() {
    local pid=${1:?exec: pid required}; shift
    [ "${1:-}" = -- ] && shift
    [ $# -gt 0 ] || die "exec: no command"
    sandbox_state_of "$pid" >/dev/null || die "exec: $pid is not a running sandbox"
    inner_exec "$pid" "$@"
}

# ----------------------------------------------------------------------- stop
cmd_stop() {
    local pid=${1:?stop: pid required} keep_log=""
    [ "${2:-}" = --keep-log ] && keep_log=1
    local state="" d live=1
    if ! state=$(sandbox_state_of "$pid"); then
        state="" live=""
        # Already dead (crashed, --lifetime over)? Then only its state is left.
        for d in "$TMPBASE"/systemd-sandbox.*/; do
            d=${d%/}
            if [ -e "$d/exited" ] && [ "$(cat "$d/pid1" 2>/dev/null)" = "$pid" ]; then state=$d; break; fi
        done
        if [ -z "$state" ]; then
            if alive "$pid"; then die "stop: $pid is not a sandbox"; fi
            say "stop: no sandbox with pid $pid (already stopped?)"
            return 0
        fi
        say "stop: sandbox $pid had already ended; cleaning up"
    fi
    local cgdir="" i
    if [ -f "$state/config" ]; then cgdir=$(. "$state/config"; echo "$cgdir"); fi
    if [ -n "$live" ]; then
        local upid
        upid=$(awk '{ print $4 }' "/proc/$pid/stat")
        # SIGKILL of a PID namespace's init kills every process of that namespace.
        kill -KILL "$pid" 2>/dev/null || true
        for i in $(seq 1 300); do alive "$pid" || break; sleep 0.1; done
        alive "$pid" && die "stop: pid $pid is still running after SIGKILL"
        for i in $(seq 1 300); do [ -d "/proc/$upid" ] || break; sleep 0.1; done
    fi
    for i in $(seq 1 300); do [ -e "$state/exited" ] && break; sleep 0.1; done
    [ -e "$state/exited" ] || say "stop: supervisor did not report; cleaning up"
    if [ -n "$cgdir" ] && [ -d "$cgdir" ]; then
        remove_cgroup_tree "$cgdir" || die "stop: processes left in $cgdir"
    fi
    if [ -n "$keep_log" ]; then
        find "$state" -mindepth 1 -maxdepth 1 ! -name console.log -exec rm -rf {} +
        echo "SANDBOX_LOG=$state/console.log"
    else
        rm -rf "$state"
    fi
}

cmd_list() {
    local p
    for p in /proc/[0-9]*; do
        p=${p#/proc/}
        sandbox_state_of "$p" >/dev/null 2>&1 && echo "$p"
    done
    return 0
}

case ${1:-} in
    start) shift; cmd_start "$@" ;;
    exec) shift; cmd_exec "$@" ;;
    stop) shift; cmd_stop "$@" ;;
    list) shift; cmd_list ;;
    __supervise) shift; cmd_supervise "$@" ;;
    __launch) shift; cmd_launch "$@" ;;
    __init) shift; cmd_init "$@" ;;
    -h|--help) usage 0 ;;
    "") usage ;;
    *) die "unknown command '$1' (start, exec, stop, list)" ;;
esac
