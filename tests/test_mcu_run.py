"""``edge run`` with a ``serial.mcu`` sensor, end to end: a simulated MCU on a real pty (run
by the test), ``edge run`` as a subprocess, a real Mosquitto upstream. Every reading the MCU
sent intact arrives once and in order, none that the line corrupted or cut does, a port
that is missing at start and one that vanishes for 5 s are marked by degraded/recovered
health events, an MCU reboot loses nothing, status.json carries the link's counters, and an
[[actions]] rule switches an MCU output (the ACK reported upstream)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edge.bench.mosquitto import Mosquitto
from firmware_bridge.messages import Channel, Reading
from firmware_bridge.sim import SimulatedMcu
from tests.brokers import Subscriber
from tests.waiting import wait_until

EDGE = [sys.executable, "-m", "edge.cli"]
CHANNELS = [Channel(0, "flow", "L/min"), Channel(1, "temp", "degC"), Channel(2, "spare", "")]
NAMES = {0: "flow", 1: "water_temp"}  # what the config calls the channels it uses


def config_text(tmp_path: Path, broker: str) -> str:
    return f"""
[device]
id = "pump-01"
[storage]
state_dir = "{tmp_path / "state"}"
commit_window_ms = 20
status_interval = 0.2
[uplink]
broker = "{broker}"

[[sensors]]
id = "pump"
type = "serial.mcu"
port = "{tmp_path / "by-id" / "usb-sim-mcu"}*"
telemetry = true
outputs = ["relay"]
channels = [
  {{ mcu = "flow", min = 0.0, max = 100.0 }},
  {{ mcu = "temp", name = "water_temp", unit = "degC" }},
]

[[detectors]]
id = "flow-high"
sensor = "pump"
quantity = "flow"
type = "threshold"
above = 90.0

[[actions]]
when = "flow-high"
output = "pump.relay"
"""


def events(subscriber: Subscriber) -> list[dict[str, Any]]:
    found = [json.loads(m.payload) for m in subscriber.messages if "/events/" in m.topic]
    return sorted(found, key=lambda e: e["seq"])


def kinds(subscriber: Subscriber, kind: str) -> list[dict[str, Any]]:
    return [e for e in events(subscriber) if e["kind"] == kind]


def health(subscriber: Subscriber) -> list[dict[str, Any]]:
    return [e for e in kinds(subscriber, "health") if e["sensor"] == "pump"]


def telemetry(subscriber: Subscriber) -> list[tuple[str, float]]:
    return [next(iter(e["value"].items())) for e in kinds(subscriber, "telemetry")]


def status_of(tmp_path: Path) -> dict[str, Any]:
    status: dict[str, Any] = json.loads((tmp_path / "state" / "status.json").read_text())
    return status


def expected(mcu: SimulatedMcu) -> list[tuple[str, float]]:
    """What the MCU sent intact, of the channels the config uses, as the cloud sees it."""
    return [
        (NAMES[m.channel], float(np.float32(m.value)))
        for m in mcu.intact
        if isinstance(m, Reading) and m.channel in NAMES
    ]


@pytest.fixture
def edge_run(tmp_path: Path, mosquitto: Mosquitto) -> Iterator[Callable[[], None]]:
    config = tmp_path / "edge.toml"
    config.write_text(config_text(tmp_path, mosquitto.url))
    process: subprocess.Popen[str] | None = None

    def start() -> None:
        nonlocal process
        process = subprocess.Popen(
            [*EDGE, "run", "--config", str(config)], stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True, env=os.environ,
        )  # fmt: skip

    try:
        yield start
    finally:
        if process is not None:
            process.terminate()
            _, err = process.communicate(timeout=20)
            assert process.returncode == 0, err


def test_edge_run_takes_every_intact_reading_once_in_order_through_line_faults(
    tmp_path: Path, mosquitto: Mosquitto, edge_run: Callable[[], None]
) -> None:
    with Subscriber(mosquitto.url, "edgeline/pump-01/#") as cloud:
        mcu = SimulatedMcu(
            tmp_path / "by-id" / "usb-sim-mcu-if00", CHANNELS, ["relay"], seed=7,
            heartbeat_every=0.5,
        )  # fmt: skip
        edge_run()  # the port does not exist yet: degraded, and it keeps trying
        wait_until(lambda: [e["state"] for e in health(cloud)] == ["degraded"])
        assert "LinkDown" in health(cloud)[0]["error"]

        mcu.open()
        mcu.greeted.wait(10)
        value = 0.0

        def stream(count: int) -> None:
            nonlocal value
            for i in range(count):
                value += 0.37
                if i % 20 == 5:
                    mcu.garbage(40)
                if i % 20 == 9:
                    mcu.corrupt_next()
                if i % 20 == 14:
                    mcu.truncate_next()
                mcu.reading(0, value % 80.0)
                mcu.reading(1, 20.0 + value % 5.0)
                if i % 10 == 0:
                    mcu.reading(2, 1.0)  # a channel the config leaves out

        stream(60)
        wait_until(lambda: len(telemetry(cloud)) == len(expected(mcu)))
        before_gap = len(expected(mcu))
        mcu.close()  # the USB cable is pulled for 5 s
        wait_until(lambda: [e["state"] for e in health(cloud)][-1:] == ["degraded"])
        gone = mcu.written
        mcu.reading(0, 1.0)  # into the void
        assert mcu.written == gone
        degraded_at = health(cloud)[-1]["seq"]
        time.sleep(5.0)  # the length of the outage itself, not a wait for a condition
        mcu.open()
        mcu.greeted.wait(10)
        stream(40)
        mcu.reboot()  # a new HELLO, t_ms from 0: nothing lost, no health event
        stream(40)
        wait_until(lambda: len(telemetry(cloud)) >= len(expected(mcu)))

        assert telemetry(cloud) == expected(mcu)
        states = [e["state"] for e in health(cloud)]
        assert states == ["degraded", "recovered", "degraded", "recovered"]
        # The gap: degraded after the last reading before it, recovered with the first after.
        seqs = [e["seq"] for e in kinds(cloud, "telemetry")]
        gap = [e["seq"] for e in health(cloud)][2:]
        assert seqs[before_gap - 1] < gap[0] == degraded_at < gap[1] < seqs[before_gap]
        # Each (device, stream, seq) once: the cloud saw no duplicate.
        assert len({e["seq"] for e in events(cloud)}) == len(events(cloud))

        def hardware() -> dict[str, Any]:
            found: dict[str, Any] = status_of(tmp_path)["sensors"]["pump"]["hardware"]
            return found

        wait_until(lambda: hardware()["link"] == "online" and hardware()["reboots"] == 1)
        link = hardware()
        assert link["reconnects"] >= 1 and status_of(tmp_path)["sensors"]["pump"]["state"] == "ok"
        assert link["dropped"]["crc"] + link["dropped"]["cobs"] + link["dropped"]["length"] >= 8
        assert link["ignored_readings"] >= 14

        # [[actions]]: flow above 90 switches the MCU's relay on; the ACK comes back.
        mcu.reading(0, 95.0)
        wait_until(lambda: mcu.outputs["relay"] is True)
        wait_until(lambda: any(e.get("output") == "relay" for e in kinds(cloud, "state")))
        switched = next(e for e in kinds(cloud, "state") if e.get("output") == "relay")
        assert switched["value"] is True and switched["acked"] is True
        mcu.reading(0, 10.0)
        wait_until(lambda: mcu.outputs["relay"] is False)
        mcu.close()
