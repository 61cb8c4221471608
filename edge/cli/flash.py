"""``edge flash``: prepare Raspberry Pi OS cards whose first boot installs edgeline."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from edge.cli.common import EXIT_OK, UsageError


def register(commands: Any) -> None:
    flash = commands.add_parser(
        "flash",
        help="prepare a Raspberry Pi OS card so its first boot installs edgeline",
        description="Prepare the boot partition of a freshly written Raspberry Pi OS card"
        " (mounted at --boot) so that the first boot installs the bundle with no network and"
        " starts the service: cloud-init's user-data, network-config and meta-data on Trixie,"
        " Raspberry Pi Imager's firstrun.sh on Bookworm (an Imager firstrun.sh already there"
        " runs first). The device gets its config, a new command key (a copy stays in --keys)"
        " and, with --ca, a client certificate; the first boot deletes the secrets from the"
        " boot partition. --fleet prepares one directory per CSV row in --out instead, with a"
        " manifest; --from puts one of them on a card.",
    )
    flash.add_argument("--boot", metavar="DIR", help="the card's mounted boot partition")
    flash.add_argument("--id", metavar="DEVICE_ID", help="the device id ([device] id)")
    flash.add_argument("--hostname", metavar="NAME", help="the host name (default: the id)")
    flash.add_argument(
        "--from",
        dest="prepared",
        metavar="DIR",
        help="put a directory prepared with --fleet on the card at --boot",
    )
    flash.add_argument("--fleet", metavar="CSV", help="devices: columns id, hostname, wifi_ssid")
    flash.add_argument("--out", metavar="DIR", help="with --fleet: one directory per device")
    flash.add_argument("--bundle", metavar="FILE.tar.gz", help="a bundle from edge bundle")
    flash.add_argument(
        "--config",
        metavar="FILE",
        help="the device config (default: the bundle's, else its example)",
    )
    flash.add_argument(
        "--os",
        choices=["bookworm", "trixie"],
        default=None,
        help="the card's Raspberry Pi OS (default: read from --boot)",
    )
    flash.add_argument(
        "--user", default="pi", metavar="NAME", help="the login user, password locked (default: pi)"
    )
    flash.add_argument("--ssh-key", metavar="FILE", help="the user's ssh public key (.pub)")
    flash.add_argument("--wifi-ssid", metavar="SSID", help="the Wi-Fi network")
    flash.add_argument(
        "--wifi-psk-file",
        metavar="FILE",
        help="a file (mode 0600) holding the Wi-Fi passphrase or 64 hex digits",
    )
    flash.add_argument("--wifi-country", metavar="CC", help="the Wi-Fi country, such as GB")
    flash.add_argument("--ca", metavar="CA.pem", help="a CA certificate: sign a client cert")
    flash.add_argument("--ca-key", metavar="CA.key", help="the CA's private key (mode 0600)")
    flash.add_argument(
        "--keys",
        default="edgeline-keys",
        metavar="DIR",
        help="where this machine keeps each device's command key (one card;"
        " default ./edgeline-keys)",
    )
    flash.add_argument(
        "--force", action="store_true", help="with --fleet: replace device directories that exist"
    )
    flash.set_defaults(handler=cmd_flash)


SHARED = ("bundle", "config", "ssh_key", "wifi_ssid", "wifi_psk_file", "wifi_country",
          "ca", "ca_key")  # fmt: skip


def cmd_flash(args: argparse.Namespace) -> int:
    for name, value in vars(args).items():
        if isinstance(value, list):  # argparse's value for ``--user=--``: the '--' it ate
            setattr(args, name, " ".join(value) or "--")
    if args.prepared is not None:
        return _from(args)
    if args.fleet is not None:
        return _fleet(args)
    if args.boot is None or args.id is None:
        raise UsageError(
            "give --boot DIR --id DEVICE_ID (one card), --fleet CSV --out DIR (a fleet), or"
            " --boot DIR --from DIR (a prepared directory)"
        )
    if args.out is not None or args.force:
        raise UsageError("--out and --force go with --fleet")
    from edge.deploy.card import detect_os
    from edge.deploy.flash import flash_card

    boot = Path(args.boot)
    settings = _settings(args, detect_os(boot, args.os))
    done = flash_card(boot, args.id, settings, hostname=args.hostname, keys=Path(args.keys))
    applied, device = done.applied, done.device
    notes = "".join(f"; {note}" for note in applied.notes)
    key = f"{'new' if done.new_key else 'kept'} command key in {done.key_file}"
    cert = f"; client certificate sha256 {done.issued.sha256}" if done.issued else ""
    print(
        f"{boot}: Raspberry Pi OS {applied.os} card for device {device.id}"
        f" (host name {device.hostname}), edgeline {settings.bundle.version}: wrote"
        f" {', '.join(applied.written)}{notes}; {key}{cert}. Eject it and boot the Pi: the"
        " first boot installs edgeline and starts it."
    )
    return EXIT_OK


def _settings(args: argparse.Namespace, os_name: str) -> Any:
    from edge.deploy.flash import load_settings

    if args.bundle is None:
        raise UsageError("--bundle: give the bundle to install (edge bundle builds one)")
    path = {name: Path(value) if value is not None else None for name, value in (
        ("config", args.config), ("ssh_key", args.ssh_key), ("wifi_psk_file", args.wifi_psk_file),
        ("ca", args.ca), ("ca_key", args.ca_key),
    )}  # fmt: skip
    return load_settings(
        bundle=Path(args.bundle),
        os_name=os_name,
        user=args.user,
        wifi_ssid=args.wifi_ssid,
        wifi_country=args.wifi_country,
        **path,
    )


def _fleet(args: argparse.Namespace) -> int:
    if args.out is None:
        raise UsageError("--fleet needs --out DIR (one directory per device goes there)")
    if args.boot is not None or args.id is not None or args.hostname is not None:
        raise UsageError("--fleet prepares directories: --boot, --id and --hostname go without it")
    if args.os is None:
        raise UsageError("--fleet needs --os bookworm|trixie (there is no card to read it from)")
    from edge.deploy.flash import prepare_fleet

    settings = _settings(args, args.os)
    fleet = prepare_fleet(Path(args.fleet), Path(args.out), settings, force=args.force)
    ids = ", ".join(item.device.id for item in fleet.devices)
    certs = " and client certificates" if settings.authority is not None else ""
    print(
        f"{fleet.out}: {len(fleet.devices)} devices prepared for Raspberry Pi OS {settings.os}"
        f" with edgeline {settings.bundle.version} ({ids}); command keys{certs} in"
        f" {fleet.out / 'keys'}, the list in {fleet.manifest}. For each card: edge flash"
        f" --boot BOOT --from {fleet.out}/<id>"
    )
    return EXIT_OK


def _from(args: argparse.Namespace) -> int:
    given = [f"--{n.replace('_', '-')}" for n in ("id", "hostname", "fleet", "out", *SHARED)
             if getattr(args, n) is not None]  # fmt: skip
    if args.user != "pi":
        given.append("--user")
    if given or args.force:
        raise UsageError(
            f"--from takes a prepared directory as it is: {', '.join(given) or '--force'} went"
            " into it when it was prepared"
        )
    if args.boot is None:
        raise UsageError("--from needs --boot DIR (the card's mounted boot partition)")
    from edge.deploy.flash import apply

    prepared = Path(args.prepared)
    applied = apply(Path(args.boot), prepared, args.os)
    notes = "".join(f"; {note}" for note in applied.notes)
    print(
        f"{args.boot}: Raspberry Pi OS {applied.os} card from {prepared}: wrote"
        f" {', '.join(applied.written)}{notes}. Eject it and boot the Pi."
    )
    return EXIT_OK
