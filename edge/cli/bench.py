"""``edge bench``: every performance figure against its baselines and budgets, in one run."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from edge.bench import FIGURES
from edge.cli.common import EXIT_FAILURE, EXIT_OK, UsageError


def register(commands: Any) -> None:
    groups = ", ".join(FIGURES)
    bench = commands.add_parser(
        "bench",
        help="measure throughput, latency, footprint and budgets against baselines",
        description="Start a Mosquitto of its own and measure, in one run, edgeline against raw"
        " paho-mqtt and a naive loop, then check every performance budget."
        f" Figure groups: {groups}.",
    )
    bench.add_argument("--smoke", action="store_true", help="tiny sizes, in seconds (a check)")
    bench.add_argument("--json", metavar="FILE", help="also write every figure as JSON here")
    bench.add_argument("--only", metavar="NAME,...", help=f"run only these figure groups: {groups}")
    bench.add_argument(
        "--dir", metavar="DIR", help="scratch directory; its disk is the one measured for wear"
    )
    bench.set_defaults(handler=cmd_bench)


def cmd_bench(args: argparse.Namespace) -> int:
    from edge.bench import BenchError, run
    from edge.bench.mosquitto import BrokerUnavailable

    only = tuple(n.strip() for n in args.only.split(",") if n.strip()) if args.only else FIGURES
    unknown = [name for name in only if name not in FIGURES]
    if unknown:
        raise UsageError(f"--only: unknown {', '.join(unknown)}; known: {', '.join(FIGURES)}")
    try:
        result = run(smoke=args.smoke, only=only, directory=args.dir)
    except (BenchError, BrokerUnavailable) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    print(result["table"])
    machine = result["machine"]
    print(
        f"\n{result['mode']} run, {machine['date']}, {machine['cpus']} x {machine['cpu_model']},"
        f" Python {machine['python']}, load average {machine['load_average']} before and"
        f" {result['load_average_after']} after, {result['seconds']['total']:.0f} s"
    )
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    return EXIT_OK
