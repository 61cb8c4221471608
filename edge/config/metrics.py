"""``[metrics]``: the device's figures for Prometheus, and the checks on its keys.

Two outputs, either or both: a file for node_exporter's textfile collector (no dependency:
the runtime writes the text format itself) and ``/metrics`` on a TCP port, served by
prometheus-client, which a device installs only when it asks for the port (the
``metrics`` extra). A key that only matters with the other one unset (``host`` without
``port``, ``interval`` without ``textfile``) is refused rather than silently ignored: it
says someone expected an output that will not be there.
"""

from __future__ import annotations

import importlib.util
import ipaddress
import re
from dataclasses import dataclass, field

from edge.config.validation import KeyProblems

DEFAULT_HOST = "127.0.0.1"  # this device only: metrics say what runs here and how busy it is
DEFAULT_INTERVAL = 60.0
EXTRA_HINT = "pip install 'edgeline[metrics]'"

# A host name as RFC 1123 spells it: dot-separated labels of letters, digits and inner hyphens.
_LABEL = r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOST_NAME = re.compile(rf"(?=.{{1,253}}\Z){_LABEL}(\.{_LABEL})*")


def textfile_path(value: str) -> str | None:
    """node_exporter's textfile collector reads ``*.prom`` files of one directory, and the
    service's working directory is ``/``: a relative path would land there."""
    if not value.startswith("/") or not value.endswith(".prom"):
        return "an absolute path ending in .prom (node_exporter reads only *.prom files)"
    if "\x00" in value:
        return "a path without NUL characters"
    return None


def listen_host(value: str) -> str | None:
    expected = "an IP address or a host name to listen on (127.0.0.1: this device only)"
    # An IPv6 scope (fe80::1%eth0) may hold any text: no spaces or controls in it either.
    if not value.isprintable() or any(c.isspace() for c in value):
        return expected
    try:
        ipaddress.ip_address(value)
    except ValueError:
        if not _HOST_NAME.fullmatch(value):
            return expected
    return None


def prometheus_client_installed() -> bool:
    """Whether prometheus-client can be imported (looked up, not imported: the device
    loads it only when the port is served)."""
    return importlib.util.find_spec("prometheus_client") is not None


@dataclass(frozen=True)
class MetricsConfig:
    textfile: str | None = field(
        default=None,
        metadata={
            "check": textfile_path,
            "expects": "an absolute path ending in .prom",
            "doc": "file for node_exporter's textfile collector, rewritten every `interval`"
            " seconds (mode 0644); unset: none",
        },
    )
    interval: float | None = field(
        default=None,
        metadata={
            "min": 1.0,
            "max": 3600,
            "doc": f"seconds between rewrites of `textfile`; unset: {DEFAULT_INTERVAL:g}",
        },
    )
    port: int | None = field(
        default=None,
        metadata={
            "min": 1,
            "max": 65535,
            "doc": "serve /metrics on this TCP port (prometheus-client, the `metrics` extra);"
            " unset: none",
        },
    )
    host: str | None = field(
        default=None,
        metadata={
            "check": listen_host,
            "expects": "an IP address or a host name",
            "doc": f"address `port` listens on; unset: {DEFAULT_HOST} (this device only)",
        },
    )

    def __post_init__(self) -> None:
        wrong = []
        if self.interval is not None and self.textfile is None:
            wrong.append(("interval", "expected textfile to be set too (it is how often"
                          " textfile is rewritten)"))  # fmt: skip
        if self.host is not None and self.port is None:
            wrong.append(("host", "expected port to be set too (it is where port listens)"))
        if self.port is not None and not prometheus_client_installed():
            wrong.append(("port", "needs the prometheus-client package, which is not"
                          f" installed: {EXTRA_HINT}"))  # fmt: skip
        if wrong:
            raise KeyProblems(wrong)

    @property
    def enabled(self) -> bool:
        return self.textfile is not None or self.port is not None

    @property
    def every(self) -> float:
        """Seconds between rewrites of the textfile."""
        return DEFAULT_INTERVAL if self.interval is None else self.interval

    @property
    def listen(self) -> str:
        """The address the port listens on."""
        return DEFAULT_HOST if self.host is None else self.host
