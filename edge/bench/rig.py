"""The unchanged runtime on simulated sensors and the real-time clock, instrumented.

``RigSpec`` says what to run (how many simulated TMP102s, how often, with which detectors,
where to store and send); ``Rig`` builds the runtime exactly as ``edge simulate`` does, with
a ``RealClock`` instead of a virtual one, and records what the figures need: when the first
reading came, how many readings and events, each poll's lateness behind its due time, and
(when asked) each event's reading, commit, seq and whether it was critical.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from edge.clock import RealClock
from edge.events import Draft, Event, format_ts
from edge.runtime.runtime import Runtime
from edge.runtime.watcher import Watcher
from edge.sim.hardware import SimulatedHardware
from edge.sim.scenario import parse_scenario
from sensors import Value

DEVICE = "bench"
TMP102_ADDRESSES = (0x48, 0x49, 0x4A, 0x4B)  # four per bus, set by the ADD0 pin
TYPICAL_DEGC = 21.0
CRITICAL_ABOVE = TYPICAL_DEGC + 5.0  # crossed once per swing of +-10 degC


@dataclass(frozen=True)
class RigSpec:
    state_dir: str
    broker: str
    sensors: int = 20
    interval: float = 0.1
    telemetry: bool = False
    threshold: bool = True
    # The shipped ``vibration`` detector on a simulated MPU-6050, configured as in its model
    # card and the factory-vibration scenario, run on this backend; None: no such sensor.
    vibration_backend: str | None = None
    durability: str = "full"
    commit_window_ms: int = 100
    # > 0: each sensor's temperature swings +-10 degC at this rate (phases spread across the
    # sensors) and a critical threshold rule fires once per swing: that many critical
    # events per second per sensor, each followed by an info clear.
    critical_hz: float = 0.0

    def scenario_text(self) -> str:
        """The scenario file: a config with one simulated TMP102 per sensor."""
        lines = [
            "[device]",
            f'id = "{DEVICE}"',
            "[storage]",
            f'state_dir = "{self.state_dir}"',
            f'durability = "{self.durability}"',
            f"commit_window_ms = {self.commit_window_ms}",
            "[uplink]",
            f'broker = "{self.broker}"',
            "backoff_min = 0.1",
            "backoff_max = 1.0",
        ]
        for i in range(self.sensors):
            lines += [
                "[[sensors]]",
                f'id = "{sensor_id(i)}"',
                'type = "i2c.tmp102"',
                f"bus = {i // len(TMP102_ADDRESSES)}",
                f"address = {TMP102_ADDRESSES[i % len(TMP102_ADDRESSES)]}",
                f"interval = {self.interval}",
                f"telemetry = {'true' if self.telemetry else 'false'}",
            ]
            if self.threshold:  # never reached by the simulated 21 degC: cost, not events
                lines += [
                    "[[detectors]]",
                    f'sensor = "{sensor_id(i)}"',
                    'type = "threshold"',
                    "above = 80.0",
                    "hysteresis = 1.0",
                ]
            if self.critical_hz > 0:
                lines += [
                    "[[detectors]]",
                    f'sensor = "{sensor_id(i)}"',
                    'type = "threshold"',
                    f"above = {CRITICAL_ABOVE}",
                    "hysteresis = 1.0",
                    'severity = "critical"',
                ]
        if self.vibration_backend is not None:
            lines += _vibration_lines(self.vibration_backend)
        lines += ["[simulation]", "duration = 86400.0"]
        if self.vibration_backend is not None:
            # Running-speed vibration on the radial axes, gravity on z (factory-vibration).
            for axis, base, amplitude in (("x", 0.0, 0.05), ("y", 0.0, 0.05), ("z", 1.0, 0.01)):
                lines += [
                    f'[simulation.signals."{VIBRATION_SENSOR}.accel_{axis}"]',
                    f"base = {base}",
                    "noise = 0.01",
                    f"harmonics = [{{ frequency = 24.6, amplitude = {amplitude} }}]",
                ]
        if self.critical_hz > 0:
            for i in range(self.sensors):
                phase = 2 * math.pi * i / self.sensors
                lines += [
                    f'[simulation.signals."{sensor_id(i)}"]',
                    f"base = {TYPICAL_DEGC}",
                    f"harmonics = [{{ frequency = {self.critical_hz}, amplitude = 10.0,"
                    f" phase = {phase} }}]",
                ]
        return "\n".join(lines) + "\n"


VIBRATION_SENSOR = "motor"


def _vibration_lines(backend: str) -> list[str]:
    """An MPU-6050 polled at 4 Hz feeding the shipped ``vibration`` model: 80-reading windows
    of the 3-axis acceleration, a new one every 20 readings (models/vibration.md)."""
    return [
        "[[sensors]]",
        f'id = "{VIBRATION_SENSOR}"',
        'type = "i2c.mpu6050"',
        "bus = 0",
        "address = 0x68",
        'mode = "burst"',
        "interval = 0.25",
        "[[detectors]]",
        f'sensor = "{VIBRATION_SENSOR}"',
        'quantity = "accel"',
        'type = "onnx"',
        'model = "vibration"',
        f'backend = "{backend}"',
        "window = 80",
        "hop = 20",
        "width = 3",
        'features = "rms,std,peak,kurtosis"',
        "threshold = 1e9",  # scored every window, never an event
    ]


def sensor_id(index: int) -> str:
    return f"s{index:04d}"


class RigWatcher(Watcher):
    """Counts readings and events; optionally keeps each event's reading and commit times."""

    def __init__(self, *, trace: bool = False) -> None:
        self.first_reading: float | None = None
        self.readings = 0
        self.committed_events = 0
        self.trace = trace
        self.read_at: dict[tuple[str, str], float] = {}  # (sensor, ts) -> reading time
        self.stored: list[tuple[int, str, str, float]] = []  # seq, sensor, ts, commit time
        self.critical: set[int] = set()  # seqs of the critical events among them
        self._lock = threading.Lock()

    def reading(self, sensor: str, value: Value, unit: str, t: float) -> None:
        if self.first_reading is None:
            self.first_reading = time.monotonic()
        self.readings += 1

    def drafted(self, draft: Draft) -> None:
        if self.trace:
            self.read_at[(draft.sensor, format_ts(draft.wall))] = draft.mono

    def committed(self, events: Sequence[Event]) -> None:
        now = time.monotonic()
        with self._lock:
            self.committed_events += len(events)
            if self.trace:
                for event in events:
                    body = event.body()
                    self.stored.append((event.seq, event.sensor, str(body["ts"]), now))
                    if body["severity"] == "critical":
                        self.critical.add(event.seq)


