"""The runtime's exception tree: each error also inherits the built-in it resembles."""

from __future__ import annotations


class EdgelineError(Exception):
    """Base of every error edgeline raises on purpose."""


class ConfigError(EdgelineError, ValueError):
    """A configuration file or value is invalid; ``problems`` lists every problem found."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


class UsageError(EdgelineError, ValueError):
    """Options or arguments that do not fit together (the CLI exits 2 on it)."""


class OutboxError(EdgelineError, RuntimeError):
    """The outbox cannot be opened or used (wrong device, unreadable file, newer schema)."""


class UplinkError(EdgelineError, ConnectionError):
    """The uplink cannot be configured (bad URL, unreadable certificate or secret)."""
