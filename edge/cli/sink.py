"""``edge sink``: the reference consumer, printing or storing what devices publish;
``edge sink gaps``: what its database is missing; ``edge sink label``: operators' verdicts
on alarms, sent to many devices."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import threading
import time
from typing import Any

from edge.cli.common import (
    EXIT_FAILURE,
    EXIT_OK,
    UsageError,
    add_login_options,
    broker_login,
    stop_on_signals,
)


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
        help="a persistent session under this id (MQTT 5 or 3.1.1): what arrives while the"
        " sink is down waits",
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
    _forward_options(sink)
    _watch_options(sink)
    _fill_options(sink)
    sink.set_defaults(handler=cmd_sink)
    below = sink.add_subparsers(dest="sink_command", metavar="{gaps,forward,dead-letters,label}")
    gaps = below.add_parser(
        "gaps",
        help="print the seqs a sink's database is missing, per device and stream",
        description="Per device and stream: how many events are stored, the highest seq, the"
        " seqs missing below it, and those the device reported evicted.",
    )
    gaps.add_argument("--db", required=True, metavar="URL", help="the sink's database")
    gaps.add_argument("--json", action="store_true", help="one JSON object per stream")
    gaps.set_defaults(handler=cmd_gaps)
    forward = below.add_parser(
        "forward",
        help="forward stored events to HTTP targets, without subscribing to a broker",
        description="Forward the events in a sink's database to the [[forward]] targets of"
        " --config, each on its own thread from its own cursor, until SIGINT or SIGTERM.",
    )
    forward.add_argument("--db", required=True, metavar="URL", help="the sink's database")
    _forward_options(forward)
    forward.set_defaults(handler=cmd_forward)
    dead = below.add_parser(
        "dead-letters",
        help="list the events forward targets gave up on, or send them again",
        description="List the dead letters (events a forward target gave up on) with their"
        " attempts and last error; with --retry NAME, send NAME's again (its entry in"
        " --config) and drop those that go through.",
    )
    dead.add_argument("--db", required=True, metavar="URL", help="the sink's database")
    dead.add_argument("--retry", metavar="NAME", help="send target NAME's dead letters again")
    dead.add_argument("--config", metavar="SINK.toml", help="the [[forward]] targets (--retry)")
    dead.add_argument("--json", action="store_true", help="one JSON object per dead letter")
    dead.set_defaults(handler=cmd_dead_letters)
    label = below.add_parser(
        "label",
        help="send operators' verdicts on alarms to many devices (signed label commands)",
        description="Read a CSV file of verdicts (header: device,seq,verdict[,note,detector,"
        "side,stream]) and send each row to its device as a label command signed with"
        " DIR/<device>.key, one at a time; print one line per row.",
    )
    label.add_argument("--broker", required=True, metavar="URL", help="mqtt://host:port")
    label.add_argument("--file", required=True, metavar="CSV", help="the verdicts, one a row")
    label.add_argument(
        "--keys", required=True, metavar="DIR",
        help="the command keys, DIR/<device>.key (as edge flash --fleet writes keys/)",
    )  # fmt: skip
    label.add_argument("--prefix", default="edgeline", help="topic prefix (default edgeline)")
    label.add_argument(
        "--timeout", type=float, default=10.0, help="seconds to wait for each answer (default 10)"
    )
    add_login_options(label, "the operator's broker user name")
    label.set_defaults(handler=cmd_label)


def _forward_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        metavar="SINK.toml",
        help="a sink config: its [[forward]] targets get the stored events (needs --db)",
    )
    parser.add_argument(
        "--forward",
        metavar="NAME",
        action="append",
        help="forward to this [[forward]] target only (repeat for more; default: all)",
    )


def _watch_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--json",
        action="store_true",
        help="with --db: the sink's figures as a JSON line on stdout every --every seconds",
    )
    parser.add_argument(
        "--every",
        metavar="SECONDS",
        type=float,
        default=10.0,
        help="seconds between --json lines and, when stderr is not a terminal, summary lines"
        " (default 10; 0: none but the last)",
    )
    parser.add_argument(
        "--metrics-port",
        metavar="N",
        type=int,
        help="with --db: serve the sink's figures at http://HOST:N/metrics (Prometheus)",
    )
    parser.add_argument(
        "--metrics-host",
        metavar="HOST",
        default="127.0.0.1",
        help="the address /metrics listens on (default 127.0.0.1)",
    )


def _fill_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--fill-gaps",
        action="store_true",
        help="with --db and --keys: ask devices back the seqs still missing (signed replay)",
    )
    parser.add_argument(
        "--keys",
        metavar="DIR",
        help="the command keys, DIR/<device>.key (as edge flash --fleet writes keys/)",
    )
    parser.add_argument(
        "--grace",
        metavar="SECONDS",
        type=float,
        default=30.0,
        help="how long a seq stays missing before it is asked back (default 30)",
    )
    parser.add_argument(
        "--asks",
        metavar="N",
        type=int,
        default=5,
        help="ask a range back at most N times, waiting twice as long each time (default 5)",
    )


def _filler(args: argparse.Namespace, login: Any) -> Any:
    """A GapFiller for --fill-gaps (not started), None without it."""
    from pathlib import Path

    if not args.fill_gaps:
        if args.keys is not None:
            raise UsageError("--keys: the command keys are for --fill-gaps")
        return None
    if args.db is None:
        raise UsageError("--fill-gaps: the missing seqs are read from the database: give --db")
    if args.keys is None:
        raise UsageError("--fill-gaps: needs --keys DIR, the devices' command keys")
    if not Path(args.keys).is_dir():
        raise UsageError(f"--keys: expected a directory of <device>.key files, found {args.keys!r}")
    if args.grace < 0:
        raise UsageError(f"--grace: expected seconds, 0 or more, found {args.grace:g}")
    if args.asks < 1:
        raise UsageError(f"--asks: expected 1 or more, found {args.asks}")
    from edge.cloud.refill import GapFiller

    return GapFiller(args.db, args.broker, Path(args.keys), prefix=args.prefix, grace=args.grace,
                     max_asks=args.asks, login=login)  # fmt: skip


def _targets(args: argparse.Namespace) -> list[Any]:
    """The chosen [[forward]] targets of --config (none without it)."""
    from edge.cloud.forward import load_targets

    if args.config is None:
        if args.forward:
            raise UsageError("--forward: needs --config SINK.toml, which holds the targets")
        return []
    if getattr(args, "db", None) is None:
        raise UsageError("--config: forwarding reads the stored events: give --db too")
    targets = load_targets(args.config)
    names = [target.name for target in targets]
    for name in args.forward or []:
        if name not in names:
            raise UsageError(f"--forward: no [[forward]] named {name!r} in {args.config}"
                             f" (found: {', '.join(names) or 'none'})")  # fmt: skip
    return [t for t in targets if not args.forward or t.name in args.forward]


def _start_forwarders(db: str, targets: list[Any]) -> list[Any]:
    from edge.cloud.forwarder import Forwarder

    started: list[Any] = []
    try:
        for target in targets:
            started.append(Forwarder(db, target).start())
            print(f"edge sink: forwarding to {target.name} from event {started[-1].cursor}",
                  file=sys.stderr, flush=True)  # fmt: skip
    except BaseException:
        _stop_forwarders(started)
        raise
    return started


def _stop_forwarders(forwarders: list[Any]) -> None:
    for forwarder in forwarders:
        forwarder.close()
        stats = forwarder.stats
        print(f"edge sink: forwarded {stats.sent} events to {forwarder.target.name},"
              f" {stats.dead} dead letters, {stats.throttled} throttled answers",
              file=sys.stderr, flush=True)  # fmt: skip


def cmd_sink(args: argparse.Namespace) -> int:
    from edge.cloud.sink import Sink
    from edge.cloud.store import db_problem, open_store
    from edge.cloud.watch import StreamView, Watch
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
    if args.protocol != "5" and args.share:
        raise UsageError(
            "--share: shared subscriptions are an MQTT 5 feature, MQTT 3.1.1 has none"
            " (--protocol 5)"
        )
    wrong = None if args.db is None else db_problem(args.db)
    if wrong:
        raise UsageError(f"--db: expected {wrong}")
    if args.db is None and (args.json or args.metrics_port is not None):
        raise UsageError("--json and --metrics-port: a sink's figures need --db")
    if args.every < 0:
        raise UsageError(f"--every: expected seconds, 0 or more, found {args.every:g}")
    if args.metrics_port is not None and not 0 <= args.metrics_port <= 65535:
        raise UsageError(f"--metrics-port: expected 0-65535, found {args.metrics_port}")
    targets = _targets(args)
    found: list[str] = []
    login = broker_login(args, args.broker, found)
    if login is None:
        raise ConfigError(found)
    filler = _filler(args, login)
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
    forwarders: list[Any] = []
    closing = contextlib.ExitStack()
    try:
        forwarders = _start_forwarders(args.db, targets)
        sink = Sink(args.broker, store=store, track=False, **options)
        assert sink.writer is not None
        view = StreamView(store, reload=30.0 if args.share else None)
        view.load()  # before the writer's thread owns the store
        watch = Watch(sink.writer.stats, lambda: sink.malformed, view)
        sink.writer.on_commit = watch.committed
        if args.metrics_port is not None:
            from edge.cloud.metrics import MetricsServer

            metrics = closing.enter_context(
                MetricsServer(
                    watch,
                    args.metrics_host,
                    args.metrics_port,
                    filler=filler.stats if filler is not None else None,
                )
            )
            print(f"edge sink: metrics at http://{metrics.host}:{metrics.port}/metrics",
                  file=sys.stderr, flush=True)  # fmt: skip
        with sink:
            print(
                f"edge sink: subscribed to {', '.join(sink.topics)};"
                f" storing into schema version {store.schema_version()}",
                file=sys.stderr,
                flush=True,
            )
            if filler is not None:
                closing.enter_context(filler)
                print(f"edge sink: asking gaps back after {args.grace:g} s, keys from"
                      f" {args.keys}", file=sys.stderr, flush=True)  # fmt: skip
            _report(watch, stop, args.json, args.every)
            closing.close()
        figures = watch.figures()
        if args.json:
            print(json.dumps(figures.as_json()), flush=True)
        print(
            f"edge sink: stored {figures.stored} events ({figures.duplicates} duplicates),"
            f" {figures.statuses} statuses; {figures.malformed} malformed;"
            f" {figures.open_gaps} open gaps ({figures.missing} seqs missing)",
            file=sys.stderr,
            flush=True,
        )
        if filler is not None:
            done = filler.stats
            print(f"edge sink: asked {done.asked} gaps back, {done.answered} answered,"
                  f" {done.lost} seqs lost; {len(done.no_key)} devices without a key file",
                  file=sys.stderr, flush=True)  # fmt: skip
    finally:
        closing.close()
        _stop_forwarders(forwarders)
        store.close()
    return EXIT_OK


def _report(watch: Any, stop: threading.Event, as_json: bool, every: float) -> None:
    """Until ``stop``: the summary line on stderr, rewritten in place each second on a
    terminal, else one every ``every`` seconds; with ``as_json``, the figures as a JSON line
    on stdout every ``every`` seconds."""
    from edge.cloud.watch import summary

    terminal = sys.stderr.isatty()
    started = time.monotonic()
    due = started + every if every else None
    shown = 0  # the width of the line on the terminal
    while not stop.wait(1.0 if terminal or due is None else max(0.0, due - time.monotonic())):
        if due is None and not terminal:
            continue
        figures = watch.figures()
        if terminal:
            line = f"edge sink: {summary(figures)}"
            sys.stderr.write("\r" + line.ljust(shown))
            sys.stderr.flush()
            shown = len(line)
        if due is not None and time.monotonic() >= due:
            while due <= time.monotonic():
                due += every
            if as_json:
                print(json.dumps(figures.as_json()), flush=True)
            if not terminal:
                print(f"edge sink: {summary(figures)}", file=sys.stderr, flush=True)
    if terminal and shown:
        sys.stderr.write("\n")


def cmd_forward(args: argparse.Namespace) -> int:
    from edge.cloud.store import db_problem

    wrong = db_problem(args.db)
    if wrong:
        raise UsageError(f"--db: expected {wrong}")
    if args.config is None:
        raise UsageError("--config: required (the sink config with the [[forward]] targets)")
    targets = _targets(args)
    if not targets:
        raise UsageError(f"--config: no [[forward]] targets in {args.config}")
    stop = stop_on_signals()
    forwarders = _start_forwarders(args.db, targets)
    try:
        stop.wait()
    finally:
        _stop_forwarders(forwarders)
    return EXIT_OK


def cmd_dead_letters(args: argparse.Namespace) -> int:
    from edge.cloud.backlog import Backlog
    from edge.cloud.forwarder import retry_dead_letters
    from edge.cloud.store import db_problem

    wrong = db_problem(args.db)
    if wrong:
        raise UsageError(f"--db: expected {wrong}")
    if args.retry is None:
        with Backlog(args.db) as backlog:
            for letter in backlog.dead_letters():
                record = {"name": letter.name, "key": letter.event.key, "id": letter.event.id,
                          "attempts": letter.attempts, "last_error": letter.last_error,
                          "failed_at": letter.failed_at}  # fmt: skip
                print(json.dumps(record) if args.json else
                      f"{letter.name} {letter.event.key}: {letter.attempts} attempts,"
                      f" {letter.last_error} ({letter.failed_at})")  # fmt: skip
        return EXIT_OK
    if args.config is None:
        raise UsageError("--retry: needs --config SINK.toml, which holds the target")
    args.forward = [args.retry]
    (target,) = _targets(args)
    sent, still = retry_dead_letters(args.db, target)
    print(f"edge sink: {sent} dead letters sent to {target.name}, {len(still)} failed again",
          file=sys.stderr, flush=True)  # fmt: skip
    return EXIT_OK if not still else EXIT_FAILURE


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


def cmd_label(args: argparse.Namespace) -> int:
    from pathlib import Path

    from edge.cloud.labels import read_rows, send_rows
    from edge.errors import ConfigError
    from edge.uplink.operator import send_command

    rows, found = read_rows(args.file)
    if not Path(args.keys).is_dir():
        found.append(f"--keys: expected a directory of <device>.key files, found {args.keys!r}")
    settings = broker_login(args, args.broker, found)
    if found or settings is None:
        raise ConfigError(found)

    def send(device: str, key: bytes, sent: Any) -> Any:
        return send_command(
            args.broker, device, key, "label", sent, prefix=args.prefix, timeout=args.timeout,
            username=settings.username, password=settings.password(),
            ca_file=settings.ca_file, cert_file=settings.cert_file, key_file=settings.key_file,
        )  # fmt: skip

    failed = 0
    for outcome in send_rows(rows, Path(args.keys), send):
        row = outcome.row
        where = f"{args.file}:{row.line} {row.device} seq {row.args['seq']}"
        if outcome.ok:
            print(f"{where}: {outcome.answer}")
        else:
            failed += 1
            print(f"{where}: refused: {outcome.answer}", file=sys.stderr)
    return EXIT_FAILURE if failed else EXIT_OK
