"""The runtime's side of a pushed sensor (``serial.mcu``): what its hardware sends, from the
hardware's thread, goes onto the sampling thread with the stamp it was measured at.

A pushed reading is not stamped when it arrives: its ``at`` (the MCU's time, mapped onto
the runtime's monotonic clock by the link) becomes the stamp, with the wall-clock time of
that instant and ``synced`` only when the runtime's clock is synced and the MCU's clock is
mapped.
"""

from __future__ import annotations

import logging
from typing import Any

from edge.clock import Clock
from edge.events import Stamp
from edge.runtime.scheduler import Scheduler
from edge.runtime.sensing import SensorRunner
from edge.runtime.watcher import Watcher
from models import Severity
from sensors import Value

log = logging.getLogger(__name__)


class PushedReadings:
    """``sensors.base.Readings`` for one sensor: called on the hardware's thread (the MCU
    link's), it posts each call to the scheduler, whose thread does the rest."""

    def __init__(
        self, runner: SensorRunner, scheduler: Scheduler, clock: Clock, watcher: Watcher
    ) -> None:
        self.runner = runner
        self.scheduler = scheduler
        self.clock = clock
        self.watcher = watcher

    def stamp(self, at: float, synced: bool) -> Stamp:
        """The stamp of a moment ``at`` on the runtime's monotonic clock, past or now."""
        now = self.clock.monotonic()
        return Stamp(at, self.clock.wall() - (now - at), synced and self.clock.synced())

    def reading(self, value: Value, at: float, synced: bool) -> None:
        stamp = self.stamp(at, synced)
        runner = self.runner

        def handle() -> None:
            self.watcher.reading(runner.config.id, value, runner.unit, stamp.mono)
            runner.reading(value, stamp)

        self.scheduler.post(handle)

    def block(self, quantity: str, times: Any, samples: Any, synced: bool) -> None:
        stamp = self.stamp(float(times[-1]), synced)
        self.scheduler.post(lambda: self.runner.block(quantity, times, samples, stamp))

    def fault(self, error: Exception) -> None:
        stamp = self.stamp(self.clock.monotonic(), True)
        runner = self.runner

        def handle() -> None:
            if not runner.degraded:
                log.warning("sensor %s failed: %s", runner.config.id, error)
            runner.fault(error, stamp)

        self.scheduler.post(handle)

    def report(self, kind: str, severity: str, value: Any, fields: dict[str, Any]) -> None:
        stamp = self.stamp(self.clock.monotonic(), True)
        level: Severity = "warning" if severity == "warning" else "info"
        sensor, emit = self.runner.config.id, self.runner.emit
        self.scheduler.post(lambda: emit(sensor, kind, level, value, stamp, fields))
