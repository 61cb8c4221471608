"""What the fuzz properties look for in what a command printed."""

from __future__ import annotations

HEADER = "Traceback (most recent call last):"


def has_traceback(printed: str) -> bool:
    """Python's traceback header as a line of its own: input a command echoes back (an
    argument spelled "Traceback", say) is never that, as messages quote it inside a line."""
    return HEADER in printed.splitlines()
