"""The runtime's exception tree: each error also inherits the built-in it resembles."""

from __future__ import annotations


def one_line(text: str) -> str:
    """``text`` with every character that is not printable escaped (``\\r``, ``\\x85``,
    ``\\u2028``): a problem that quotes input (a TOML key, a file name) stays one line, and
    no input can forge a second line in a terminal or a log."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in text)


class EdgelineError(Exception):
    """Base of every error edgeline raises on purpose."""


class ConfigError(EdgelineError, ValueError):
    """A configuration file or value is invalid; ``problems`` lists every problem found."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = [one_line(problem) for problem in problems]
        super().__init__("\n".join(self.problems))


class UsageError(EdgelineError, ValueError):
    """Options or arguments that do not fit together (the CLI exits 2 on it)."""


class HardwareMissing(UsageError):
    """The config needs hardware this machine does not offer (no GPIO pin library, no I2C
    bus): the CLI exits 2 with what to install or enable."""


class OutboxError(EdgelineError, RuntimeError):
    """The outbox cannot be opened or used (wrong device, unreadable file, newer schema)."""


class UplinkError(EdgelineError, ConnectionError):
    """The uplink cannot be configured (bad URL, unreadable certificate or secret)."""


class StoreError(EdgelineError, RuntimeError):
    """The sink's database cannot be opened, migrated or written (``edge sink --db``)."""


class BrokerRefused(UplinkError, ConnectionRefusedError):
    """The broker answered and refused the connection; the message gives its reason in
    words ("bad user name or password", "not authorised", ...)."""
