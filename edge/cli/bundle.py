"""``edge bundle``: build the offline install bundle for a device platform."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from edge.cli.common import EXIT_OK


def register(commands: Any) -> None:
    bundle = commands.add_parser(
        "bundle",
        help="build an offline install bundle for a device",
        description="Build FILE.tar.gz with everything a device needs to install edgeline with"
        " no network: edgeline's wheel, a binary wheel of every dependency for the target,"
        " install.sh, the systemd unit, and the config and models given. Refuses, naming"
        " them, packages with no binary wheel for the target; on linux_armv7l, where PyPI has"
        " no numpy wheel, the installer uses Debian's python3-numpy. Needs a checkout and the"
        " package index.",
    )
    bundle.add_argument(
        "--target",
        required=True,
        metavar="PLATFORM",
        help="linux_aarch64 (64-bit Pi OS), linux_armv7l (32-bit) or linux_x86_64",
    )
    bundle.add_argument(
        "--python",
        default="3.11",
        metavar="X.Y",
        help="the device's Python: 3.11 (Bookworm, default) or 3.13 (Trixie)",
    )
    bundle.add_argument("--out", required=True, metavar="FILE.tar.gz", help="where to write it")
    bundle.add_argument("--config", metavar="FILE", help="installed as /etc/edgeline/edge.toml")
    bundle.add_argument("--models", metavar="DIR", help="installed in /etc/edgeline/models")
    bundle.set_defaults(handler=cmd_bundle)


def cmd_bundle(args: argparse.Namespace) -> int:
    from edge.deploy.bundle import build_bundle

    built = build_bundle(
        args.target,
        Path(args.out),
        python=args.python,
        config=Path(args.config) if args.config else None,
        models=Path(args.models) if args.models else None,
    )
    notes = ""
    if built.system_packages:
        notes += f"; Debian packages used instead: {', '.join(built.system_packages)}"
    if built.left_out:
        notes += f"; not for this platform: {', '.join(built.left_out)}"
    print(
        f"{built.path}: edgeline {built.version} for {built.target} (Python {built.python}),"
        f" {len(built.wheels)} wheels{notes}, {built.size / 1e6:.1f} MB."
        " On the device: tar xzf, then sudo ./install.sh"
    )
    return EXIT_OK
