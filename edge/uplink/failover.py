"""Which broker the uplink connects to: the first of ``[uplink] broker``, else the next.

``broker`` may list several URLs, the first preferred. The policy, in the order things
happen:

- a connection goes to the current broker; a connection that came up and was then lost
  is retried on the same broker after the reconnect backoff (a restart, a blip);
- an attempt that never came online (no TCP connection, no TLS, no CONNACK, or a refusal)
  moves to the next broker in the list, wrapping around: at once while some broker of this
  round is still untried, after the backoff once every broker failed in a row;
- while connected to a fallback, the preferred broker is probed every ``failback``
  seconds (a TCP connect on a short-lived thread, so the network loop never blocks); once
  it accepts, the uplink leaves the fallback cleanly and connects to the preferred one (if
  that attempt fails, the next attempt goes on down the list as above).

With one broker this is today's behaviour: every failed attempt waits for the backoff.
The outbox is the uplink's cursor, not the connection: whatever was in flight on a broker
that went away is claimed again and published to the next (at least once; consumers
deduplicate on ``device``, ``stream``, ``seq``).

Thread: the link thread alone calls a ``Failover``; its probe runs on a thread of its own
and hands back one flag.
"""

from __future__ import annotations

import socket
import threading

from edge.clock import Clock
from edge.config.device import UplinkConfig

PROBE_TIMEOUT = 5.0  # seconds a probe of the preferred broker may take to connect


class Probe:
    """One TCP connect to a broker's host and port on a daemon thread of its own:
    ``done`` is set when it has an answer, ``accepted`` says what it was."""

    def __init__(self, host: str, port: int, timeout: float = PROBE_TIMEOUT) -> None:
        self.host, self.port, self.timeout = host, port, timeout
        self.accepted = False
        self.done = threading.Event()

    def start(self) -> Probe:
        thread = threading.Thread(target=self._run, name="edgeline-failback", daemon=True)
        thread.start()
        return self

    def _run(self) -> None:
        try:
            with socket.create_connection((self.host, self.port), timeout=self.timeout):
                self.accepted = True
        except OSError:  # refused, unreachable, a timeout, a name that does not resolve
            self.accepted = False
        finally:
            self.done.set()


class Failover:
    """The brokers of one uplink and which one it is on (link thread only).

    ``targets`` holds one single-broker ``UplinkConfig`` per URL (TLS and port are per
    URL), the preferred first. Times are on the uplink's clock.
    """

    def __init__(self, settings: UplinkConfig, clock: Clock) -> None:
        self.targets = tuple(settings.at(i) for i in range(len(settings.brokers)))
        self.clock = clock
        self.interval = settings.failback
        self.index = 0  # the broker connections go to now
        self.failures = 0  # attempts in a row that never came online
        self._due: float | None = None  # when to probe the preferred broker next
        self._probe: Probe | None = None

    @property
    def current(self) -> UplinkConfig:
        return self.targets[self.index]

    @property
    def on_fallback(self) -> bool:
        return self.index != 0

    def online(self) -> None:
        """The current broker accepted the connection: on a fallback, probing starts."""
        self.failures = 0
        self._probe = None
        self._due = self.clock.monotonic() + self.interval if self.on_fallback else None

    def failed(self) -> bool:
        """The current broker could not be reached: the next one is current. True when a
        whole round failed in a row, so the caller backs off before the next attempt."""
        self.failures += 1
        self.index = (self.index + 1) % len(self.targets)
        self._due, self._probe = None, None
        return self.failures % len(self.targets) == 0

    def preferred_back(self) -> bool:
        """Whether it is time to leave a fallback: the preferred broker accepted a probe.
        Called often while connected (each turn of the network loop); it starts a probe
        when one is due and never blocks."""
        if self._due is None:
            return False
        if self._probe is not None:
            if not self._probe.done.is_set():
                return False
            accepted, self._probe = self._probe.accepted, None
            return accepted
        now = self.clock.monotonic()
        if now < self._due:
            return False
        self._due = now + self.interval
        preferred = self.targets[0]
        self._probe = Probe(preferred.host, preferred.port).start()
        return False

    def go_back(self) -> None:
        """The uplink left its fallback: the preferred broker is current again."""
        self.index, self.failures = 0, 0
        self._due, self._probe = None, None
