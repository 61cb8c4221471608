"""``edge simulate``: the same runtime on simulated hardware (:mod:`edge.sim.session`)."""

from __future__ import annotations

import argparse
from typing import Any

from edge.cli.common import EXIT_OK, add_login_options, broker_login, login_keys, stop_on_signals
from edge.sim import scenarios


def register(commands: Any) -> None:
    names = ", ".join(scenarios.names())
    sim = commands.add_parser(
        "simulate",
        help="run the same runtime on simulated hardware, with an embedded broker",
        description="Run the unchanged runtime on simulated sensors: real drivers on simulated"
        " I2C chips and gpiozero mock pins, the outbox, the uplink, and (without --broker) an"
        " embedded broker with a subscriber that shows what arrived upstream. Ends with a"
        f" summary per device. Built-in scenarios: {names}.",
    )
    sim.add_argument(
        "--scenario",
        metavar="NAME|FILE",
        help=f"a built-in scenario ({names}; default: default) or a scenario file",
    )
    sim.add_argument("--config", metavar="FILE", help="simulate the hardware of this config")
    sim.add_argument("--broker", metavar="URL", help="use this broker instead of an embedded one")
    sim.add_argument("--state-dir", metavar="DIR", help="keep the outbox here (default: temp)")
    sim.add_argument(
        "--speed", metavar="X|max", help="times real time, or max (virtual clock); default: the"
        " scenario's"
    )  # fmt: skip
    sim.add_argument("--duration", type=float, metavar="S", help="simulated seconds to run")
    sim.add_argument(
        "--seed", type=int, metavar="N", help="noise and random events (default: scenario's)"
    )
    sim.add_argument(
        "--devices", type=int, default=1, metavar="N", help="simulate N devices on one broker"
    )
    sim.add_argument(
        "--per-device", action="store_true",
        help="with more than 10 devices, still print each device's lines and summary (by"
        " default: the fleet's live line and totals, and the devices that lack events)",
    )  # fmt: skip
    sim.add_argument(
        "--drain-timeout", type=float, default=10.0, metavar="S",
        help="at the end, wait this long for the outbox to drain upstream (default 10)",
    )  # fmt: skip
    sim.add_argument("--record", metavar="FILE", help="write readings, events, labels (JSONL)")
    sim.add_argument("--plot", metavar="FILE.png", help="draw signals, detections and labels")
    sim.add_argument(
        "--grace", type=float, default=60.0, metavar="S",
        help="seconds after a label a detection still counts (default 60)",
    )  # fmt: skip
    sim.add_argument("--quiet", action="store_true", help="print only the summary")
    sim.add_argument(
        "--no-resend", dest="resend", action="store_false",
        help="at the end, leave missing what the broker acknowledged but never delivered (a"
        " broker restart without persistence loses it); by default it is sent again from the"
        " outbox, as edge outbox replay does",
    )  # fmt: skip
    add_login_options(sim, "broker user name of the simulated devices and the subscriber")
    sim.set_defaults(handler=cmd_simulate)


def cmd_simulate(args: argparse.Namespace) -> int:
    from edge.errors import ConfigError
    from edge.sim.session import Options, simulate

    options = Options(
        scenario=args.scenario,
        config=args.config,
        broker=args.broker,
        state_dir=args.state_dir,
        speed=args.speed,
        duration=args.duration,
        seed=args.seed,
        devices=args.devices,
        drain_timeout=args.drain_timeout,
        record=args.record,
        plot=args.plot,
        grace=args.grace,
        quiet=args.quiet,
        per_device=args.per_device,
        login=login_keys(args),
        resend=args.resend,
    )
    options.check()  # before the signal handlers and the broker
    found: list[str] = []
    if options.login and options.broker and broker_login(args, options.broker, found) is None:
        raise ConfigError(found)
    simulate(options, stop_on_signals())
    return EXIT_OK
