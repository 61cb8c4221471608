"""``edge outbox stats|tail|replay``: look into a device's outbox, send a range again."""

from __future__ import annotations

import argparse
import json
from typing import Any

from edge.cli.common import (
    EXIT_FAILURE,
    EXIT_OK,
    UsageError,
    add_login_options,
    broker_login,
    state_dir,
)


def register(commands: Any) -> None:
    outbox = commands.add_parser(
        "outbox",
        help="inspect a device's outbox, replay a range",
        description="Look into a device's outbox while the runtime runs (read-only), or"
        " publish a stored seq range again for a consumer that lost it.",
    )
    verbs = outbox.add_subparsers(dest="verb", required=True, metavar="VERB")
    stats = verbs.add_parser(
        "stats",
        help="depth per priority, oldest age, evicted, delivered",
        description="Counters of the outbox: stream, last_seq, pending (per priority), the age"
        " of the oldest pending event, delivered, kept for replay, evicted (per priority),"
        " bytes counted against the cap and on disk, and the cap (max_bytes). The age is"
        " exact for an event stored in this boot, from its timestamp across boots when the"
        " clocks are synchronised, else a lower bound (its age when the last event of its"
        " boot or simulation was stored); the text says which.",
    )
    stats.add_argument("--json", action="store_true", help="one JSON object")
    tail = verbs.add_parser(
        "tail",
        help="the newest stored events, as JSON lines",
        description="The newest stored events, oldest first, one JSON payload per line.",
    )
    tail.add_argument("-n", type=int, default=10, help="how many (default 10)")
    tail.add_argument("--pending", action="store_true", help="only events not yet delivered")
    replay = verbs.add_parser(
        "replay",
        help="publish a seq range again (a consumer lost it)",
        description="Publish the stored events of a seq range again, unchanged (same topics,"
        " payloads, stream and seq), with a one-shot client; the running runtime is not"
        " disturbed. Exit 1 unless the broker acknowledged every one.",
    )
    replay.add_argument("--from-seq", type=int, required=True, metavar="N", help="first seq")
    replay.add_argument("--to-seq", type=int, metavar="M", help="last seq (default: the newest)")
    replay.add_argument("--broker", metavar="URL", help="broker URL (default: the config's)")
    add_login_options(replay, "broker user name (default: the config's [uplink] username)")
    for verb in (stats, tail, replay):
        where = verb.add_mutually_exclusive_group(required=True)
        config_help = "the device's config"
        if verb is stats:
            config_help += (
                "; its caps win over those the runtime recorded in the outbox, which"
                " --state-dir shows"
            )
        where.add_argument("--config", metavar="FILE", help=config_help)
        where.add_argument("--state-dir", metavar="DIR", help="the state directory")
    stats.set_defaults(handler=cmd_outbox_stats)
    tail.set_defaults(handler=cmd_outbox_tail)
    replay.set_defaults(handler=cmd_outbox_replay)


def cmd_outbox_stats(args: argparse.Namespace) -> int:
    from edge.outbox.inspect import read_stats

    limits = None
    if args.config:
        from edge.config.device import load
        from edge.outbox.limits import OutboxLimits

        limits = OutboxLimits.from_config(load(args.config).storage)
    figures = read_stats(state_dir(args), limits)
    print(json.dumps(figures.as_json()) if args.json else figures.as_text())
    return EXIT_OK


def cmd_outbox_tail(args: argparse.Namespace) -> int:
    from edge.outbox.inspect import tail

    for event in tail(state_dir(args), args.n, pending_only=args.pending):
        print(event.payload)
    return EXIT_OK


def cmd_outbox_replay(args: argparse.Namespace) -> int:
    from edge.config.device import broker_problem, load
    from edge.errors import ConfigError
    from edge.uplink.replay import replay

    if args.from_seq < 1 or (args.to_seq is not None and args.to_seq < args.from_seq):
        raise UsageError("expected 1 <= --from-seq <= --to-seq")
    problem = broker_problem(args.broker) if args.broker else None
    if problem:
        raise UsageError(f"--broker: {problem}")
    if not args.config and not args.broker:
        raise UsageError("edge outbox replay --state-dir needs --broker URL (or use --config)")
    base = load(args.config).uplink if args.config else None
    found: list[str] = []
    # The config's login and TLS settings, the options given on top, for --broker.
    settings = broker_login(args, args.broker or (base.url if base else ""), found, base)
    if settings is None:
        raise ConfigError(found)
    result = replay(state_dir(args), settings, first=args.from_seq, last=args.to_seq)
    print(result.summary())
    return EXIT_OK if result.acked == result.sent else EXIT_FAILURE
