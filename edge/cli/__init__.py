"""The ``edge`` command: a thin layer over the library that turns its errors into exit codes.

One module per command group, each with ``register(commands)`` (its arguments and help) and
the handler that calls one library function and prints; heavy modules are imported by the
handler, so ``edge --help`` and ``edge run`` load no simulator. Exit 0 on success, 2 on bad
input (config, arguments; one line per problem, no traceback), 1 on other failures.
"""

from __future__ import annotations

import argparse
import functools
import logging
import os
import sys
from collections.abc import Callable, Sequence

from edge import __version__
from edge.cli import (
    bench,
    bundle,
    check,
    command,
    deploy,
    detect,
    flash,
    homeassistant,
    install,
    model,
    outbox,
    run,
    simulate,
    sink,
    status,
)
from edge.cli.common import EXIT_BAD_INPUT, EXIT_FAILURE, EXIT_OK, UsageError
from edge.errors import ConfigError, EdgelineError, one_line

__all__ = ["EXIT_BAD_INPUT", "EXIT_FAILURE", "EXIT_OK", "UsageError", "build_parser", "main"]

COMMANDS = (
    run,
    simulate,
    check,
    outbox,
    status,
    model,
    detect,
    sink,
    command,
    homeassistant,
    bench,
    bundle,
    install,
    deploy,
    flash,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edge",
        description="edgeline: event-driven edge runtime for Raspberry-Pi-class devices.",
    )
    parser.add_argument("--version", action="version", version=f"edgeline {__version__}")
    parser.add_argument(
        "--log-level", default=None, choices=["debug", "info", "warning", "error"],
        help="log verbosity (default: info for run, warning otherwise)",
    )  # fmt: skip
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for group in COMMANDS:
        group.register(commands)
    return parser


@functools.cache
def _parser() -> argparse.ArgumentParser:
    """Built once per process: building it costs more than most commands' work (5 ms), and
    the fuzz campaign runs ``main`` in-process hundreds of thousands of times."""
    return build_parser()


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    # The services say what they do; the one-shot commands only what went wrong.
    default_level = "info" if args.command in ("run", "homeassistant") else "warning"
    logging.basicConfig(
        level=(args.log_level or default_level).upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        return handler(args)
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"error: {problem}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except UsageError as exc:
        print(f"error: {one_line(str(exc))}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except EdgelineError as exc:
        print(f"error: {one_line(str(exc))}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        return EXIT_OK
    except BrokenPipeError:  # the reader went away (`edge outbox tail | head`): stop quietly
        # Python would complain again when it flushes stdout at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_FAILURE
