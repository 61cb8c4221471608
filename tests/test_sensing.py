"""The sensing path on simulated hardware: faults, ranges, stuck, filters, quantities, actions.

Real drivers read register-level chip models on a SimulatedBus with injected faults; the
runtime runs on a virtual clock its scheduler drives; events land in a real SQLite outbox
(the broker is unreachable here: these tests look at what is stored).
"""

from __future__ import annotations

import dataclasses
import itertools
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from edge.clock import VirtualClock
from edge.config.device import parse
from edge.events import Stamp
from edge.runtime.runtime import Runtime
from edge.runtime.sensing import SensorRunner
from edge.sim.hardware import SimulatedHardware
from edge.sim.scenario import parse_scenario
from models import DETECTOR_TYPES, Detection
from sensors import SENSOR_TYPES, TMP102, SimulatedBus, SimulatedTMP102
from sensors.types import TMP102Sensor

HEAD = """
[device]
id = "s-01"
[storage]
state_dir = "{state}"
commit_window_ms = 0
[uplink]
broker = "mqtt://127.0.0.1:1"
"""


class Rig:
    def __init__(self, tmp_path: Path, body: str) -> None:
        text = HEAD.format(state=tmp_path / "state") + body
        self.scenario = parse_scenario(text, "sensing.toml", overrides={})
        self.clock = VirtualClock()
        self.t0 = self.clock.monotonic()
        self.sim = SimulatedHardware(self.scenario, self.clock)
        self.runtime = Runtime(
            self.scenario.config, hardware=self.sim.hardware, clock=self.clock, drive_clock=True
        )
        self.sim.schedule(self.runtime.scheduler)

    def run_until(self, seconds: float) -> list[dict[str, Any]]:
        if self.runtime._thread is None:
            self.runtime.start(until=self.t0 + seconds)
        else:
            self.runtime.sample(until=self.t0 + seconds)
        assert self.runtime.sampling_done(timeout=30)
        assert self.runtime.recorder.flush(timeout=10)
        return [e.body() for e in sorted(self.runtime.outbox.claim(-1), key=lambda e: e.seq)]

    def polls(self, sensor: str) -> int:
        return next(t.runs for t in self.runtime.scheduler.tasks if t.name == sensor)


@pytest.fixture
def rigs(tmp_path: Path) -> Any:
    made: list[Rig] = []

    def make(body: str) -> Rig:
        rig = Rig(tmp_path, body)
        made.append(rig)
        return rig

    yield make
    for rig in made:
        rig.runtime.close(timeout=1)


def health(bodies: list[dict[str, Any]], sensor: str) -> list[tuple[str, str]]:
    return [(b["state"], b["severity"]) for b in bodies if b["kind"] == "health"
            and b["sensor"] == sensor]  # fmt: skip


TWO_TMP102 = """
[[sensors]]
id = "a"
type = "i2c.tmp102"
interval = 1.0
telemetry = true
retry_max = 8.0

[[sensors]]
id = "b"
type = "i2c.tmp102"
address = 0x49
interval = 1.0
telemetry = true
"""


# More sensors on one interval than fall due together (edge.runtime.scheduler's burst of 20).
SHARED = "".join(
    f"""
[[sensors]]
id = "t{i:02d}"
type = "i2c.tmp102"
bus = {10 + i // 4}
address = {0x48 + i % 4}
interval = 1.0
telemetry = true
"""
    for i in range(24)
)
FAST = """
[[sensors]]
id = "fast"
type = "i2c.tmp102"
bus = 2
interval = 0.5
telemetry = true
"""


def test_sensors_sharing_an_interval_are_polled_staggered_across_it(rigs: Any) -> None:
    rig = rigs(SHARED + FAST)
    bodies = rig.run_until(10.0)
    times: dict[str, list[float]] = {}
    for body in bodies:
        if body["kind"] == "telemetry":
            stamp = datetime.fromisoformat(body["ts"].replace("Z", "+00:00")).timestamp()
            times.setdefault(body["sensor"], []).append(stamp)
    start = times["fast"][0]  # alone on its interval: polled at once
    # The 24 sensors at 1 s in two bursts of 12, 50 ms apart in config order (spread over
    # the first 100 ms), both shifted by half the smallest slot (25 ms) so they never fall
    # due with the 0.5 s one. The events' timestamps have milliseconds.
    firsts = [times[f"t{i:02d}"][0] - start for i in range(24)]
    assert firsts == pytest.approx([0.025] * 12 + [0.075] * 12, abs=0.001)
    assert len({round(first, 3) for first in firsts}) == 2
    for i in range(24):
        polls = times[f"t{i:02d}"]
        assert len(polls) == 10  # the slot after 9.x s lies past the end
        steps = [later - earlier for earlier, later in itertools.pairwise(polls)]
        assert steps == pytest.approx([1.0] * 9, abs=0.001)  # on its own grid, no drift
    assert len(times["fast"]) == 21  # 0, 0.5, ... 10.0


