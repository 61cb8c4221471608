"""End to end against a real Mosquitto: simulated reading -> detector -> outbox -> broker.

The runtime runs unchanged on simulated hardware (the real TMP102 driver on a simulated
bus, gpiozero's MockFactory) and a virtual clock that its scheduler drives.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from edge.bench.mosquitto import Mosquitto
from edge.clock import VirtualClock
from edge.outbox.store import Outbox
from edge.runtime.runtime import Runtime
from edge.sim.hardware import SimulatedHardware
from edge.sim.scenario import Scenario, parse_scenario
from tests.brokers import Subscriber

CONTRACT = {"v", "device", "stream", "seq", "ts", "sensor", "kind", "severity", "value", "synced"}
TS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")

SCENARIO = """
[device]
id = "e2e-01"

[storage]
state_dir = "{state_dir}"
commit_window_ms = 20

[uplink]
broker = "{broker}"
backoff_min = 0.5
backoff_max = 2.0

[[sensors]]
id = "temp"
type = "i2c.tmp102"
interval = 1.0
telemetry = true

[[sensors]]
id = "button"
type = "gpio.edge"
pin = 17

[[detectors]]
sensor = "temp"
type = "threshold"
above = 30.0
hysteresis = 0.5
min_duration = 2.0
severity = "critical"

[simulation]
duration = 120.0

[simulation.signals.temp]
points = [[0, 25.0], [60, 35.0], [120, 25.0]]

