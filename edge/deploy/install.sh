#!/bin/sh
# Install the edgeline release in this bundle, with no network.
#
#   sudo ./install.sh             the device: user, venv, config, state, unit, enable
#   ./install.sh --root DIR       everything under DIR (a staging root, paths as on the
#                                 device); no user, apt, chown or systemctl
#   sudo ./install.sh --no-start  enable the service but do not start it (a first boot
#                                 that installs its config after this, then starts it)
#
# Idempotent: a second run changes nothing and says so. Exit 2 on bad arguments, 1 on failure.
set -eu

BUNDLE=$(cd "$(dirname "$0")" && pwd)
ROOT=""
START=1
usage() { echo "usage: $0 [--root DIR] [--no-start]" >&2; exit 2; }
while [ $# -gt 0 ]; do
    case "$1" in
        --root) [ $# -ge 2 ] || usage; ROOT=$2; shift 2 ;;
        --root=*) ROOT=${1#--root=}; shift ;;
        --no-start) START=0; shift ;;
        -h|--help) echo "usage: $0 [--root DIR] [--no-start]"; exit 0 ;;
        *) echo "install.sh: unknown argument: $1" >&2; usage ;;
    esac
done
if [ -n "$ROOT" ]; then
    mkdir -p "$ROOT" && ROOT=$(cd "$ROOT" && pwd)
elif [ "$(id -u)" -ne 0 ]; then
    echo "install.sh: run as root (sudo), or with --root DIR to install into a directory" >&2
    exit 2
fi

# VERSION, TARGET, PYTHON_VERSION, SYSTEM_SITE_PACKAGES, SYSTEM_PACKAGES
# shellcheck source=/dev/null
. "$BUNDLE/bundle.env"

OPT="$ROOT/opt/edgeline"
RELEASE="$OPT/releases/$VERSION"
ETC="$ROOT/etc/edgeline"
STATE="$ROOT/var/lib/edgeline"
UNIT="$ROOT/etc/systemd/system/edgeline.service"
PYTHON=${PYTHON:-python3}
CHANGED=0
SKIPPED=""

say() { echo "edgeline: $*"; }
changed() { CHANGED=$((CHANGED + 1)); say "$*"; }
skip() { SKIPPED="$SKIPPED
  - $*"; }
fail() { echo "install.sh: $*" >&2; exit 1; }

is_pi() { grep -qs "Raspberry Pi" /proc/device-tree/model; }

# The device's Python must be the one the wheels were chosen for.
found=$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null) ||
    fail "no $PYTHON on this machine (Debian's python3 and python3-venv)"
[ "$found" = "$PYTHON_VERSION" ] ||
    fail "this bundle is for Python $PYTHON_VERSION and $PYTHON is $found: build one with edge bundle --python $found"

# System packages: python3-lgpio on a Pi (GPIO), and what the bundle stands in for.
apt_packages=""
for package in $SYSTEM_PACKAGES; do apt_packages="$apt_packages $package"; done
if is_pi; then apt_packages="$apt_packages python3-lgpio"; fi
if [ -n "$ROOT" ]; then
    [ -z "$apt_packages" ] || skip "apt-get install$apt_packages"
else
    for package in $apt_packages; do
        if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "ok installed"; then
            apt-get install -y --no-install-recommends "$package" ||
                fail "apt-get install $package failed (no network? install it from the card's image)"
            changed "installed $package"
        fi
    done
fi

# The system user, in the hardware groups that exist on this machine.
if [ -n "$ROOT" ]; then
    skip "creating the system user edgeline (groups gpio, i2c, dialout)"
else
    if ! id edgeline >/dev/null 2>&1; then
        useradd --system --user-group --home-dir /var/lib/edgeline \
            --shell /usr/sbin/nologin --comment "edgeline edge runtime" edgeline
        changed "created the system user edgeline"
    fi
    for group in gpio i2c dialout; do
        if getent group "$group" >/dev/null && ! id -nG edgeline | tr ' ' '\n' | grep -qx "$group"; then
            usermod -aG "$group" edgeline
            changed "added edgeline to group $group"
        fi
    done
fi

# The release's venv. A venv cannot be moved, so it is built in place and marked done last:
# a release without the mark is a half-finished one, rebuilt from scratch.
if [ -f "$RELEASE/.installed" ] && cmp -s "$RELEASE/.installed" "$BUNDLE/manifest.json"; then
    say "release $VERSION already installed"
