"""``edge install``: install edgeline as the device service, from a bundle or this checkout."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def register(commands: Any) -> None:
    install = commands.add_parser(
        "install",
        help="install edgeline as a service on this machine",
        description="Run a bundle's install.sh: the system user edgeline, a venv in"
        " /opt/edgeline/releases/<version> with the current symlink, /etc/edgeline/edge.toml"
        " (never overwritten), /var/lib/edgeline, the unit, enabled. Without --bundle, builds"
        " one for this machine from the checkout first (which needs the package index)."
        " --root DIR installs under DIR without users, apt, chown or systemctl.",
    )
    install.add_argument("--bundle", metavar="FILE.tar.gz", help="a bundle from edge bundle")
    install.add_argument("--root", metavar="DIR", help="install everything under DIR")
    install.add_argument("--config", metavar="FILE", help="the config (when building)")
    install.add_argument("--models", metavar="DIR", help="models (when building)")
    install.set_defaults(handler=cmd_install)


def cmd_install(args: argparse.Namespace) -> int:
    from edge.deploy.install import install

    return install(
        Path(args.bundle) if args.bundle else None,
        root=Path(args.root) if args.root else None,
        config=Path(args.config) if args.config else None,
        models=Path(args.models) if args.models else None,
    )
