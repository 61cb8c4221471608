"""The attack demo: a device running ``edge simulate`` with commands on, an attacker on its
broker, and the operator's ``edge command ping`` that must still get ``ok`` in time.

The device is a real process (its RSS read from /proc), the broker a real Mosquitto.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from edge.bench.mosquitto import Mosquitto
from edge.events import format_ts
from edge.uplink.operator import NoReply, build_command, send_command
from tests.brokers import split_url

pytestmark = pytest.mark.slow

DEVICE = "sim-cmd"
KEY_HEX = "5e" * 32
KEY = bytes.fromhex(KEY_HEX)
SCENARIO = """
[device]
id = "{device}"
[uplink]
broker = "{broker}"
protocol = "{protocol}"
backoff_min = 0.1
backoff_max = 0.5
[commands]
enabled = true
key_file = "{key}"
[[sensors]]
id = "probe"
type = "i2c.tmp102"
interval = 1.0
[simulation]
speed = 1.0
duration = 600.0
start = "{start}"
"""
MB = 1024 * 1024


class SimulatedDevice:
    """``edge simulate`` as a subprocess, stopped with SIGTERM."""

    def __init__(self, scenario: Path, state: Path, broker: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "edge.cli", "simulate", "--scenario", str(scenario),
             "--broker", broker, "--state-dir", str(state), "--quiet"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        self.broker = broker

    def rss_mb(self) -> float:
        return _status_kb(self.process.pid, "VmRSS") / 1024

    def peak_mb(self) -> float:
        return _status_kb(self.process.pid, "VmHWM") / 1024

    def ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.process.communicate()[1]
            try:
                if send_command(self.broker, DEVICE, KEY, "ping", timeout=0.5)["ok"]:
                    return
            except NoReply:
                continue
        raise AssertionError("the simulated device never answered ping")

    def stop(self) -> str:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.communicate(timeout=30)[1]
        finally:
            if self.process.poll() is None:
                self.process.kill()


def _status_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} for {pid}")


@pytest.fixture(params=["5", "3.1.1"])
def setup(
    tmp_path: Path, mosquitto: Mosquitto, request: pytest.FixtureRequest
) -> Iterator[tuple[Path, Path]]:
    key = tmp_path / "command.key"
    key.write_text(KEY_HEX + "\n")
    key.chmod(0o600)
    scenario = tmp_path / "device.toml"
    scenario.write_text(SCENARIO.format(device=DEVICE, broker=mosquitto.url, protocol=request.param,
                                        key=key, start=format_ts(time.time())))  # fmt: skip
    yield scenario, tmp_path / "state"


def attack(url: str) -> int:
    """Publish every hostile payload of the review, a forged MQTT 5 request with a response
    topic, and a 20 MB message, to the device's command topics; the count sent."""
    host, port = split_url(url)
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.connect(host, port)
    client.loop_start()
    ts = format_ts(time.time())
    hostile: list[tuple[str, bytes]] = [
        ("ping", b"[" * 2000 + b"]" * 2000),
        ("ping", b'{"id": "\\ud800", "ts": "' + ts.encode() + b'", "sig": "' + b"0" * 64 + b'"}'),
        ("ping", json.dumps({"id": "s", "ts": ts, "args": {}, "sig": "\u00e9" * 64}).encode()),
        ("ping", b'{"id": "c\\u0001\\u007f", "ts": "' + ts.encode() + b'", "sig": "00"}'),
        ("ping", b'{"id": "x", "n": ' + b"9" * 5000 + b"}"),
        (
            "status",
            json.dumps({"id": "forged\nWARNING accepted", "ts": ts, "sig": "0" * 64}).encode(),
        ),
        ("ping", b"\xff\xfe garbage"),
        ("ping", b'{"id": "huge", "pad": "' + b"x" * (20 * MB) + b'"}'),
    ]
    hostile += [("ping", json.dumps({"id": f"flood-{i}", "ts": ts, "sig": "0" * 64}).encode())
                for i in range(300)]  # fmt: skip
    props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    props.ResponseTopic = "victim/inbox"
    props.CorrelationData = b"steer"
    infos = [client.publish(f"edgeline/{DEVICE}/cmd/{name}", body, qos=1, properties=props)
             for name, body in hostile]  # fmt: skip
    for info in infos:
        info.wait_for_publish(30)
    client.loop_stop()
    client.disconnect()
    return len(hostile)


def test_an_attacker_on_the_broker_cannot_stop_flood_or_steer_the_device(
    setup: tuple[Path, Path], mosquitto: Mosquitto, mqtt_subscriber: Any
) -> None:
    scenario, state = setup
    everything = mqtt_subscriber(mosquitto.url, "#")
    device = SimulatedDevice(scenario, state, mosquitto.url)
    try:
        device.ready()
        captured_id, captured = build_command(KEY, DEVICE, "ping", {"echo": "once"})
        answers = mqtt_subscriber(mosquitto.url, f"edgeline/{DEVICE}/reply/ping")
        publish_raw(mosquitto.url, f"edgeline/{DEVICE}/cmd/ping", captured)
        answers.wait_for(lambda ms: any(json.loads(m.payload)["id"] == captured_id for m in ms))
        before = device.rss_mb()
        sent = attack(mosquitto.url)
        started = time.monotonic()
        run = subprocess.run(
            [sys.executable, "-m", "edge.cli", "command", "--broker", mosquitto.url,
             "--device", DEVICE, "--key-file", str(scenario.parent / "command.key"), "ping"],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        took = time.monotonic() - started
        after, peak = device.rss_mb(), device.peak_mb()
        protocol = scenario.read_text().split("protocol = ")[1].split()[0]
        print(f"\nattack ({protocol}): {sent} messages; ping ok in {took:.2f} s; "
              f"device RSS {before:.1f} MB -> {after:.1f} MB (peak {peak:.1f} MB)")  # fmt: skip
        assert run.returncode == 0, run.stderr
        assert json.loads(run.stdout) == {"pong": True}
        assert took < 10
        assert after - before < 10
    finally:
        err = device.stop()
    assert "Traceback" not in err, err
    # Nothing outside the device's own topics, and nothing on the attacker's response topic.
    from_device = [m.topic for m in everything.messages if "/cmd/" not in m.topic]
    assert from_device and all(t.startswith(f"edgeline/{DEVICE}/") for t in from_device)

    again = SimulatedDevice(scenario, state, mosquitto.url)  # restarted on the same state
    try:
        again.ready()
        publish_raw(mosquitto.url, f"edgeline/{DEVICE}/cmd/ping", captured)
        replayed = answers.wait_for(
            lambda ms: [json.loads(m.payload)["id"] for m in ms].count(captured_id) == 2
        )
    finally:
        again.stop()
    last = [json.loads(m.payload) for m in replayed if json.loads(m.payload)["id"] == captured_id]
    assert last[0]["ok"] is True and last[1]["ok"] is False
    assert "replayed" in last[1]["error"]


def publish_raw(url: str, topic: str, payload: bytes) -> None:
    from tests.brokers import publish

    publish(url, topic, payload)
