#!/bin/sh
# The device's half of edge deploy, sent over ssh each time (sh -s -- ACTION ...), so that
# it always matches the edge deploy that sends it. One action per call; lines of key=value
# on stdout for edge deploy to read; a failure is one line on stderr and exit 1.
#
#   facts                    machine, python, uid, the current and previous releases
#   mkdir                    a private directory for the upload; prints dir=DIR
#   unpack BUNDLE            unpack an uploaded bundle beside it; prints top=DIR
#   install TOP              run TOP/install.sh (a new release, current switched to it)
#   restart                  restart the service on the current release; prints pid=
#   health                   active=, pid=, then the status file as JSON after a status: line
#   switch CURRENT [PREV]    point current (and previous) at those releases
#   prune                    remove every release but current and previous
#   forget DIR               remove what deploy uploaded (DIR under the temporary directory)
#
# --root DIR (before the action) works under DIR as install.sh --root does. There is no
# systemd there, so the service is run here: started in a session of its own with its pid
# in DIR/run/edgeline.pid, its output in DIR/var/log/edgeline.log, stopped with SIGTERM.
set -eu

ROOT=""
if [ "${1:-}" = "--root" ]; then ROOT=$2; shift 2; fi
ACTION=${1:-}
[ $# -eq 0 ] || shift
OPT="$ROOT/opt/edgeline"
CONFIG="$ROOT/etc/edgeline/edge.toml"
PIDFILE="$ROOT/run/edgeline.pid"
UNIT=edgeline.service

fail() { echo "$*" >&2; exit 1; }
with_systemd() { [ -z "$ROOT" ] && [ -d /run/systemd/system ]; }
# Alive and not a zombie (a dead child that nobody reaped still answers kill -0).
running() { kill -0 "$1" 2>/dev/null && [ "$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -c1)" != Z ]; }
release_of() { readlink "$OPT/$1" 2>/dev/null | sed 's|^releases/||' || true; }

# The pid of the running service, or nothing.
service_pid() {
    if with_systemd; then
        pid=$(systemctl show -p MainPID --value "$UNIT" 2>/dev/null || echo 0)
        [ "$pid" != 0 ] && echo "$pid"
    elif [ -s "$PIDFILE" ]; then
        pid=$(cat "$PIDFILE")
        if running "$pid"; then echo "$pid"; fi
    fi
    return 0
}

stop_here() {
    pid=$(service_pid)
    [ -n "$pid" ] || return 0
    kill -TERM "$pid" 2>/dev/null || return 0
    # The runtime flushes and says stopped within seconds; after 30 it is killed.
    waited=0
    while running "$pid"; do
        if [ "$waited" -ge 300 ]; then kill -KILL "$pid" 2>/dev/null || true; break; fi
        sleep 0.1
        waited=$((waited + 1))
    done
    rm -f "$PIDFILE"
}

start_here() {
    [ -x "$OPT/current/bin/edge" ] || fail "no release installed in $OPT/current"
    mkdir -p "$ROOT/run" "$ROOT/var/log"
    # setsid: the service outlives this ssh session; no descriptor of the session kept.
    setsid "$OPT/current/bin/edge" run --config "$CONFIG" \
        </dev/null >>"$ROOT/var/log/edgeline.log" 2>&1 &
    echo $! >"$PIDFILE"
}

case "$ACTION" in
    facts)
        echo "machine=$(uname -m)"
        echo "python=$(python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null || true)"
        echo "uid=$(id -u)"
        echo "current=$(release_of current)"
        echo "previous=$(release_of previous)"
        ;;
    mkdir)
        echo "dir=$(mktemp -d "${TMPDIR:-/tmp}/edgeline-deploy.XXXXXX")"
        ;;
    unpack)
        bundle=$1
        dir=$(dirname "$bundle")
        tar xzf "$bundle" -C "$dir" || fail "cannot unpack $bundle on the device"
        rm -f "$bundle"
        for top in "$dir"/*/; do
            [ -f "$top/install.sh" ] && { echo "top=${top%/}"; exit 0; }
        done
        fail "$bundle holds no install.sh"
        ;;
    install)
        top=$1
        if [ -n "$ROOT" ]; then
            sh "$top/install.sh" --root "$ROOT" >&2
        else
            sh "$top/install.sh" >&2
        fi
        echo "current=$(release_of current)"
        echo "previous=$(release_of previous)"
        ;;
    restart)
        if with_systemd; then
            systemctl daemon-reload
            # --no-block: a release that never gets ready must not hold deploy past its timeout.
            systemctl restart --no-block "$UNIT"
        else
            stop_here
            start_here
        fi
        echo "pid=$(service_pid)"
        ;;
    health)
        if with_systemd; then
            echo "active=$(systemctl is-active "$UNIT" 2>/dev/null || true)"
        elif [ -n "$(service_pid)" ]; then
            echo "active=active"
        else
            echo "active=inactive"
        fi
        echo "pid=$(service_pid)"
        echo "current=$(release_of current)"
        # The service's last word, for a release that dies: why, without a second login.
        if with_systemd; then
            echo "last_log=$(journalctl -u "$UNIT" -n 1 -o cat --no-pager 2>/dev/null | tail -n 1)"
        elif [ -f "$ROOT/var/log/edgeline.log" ]; then
            echo "last_log=$(tail -n 1 "$ROOT/var/log/edgeline.log")"
        fi
        echo "status:"
        if [ -x "$OPT/current/bin/edge" ]; then
            "$OPT/current/bin/edge" status --config "$CONFIG" --json 2>/dev/null || true
        fi
        ;;
    switch)
        # switch CURRENT [PREVIOUS]: both links at once, each in one rename.
        [ -d "$OPT/releases/$1" ] || fail "no release $1 in $OPT/releases"
        ln -sfn "releases/$1" "$OPT/current.new"
        mv -fT "$OPT/current.new" "$OPT/current"
        if [ -n "${2:-}" ] && [ -d "$OPT/releases/$2" ]; then
            ln -sfn "releases/$2" "$OPT/previous.new"
            mv -fT "$OPT/previous.new" "$OPT/previous"
        else
            rm -f "$OPT/previous"
        fi
        echo "current=$(release_of current)"
        echo "previous=$(release_of previous)"
        ;;
    prune)
        # Only the current release and the one before are kept: an SD card is small.
        keep_current=$(release_of current)
        keep_previous=$(release_of previous)
        for release in "$OPT"/releases/*/; do
            [ -d "$release" ] || continue
            name=$(basename "$release")
            if [ "$name" != "$keep_current" ] && [ "$name" != "$keep_previous" ]; then
                rm -rf "$release"
                echo "removed=$name"
            fi
        done
        ;;
    forget)
        case "$1" in
            "${TMPDIR:-/tmp}"/edgeline-deploy.*) rm -rf "$1" ;;
            *) fail "not an upload directory: $1" ;;
        esac
        ;;
    *)
        fail "remote.sh: unknown action: $ACTION"
        ;;
esac