class Lateness:
    """Each poll's lateness behind its due time, with when it ran (instrumented scheduler)."""

    def __init__(self) -> None:
        self.samples: list[tuple[float, float]] = []  # (due, late)
        self.skipped = 0

    def wrap(self, action: Callable[[float], None]) -> Callable[[float], None]:
        def timed(due: float) -> None:
            self.samples.append((due, time.monotonic() - due))
            action(due)

        return timed

    def between(self, start: float, end: float) -> list[float]:
        return [late for due, late in self.samples if start <= due < end]


class Rig:
    """A runtime built from a ``RigSpec``; ``start()``, then ``close()``."""

    def __init__(self, spec: RigSpec, *, trace: bool = False) -> None:
        self.spec = spec
        scenario = parse_scenario(spec.scenario_text(), "bench.toml", overrides={})
        self.clock = RealClock(assume_synced=True)
        self.hardware = SimulatedHardware(scenario, self.clock)
        self.watcher = RigWatcher(trace=trace)
        self.lateness = Lateness()
        self.runtime = Runtime(
            scenario.config, hardware=self.hardware.hardware, clock=self.clock,
            watcher=self.watcher,
        )  # fmt: skip
        scheduler = self.runtime.scheduler
        every = scheduler.every

        def instrumented(name: str, interval: float, action: Any, **options: Any) -> Any:
            return every(name, interval, self.lateness.wrap(action), **options)

        # The scheduler is the runtime's own; only its polls are timed on the way in.
        setattr(scheduler, "every", instrumented)  # noqa: B010 - an instance attribute

    def start(self) -> None:
        self.runtime.start()

    def skipped(self) -> int:
        return sum(task.skipped for task in self.runtime.scheduler.tasks)

    def close(self, drain: float = 0.0) -> None:
        if drain > 0:
            self.runtime.drain(drain)
        self.runtime.close()
