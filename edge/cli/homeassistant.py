"""``edge homeassistant bridge``: Home Assistant's switch commands, signed, to the devices."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from edge.cli.common import EXIT_OK, add_login_options, broker_login, stop_on_signals


def register(commands: Any) -> None:
    group = commands.add_parser(
        "homeassistant",
        help="Home Assistant: the bridge that signs its switch commands",
        description="Home Assistant integration (devices announce themselves with"
        " [homeassistant] enabled = true; see docs/integrations.md).",
    )
    sub = group.add_subparsers(dest="homeassistant_command", required=True, metavar="COMMAND")
    bridge = sub.add_parser(
        "bridge",
        help="sign Home Assistant's ON/OFF switch commands and send them to the devices",
        description="Subscribe to {prefix}/+/ha/set/+ (the command topics of the switches"
        " devices announce with switches = 'bridge'), turn each ON or OFF into an `output`"
        " command signed with DIR/<device>.key, and publish it to the device. Runs until"
        " SIGINT or SIGTERM.",
    )
    bridge.add_argument("--broker", required=True, metavar="URL", help="mqtt://host:port")
    bridge.add_argument(
        "--keys", required=True, metavar="DIR",
        help="the devices' command keys, DIR/<device>.key (as edge flash --fleet writes keys/)",
    )  # fmt: skip
    bridge.add_argument(
        "--prefix", default="edgeline", metavar="P", help="topic prefix (default edgeline)"
    )
    bridge.add_argument("--client-id", metavar="ID", help="MQTT client id (default: a random one)")
    add_login_options(bridge, "the bridge's broker user name")
    bridge.set_defaults(handler=cmd_bridge)


def cmd_bridge(args: argparse.Namespace) -> int:
    from edge.cloud.homeassistant import SwitchBridge
    from edge.config.device import broker_url
    from edge.config.validation import topic_prefix
    from edge.errors import ConfigError

    found = []
    if (problem := broker_url(args.broker)) is not None:
        found.append(f"--broker: expected {problem}")
    if (problem := topic_prefix(args.prefix)) is not None:
        found.append(f"--prefix: expected {problem}, got {args.prefix!r}")
    if not Path(args.keys).is_dir():
        found.append(f"--keys: expected a directory of <device>.key files, found {args.keys!r}")
    settings = broker_login(args, args.broker, found)
    if found or settings is None:
        raise ConfigError(found)
    stop = stop_on_signals()
    with SwitchBridge(settings, Path(args.keys), prefix=args.prefix, client_id=args.client_id):
        print(f"edge homeassistant bridge: {args.broker}, {args.prefix}/+/ha/set/+ -> signed"
              f" output commands, keys from {args.keys}", file=sys.stderr, flush=True)  # fmt: skip
        stop.wait()
    return EXIT_OK
