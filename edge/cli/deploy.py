"""``edge deploy``: install a bundle on a device over SSH, live only once it is healthy."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def register(commands: Any) -> None:
    deploy = commands.add_parser(
        "deploy",
        help="install a release on a device over SSH, rolled back unless healthy",
        description="Copy a bundle to the device over SSH (the system ssh and scp, with your"
        " keys and ~/.ssh/config), install it as a new release beside the running one, restart"
        " the service and wait until it is healthy: active, its status file fresh and of the"
        " new version, every sensor ok, the link online. If not within --timeout, go back to"
        " the release before and restart it. Exit 0 when the new release is live, 1 when it"
        " is not (rolled back or not), 2 on bad input. Without --bundle, builds one for the"
        " device's platform and Python (needs a checkout and the package index). The login"
        " must be root or have passwordless sudo.",
    )
    deploy.add_argument("--host", required=True, metavar="USER@HOST", help="the device")
    deploy.add_argument("--bundle", metavar="FILE.tar.gz", help="a bundle from edge bundle")
    deploy.add_argument("--rollback", action="store_true",
                        help="go back to the release before the current one, by hand")  # fmt: skip
    deploy.add_argument("--timeout", type=float, default=120.0, metavar="S",
                        help="seconds to wait until healthy (default 120)")  # fmt: skip
    deploy.add_argument("--port", type=int, metavar="N", help="the device's SSH port")
    deploy.add_argument("--identity", metavar="FILE", help="the SSH private key (ssh -i)")
    deploy.add_argument("--ssh-option", action="append", default=[], metavar="KEY=VALUE",
                        help="an ssh -o option (repeatable), e.g. Port=2222")  # fmt: skip
    deploy.add_argument("--root", metavar="DIR",
                        help="install under DIR on the device (install.sh --root); the service"
                        " then runs without systemd, with a pid file in DIR/run")  # fmt: skip
    deploy.set_defaults(handler=cmd_deploy)


def cmd_deploy(args: argparse.Namespace) -> int:
    from edge.deploy.deploy import deploy
    from edge.deploy.ssh import Host

    host = Host(
        args.host,
        port=args.port,
        identity=Path(args.identity) if args.identity else None,
        options=tuple(args.ssh_option),
        root=args.root,
    )
    bundle = Path(args.bundle) if args.bundle else None
    return deploy(host, bundle, args.timeout, rollback=args.rollback)
