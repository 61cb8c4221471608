"""``edge sink``: the reference consumer, printing what devices publish."""

from __future__ import annotations

import argparse
import json
from typing import Any

from edge.cli.common import EXIT_OK, UsageError, add_login_options, broker_login, stop_on_signals


def register(commands: Any) -> None:
    sink = commands.add_parser(
        "sink",
        help="subscribe to a broker and print events, checking seq",
        description="Subscribe to a broker and print every event and status as a JSON line,"
        " flagging duplicates (the same device, stream and seq twice).",
    )
    sink.add_argument("--broker", required=True, metavar="URL", help="mqtt://host:port")
    sink.add_argument("--prefix", default="edgeline", help="topic prefix (default edgeline)")
    sink.add_argument("--device", default="+", help="one device id (default: all)")
    add_login_options(sink, "the sink's broker user name")
    sink.set_defaults(handler=cmd_sink)


def cmd_sink(args: argparse.Namespace) -> int:
    from edge.cloud.sink import Sink
    from edge.config.device import broker_problem
    from edge.config.validation import topic_level, topic_prefix
    from edge.errors import ConfigError

    wrong = broker_problem(args.broker)
    if wrong:
        raise UsageError(f"--broker: {wrong}")
    wrong = topic_prefix(args.prefix)
    if wrong:
        raise UsageError(f"--prefix: expected {wrong}, found {args.prefix!r}")
    wrong = None if args.device == "+" else topic_level(args.device)
    if wrong:
        raise UsageError(f"--device: expected + (all) or {wrong}, found {args.device!r}")
    found: list[str] = []
    login = broker_login(args, args.broker, found)
    if login is None:
        raise ConfigError(found)
    stop = stop_on_signals()

    def show(topic: str, body: dict[str, Any], duplicate: bool) -> None:
        print(json.dumps({"topic": topic, "duplicate": duplicate, **body}), flush=True)

    def status(topic: str, body: dict[str, Any]) -> None:
        print(json.dumps({"topic": topic, **body}), flush=True)

    sink = Sink(
        args.broker, prefix=args.prefix, device=args.device, on_event=show, on_status=status,
        login=login,
    )  # fmt: skip
    with sink:
        stop.wait()
    return EXIT_OK
