"""Telling systemd how the service is: ``sd_notify``'s datagrams, without libsystemd.

Under ``Type=notify`` systemd passes ``NOTIFY_SOCKET`` (a unix datagram socket, ``@`` for
the abstract namespace) and, with ``WatchdogSec=``, ``WATCHDOG_USEC`` (and ``WATCHDOG_PID``).
The runtime says ``READY=1`` once sampling has started, ``STATUS=...`` as it goes,
``STOPPING=1`` when it stops, and ``WATCHDOG=1`` from the sampling loop itself, at half the
watchdog period: a loop that is stuck stops pinging, and systemd restarts the service.

Sending never blocks (``MSG_DONTWAIT``) and never fails the caller: without systemd (no
``NOTIFY_SOCKET``) every call is a no-op.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping

log = logging.getLogger(__name__)


class Notifier:
    """``sd_notify`` to ``address`` (default: ``NOTIFY_SOCKET``); a no-op without one."""

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        env = os.environ if env is None else env
        self.address = _address(env.get("NOTIFY_SOCKET", ""))
        self.watchdog_interval = _watchdog_interval(env) if self.address else None
        self.sent = 0
        self._socket: socket.socket | None = None

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def notify(self, *fields: str) -> bool:
        """Send ``fields`` (``KEY=VALUE``) as one datagram; False if it could not go."""
        if self.address is None:
            return False
        try:
            if self._socket is None:
                self._socket = socket.socket(
                    socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC
                )
            self._socket.sendto("\n".join(fields).encode(), socket.MSG_DONTWAIT, self.address)
        except OSError as exc:  # systemd gone or its queue full: the service goes on
            log.debug("sd_notify to %r failed: %s", self.address, exc)
            return False
        self.sent += 1
        return True

    def ready(self, status: str) -> bool:
        return self.notify("READY=1", f"STATUS={status}")

    def status(self, status: str) -> bool:
        return self.notify(f"STATUS={status}")

    def watchdog(self, due: float = 0.0) -> None:
        """A scheduler task: ``due`` is when the sampling loop ran it."""
        self.notify("WATCHDOG=1")

    def stopping(self) -> bool:
        return self.notify("STOPPING=1", "STATUS=stopping: committing pending events")

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None


def _address(text: str) -> str | bytes | None:
    if text.startswith("@"):  # the abstract namespace: a leading NUL byte
        return b"\0" + text[1:].encode()
    return text if text.startswith("/") else None


def _watchdog_interval(env: Mapping[str, str]) -> float | None:
    """Half of ``WATCHDOG_USEC``, in seconds, when the watchdog is meant for this process."""
    pid = env.get("WATCHDOG_PID")
    if pid and pid != str(os.getpid()):
        return None
    try:
        usec = int(env.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    return usec / 2e6 if usec > 0 else None
