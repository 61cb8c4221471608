"""End to end: a small outbox cap, the broker down, far more events than fit, the broker
back. The subscriber receives exactly 1..last_seq minus the seqs the eviction reports
name, and every alarm."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from edge.bench.mosquitto import Mosquitto
from edge.events import Draft
from edge.sim.hardware import SimulatedHardware
from edge.sim.scenario import parse_scenario
from tests.test_end_to_end import Rig

SCENARIO = """
[device]
id = "cap-01"

[storage]
state_dir = "{state_dir}"
commit_window_ms = 20
max_bytes = 262144

[uplink]
broker = "{broker}"
backoff_min = 0.2
backoff_max = 1.0

[[sensors]]
id = "temp"
type = "i2c.tmp102"
interval = 0.05
telemetry = true

[[detectors]]
sensor = "temp"
type = "threshold"
above = 30.0
hysteresis = 0.5
severity = "critical"

[simulation]
duration = 120.0

[simulation.signals.temp]
points = [[0, 25.0], [20, 35.0], [30, 25.0], [40, 35.0], [50, 25.0], [60, 35.0], [70, 25.0]]
"""


class CappedRig(Rig):
    """The end-to-end rig on a scenario of its own."""

    def __init__(self, state_dir: Path, broker: str, scenario: str = SCENARIO) -> None:
        from edge.clock import VirtualClock
        from edge.runtime.runtime import Runtime

        text = scenario.format(state_dir=state_dir, broker=broker)
        self.scenario = parse_scenario(text, "capped.toml", overrides={})
        self.clock = VirtualClock()
        self.t0 = self.clock.monotonic()
        hardware = SimulatedHardware(self.scenario, self.clock)
        self.runtime = Runtime(
            self.scenario.config, hardware=hardware.hardware, clock=self.clock, drive_clock=True
        )
        hardware.schedule(self.runtime.scheduler)


def test_an_outage_past_the_cap_loses_only_reported_telemetry(
    tmp_path: Path, mqtt_subscriber: Any
) -> None:
    broker = Mosquitto(tmp_path / "broker", persistence=True).start()
    rig = CappedRig(tmp_path / "state", broker.url)
    try:
        subscriber = mqtt_subscriber(
            broker.url, "edgeline/cap-01/events/#", client_id="cap-sink", clean_session=False
        )
        rig.run_until(5.0)
        assert rig.runtime.drain(timeout=20.0)
        broker.stop()
        rig.run_until(75.0)  # 70 s at 20 readings/s: ~1400 events, the cap holds ~500
        assert rig.runtime.recorder.flush(timeout=10.0)
        stats = rig.runtime.outbox.stats()
        assert stats.evicted > 0, stats
        assert stats.bytes <= rig.runtime.outbox.limits.row_bytes
        assert rig.runtime.outbox.file_bytes() <= 262144

        broker.start()
        subscriber.wait_subscribed(count=2)
        rig.run_until(80.0)
        assert rig.runtime.drain(timeout=30.0)
        last_seq = rig.runtime.outbox.last_seq
        final = rig.runtime.outbox.stats()

        def bodies() -> dict[int, dict[str, Any]]:
            found = (json.loads(m.payload) for m in subscriber.messages)
            return {b["seq"]: b for b in found}

        def evicted(received: dict[int, dict[str, Any]]) -> set[int]:
            seqs: set[int] = set()
            for body in received.values():
                if body["sensor"] == "outbox" and body.get("state") == "evicted":
                    for first, last in body["ranges"]:
                        seqs.update(range(first, last + 1))
            return seqs

        subscriber.wait_for(
            lambda ms: set(bodies()) | evicted(bodies()) >= set(range(1, last_seq + 1)),
            timeout=30,
        )
        received = bodies()
        gone = evicted(received)
        # Exactly: what the uplink has claimed is never evicted, so no reported seq arrives.
        assert set(received) == set(range(1, last_seq + 1)) - gone
        assert len(gone) == final.evicted
        assert {received[s]["kind"] for s in received if s not in gone} >= {"threshold"}
        # Only telemetry was evicted: every alarm (active and clear) arrived.
        alarms = [b for b in received.values() if b["kind"] == "threshold"]
        states = [b["state"] for b in sorted(alarms, key=lambda b: b["seq"])]
        assert states == ["active", "clear"] * (len(states) // 2) and len(states) >= 6
        reports = [b for b in received.values() if b["sensor"] == "outbox"]
        assert all(r["severity"] == "warning" and r["reason"] == "cap" for r in reports)
        assert all(set(r["priority"]) == {"warning", "info", "telemetry"} for r in reports)
    finally:
        rig.runtime.close()
        broker.stop()


ALARMED = """
[device]
id = "cap-02"