[[simulation.presses]]
pin = 17
at = 10.0
hold = 0.5
"""


def scenario(state_dir: Path, broker: str) -> Scenario:
    text = SCENARIO.format(state_dir=state_dir, broker=broker)
    return parse_scenario(text, "e2e.toml", overrides={})


class Rig:
    """A runtime on simulated hardware with a virtual clock its scheduler drives."""

    def __init__(self, state_dir: Path, broker: str) -> None:
        self.scenario = scenario(state_dir, broker)
        self.clock = VirtualClock()
        self.t0 = self.clock.monotonic()
        hardware = SimulatedHardware(self.scenario, self.clock)
        self.runtime = Runtime(
            self.scenario.config, hardware=hardware.hardware, clock=self.clock, drive_clock=True
        )
        hardware.schedule(self.runtime.scheduler)

    def run_until(self, seconds: float) -> None:
        """Sample up to t0 + seconds of virtual time; the call itself proves no blocking."""
        if self.runtime._thread is None:
            self.runtime.start(until=self.t0 + seconds)
        else:
            self.runtime.sample(until=self.t0 + seconds)
        assert self.runtime.sampling_done(timeout=30.0), "sampling blocked"


@pytest.fixture
def rig(tmp_path: Path, mosquitto: Mosquitto) -> Iterator[Rig]:
    rig = Rig(tmp_path / "state", mosquitto.url)
    try:
        yield rig
    finally:
        rig.runtime.close()


def events(subscriber: Subscriber) -> list[dict[str, Any]]:
    return [json.loads(m.payload) for m in subscriber.messages if "/events/" in m.topic]


def assert_complete_and_ordered(bodies: list[dict[str, Any]], last_seq: int) -> None:
    seqs = [b["seq"] for b in bodies]
    assert set(seqs) == set(range(1, last_seq + 1)), "gap or extra seq"
    by_priority: dict[str, list[int]] = {}
    for body in bodies:
        level = "telemetry" if body["kind"] == "telemetry" else body["severity"]
        by_priority.setdefault(level, []).append(body["seq"])
    for level, order in by_priority.items():
        assert order == sorted(order), f"{level} events out of seq order"


def test_reading_crosses_a_limit_and_the_event_reaches_a_subscriber(
    rig: Rig, mosquitto: Mosquitto, mqtt_subscriber: Any
) -> None:
    subscriber = mqtt_subscriber(mosquitto.url, "edgeline/e2e-01/#")
    rig.run_until(120.0)
    assert rig.runtime.drain(timeout=20.0)
    last_seq = rig.runtime.outbox.last_seq
    subscriber.wait_for(lambda ms: len([m for m in ms if "/events/" in m.topic]) >= last_seq)
    bodies = events(subscriber)

    assert_complete_and_ordered(bodies, last_seq)
    stream = rig.runtime.outbox.stream
    for body in bodies:
        assert body.keys() >= CONTRACT
        assert body["v"] == 1 and body["device"] == "e2e-01" and body["stream"] == stream
        assert TS.match(body["ts"]) and body["synced"] is True
    alarms = [b for b in bodies if b["kind"] == "threshold"]
    assert [(a["severity"], a["state"]) for a in alarms] == [
        ("critical", "active"),
        ("info", "clear"),
    ]
    assert alarms[0]["value"] > 30.0 and alarms[0]["threshold"] == 30.0
    topic = next(m.topic for m in subscriber.messages if b'"threshold"' in m.payload)
    assert topic == "edgeline/e2e-01/events/threshold/temp"
    presses = [b["value"] for b in bodies if b["kind"] == "state"]
    assert presses == [True, False]
    telemetry = [b for b in bodies if b["kind"] == "telemetry"]
    assert len(telemetry) == 121  # one per second, t = 0..120
    # The critical alarm jumps the queue: it is sent before older telemetry still pending.
    assert rig.runtime.outbox.stats().pending == 0


def test_birth_is_retained_online_and_clean_stop_publishes_offline(
    rig: Rig, mosquitto: Mosquitto, mqtt_subscriber: Any
) -> None:
    rig.run_until(5.0)
    assert rig.runtime.drain(timeout=20.0)
    late = mqtt_subscriber(mosquitto.url, "edgeline/e2e-01/status")
    online = late.wait_for(lambda ms: any(m.retain for m in ms))
    birth = json.loads(online[0].payload)
    assert birth["state"] == "online" and birth["stream"] == rig.runtime.outbox.stream
    assert birth["sensors"] == ["temp", "button"]

    rig.runtime.close()
    after = mqtt_subscriber(mosquitto.url, "edgeline/e2e-01/status")
    retained = after.wait_for(lambda ms: any(m.retain for m in ms))
    assert json.loads(retained[0].payload)["state"] == "offline"


def test_broker_down_for_30_s_loses_nothing_and_sampling_keeps_its_rate(
    tmp_path: Path, mqtt_subscriber: Any
) -> None:
    broker = Mosquitto(tmp_path / "broker", persistence=True).start()
    rig = Rig(tmp_path / "state", broker.url)
    try:
        subscriber = mqtt_subscriber(
            broker.url, "edgeline/e2e-01/events/#", client_id="e2e-sink", clean_session=False
        )
        rig.run_until(20.0)
        assert rig.runtime.drain(timeout=20.0)  # online and caught up before the outage
        jitter_before = rig.runtime.scheduler.jitter()
        broker.stop()

        rig.run_until(50.0)  # 30 s of sampling with the broker gone
        jitter = rig.runtime.scheduler.jitter()
        temp = next(t for t in rig.runtime.scheduler.tasks if t.name == "temp")
        assert temp.runs == 51 and temp.skipped == 0  # one poll per second, none lost
        assert jitter.max == jitter_before.max == 0.0
        assert rig.runtime.recorder.flush(timeout=10.0)
        backlog = rig.runtime.outbox.stats().pending
        assert backlog >= 30  # the outage's telemetry waits in the outbox

        broker.start()
        subscriber.wait_subscribed(count=2)
        rig.run_until(120.0)
        assert rig.runtime.drain(timeout=30.0)
        last_seq = rig.runtime.outbox.last_seq
        subscriber.wait_for(lambda ms: len({json.loads(m.payload)["seq"] for m in ms}) >= last_seq)
        bodies = events(subscriber)
        distinct = {b["seq"]: b for b in bodies}
        assert_complete_and_ordered(list(distinct.values()), last_seq)
        assert rig.runtime.uplink.stats.connects >= 2
    finally:
        rig.runtime.close()
        broker.stop()


def test_restart_on_the_same_state_dir_continues_stream_and_seq(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    first = Rig(tmp_path / "state", mosquitto.url)
    first.run_until(10.0)
    first.runtime.close()
    with Outbox.open_existing(tmp_path / "state") as outbox:
        stream, last_seq = outbox.stream, outbox.last_seq
    assert last_seq > 0

    second = Rig(tmp_path / "state", mosquitto.url)
    try:
        second.run_until(10.0)
        assert second.runtime.drain(timeout=20.0)
        assert second.runtime.outbox.stream == stream
        assert second.runtime.outbox.last_seq > last_seq
        stats = second.runtime.outbox.stats()
        assert stats.pending == 0 and stats.delivered >= stats.last_seq - last_seq
    finally:
        second.runtime.close()


def test_a_vanished_sensor_raises_health_events_and_the_loop_goes_on(
    rig: Rig, mosquitto: Mosquitto, mqtt_subscriber: Any
) -> None:
    subscriber = mqtt_subscriber(mosquitto.url, "edgeline/e2e-01/events/health/#")
    bus = rig.runtime.hardware.i2c(1)
    rig.run_until(5.0)
    chip = bus.detach(0x48)  # type: ignore[attr-defined]
    rig.run_until(10.0)
    bus.attach(0x48, chip)  # type: ignore[attr-defined]
    rig.run_until(15.0)
    assert rig.runtime.drain(timeout=20.0)
    health = [json.loads(m.payload) for m in subscriber.wait_for(lambda ms: len(ms) >= 2)]
    assert [(h["state"], h["severity"]) for h in health] == [
        ("degraded", "warning"),
        ("recovered", "info"),
    ]
    assert "121" in health[0]["error"]
    temp = next(t for t in rig.runtime.scheduler.tasks if t.name == "temp")
    assert temp.runs == 16 and temp.skipped == 0
