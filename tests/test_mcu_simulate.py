"""``edge simulate --scenario mcu-vibration --speed max`` against a real Mosquitto: the
simulated MCU on a real pty, driven on the virtual clock, through noise bursts, corrupted
and cut frames, a port that vanishes for 5 s, a restart and a drifting crystal. Every
reading it sent intact arrives upstream once and in order, stamped when it was measured;
the vanished port is a degraded/recovered pair around the gap; the 1 kHz vibration blocks
reach the shipped model, whose alarm switches the MCU's lamp (ACKed, reported)."""

from __future__ import annotations

import itertools
import json
import threading
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from edge.bench.mosquitto import Mosquitto
from edge.sim.session import Options, simulate
from firmware_bridge.messages import Reading, Samples
from tests.brokers import Subscriber

START = datetime.fromisoformat("2026-03-10T08:00:00+00:00").timestamp()  # the scenario's


def seconds(event: dict[str, Any]) -> float:
    """An event's ``ts`` as seconds since the scenario's start."""
    return datetime.fromisoformat(event["ts"].replace("Z", "+00:00")).timestamp() - START


def test_simulate_delivers_every_intact_mcu_reading_through_the_line_faults(
    mosquitto: Mosquitto,
) -> None:
    lines: list[str] = []
    with Subscriber(mosquitto.url, "edgeline/press-07/events/#") as cloud:
        options = Options(scenario="mcu-vibration", broker=mosquitto.url, speed="max", quiet=True)
        runs = simulate(options, threading.Event(), say=lines.append)
        (run,) = runs
        cloud.wait_for(lambda got: len(got) >= run.last_seq)
        events = sorted((json.loads(m.payload) for m in cloud.messages), key=lambda e: e["seq"])

    assert run.drained and [e["seq"] for e in events] == list(range(1, run.last_seq + 1))
    driven = run.hardware.mcus["motor"].mcu
    sent = [m for m in driven.intact if isinstance(m, Reading)]
    telemetry = [e for e in events if e["kind"] == "telemetry"]
    # The housing temperature (channel 3) as the cloud sees it: every one sent intact, once,
    # in order, and none of those the faults hit (they are not in ``intact``).
    assert [e["value"]["temperature"] for e in telemetry] == [
        float(np.float32(m.value)) for m in sent
    ]
    assert len(sent) >= 350  # 360 s at 1 Hz, less the 5 s the port was gone
    # Stamped when measured: one a second, on the scenario's clock, none in the gap.
    times = [seconds(e) for e in telemetry]
    assert all(b > a for a, b in itertools.pairwise(times))
    assert not [t for t in times if 90.0 < t < 95.0]

    health = [e for e in events if e["kind"] == "health"]
    assert [e["state"] for e in health] == ["degraded", "recovered"]
    down, up = (seconds(e) for e in health)
    assert 90.0 <= down < 91.0 and 95.0 <= up < 96.5
    assert "LinkDown" in health[0]["error"]

    # Every block sent intact reached the link; the model alarms on the defect (from 240 s)
    # and nowhere else, and its alarm lit the MCU's lamp: ACKed, and reported upstream.
    device = run.runtime.sensors["motor"].device
    status: dict[str, Any] = device.status()  # type: ignore[union-attr]
    blocks = sum(isinstance(m, Samples) for m in driven.intact)
    assert device.link.stats.blocks == blocks > 4000  # type: ignore[union-attr]
    assert status["reconnects"] == 1 and status["reboots"] == 1
    assert status["dropped"]["crc"] + status["dropped"]["cobs"] > 50
    alarms = [e for e in events if e["kind"] == "anomaly" and e["state"] == "active"]
    assert alarms and all(240.0 < seconds(e) < 300.0 for e in alarms)
    lamp = [e for e in events if e["kind"] == "state" and e.get("output") == "alarm_lamp"]
    assert lamp and lamp[0]["value"] is True and lamp[0]["acked"] is True
    assert driven.outputs["alarm_lamp"] is True
    assert any("labels: 3/3 labels caught, 0 false alarm" in line for line in lines), lines


POWER_CUT = """
[device]
id = "cut-01"
[uplink]
broker = "mqtt://127.0.0.1:1883"
[[sensors]]
id = "pump"
type = "serial.mcu"
port = "/dev/ttyACM0"
telemetry = true
channels = [{ mcu = "flow", unit = "L/min" }]
[simulation]
duration = 60.0
[simulation.signals."pump.flow"]
base = 10.0
noise = 0.5
[[simulation.injections]]
kind = "power-cut"
at = 20.0
down = 5.0
"""


def test_after_a_power_cut_the_new_runtime_takes_the_mcu_up_again(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    """The Pi loses power, the MCU does not: the new runtime opens the port again, says
    HELLO, and every reading the MCU sent while a runtime was listening arrives once."""
    scenario = tmp_path / "cut.toml"
    scenario.write_text(POWER_CUT)
    options = Options(scenario=str(scenario), broker=mosquitto.url, speed="max", quiet=True)
    with Subscriber(mosquitto.url, "edgeline/cut-01/events/#") as cloud:
        (run,) = simulate(options, threading.Event(), say=lambda line: None)
        cloud.wait_for(lambda got: len({json.loads(m.payload)["seq"] for m in got}) >= run.last_seq)
        bodies = {json.loads(m.payload)["seq"]: json.loads(m.payload) for m in cloud.messages}
    sent = [float(np.float32(m.value)) for m in run.hardware.mcus["pump"].mcu.intact]
    assert run.crashes == 1 and len(sent) == 57  # t = 0..20 and 25..60: none while down
    assert [bodies[seq]["value"]["flow"] for seq in sorted(bodies)] == sent
