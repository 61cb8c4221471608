"""``edge sink``: the reference consumer, printing or storing what devices publish;
``edge sink gaps``: what its database is missing."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from edge.cli.common import EXIT_OK, UsageError, add_login_options, broker_login, stop_on_signals


def register(commands: Any) -> None:
    sink = commands.add_parser(
        "sink",
        help="subscribe to a broker and print or store events, checking seq",
        description="Subscribe to a broker and print every event and status as a JSON line,"
        " flagging duplicates (the same device, stream and seq twice); with --db, store them"
        " instead, each event once, acknowledging a message only once its row is committed.",
    )
    sink.add_argument("--broker", metavar="URL", help="mqtt://host:port (required)")
    sink.add_argument("--prefix", default="edgeline", help="topic prefix (default edgeline)")
    sink.add_argument("--device", default="+", help="one device id (default: all)")
    sink.add_argument(
        "--db",
        metavar="URL",
        help="store into sqlite:///FILE (or a plain file path) or postgresql://USER@HOST/DB",
    )
    sink.add_argument(
        "--client-id",
        metavar="ID",
        help="a persistent session under this id: what arrives while the sink is down waits",
    )
    sink.add_argument(
        "--share",
        metavar="GROUP",
        help="an MQTT 5 shared subscription: the sinks of GROUP split the events",
    )
    sink.add_argument(
        "--protocol", choices=["5", "3.1.1"], default="5", help="MQTT version (default 5)"
    )
    add_login_options(sink, "the sink's broker user name")
    sink.set_defaults(handler=cmd_sink)
    below = sink.add_subparsers(dest="sink_command", metavar="{gaps}")
    gaps = below.add_parser(
        "gaps",
        help="print the seqs a sink's database is missing, per device and stream",
        description="Per device and stream: how many events are stored, the highest seq, the"
        " seqs missing below it, and those the device reported evicted.",
    )
    gaps.add_argument("--db", required=True, metavar="URL", help="the sink's database")
    gaps.add_argument("--json", action="store_true", help="one JSON object per stream")
    gaps.set_defaults(handler=cmd_gaps)


def cmd_sink(args: argparse.Namespace) -> int:
    from edge.cloud.sink import Sink
    from edge.cloud.store import db_problem, open_store
    from edge.config.device import broker_problem
    from edge.config.validation import topic_level, topic_prefix
    from edge.errors import ConfigError

    if not args.broker:
        raise UsageError("--broker: required (mqtt://host:port)")
    wrong = broker_problem(args.broker)
    if wrong:
        raise UsageError(f"--broker: {wrong}")
    wrong = topic_prefix(args.prefix)
    if wrong:
        raise UsageError(f"--prefix: expected {wrong}, found {args.prefix!r}")
    wrong = None if args.device == "+" else topic_level(args.device)
    if wrong:
        raise UsageError(f"--device: expected + (all) or {wrong}, found {args.device!r}")
    wrong = None if args.share is None else topic_level(args.share)
    if wrong:
        raise UsageError(f"--share: expected {wrong}, found {args.share!r}")
    if args.protocol != "5" and (args.share or args.client_id):
        raise UsageError("--share and --client-id need MQTT 5 (--protocol 5)")
    wrong = None if args.db is None else db_problem(args.db)
    if wrong:
        raise UsageError(f"--db: expected {wrong}")
    found: list[str] = []
    login = broker_login(args, args.broker, found)
    if login is None:
        raise ConfigError(found)
    stop = stop_on_signals()
    options: dict[str, Any] = {
        "prefix": args.prefix,
        "device": args.device,
        "protocol": args.protocol,
        "client_id": args.client_id,
        "share": args.share,
        "login": login,
    }
    if args.db is None:
        return _print(Sink(args.broker, **options), stop)

    store = open_store(args.db)
    try:
        sink = Sink(args.broker, store=store, track=False, **options)
        with sink:
            print(
                f"edge sink: subscribed to {', '.join(sink.topics)};"
                f" storing into schema version {store.schema_version()}",
                file=sys.stderr,
                flush=True,
            )
            stop.wait()
        assert sink.writer is not None
        stats = sink.writer.stats
        print(
            f"edge sink: stored {stats.stored} events ({stats.duplicates} duplicates),"
            f" {stats.statuses} statuses; {sink.malformed} malformed",
            file=sys.stderr,
            flush=True,
        )
    finally:
        store.close()
    return EXIT_OK


def _print(sink: Any, stop: Any) -> int:
    def show(topic: str, body: dict[str, Any], duplicate: bool) -> None:
        print(json.dumps({"topic": topic, "duplicate": duplicate, **body}), flush=True)

    def status(topic: str, body: dict[str, Any]) -> None:
        print(json.dumps({"topic": topic, **body}), flush=True)

    sink.on_event, sink.on_status = show, status
    with sink:
        stop.wait()
    return EXIT_OK


def cmd_gaps(args: argparse.Namespace) -> int:
    from edge.cloud.gaps import find_gaps
    from edge.cloud.store import db_problem, open_store

    wrong = db_problem(args.db)
    if wrong:
        raise UsageError(f"--db: expected {wrong}")
    store = open_store(args.db)
    try:
        for stream in find_gaps(store):
            print(json.dumps(stream.as_json()) if args.json else stream.as_text())
    finally:
        store.close()
    return EXIT_OK
