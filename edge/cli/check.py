"""``edge check-config``: validate a config (or a scenario) and summarise it."""

from __future__ import annotations

import argparse
from typing import Any

from edge.cli.common import EXIT_OK


def register(commands: Any) -> None:
    check = commands.add_parser(
        "check-config",
        help="validate a config file and summarise it",
        description="Validate a device config, or a scenario (a config plus [simulation]):"
        " every problem on its own line (file, key path, what was expected, what was found,"
        ' "did you mean"), exit 2; a good file prints a summary, exit 0.',
    )
    check.add_argument("file", metavar="FILE", help="the TOML config or scenario file")
    check.set_defaults(handler=cmd_check_config)


def cmd_check_config(args: argparse.Namespace) -> int:
    from edge.config.device import load
    from edge.sim.scenario import is_scenario, load_scenario

    if is_scenario(args.file):  # a config plus a [simulation] table
        scenario = load_scenario(args.file, overrides={})
        settings = scenario.settings
        print(
            f"{scenario.config.summary()} As a scenario: {settings.duration:g} simulated"
            f" seconds at {settings.speed:g}x, {len(scenario.signals)} signal(s),"
            f" {len(scenario.presses)} GPIO press(es)."
        )
    else:
        print(load(args.file).summary())
    return EXIT_OK
