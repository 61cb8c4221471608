"""A Raspberry Pi OS card's boot partition: which release wrote it, its kernel command line
(``cmdline.txt``), and what Raspberry Pi Imager may already have put there.

Bookworm runs a first-boot script the way Imager does: ``firstrun.sh`` on the boot partition
and three words appended to ``cmdline.txt``'s single line. Imager itself writes
``systemd.run=/boot/firstrun.sh``; Bookworm's initramfs (raspberrypi-sys-mods'
``imager_fixup``) then rewrites ``/boot/`` to ``/boot/firmware/``, where Bookworm mounts the
partition, and reboots once more. edge flash writes the ``/boot/firmware/`` path directly,
which that fix-up leaves alone.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from pathlib import Path

from edge.errors import UsageError

OSES = ("bookworm", "trixie")
CLOUD_INIT_FILES = ("user-data", "meta-data", "network-config")
HOOK = (
    "systemd.run=/boot/firmware/firstrun.sh",
    "systemd.run_success_action=reboot",
    "systemd.unit=kernel-command-line.target",
)
# The first-boot scripts a hook may already run: Imager's (before and after its fix-up).
CHAINABLE = ("/boot/firstrun.sh", "/boot/firmware/firstrun.sh")
OURS = "edgeline-firstrun"  # in the first lines of edge flash's firstrun.sh
REGDOM = "cfg80211.ieee80211_regdom="


def detect_os(boot: Path, given: str | None = None) -> str:
    """``given``, or the release that wrote the boot partition at ``boot``: cloud-init's
    files mean Trixie, a ``cmdline.txt`` without them Bookworm."""
    if not boot.is_dir():
        raise UsageError(f"--boot: {boot} is not a directory (mount the card's boot partition)")
    if given is not None:
        if given not in OSES:
            raise UsageError(f"--os: expected one of {', '.join(OSES)}, found {given!r}")
        if given == "bookworm" and not (boot / "cmdline.txt").is_file():
            raise UsageError(f"--boot: {boot} has no cmdline.txt (a Bookworm card's has one)")
        return given
    if any((boot / name).is_file() for name in CLOUD_INIT_FILES):
        return "trixie"
    if (boot / "cmdline.txt").is_file():
        return "bookworm"
    raise UsageError(
        f"not a Raspberry Pi OS boot partition: {boot} has no cmdline.txt and no cloud-init"
        " files (user-data, meta-data, network-config); mount the card's first partition,"
        " or pass --os bookworm|trixie"
    )


def with_words(text: str, words: tuple[str, ...]) -> str:
    """``cmdline.txt``'s text with ``words`` appended to its first line, once.

    Every first-boot hook already there (``systemd.run=``, its success and failure actions,
    ``systemd.unit=kernel-command-line.target``) goes first when ``words`` bring one, and
    so does a Wi-Fi regulatory domain when they bring another: the line then holds exactly
    one of each. The other words keep their order; the lines after the first, which the
    firmware ignores, are kept as they are. A hook running anything but Imager's
    ``firstrun.sh`` is refused: the kernel runs one ``systemd.run`` only."""
    first, newline, rest = text.partition("\n")
    kept = first.replace("\r", " ").split()
    if any(word.startswith("systemd.run=") for word in words):
        for word in kept:
            if word.startswith("systemd.run=") and word.partition("=")[2] not in CHAINABLE:
                raise UsageError(
                    f"cmdline.txt already runs {word.partition('=')[2]!r} at boot"
                    " (systemd.run=): edge flash can chain Imager's firstrun.sh, not that"
                )
        kept = [word for word in kept if not _hook_word(word)]
    if any(word.startswith(REGDOM) for word in words):
        kept = [word for word in kept if not word.startswith(REGDOM)]
    line = " ".join([*kept, *(word for word in words if word not in kept)])
    return line + "\n" + (rest if newline else "")


def _hook_word(word: str) -> bool:
    return word.startswith(
        ("systemd.run=", "systemd.run_success_action=", "systemd.run_failure_action=")
    ) or word in ("systemd.unit=kernel-command-line.target",)


def is_ours(script: str) -> bool:
    """Whether a ``firstrun.sh`` is the one edge flash writes."""
    return OURS in "\n".join(script.splitlines()[:3])


def imager_part(script: str) -> str:
    """What to keep of an Imager ``firstrun.sh`` to run before ours: everything before its
    own clean-up (the first line removing ``firstrun.sh``, then its ``cmdline.txt`` edit and
    ``exit 0``), cut where Bookworm's ``imager_fixup`` cuts it."""
    lines = script.splitlines()
    end = next(
        (i for i, line in enumerate(lines) if re.search(r"rm.*firstrun\.sh$", line)), len(lines)
    )
    return "\n".join(lines[:end]) + "\n"


def wpa_psk(passphrase: str, ssid: str) -> str:
    """The 64-hex-digit WPA2 key for a passphrase (PBKDF2-SHA1, 4096 rounds, the SSID as
    salt), as wpa_passphrase and Imager compute it: the passphrase itself never goes on the
    card. A key given as 64 hex digits is returned as it is."""
    if len(passphrase) == 64:
        return passphrase.lower()
    key = hashlib.pbkdf2_hmac("sha1", passphrase.encode("ascii"), ssid.encode("utf-8"), 4096, 32)
    return key.hex()


def nm_connection(ssid: str, psk: str, *, connection_id: str = "edgeline-wifi") -> str:
    """A NetworkManager keyfile for a WPA2 network (``psk``: 64 hex digits). An SSID of
    anything but plain letters, digits, ``-``, ``_``, ``.`` and inner spaces is written as
    its bytes (``ssid=104;105;``), which the keyfile format takes without escaping."""
    plain = re.fullmatch(r"[A-Za-z0-9_.-]([A-Za-z0-9 _.-]*[A-Za-z0-9_.-])?", ssid)
    ssid_value = ssid if plain else "".join(f"{byte};" for byte in ssid.encode("utf-8"))
    return (
        "[connection]\n"
        f"id={connection_id}\n"
        f"uuid={uuid.uuid4()}\n"
        "type=wifi\n"
        "autoconnect=true\n"
        "\n[wifi]\n"
        "mode=infrastructure\n"
        f"ssid={ssid_value}\n"
        "\n[wifi-security]\n"
        "key-mgmt=wpa-psk\n"
        f"psk={psk}\n"
        "\n[ipv4]\n"
        "method=auto\n"
        "\n[ipv6]\n"
        "method=auto\n"
        "addr-gen-mode=default\n"
    )
