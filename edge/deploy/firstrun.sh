#!/bin/sh
# edgeline-firstrun: written by `edge flash` for Raspberry Pi OS Bookworm.
#
# Raspberry Pi Imager's mechanism: cmdline.txt ends with
#   systemd.run=/boot/firmware/firstrun.sh systemd.run_success_action=reboot
#   systemd.unit=kernel-command-line.target
# so the first boot runs this script (as root, before the network) and then reboots. It
# runs the Imager's own firstrun.sh first when the card had one (kept as
# edgeline/imager-firstrun.sh), sets the host name, the user's ssh key and the Wi-Fi
# (a NetworkManager connection, mode 0600), runs edgeline/firstboot.sh, and then removes
# itself from cmdline.txt and from the card, whatever failed: a card must never boot into
# this again. What happened is in edgeline/firstboot.log on the boot partition.
#
# --boot DIR and --root DIR (tests, image builders) work on a mounted boot partition and a
# root directory instead of /boot/firmware and /: then nothing runs that changes this
# machine (no Imager script, no usermod, systemctl, raspi-config or rfkill).
set +e

BOOT=/boot/firmware
ROOT=""
while [ $# -gt 0 ]; do
    case "$1" in
        --boot) BOOT=$2; shift 2 ;;
        --root) ROOT=$2; shift 2 ;;
        *) echo "firstrun.sh: unknown argument: $1" >&2; exit 2 ;;
    esac
done
CARD="$BOOT/edgeline"
LOG="$CARD/firstboot.log"
say() { echo "edgeline firstrun: $*"; echo "$(date -u +%FT%TZ) $*" >>"$LOG" 2>/dev/null; }
skip() { say "skipped (--root): $*"; }

# DEVICE_HOSTNAME, FIRST_USER, WIFI_COUNTRY
# shellcheck source=/dev/null
. "$CARD/device.env"

# 1. The Imager's settings (user, password, locale, ...), as the Imager would have run them.
if [ -f "$CARD/imager-firstrun.sh" ]; then
    if [ -n "$ROOT" ]; then
        skip "the Imager's firstrun.sh"
    else
        bash "$CARD/imager-firstrun.sh"
        say "ran the Imager's firstrun.sh (exit $?)"
    fi
fi

# 2. The host name.
if [ -n "$DEVICE_HOSTNAME" ]; then
    old=$(tr -d ' \t\n\r' <"$ROOT/etc/hostname" 2>/dev/null)
    if [ -z "$ROOT" ] && [ -x /usr/lib/raspberrypi-sys-mods/imager_custom ]; then
        /usr/lib/raspberrypi-sys-mods/imager_custom set_hostname "$DEVICE_HOSTNAME"
    else
        mkdir -p "$ROOT/etc"
        echo "$DEVICE_HOSTNAME" >"$ROOT/etc/hostname"
        if [ -n "$old" ] && [ -f "$ROOT/etc/hosts" ]; then
            sed -i "s/127\.0\.1\.1.*$old/127.0.1.1\t$DEVICE_HOSTNAME/g" "$ROOT/etc/hosts"
        fi
    fi
    say "host name $DEVICE_HOSTNAME"
fi

# 3. The user (the image's first user, renamed as the Imager does), key-only ssh.
if [ -f "$CARD/authorized_keys" ]; then
    if [ -n "$ROOT" ]; then
        mkdir -p "$ROOT/home/$FIRST_USER/.ssh"
        install -m 600 "$CARD/authorized_keys" "$ROOT/home/$FIRST_USER/.ssh/authorized_keys"
        skip "userconf $FIRST_USER, passwd -l, systemctl enable ssh"
    else
        if [ -x /usr/lib/userconf-pi/userconf ]; then
            /usr/lib/userconf-pi/userconf "$FIRST_USER" ''
        elif ! id "$FIRST_USER" >/dev/null 2>&1; then
            useradd -m -s /bin/bash -G sudo "$FIRST_USER"
        fi
        passwd -l "$FIRST_USER" >/dev/null
        home=$(getent passwd "$FIRST_USER" | cut -d: -f6)
        install -o "$FIRST_USER" -m 700 -d "$home/.ssh"
        install -o "$FIRST_USER" -m 600 "$CARD/authorized_keys" "$home/.ssh/authorized_keys"
        mkdir -p /etc/ssh/sshd_config.d
        echo "PasswordAuthentication no" >/etc/ssh/sshd_config.d/10-edgeline.conf
        systemctl enable ssh
    fi
    say "user $FIRST_USER: ssh with its key only"
fi

# 4. The Wi-Fi: a NetworkManager connection, and the country that unblocks the radio.
if [ -f "$CARD/wifi.nmconnection" ]; then
    connections="$ROOT/etc/NetworkManager/system-connections"
    mkdir -p "$connections"
    install -m 600 "$CARD/wifi.nmconnection" "$connections/edgeline-wifi.nmconnection"
    say "Wi-Fi connection edgeline-wifi"
fi
if [ -n "$WIFI_COUNTRY" ]; then
    if [ -n "$ROOT" ]; then
        skip "raspi-config nonint do_wifi_country $WIFI_COUNTRY, rfkill unblock wifi"
    else
        if command -v raspi-config >/dev/null; then
            raspi-config nonint do_wifi_country "$WIFI_COUNTRY"
        fi
        rfkill unblock wifi
        for state in /var/lib/systemd/rfkill/*:wlan; do
            if [ -f "$state" ]; then echo 0 >"$state"; fi
        done
    fi
    say "Wi-Fi country $WIFI_COUNTRY"
fi

# 5. edgeline itself; the service starts on the boot after this one.
if [ -n "$ROOT" ]; then
    sh "$CARD/firstboot.sh" --boot "$BOOT" --root "$ROOT" --no-start
else
    sh "$CARD/firstboot.sh" --boot "$BOOT" --no-start
fi
say "firstboot.sh exit $?"

# 6. Never again: out of cmdline.txt (its other words kept), off the card.
sed -i -e 's| systemd\.run=[^ ]*||g' -e 's| systemd\.run_success_action=[^ ]*||g' \
    -e 's| systemd\.unit=kernel-command-line\.target||g' "$BOOT/cmdline.txt"
rm -f "$BOOT/firstrun.sh"
exit 0