def test_a_failing_chip_degrades_retries_with_backoff_and_recovers(rigs: Any) -> None:
    rig = rigs(TWO_TMP102)
    bus: SimulatedBus = rig.sim.buses[1]
    rig.run_until(5.0)
    bus.inject(0x48, "vanish")
    rig.run_until(40.0)
    bus.restore(0x48)
    bodies = rig.run_until(60.0)

    assert health(bodies, "a") == [("degraded", "warning"), ("recovered", "info")]
    degraded = next(b for b in bodies if b["kind"] == "health" and b["sensor"] == "a")
    assert degraded["errno"] == 121 and degraded["errno_name"] == "EREMOTEIO"
    assert degraded["retry_in"] == 1.0
    # The neighbour on the same bus kept its rate: one poll a second, none skipped.
    assert rig.polls("b") == 61
    assert sum(1 for b in bodies if b["sensor"] == "b" and b["kind"] == "telemetry") == 61
    # While it failed, sensor a was read on a doubling delay capped at 8 s (t = 6, 7, 9,
    # 13, 21, 29, 37), not every second; its readings resumed at the first retry after 40.
    readings_a = [b for b in bodies if b["sensor"] == "a" and b["kind"] == "telemetry"]
    assert len(readings_a) == 6 + (60 - 45 + 1)
    assert health(bodies, "b") == []


@pytest.mark.parametrize(("fault", "errno"), [("nack", 121), ("eio", 5), ("timeout", 110)])
def test_each_bus_fault_is_a_health_event_with_its_errno(rigs: Any, fault: str, errno: int) -> None:
    rig = rigs(TWO_TMP102)
    rig.sim.buses[1].inject(0x48, fault, count=1)  # type: ignore[arg-type]
    bodies = rig.run_until(3.0)
    states = [b for b in bodies if b["kind"] == "health"]
    assert [(b["state"], b.get("errno")) for b in states] == [
        ("degraded", errno),
        ("recovered", None),
    ]


def test_a_stuck_chip_is_reported_and_its_recovery_too(rigs: Any) -> None:
    rig = rigs(
        TWO_TMP102.replace("retry_max = 8.0", "stuck_after = 5")
        + """
[simulation.signals.a]
points = [[0, 20.0], [100, 30.0]]
"""
    )
    bus: SimulatedBus = rig.sim.buses[1]
    rig.run_until(2.0)
    bus.inject(0x48, "stuck")
    rig.run_until(12.0)
    bus.clear(0x48)
    bodies = rig.run_until(15.0)
    assert health(bodies, "a") == [("stuck", "warning"), ("recovered", "info")]
    stuck = next(b for b in bodies if b["kind"] == "health")
    assert stuck["readings"] == 5


def test_readings_outside_the_chips_range_are_reported_and_not_acted_on() -> None:
    bus = SimulatedBus()
    level = [20.0]
    bus.attach(0x48, SimulatedTMP102(lambda: level[0]))
    kind = dataclasses.replace(SENSOR_TYPES["i2c.tmp102"], limits={"": (0.0, 30.0)})
    config = parse(HEAD.format(state="/unused") + TWO_TMP102, "x.toml").sensors[0]
    emitted: list[tuple[str, str, Any, dict[str, Any]]] = []
    detections: list[str] = []

    def emit(sensor: str, kind_: str, severity: str, value: Any, stamp: Stamp, f: Any) -> None:
        emitted.append((kind_, severity, value, f))

    def detected(detector: str, found: Detection, stamp: Stamp) -> None:
        detections.append(detector)

    runner = SensorRunner(
        config, kind, TMP102Sensor(TMP102(bus)), [], emit=emit, on_detection=detected
    )
    for t, value in enumerate([20.0, 35.0, 36.0, 25.0]):
        level[0] = value
        runner.reading(runner.device.read(), Stamp(float(t), float(t), True))  # type: ignore[union-attr]
    kinds = [(k, f.get("state")) for k, _, _, f in emitted]
    assert kinds == [
        ("telemetry", None),
        ("health", "out_of_range"),
        ("health", "recovered"),
        ("telemetry", None),
    ]
    assert emitted[1][3]["range"] == [0.0, 30.0] and emitted[1][2] == 35.0


