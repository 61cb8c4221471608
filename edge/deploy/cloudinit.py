"""cloud-init's NoCloud files for a Raspberry Pi OS Trixie card: ``user-data``,
``network-config`` and ``meta-data`` on the boot partition, which Trixie's cloud-init reads
(its ``datasource: NoCloud: seedfrom: file:///boot/firmware``).

The YAML is written by hand: every value a user gives goes through :func:`scalar` (a JSON
string, which YAML reads as a double-quoted scalar), so no SSID, host name or key can end
a line or start a new key. ``user-data`` passes ``cloud-init schema --config-file``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

# What the first user is in, as Raspberry Pi OS's own image and Imager make it.
GROUPS = (
    "users", "adm", "dialout", "audio", "netdev", "video", "plugdev", "cdrom", "games",
    "input", "gpio", "spi", "i2c", "render", "sudo",
)  # fmt: skip
BOOT = "/boot/firmware"


def scalar(value: str) -> str:
    """``value`` as a YAML double-quoted scalar (JSON's escapes are a subset of YAML's)."""
    return json.dumps(value)


def firstboot_command(boot: str = BOOT) -> list[str]:
    """The runcmd entry that runs edgeline's first-boot script from the boot partition."""
    return ["sh", f"{boot}/edgeline/firstboot.sh", "--boot", boot]


def user_data(device_id: str, hostname: str, user: str, ssh_keys: Sequence[str]) -> str:
    """``user-data``: the host name, one user with a locked password (ssh with its keys
    only), and runcmd running edgeline's first-boot script."""
    lines = [
        "#cloud-config",
        f"# Written by edge flash for the edgeline device {device_id}.",
        f"hostname: {scalar(hostname)}",
        "manage_etc_hosts: true",
        "# The one user: its password locked, so ssh takes its keys only. Naming users",
        "# here also replaces the image's default user.",
        "users:",
        f"  - name: {scalar(user)}",
        f"    groups: [{', '.join(GROUPS)}]",
        "    shell: /bin/bash",
        "    lock_passwd: true",
        '    sudo: "ALL=(ALL) NOPASSWD:ALL"',
    ]
    if ssh_keys:
        lines.append("    ssh_authorized_keys:")
        lines += [f"      - {scalar(key)}" for key in ssh_keys]
    lines.append("ssh_pwauth: false")
    if ssh_keys:
        lines += [
            "# Raspberry Pi OS's own cloud-init module; the runcmd below enables ssh too.",
            "enable_ssh: true",
        ]
    lines.append("runcmd:")
    if ssh_keys:
        lines.append("  - [systemctl, enable, --now, ssh]")
    lines.append(f"  - [{', '.join(scalar(word) for word in firstboot_command())}]")
    return "\n".join(lines) + "\n"


def network_config(ssid: str | None, psk: str | None, country: str | None) -> str:
    """``network-config`` (netplan version 2): Ethernet with DHCP as the image has it, and
    the Wi-Fi network when one is given (``psk``: 64 hex digits, as Imager writes it)."""
    lines = [
        "# Written by edge flash. netplan version 2; cloud-init applies it on the first boot.",
        "network:",
        "  version: 2",
        "  ethernets:",
        "    eth0:",
        "      dhcp4: true",
        "      optional: true",
    ]
    if ssid is not None:
        lines += ["  wifis:", "    wlan0:", "      dhcp4: true", "      optional: true"]
        if country:
            lines.append(f"      regulatory-domain: {scalar(country)}")
        lines += ["      access-points:", f"        {scalar(ssid)}:"]
        lines.append(f"          password: {scalar(psk or '')}")
    return "\n".join(lines) + "\n"


def meta_data(instance_id: str, hostname: str) -> str:
    """``meta-data``: local mode (user-data acted on before the network), this card's
    instance id (a new one makes cloud-init run its first-boot modules) and host name."""
    return (
        "# Written by edge flash.\n"
        "dsmode: local\n"
        f"instance-id: {scalar(instance_id)}\n"
        f"local-hostname: {scalar(hostname)}\n"
    )
