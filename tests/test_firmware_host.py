"""The reference firmware's own code against edgeline's host: the firmware (main.py and
framing.py, under CPython with the machine shim) on one end of a real pty, ``edge run`` with a
``serial.mcu`` sensor on the other, a real Mosquitto upstream. Its ADC readings arrive as
telemetry; a threshold on them fires an [[actions]] rule that drives the firmware's relay,
and the firmware's ACK comes back as the output's state event."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tty
from pathlib import Path
from typing import Any

import pytest

from edge.bench.mosquitto import Mosquitto
from tests.brokers import Subscriber
from tests.test_firmware import FirmwareLoop, machine
from tests.waiting import wait_until

EDGE = [sys.executable, "-m", "edge.cli"]
RELAY_PIN = 16  # config.py's relay output
LOW, HIGH = 13107, 52428  # raw 16-bit ADC levels: 0.66 V and 2.64 V


class Pico:
    """The firmware's loop on the pty's master end (:class:`FirmwareLoop`); the slave end is
    left for the host to open by its path, as /dev/ttyACM0 is."""

    def __init__(self) -> None:
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)
        self.path = os.ttyname(self.slave)
        self.loop = FirmwareLoop(self.master)
        machine.ANALOG.update({26: LOW})

    def relay(self) -> int:
        pin = machine.PINS.get(RELAY_PIN)
        return -1 if pin is None else int(pin.value())

    def close(self) -> None:
        self.loop.close()
        os.close(self.master)
        os.close(self.slave)


def events(cloud: Subscriber, kind: str) -> list[dict[str, Any]]:
    found = [json.loads(m.payload) for m in cloud.messages if "/events/" in m.topic]
    return sorted((e for e in found if e["kind"] == kind), key=lambda e: e["seq"])


def test_an_action_drives_the_reference_firmwares_relay_and_its_ack_comes_back(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    pico = Pico()
    port = tmp_path / "by-id" / "usb-MicroPython_Board_in_FS_mode_e6614c311b-if00"
    port.parent.mkdir()
    port.symlink_to(pico.path)
    config = tmp_path / "edge.toml"
    config.write_text(f"""
[device]
id = "tank-01"
[storage]
state_dir = "{tmp_path / "state"}"
commit_window_ms = 20
[uplink]
broker = "{mosquitto.url}"

[[sensors]]
id = "pico"
type = "serial.mcu"
port = "{port.parent}/usb-MicroPython_Board_in_FS_mode_*-if00"
telemetry = true
outputs = ["relay"]
channels = [{{ mcu = "adc0", name = "level", unit = "V", min = 0.0, max = 3.3 }}]

[[detectors]]
id = "level-high"
sensor = "pico"
quantity = "level"
type = "threshold"
above = 2.0

[[actions]]
when = "level-high"
output = "pico.relay"
""")
    process = subprocess.Popen([*EDGE, "run", "--config", str(config)], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        with Subscriber(mosquitto.url, "edgeline/tank-01/#") as cloud:
            # The firmware's HELLO names adc0; its READINGs arrive as the config's "level".
            wait_until(lambda: len(events(cloud, "telemetry")) >= 2, timeout=30)
            first = events(cloud, "telemetry")[0]
            assert first["sensor"] == "pico"
            assert first["value"]["level"] == pytest.approx(0.66, abs=0.01)
            assert pico.relay() == 0

            # The tank fills: the threshold fires, the action sets the relay, the firmware
            # drives its pin and ACKs, and the runtime reports the acknowledged state.
            machine.ANALOG[26] = HIGH
            wait_until(lambda: pico.relay() == 1, timeout=30)
            wait_until(lambda: any(e.get("output") == "relay" for e in events(cloud, "state")))
            on = next(e for e in events(cloud, "state") if e.get("output") == "relay")
            assert on["value"] is True and on["acked"] is True

            machine.ANALOG[26] = LOW
            wait_until(lambda: pico.relay() == 0, timeout=30)
            wait_until(lambda: [e["value"] for e in events(cloud, "state")
                                if e.get("output") == "relay"] == [True, False])  # fmt: skip
            crossings = events(cloud, "threshold")
            assert [e["state"] for e in crossings][:2] == ["active", "clear"], crossings
    finally:
        process.terminate()
        _, err = process.communicate(timeout=20)
        pico.close()
    assert process.returncode == 0, err
    pico.loop.check()
    assert machine.PINS[RELAY_PIN].states[-2:] == [1, 0]
