#!/bin/sh
# edgeline's first boot, as `edge flash` put it on a Raspberry Pi OS card: install the
# bundle in <boot>/edgeline/ with no network, give the device its own files, then delete
# the secrets from the boot partition (FAT: anyone on the device can read it).
#
#   sh /boot/firmware/edgeline/firstboot.sh [--boot DIR] [--root DIR] [--no-start]
#
# --boot  the boot partition (default: the directory above this script's)
# --root  install under DIR instead of / (paths as on the device; no user, chown or
#         systemctl), as install.sh --root does
# --no-start  enable edgeline.service but do not start it (firstrun.sh reboots next)
#
# Bookworm's firstrun.sh and Trixie's cloud-init runcmd both run it. Idempotent: once done
# it leaves <boot>/edgeline/installed, and a second run does nothing. Everything it says
# also goes to <boot>/edgeline/firstboot.log, readable from a laptop. Exit 2 on bad
# arguments, 1 on failure (the secrets then stay, so that it can be run again by hand).
set -eu

HERE=$(cd "$(dirname "$0")" && pwd)
BOOT=""
ROOT=""
START=1
usage() { echo "usage: $0 [--boot DIR] [--root DIR] [--no-start]" >&2; exit 2; }
while [ $# -gt 0 ]; do
    case "$1" in
        --boot) [ $# -ge 2 ] || usage; BOOT=$2; shift 2 ;;
        --boot=*) BOOT=${1#--boot=}; shift ;;
        --root) [ $# -ge 2 ] || usage; ROOT=$2; shift 2 ;;
        --root=*) ROOT=${1#--root=}; shift ;;
        --no-start) START=0; shift ;;
        -h|--help) echo "usage: $0 [--boot DIR] [--root DIR] [--no-start]"; exit 0 ;;
        *) echo "firstboot.sh: unknown argument: $1" >&2; usage ;;
    esac
done
BOOT=${BOOT:-$(dirname "$HERE")}
[ -d "$BOOT/edgeline" ] || { echo "firstboot.sh: no edgeline/ in $BOOT" >&2; exit 2; }
BOOT=$(cd "$BOOT" && pwd)
if [ -n "$ROOT" ]; then
    mkdir -p "$ROOT" && ROOT=$(cd "$ROOT" && pwd)
elif [ "$(id -u)" -ne 0 ]; then
    echo "firstboot.sh: run as root, or with --root DIR to install into a directory" >&2
    exit 2
fi

CARD="$BOOT/edgeline"
LOG="$CARD/firstboot.log"
DONE="$CARD/installed"
ETC="$ROOT/etc/edgeline"

say() { echo "edgeline firstboot: $*"; echo "$(date -u +%FT%TZ) $*" >>"$LOG" 2>/dev/null || true; }
fail() { say "failed: $*"; echo "firstboot.sh: $*" >&2; exit 1; }

if [ -f "$DONE" ]; then
    say "nothing to do: $(cat "$DONE")"
    exit 0
fi

# DEVICE_ID, BUNDLE, BUNDLE_SHA256, SECRETS (paths relative to the boot partition)
# shellcheck source=/dev/null
. "$CARD/device.env"

# The bundle, checked against what edge flash recorded (a card can be written badly).
[ -f "$CARD/$BUNDLE" ] || fail "no bundle $CARD/$BUNDLE"
found=$(sha256sum "$CARD/$BUNDLE" | cut -d' ' -f1)
[ "$found" = "$BUNDLE_SHA256" ] || fail "$CARD/$BUNDLE is damaged (sha256 $found, expected $BUNDLE_SHA256)"

# Unpacked on the root file system: /tmp may be a small tmpfs on a Pi.
mkdir -p "$ROOT/var/tmp"
WORK=$(mktemp -d "$ROOT/var/tmp/edgeline-firstboot.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
tar -xzf "$CARD/$BUNDLE" -C "$WORK" --no-same-owner || fail "cannot unpack $CARD/$BUNDLE"
TOP=""
for candidate in "$WORK"/*; do
    if [ -f "$candidate/install.sh" ]; then TOP=$candidate; fi
done
[ -n "$TOP" ] || fail "$CARD/$BUNDLE has no install.sh"

# The device's own files first: install.sh never replaces an existing edge.toml.
umask 022
[ -f "$CARD/edge.toml" ] || fail "no $CARD/edge.toml"
mkdir -p "$ETC"
put() {  # put SOURCE TARGET MODE: a whole new file, renamed into place
    cp "$1" "$2.new" && chmod "$3" "$2.new" && mv -f "$2.new" "$2"
}
put "$CARD/edge.toml" "$ETC/edge.toml" 0640
say "wrote $ETC/edge.toml for device $DEVICE_ID"
if [ -f "$CARD/command.key" ]; then
    put "$CARD/command.key" "$ETC/command.key" 0600
    say "wrote $ETC/command.key"
fi
if [ -d "$CARD/tls" ]; then
    mkdir -p "$ETC/tls"
    for name in client.crt ca.crt; do
        if [ -f "$CARD/tls/$name" ]; then put "$CARD/tls/$name" "$ETC/tls/$name" 0644; fi
    done
    if [ -f "$CARD/tls/client.key" ]; then put "$CARD/tls/client.key" "$ETC/tls/client.key" 0600; fi
    say "wrote $ETC/tls"
fi

# The release, the user, the unit: install.sh, started only once its config is in place.
set -- --no-start
if [ -n "$ROOT" ]; then set -- "$@" --root "$ROOT"; fi
{ sh "$TOP/install.sh" "$@" 2>&1; echo $? >"$WORK/status"; } | tee -a "$LOG"
[ "$(cat "$WORK/status")" = 0 ] || fail "install.sh failed (see $LOG)"

# The service's user owns its secrets (mode 0600, as edgeline insists) and reads its config.
if [ -z "$ROOT" ]; then
    chgrp edgeline "$ETC/edge.toml"
    for secret in "$ETC/command.key" "$ETC/tls/client.key"; do
        if [ -f "$secret" ]; then chown edgeline:edgeline "$secret"; fi
    done
fi

# The secrets leave the boot partition. (Flash memory may keep old blocks: shred is a best
# effort there, not a guarantee.)
for secret in $SECRETS; do
    if [ -f "$BOOT/$secret" ]; then
        shred -u "$BOOT/$secret" 2>/dev/null || rm -f "$BOOT/$secret"
        say "deleted $secret from the boot partition"
    fi
done
if [ -f "$CARD/network-config.after" ]; then  # cloud-init's, without the Wi-Fi password
    mv -f "$CARD/network-config.after" "$BOOT/network-config"
fi
rm -f "$CARD/$BUNDLE"  # installed in /opt/edgeline/releases now; the space is the card's

# shellcheck source=/dev/null
VERSION=$(. "$TOP/bundle.env" && echo "$VERSION")
echo "edgeline $VERSION installed for device $DEVICE_ID on $(date -u +%FT%TZ)" >"$DONE"
say "done: $(cat "$DONE")"

if [ -z "$ROOT" ] && [ "$START" = 1 ] && [ -d /run/systemd/system ]; then
    systemctl start --no-block edgeline.service
    say "started edgeline.service"
fi