def test_a_reading_whose_time_goes_back_is_detected_counted_and_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A pushed device's clock can step back: its readings go on to the detectors in
    arrival order, the sensor counts them (a metric) and the log says so once."""
    bus = SimulatedBus()
    level = [20.0]
    bus.attach(0x48, SimulatedTMP102(lambda: level[0]))
    body = TWO_TMP102 + '[[detectors]]\nsensor = "a"\ntype = "threshold"\nabove = 30.0\n'
    config = parse(HEAD.format(state="/unused") + body, "x.toml")
    [det] = config.detectors
    detections: list[str] = []

    def emit(sensor: str, kind_: str, severity: str, value: Any, stamp: Stamp, f: Any) -> None:
        pass

    def detected(detector: str, found: Detection, stamp: Stamp) -> None:
        detections.append(str(found.fields["state"]))

    runner = SensorRunner(
        config.sensors[0],
        SENSOR_TYPES["i2c.tmp102"],
        TMP102Sensor(TMP102(bus)),
        [(det, DETECTOR_TYPES[det.type].build(det.params))],
        emit=emit,
        on_detection=detected,
    )
    for t, value in [(100.0, 20.0), (90.0, 35.0), (90.0, 36.0), (50.0, 20.0), (101.0, 20.0)]:
        level[0] = value
        runner.reading(runner.device.read(), Stamp(t, t, True))  # type: ignore[union-attr]
    assert detections == ["active", "clear"]  # the late readings were detected on
    assert runner.times_back == 3  # 90, 90 (a repeat, but before 100) and 50
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert warnings == ["sensor a: reading time went back 10.000 s; detection goes on"]


def test_filters_run_in_order_before_telemetry_and_detectors(rigs: Any) -> None:
    rig = rigs("""
[[sensors]]
id = "t"
type = "i2c.tmp102"
interval = 1.0
telemetry = true
filters = [{type = "median", window = 3}, {type = "delta", delta = 1.0}]

[simulation.signals.t]
points = [[0, 20.0], [30, 20.0], [30, 25.0], [60, 25.0]]
""")
    bodies = rig.run_until(60.0)
    telemetry = [b["value"] for b in bodies if b["kind"] == "telemetry"]
    # The median needs 3 readings; delta then passes only the step: 20 once, 25 once.
    assert telemetry == [20.0, 25.0]


def test_a_multi_quantity_chip_reports_all_quantities_and_detects_on_one(rigs: Any) -> None:
    rig = rigs("""
[[sensors]]
id = "env"
type = "i2c.bme280"
interval = 5.0
telemetry = true

[[detectors]]
sensor = "env"
quantity = "humidity"
type = "threshold"
above = 80.0

[simulation.signals."env.humidity"]
points = [[0, 50.0], [60, 90.0]]
[simulation.signals."env.temperature"]
points = [[0, 21.0]]
""")
    bodies = rig.run_until(60.0)
    first = next(b for b in bodies if b["kind"] == "telemetry")
    assert set(first["value"]) == {"temperature", "pressure", "humidity"}
    assert first["units"] == {"temperature": "degC", "pressure": "hPa", "humidity": "%RH"}
    assert first["value"]["temperature"] == pytest.approx(21.0, abs=0.05)
    alarm = next(b for b in bodies if b["kind"] == "threshold")
    assert alarm["quantity"] == "humidity" and alarm["value"] > 80.0


def test_a_detection_switches_an_output_at_once_and_the_output_reports_it(rigs: Any) -> None:
    rig = rigs("""
[[sensors]]
id = "t"
type = "i2c.tmp102"
interval = 1.0

[[sensors]]
id = "fan"
type = "gpio.output"
pin = 22

[[detectors]]
id = "hot"
sensor = "t"
type = "threshold"
above = 30.0
hysteresis = 1.0

[[actions]]
when = "hot"
output = "fan"

[simulation.signals.t]
points = [[0, 25.0], [20, 35.0], [40, 25.0]]
""")
    fan = rig.sim.pins.pin(22)
    rig.run_until(25.0)
    assert fan.state is True  # on while the alarm is active
    bodies = rig.run_until(60.0)
    assert fan.state is False
    states = [(b["sensor"], b["value"]) for b in bodies if b["kind"] == "state"]
    assert states == [("fan", False), ("fan", True), ("fan", False)]
    alarms = [b["state"] for b in bodies if b["kind"] == "threshold"]
    assert alarms == ["active", "clear"]  # the alarm itself is stored and sent too


def test_two_register_fields_of_one_chip_share_its_address(rigs: Any) -> None:
    rig = rigs("""
[[sensors]]
id = "hr"
type = "i2c.registers"
address = 0x57
register = 0x20
scale = 0.1
interval = 1.0
telemetry = true

[[sensors]]
id = "spo2"
type = "i2c.registers"
address = 0x57
register = 0x22
scale = 0.1
interval = 1.0
telemetry = true

[simulation.signals.hr]
base = 72.0
[simulation.signals.spo2]
base = 97.0
""")
    bodies = rig.run_until(3.0)
    values = {(b["sensor"], b["value"]) for b in bodies if b["kind"] == "telemetry"}
    assert values == {("hr", 72.0), ("spo2", 97.0)}


def test_a_single_input_adc_is_one_value_a_detector_watches_directly(rigs: Any) -> None:
    rig = rigs("""
[[sensors]]
id = "smoke"
type = "i2c.ads1115"
channel = "0"
interval = 1.0

[[detectors]]
sensor = "smoke"
type = "threshold"
above = 1.2

[simulation.signals.smoke]
points = [[0, 0.4], [10, 2.0]]
""")
    bodies = rig.run_until(12.0)
    alarm = next(b for b in bodies if b["kind"] == "threshold")
    assert alarm["value"] > 1.2 and "quantity" not in alarm
