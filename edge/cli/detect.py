"""``edge detect``: a recorded series through a detector, strictly streaming."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from edge.cli.common import EXIT_BAD_INPUT, EXIT_OK
from models import DETECTOR_TYPES

_UNITS = (("days", 86_400.0), ("h", 3_600.0), ("min", 60.0))  # for how far time stepped back


def register(commands: Any) -> None:
    names = ", ".join(sorted(DETECTOR_TYPES))
    detect = commands.add_parser(
        "detect",
        help="replay a recorded series through a detector, strictly streaming",
        description="Replay a series (a CSV with timestamp,value columns, or a recording)"
        " through a detector one reading at a time and write timestamp,value,anomaly_score"
        f" per reading. Detectors: {names}.",
    )
    detect.add_argument("--input", required=True, metavar="FILE", help="CSV or recording")
    detect.add_argument("--detector", required=True, metavar="NAME", help=f"one of: {names}")
    detect.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="a detector parameter"
    )
    detect.add_argument("--output", required=True, metavar="FILE.csv", help="where to write")
    detect.add_argument("--sensor", help="the sensor to replay (recordings only)")
    detect.add_argument("--quantity", help="its quantity, for multi-quantity sensors")
    detect.set_defaults(handler=cmd_detect)


def cmd_detect(args: argparse.Namespace) -> int:
    from edge.modeltools.detect import DetectInputError, detect, parse_settings

    try:
        summary = detect(
            args.input,
            args.output,
            args.detector,
            parse_settings(args.set),
            sensor=args.sensor,
            quantity=args.quantity,
        )
    except DetectInputError as exc:
        for problem in exc.problems:
            print(f"error: {problem}", file=sys.stderr)
        return EXIT_BAD_INPUT
    steps = summary.steps
    if steps.back:
        # One line for the whole file: a concatenated file can step back on every row.
        goes = "timestamp goes" if steps.back == 1 else "timestamps go"
        print(
            f"warning: {steps.back} {goes} back (first at {steps.first_back},"
            f" {_span(steps.first_back_by)} back); scored in file order",
            file=sys.stderr,
        )
    counts = ""
    if steps.back or steps.repeats:
        counts = f", timestamps: {steps.back} back, {steps.repeats} repeated"
    print(f"{summary.rows} readings scored, {summary.alarms} alarms{counts}: {summary.output}")
    return EXIT_OK


def _span(seconds: float) -> str:
    """``seconds`` in words a person reads at a glance: 0.5 s, 90 s, 55 min, 3 h, 12 days."""
    unit, size = next(((unit, size) for unit, size in _UNITS if seconds >= 2 * size), ("s", 1.0))
    value = seconds / size
    return f"{value:.3g} {unit}" if value < 100 else f"{value:.0f} {unit}"
