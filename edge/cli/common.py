"""What every command shares: exit codes, the signals that stop a command, the state dir."""

from __future__ import annotations

import argparse
import signal
import threading
from pathlib import Path
from types import FrameType

from edge.errors import UsageError

EXIT_OK, EXIT_FAILURE, EXIT_BAD_INPUT = 0, 1, 2

__all__ = [
    "EXIT_BAD_INPUT",
    "EXIT_FAILURE",
    "EXIT_OK",
    "UsageError",
    "state_dir",
    "stop_on_signals",
]


def stop_on_signals() -> threading.Event:
    """SIGINT and SIGTERM set the returned event: the command then stops cleanly."""
    stop = threading.Event()

    def handle(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, handle)
    signal.signal(signal.SIGTERM, handle)
    return stop


def state_dir(args: argparse.Namespace) -> Path:
    """``--state-dir``, or the state directory of ``--config``."""
    if args.state_dir:
        return Path(args.state_dir)
    from edge.config.device import load

    return Path(load(args.config).storage.state_dir)
