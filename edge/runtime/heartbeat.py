"""The heartbeat: the retained ``online`` status published again every ``[uplink]
heartbeat`` seconds with the device's health figures, so that the cloud sees a device going
bad (a loop falling behind, an outbox filling, memory growing, the card wearing) before it
goes silent.

The due times are the runtime's clock (virtual in the simulator and the tests) and come
from the sampling loop, as a one-shot task re-armed each time: the heartbeat is not a poll,
so its own lateness is not counted as the loop's. The loop only notes that one is due; the
figures are read and the status published on a thread of its own, since reading the
outbox's stats may wait for a group commit on the disk. A loop that stops stops the
heartbeats, and the retained status's ``ts`` then ages: that is the signal for a consumer.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from typing import Any

from edge.runtime.health import Health, Window, health_json
from edge.runtime.scheduler import Scheduler

log = logging.getLogger(__name__)

Publish = Callable[[Mapping[str, Any]], bool]


class Heartbeat:
    """Publishes ``{"health": {...}}`` on top of the birth's fields every ``interval``
    seconds of the runtime's clock.

    Threads: ``start`` and ``close`` on the runtime's owner thread (``start`` before the
    sampling loop runs: the scheduler's queue is the loop's alone once it does); the due
    times on the sampling thread, which only sets a flag; ``edgeline-heartbeat`` reads the
    figures and calls ``publish`` (the uplink's ``publish_status``: queued for the link
    thread, never waiting on the network). A heartbeat due while the link is down is
    skipped (counted): a stale one published later would only mislead.
    """

    def __init__(
        self, interval: float, health: Health, publish: Publish, scheduler: Scheduler
    ) -> None:
        self.interval = interval
        self.health = health
        self.publish = publish
        self.scheduler = scheduler
        self.sent = 0
        self.skipped = 0  # due while offline
        self._window = Window()
        self._due = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._start = 0.0
        self._k = 0

    def start(self) -> None:
        self._start = self.scheduler.clock.monotonic()
        self._k = 1
        self.scheduler.at("heartbeat", self._start + self.interval, self._fire)
        self._thread = threading.Thread(target=self._run, name="edgeline-heartbeat", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop; idempotent. The uplink publishes ``offline`` itself on close."""
        self._stop.set()
        self._due.set()
        if self._thread is not None:
            self._thread.join(5.0)
            self._thread = None

    def _fire(self, due: float) -> None:  # sampling thread: note it, re-arm, return
        self._due.set()
        # Due times stay on start + k * interval; a loop that fell behind skips whole
        # intervals rather than sending a burst of heartbeats.
        now = self.scheduler.clock.monotonic()
        self._k = max(self._k + 1, int((now - self._start) / self.interval) + 1)
        self.scheduler.at("heartbeat", self._start + self._k * self.interval, self._fire)

    def _run(self) -> None:
        while True:
            self._due.wait()
            self._due.clear()
            if self._stop.is_set():
                return
            try:
                self.beat()
            except Exception:  # a heartbeat is a report, never a reason to stop reporting
                log.exception("heartbeat failed")

    def beat(self) -> bool:
        """Read the figures and publish one heartbeat now; False when the link is down."""
        figures = self.health.figures()
        body = {"health": health_json(figures, self._window.rates(figures))}
        if self.publish(body):
            self.sent += 1
            return True
        self.skipped += 1
        return False
