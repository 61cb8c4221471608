"""The runtime: sensors -> detectors -> outbox -> uplink, wired from one Config.

Three threads do the work: the sampling loop (scheduler) reads sensors and runs detectors,
the recorder commits events to the outbox in groups, and the uplink sends them. The
sampling loop only stamps and queues; it never waits on the network or the disk.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from models import DETECTOR_TYPES, Detector
from sensors import SENSOR_TYPES, EdgeSensor, Hardware, PolledSensor, Value

from . import __version__
from .clock import Clock, VirtualClock
from .config import Config, SensorConfig
from .events import Draft, Event, Severity, format_ts
from .outbox import Outbox
from .recorder import Recorder
from .scheduler import Scheduler
from .uplink import Uplink

log = logging.getLogger(__name__)


class Watcher:
    """Hooks for a console or a test to see what the runtime does. Called on its threads."""

    def reading(self, sensor: str, value: Value, unit: str, t: float) -> None:
        """A sensor delivered a value (sampling thread)."""

    def committed(self, events: Sequence[Event]) -> None:
        """Events reached the outbox (recorder thread)."""


@dataclass
class _Sensor:
    config: SensorConfig
    device: PolledSensor | EdgeSensor
    detectors: list[tuple[str, Detector]] = field(default_factory=list)
    last_state: Any = None
    degraded: bool = False
    readings: int = 0
    faults: int = 0


@dataclass(frozen=True)
class Stamp:
    mono: float
    wall: float
    synced: bool


class Runtime:
    def __init__(
        self,
        config: Config,
        *,
        hardware: Hardware,
        clock: Clock,
        drive_clock: bool = False,
        watcher: Watcher | None = None,
    ) -> None:
        self.config = config
        self.device = config.device.id
        self.clock = clock
        self.hardware = hardware
        self.watcher = watcher or Watcher()
        storage = config.storage
        self.outbox = Outbox.open(
            storage.state_dir, self.device, durability=storage.durability, epoch=clock.epoch
        )
        self.scheduler = Scheduler(clock, drive_clock=drive_clock)
        self.recorder = Recorder(
            self.outbox, clock, window=storage.commit_window_ms / 1000, on_commit=self._committed
        )
        self.sensors: dict[str, _Sensor] = {}
        self._thread: threading.Thread | None = None
        self._closed = False
        try:
            self.uplink = self._uplink()
            self._build_sensors()
        except BaseException:
            self._close_sensors()
            self.outbox.close()
            raise

    def _uplink(self) -> Uplink:
        config = self.config
        return Uplink(
            config.uplink,
            device=self.device,
            outbox=self.outbox,
            clock=self.clock,
            on_ack=self.recorder.acknowledge,
            birth={
                "stream": self.outbox.stream,
                "version": __version__,
                "sensors": [s.id for s in config.sensors],
            },
        )

    def _build_sensors(self) -> None:
        for cfg in self.config.sensors:
            kind = SENSOR_TYPES[cfg.type]
            self.sensors[cfg.id] = _Sensor(cfg, kind.build(cfg.params, self.hardware))
        for det in self.config.detectors:
            detector = DETECTOR_TYPES[det.type].build(det.params)
            self.sensors[det.sensor].detectors.append((det.id, detector))

    # -- lifecycle ---------------------------------------------------------------------

    def start(self, *, until: float | None = None) -> None:
        """Start every thread; sampling runs until ``stop()`` or the clock reaches ``until``."""
        self.recorder.start()
        self.uplink.start()
        for sensor in self.sensors.values():
            if sensor.config.interval is not None:
                poll = self._poller(sensor)
                self.scheduler.every(sensor.config.id, sensor.config.interval, poll)
            else:
                device: Any = sensor.device
                device.start(self._edge_handler(sensor))
        self.sample(until)

    def sample(self, until: float | None = None) -> None:
        """(Re)start the sampling thread, until ``stop()`` or the clock reaches ``until``."""
        if self._thread is not None and self._thread.is_alive():
            raise RuntimeError("the sampling loop is already running")
        self._thread = threading.Thread(
            target=self.scheduler.run, kwargs={"until": until}, name="edgeline-sampler", daemon=True
        )
        self._thread.start()

    def sampling_done(self, timeout: float | None = None) -> bool:
        """Wait for the sampling loop to finish (it reached ``until`` or was stopped)."""
        if self._thread is None:
            return True
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def drain(self, timeout: float) -> bool:
        """Wait (real time) until every stored event has been acknowledged by the broker.

        A clock the scheduler drives stands still once sampling ends; here it moves at
        real speed, so the uplink's backoff and keepalive still run out.
        """
        deadline = threading.Event()
        timer = threading.Timer(timeout, deadline.set)
        timer.start()
        try:
            while not deadline.is_set():
                self.recorder.flush(timeout=1.0)
                if self.outbox.stats().pending == 0 and not self.recorder.queued:
                    return True
                deadline.wait(0.05)
                if self.scheduler.drive_clock and isinstance(self.clock, VirtualClock):
                    self.clock.advance(0.05)
            return False
        finally:
            timer.cancel()

    def close(self, timeout: float = 5.0) -> None:
        """Stop sampling, commit what is pending, publish ``offline``, close. Idempotent."""
        if self._closed:
            return
        self._closed = True
        try:
            self.scheduler.stop()
            self.sampling_done(timeout)
            self._close_sensors()
            self.recorder.flush(timeout)  # every event sampled so far is on disk
            self.uplink.close(timeout)  # offline published; in-flight PUBACKs came before it
        finally:
            self.recorder.close()  # and their deletions are committed too
            self.outbox.close()

    def __enter__(self) -> Runtime:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _close_sensors(self) -> None:
        for sensor in self.sensors.values():
            try:
                sensor.device.close()
            except Exception:
                log.exception("closing sensor %s failed", sensor.config.id)

    # -- the sampling path (scheduler thread) ---------------------------------------------

    def stamp(self) -> Stamp:
        return Stamp(self.clock.monotonic(), self.clock.wall(), self.clock.synced())

    def _poller(self, sensor: _Sensor) -> Callable[[float], None]:
        device: Any = sensor.device

        def poll(due: float) -> None:
            try:
                value = device.read()
            except Exception as exc:  # a bus fault is transient: report, go on sampling
                self._fault(sensor, exc)
                return
            self._reading(sensor, value, self.stamp())

        return poll

    def _edge_handler(self, sensor: _Sensor) -> Callable[[Value], None]:
        def emit(value: Value) -> None:  # gpiozero's thread: stamp now, handle on the loop
            stamp = self.stamp()
            self.scheduler.post(lambda: self._reading(sensor, value, stamp))

        return emit

    def _reading(self, sensor: _Sensor, value: Value, stamp: Stamp) -> None:
        cfg = sensor.config
        sensor.readings += 1
        if sensor.degraded:
            sensor.degraded = False
            self._emit(cfg.id, "health", "info", None, stamp, {"state": "recovered"})
        self.watcher.reading(cfg.id, value, sensor.device.unit, stamp.mono)
        if isinstance(value, bool):
            if value != sensor.last_state:
                sensor.last_state = value
                self._emit(cfg.id, "state", "info", value, stamp, {})
        elif cfg.telemetry:
            self._emit(cfg.id, "telemetry", "info", value, stamp, {"unit": sensor.device.unit})
        if isinstance(value, int | float) and not isinstance(value, bool):
            number = float(value)
            if math.isnan(number):
                return
            for detector_id, detector in sensor.detectors:
                found = detector.observe(stamp.mono, number)
                if found is not None:
                    fields = {"detector": detector_id, **found.fields}
                    self._emit(cfg.id, found.kind, found.severity, found.value, stamp, fields)

    def _fault(self, sensor: _Sensor, exc: Exception) -> None:
        sensor.faults += 1
        if sensor.degraded:
            return
        sensor.degraded = True
        log.warning("sensor %s failed: %s", sensor.config.id, exc)
        error = f"{type(exc).__name__}: {exc}"
        self._emit(sensor.config.id, "health", "warning", None, self.stamp(),
                   {"state": "degraded", "error": error})  # fmt: skip

    def _emit(
        self,
        sensor: str,
        kind: str,
        severity: Severity,
        value: Any,
        stamp: Stamp,
        fields: dict[str, Any],
    ) -> None:
        self.recorder.submit(
            Draft(sensor, kind, severity, value, stamp.mono, stamp.wall, stamp.synced, fields)
        )

    # -- after commit (recorder thread) ---------------------------------------------------

    def _committed(self, events: Sequence[Event], deleted: Sequence[int] | Any) -> None:
        self.uplink.committed(events, deleted)
        if events:
            self.watcher.committed(events)

    def status(self) -> dict[str, Any]:
        """A snapshot for the console line and for tests."""
        jitter = self.scheduler.jitter()
        return {
            "time": format_ts(self.clock.wall()),
            "readings": sum(s.readings for s in self.sensors.values()),
            "last_seq": self.outbox.last_seq,
            "queued": self.recorder.queued,
            "link": self.uplink.stats.state,
            "acked": self.uplink.stats.acked,
            "jitter_p99_ms": round(jitter.p99 * 1000, 3),
        }
