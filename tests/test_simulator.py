"""Scenarios with network and power faults, end to end against a real Mosquitto."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from edge.bench.mosquitto import Mosquitto
from edge.events import Draft
from edge.runtime.watcher import Watcher
from edge.sim.scenario import parse_scenario
from edge.sim.simulator import Simulator

SCENARIO = """
[device]
id = "field-01"
[storage]
state_dir = "{state}"
commit_window_ms = 20
bulk_window_ms = 20
[uplink]
broker = "{broker}"
backoff_min = 0.05
backoff_max = 0.5

[[sensors]]
id = "t"
type = "i2c.tmp102"
interval = 1.0
telemetry = true

[simulation]
duration = 120.0
[simulation.signals.t]
base = 20.0
noise = 0.2

[[simulation.injections]]
kind = "network"
at = 20.0
until = 50.0

[[simulation.injections]]
kind = "power-cut"
at = 70.0
down = 10.0
"""


class Drafts(Watcher):
    def __init__(self) -> None:
        self.times: list[float] = []

    def drafted(self, draft: Draft) -> None:
        self.times.append(draft.mono)


def test_events_stored_before_a_link_cut_and_a_power_cut_all_arrive_after_them(
    tmp_path: Path, mosquitto: Mosquitto, mqtt_subscriber: Any
) -> None:
    text = SCENARIO.format(state=tmp_path / "state", broker=mosquitto.url)
    scenario = parse_scenario(text, "faults.toml", overrides={})
    events = mqtt_subscriber(mosquitto.url, "edgeline/field-01/events/#")
    status = mqtt_subscriber(mosquitto.url, "edgeline/field-01/status")
    drafts = Drafts()
    # Scaled real time (60x): the cut and the power cut happen while the uplink is live.
    simulator = Simulator(scenario, speed=60.0, duration=120.0, watcher=lambda s, t0: drafts)
    (run,) = simulator.run(drain_timeout=20.0)

    assert run.crashes == 1 and run.drained
    last_seq = run.last_seq
    got = events.wait_for(
        lambda ms: {json.loads(m.payload)["seq"] for m in ms} >= set(range(1, last_seq + 1))
    )
    bodies = {json.loads(m.payload)["seq"]: json.loads(m.payload) for m in got}
    assert set(bodies) == set(range(1, last_seq + 1))  # nothing stored was lost
    # One reading a second, none while the power was off (t = 70..80); a power cut loses
    # only what the recorder had not yet committed (telemetry's 20 ms window here: one or
    # two events).
    stamps = sorted(b["ts"] for b in bodies.values())
    assert len(stamps) == len(set(stamps))
    assert len(drafts.times) - 3 <= last_seq <= len(drafts.times), (last_seq, len(drafts.times))
    assert not [t for t in drafts.times if 70.5 < t < 79.5]  # the clock starts at 0
    # The broker published the last will when the power went, and a new birth after.
    states = [json.loads(m.payload)["state"] for m in status.messages]
    assert states.count("online") >= 2 and "offline" in states
    assert run.proxy is not None and run.proxy.refused + run.proxy.connections >= 2
