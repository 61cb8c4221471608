"""``edge status``: print what the runtime last wrote to ``<state_dir>/status.json``."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from edge.cli.common import EXIT_FAILURE, EXIT_OK, state_dir


def register(commands: Any) -> None:
    status = commands.add_parser(
        "status",
        help="print the device's status file",
        description="Print <state_dir>/status.json, which the runtime rewrites every"
        " storage.status_interval seconds: sensors, models, outbox depth, link state."
        " Exit 0 while the runtime runs and the file is fresh (rewritten within three"
        " intervals); 1 when it is missing, stale or says stopped.",
    )
    where = status.add_mutually_exclusive_group(required=True)
    where.add_argument("--config", metavar="FILE", help="the device's config")
    where.add_argument("--state-dir", metavar="DIR", help="the state directory")
    status.add_argument("--json", action="store_true", help="print one JSON object")
    status.set_defaults(handler=cmd_status)


def cmd_status(args: argparse.Namespace) -> int:
    from edge.runtime.status_file import StatusMissing, read_status, status_text

    try:
        status = read_status(state_dir(args))
    except StatusMissing as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    print(json.dumps(status) if args.json else status_text(status))
    if not status["fresh"]:
        why = "stopped" if status.get("state") == "stopped" else "stale"
        print(f"edge status: the runtime is not running ({why}, written {status['age_s']} s ago)",
              file=sys.stderr)  # fmt: skip
        return EXIT_FAILURE
    return EXIT_OK