else
    rm -rf "$RELEASE"
    mkdir -p "$OPT/releases"
    venv_options=""
    # python3-lgpio (a Pi) and the bundle's Debian stand-ins live in the system's site-packages.
    if [ "$SYSTEM_SITE_PACKAGES" = 1 ] || is_pi; then venv_options="--system-site-packages"; fi
    # shellcheck disable=SC2086
    "$PYTHON" -m venv $venv_options "$RELEASE" || fail "creating the venv $RELEASE failed"
    "$RELEASE/bin/python" -m pip install --quiet --disable-pip-version-check --no-index \
        --find-links "$BUNDLE/wheels" "edgeline==$VERSION" ||
        fail "installing edgeline $VERSION from $BUNDLE/wheels failed"
    cp "$BUNDLE/manifest.json" "$RELEASE/.installed"
    changed "installed release $VERSION in $RELEASE"
fi

# current -> releases/<version>, switched atomically (a rename over the old link); previous
# -> the release it replaced, what a rollback (edge deploy --rollback) goes back to.
was=$(readlink "$OPT/current" 2>/dev/null || true)
if [ "$was" != "releases/$VERSION" ]; then
    if [ -n "$was" ] && [ -d "$OPT/$was" ]; then
        ln -sfn "$was" "$OPT/previous.new"
        mv -fT "$OPT/previous.new" "$OPT/previous"
    fi
    ln -sfn "releases/$VERSION" "$OPT/current.new"
    mv -fT "$OPT/current.new" "$OPT/current"
    changed "current -> releases/$VERSION"
fi

# The config: the bundle's, or a commented example; an existing one is never overwritten.
mkdir -p "$ETC"
# The service writes edge.toml.new and edge.toml.previous beside it (a remote config).
chmod 0770 "$ETC"
[ -n "$ROOT" ] || chgrp edgeline "$ETC"
if [ -e "$ETC/edge.toml" ]; then
    if [ -f "$BUNDLE/config/edge.toml" ] && ! cmp -s "$BUNDLE/config/edge.toml" "$ETC/edge.toml"; then
        say "kept $ETC/edge.toml (the bundle's config differs; it is not applied)"
    fi
else
    source_config="$BUNDLE/edge.toml.example"
    [ -f "$BUNDLE/config/edge.toml" ] && source_config="$BUNDLE/config/edge.toml"
    cp "$source_config" "$ETC/edge.toml"
    chmod 0640 "$ETC/edge.toml"
    [ -n "$ROOT" ] || chgrp edgeline "$ETC/edge.toml"
    changed "wrote $ETC/edge.toml"
fi
if [ -d "$BUNDLE/models" ]; then
    for model in "$BUNDLE"/models/*; do
        [ -f "$model" ] || continue
        mkdir -p "$ETC/models"
        if ! cmp -s "$model" "$ETC/models/$(basename "$model")"; then
            cp "$model" "$ETC/models/" && chmod 0644 "$ETC/models/$(basename "$model")"
            changed "installed model $(basename "$model")"
        fi
    done
fi

# The state directory: the service's alone.
if [ ! -d "$STATE" ]; then
    mkdir -p "$STATE"
    changed "created $STATE"
fi
chmod 0700 "$STATE"
if [ -n "$ROOT" ]; then
    skip "chown edgeline: $STATE"
else
    chown edgeline:edgeline "$STATE"
fi

# The unit.
mkdir -p "$(dirname "$UNIT")"
if ! cmp -s "$BUNDLE/edgeline.service" "$UNIT"; then
    cp "$BUNDLE/edgeline.service" "$UNIT"
    chmod 0644 "$UNIT"
    changed "installed $UNIT"
    unit_changed=1
else
    unit_changed=0
fi
if [ -n "$ROOT" ]; then
    skip "systemctl daemon-reload, enable --now edgeline.service"
elif [ ! -d /run/systemd/system ]; then
    say "systemd is not running here: enable edgeline.service once it is"
else
    [ "$unit_changed" = 0 ] || systemctl daemon-reload
    if ! systemctl is-enabled --quiet edgeline.service; then
        if [ "$START" = 1 ]; then
            systemctl enable --now edgeline.service
            changed "enabled and started edgeline.service"
        else
            systemctl enable edgeline.service
            changed "enabled edgeline.service (not started: --no-start)"
        fi
    elif [ "$CHANGED" -gt 0 ] && systemctl is-active --quiet edgeline.service; then
        say "restart to run what changed: systemctl restart edgeline"
    fi
fi

if [ -n "$SKIPPED" ]; then
    say "skipped (--root $ROOT):$SKIPPED"
fi
if [ "$CHANGED" -eq 0 ]; then
    say "nothing changed: edgeline $VERSION is installed"
else
    say "edgeline $VERSION installed ($CHANGED changes)"
fi
