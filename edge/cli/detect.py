"""``edge detect``: a recorded series through a detector, strictly streaming."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from edge.cli.common import EXIT_BAD_INPUT, EXIT_OK
from models import DETECTOR_TYPES


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
    print(f"{summary.rows} readings scored, {summary.alarms} alarms: {summary.output}")
    return EXIT_OK
