"""Running ``edge`` in-process, and what the fuzz properties look for in what it printed."""

from __future__ import annotations

import contextlib
import io

HEADER = "Traceback (most recent call last):"


def has_traceback(printed: str) -> bool:
    """Python's traceback header as a line of its own: input a command echoes back (an
    argument spelled "Traceback", say) is never that, as messages quote it inside a line."""
    return HEADER in printed.splitlines()


def run_cli(argv: list[str]) -> tuple[int, str]:
    """``edge`` in-process: its exit code (argparse's usage errors included) and everything
    it printed, stdout then stderr."""
    from edge.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as exc:  # argparse: a usage error
            code = exc.code if isinstance(exc.code, int) else 2
    return code, out.getvalue() + err.getvalue()