[storage]
state_dir = "{state_dir}"
max_bytes = 131072
full_output = "siren"

[uplink]
broker = "{broker}"

[[sensors]]
id = "siren"
type = "gpio.output"
pin = 22

[simulation]
duration = 60.0
"""


def test_the_full_alarm_switches_the_configured_output(tmp_path: Path) -> None:
    rig = CappedRig(tmp_path / "state", "mqtt://127.0.0.1:1", ALARMED)  # no broker: all wait
    try:
        rig.run_until(1.0)
        siren = rig.runtime.actions.outputs["siren"]
        assert siren.state is False
        stamp = rig.runtime.stamp()
        for i in range(60):  # critical alarms pile up past their reserve (a tenth of ~30 KB)
            rig.runtime.recorder.submit(
                Draft("pump", "threshold", "critical", i, stamp.mono, stamp.wall, True, {})
            )
        assert rig.runtime.recorder.flush(timeout=10.0)
        rig.run_until(2.0)  # the switch happens on the sampling thread
        assert siren.state is True
        bodies = [e.body() for e in rig.runtime.outbox if e.sensor == "outbox"]
        assert [b["state"] for b in bodies] == ["full"]
        assert all(e.priority == 0 for e in rig.runtime.outbox if e.sensor == "pump")
    finally:
        rig.runtime.close()


IN_DOUBT = """
[device]
id = "cap-03"

[storage]
state_dir = "{state_dir}"
commit_window_ms = 20
max_events = 100

[uplink]
broker = "{broker}"
backoff_min = 0.1
backoff_max = 0.5

[[sensors]]
id = "temp"
type = "i2c.tmp102"
interval = 0.05
telemetry = true

[simulation]
duration = 120.0
"""


def test_an_event_in_flight_when_the_link_dies_is_not_evicted(
    tmp_path: Path, mosquitto: Mosquitto, mqtt_subscriber: Any
) -> None:
    """The broker may have what was in flight when the connection died (its PUBACK lost on
    the way): such an event stays until a later PUBACK settles it, so no eviction report
    names an event the broker received."""
    from edge.sim.linkproxy import LinkProxy
    from tests.brokers import split_url
    from tests.waiting import wait_until

    subscriber = mqtt_subscriber(mosquitto.url, "edgeline/cap-03/events/#")

    def received() -> dict[int, dict[str, Any]]:
        bodies = (json.loads(m.payload) for m in subscriber.messages)
        return {body["seq"]: body for body in bodies}

    with LinkProxy(*split_url(mosquitto.url)) as proxy:
        rig = CappedRig(tmp_path / "state", proxy.url, IN_DOUBT)
        try:
            rig.run_until(1.0)
            assert rig.runtime.drain(timeout=20.0)
            # Each byte now takes 2 s through the link: the broker gets the next events,
            # and their PUBACKs are still on their way back when the link dies.
            proxy.delay(2.0)
            rig.run_until(1.5)
            assert rig.runtime.recorder.flush(timeout=10.0)
            newest = rig.runtime.outbox.last_seq
            wait_until(lambda: newest in received())
            proxy.cut()
            unsettled = {e.seq for e in rig.runtime.outbox.claim(-1)}
            in_doubt = unsettled & set(received())
            assert in_doubt, "every PUBACK came back before the cut: the test proves nothing"

            rig.run_until(30.0)  # ~570 events while cut; the cap holds 100
            assert rig.runtime.recorder.flush(timeout=10.0)
            assert rig.runtime.outbox.stats().evicted > 0
            proxy.delay(0.0)
            proxy.restore()
            assert rig.runtime.drain(timeout=30.0)
            last_seq = rig.runtime.outbox.last_seq
            wait_until(lambda: newest in received() and last_seq in received())
        finally:
            rig.runtime.close()

    bodies = received()
    gone: set[int] = set()
    for body in bodies.values():
        if body["sensor"] == "outbox" and body.get("state") == "evicted":
            for first, last in body["ranges"]:
                gone.update(range(first, last + 1))
    assert not gone & in_doubt, f"reported evicted, yet the broker had them: {gone & in_doubt}"
    assert set(bodies) == set(range(1, last_seq + 1)) - gone
