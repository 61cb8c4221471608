"""The cloud side on RabbitMQ's MQTT plugin: a device publishing through it with a user name
and password, ``edge sink`` storing every event exactly once across a SIGKILL.

Real parts: a throwaway RabbitMQ node (``tests/rabbitmq.py``: Debian's 3.10, MQTT 3.1.1
only, no shared subscriptions), started once for the module; a device (an in-process Runtime
on a VirtualClock); ``edge sink`` as its own process over MQTT 3.1.1 with a persistent
session; SQLite and a throwaway PostgreSQL cluster. The last test pins down what RabbitMQ
does differently from Mosquitto (docs/sink.md, "Brokers tested").
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from edge.clock import VirtualClock
from edge.cloud.sink import Sink
from edge.cloud.store import open_store
from edge.config.device import UplinkConfig
from edge.errors import UplinkError
from edge.runtime.runtime import Runtime
from edge.sim.hardware import SimulatedHardware
from edge.sim.scenario import parse_scenario
from tests.rabbitmq import RabbitMQNode, need_rabbitmq
from tests.test_sink_store import ROOT, SinkProcess, count, query
from tests.waiting import wait_until

pytestmark = pytest.mark.slow

DEVICE = "rmq-01"
USERS = {DEVICE: "device-pw", "sink": "sink-pw"}

SCENARIO = """
[device]
id = "{device}"
[storage]
state_dir = "{state}"
[uplink]
broker = "{broker}"
username = "{device}"
password_file = "{password}"
allow_plaintext_password = true
backoff_min = 0.1
backoff_max = 0.5

[[sensors]]
id = "probe"
type = "i2c.tmp102"
interval = 1.0
telemetry = true

[simulation]
duration = 60.0
"""


@pytest.fixture(scope="module")
def rabbitmq() -> Iterator[RabbitMQNode]:
    with RabbitMQNode(*need_rabbitmq(), USERS) as node:
        print(f"RabbitMQ node started in {node.started_in:.1f} s")
        yield node


def password_file(folder: Path, user: str, password: str | None = None) -> Path:
    path = folder / f"{user}.pw"
    path.write_text((password or USERS[user]) + "\n")
    path.chmod(0o600)
    return path


def sink_login(folder: Path, password: str | None = None) -> list[str]:
    """``edge sink``'s options for RabbitMQ: MQTT 3.1.1, the sink user, its password."""
    return ["--protocol", "3.1.1", "--username", "sink", "--allow-plaintext-password",
            "--password-file", str(password_file(folder, "sink", password))]  # fmt: skip


class Device(threading.Thread):
    """A device logged in as ``rmq-01``: ``readings`` probe readings (each a telemetry
    event) at ``rate`` per second of real time, its clock moved one second per reading."""

    def __init__(self, folder: Path, broker: str, readings: int, rate: float) -> None:
        super().__init__(daemon=True)
        text = SCENARIO.format(device=DEVICE, state=folder / "state", broker=broker,
                               password=password_file(folder, DEVICE))  # fmt: skip
        scenario = parse_scenario(text, "rabbitmq.toml", overrides={})
        self.clock = VirtualClock()
        hardware = SimulatedHardware(scenario, self.clock).hardware
        self.runtime = Runtime(scenario.config, hardware=hardware, clock=self.clock)
        self.readings, self.rate = readings, rate
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            probe = self.runtime.sensors["probe"]
            start = time.monotonic()
            for reading in range(1, self.readings + 1):
                self.clock.advance(1.0)
                deadline = time.monotonic() + 10
                while probe.readings < reading:
                    assert time.monotonic() < deadline, f"reading {reading} never came"
                    time.sleep(0.0005)  # the polling interval, bounded by the deadline
                pause = start + reading / self.rate - time.monotonic()
                if pause > 0:
                    time.sleep(pause)  # the device's pace, not a wait for a condition
        except BaseException as exc:
            self.error = exc

    def finish(self) -> int:
        """Wait for the last reading and for the broker to have every event; the last seq."""
        self.join(60)
        assert not self.is_alive() and self.error is None, self.error
        wait_until(lambda: self.runtime.outbox.stats().pending == 0, 60)
        return self.runtime.outbox.last_seq


@pytest.fixture
def device(tmp_path: Path, rabbitmq: RabbitMQNode) -> Iterator[Device]:
    made = Device(tmp_path, rabbitmq.url, readings=1500, rate=300)
    try:
        yield made
    finally:
        made.runtime.close(timeout=2)


def test_every_event_through_rabbitmq_is_stored_once_across_a_sigkill(
    rabbitmq: RabbitMQNode,
    device: Device,
    db_url: str,
    tmp_path: Path,
    sinks: list[SinkProcess],
) -> None:
    # A persistent session over MQTT 3.1.1 (clean session off): RabbitMQ keeps a durable
    # queue for it, so what arrives while the sink is dead waits there.
    session = ["--client-id", f"sink-1-{db_url.split(':')[0]}", *sink_login(tmp_path)]
    sinks.append(SinkProcess(rabbitmq.url, db_url, *session))
    began = time.monotonic()
    device.runtime.start()  # after the sink subscribed: RabbitMQ does not hand the retained
    device.start()  # birth to a wildcard subscription, so the sink must see it live
    wait_until(lambda: count(db_url) >= 300, 60)
    sinks[0].kill()
    at_kill = count(db_url)
    assert at_kill < device.readings, "the stream was over before the kill: nothing was tested"
    sinks.append(SinkProcess(rabbitmq.url, db_url, *session))
    last = device.finish()
    wait_until(lambda: count(db_url) >= last, 90)
    took = time.monotonic() - began
    stored_after = sinks[1].stop()
    print(f"{last} events through RabbitMQ in {took:.1f} s ({last / took:.0f} events/s)")

    seqs = [int(row[0]) for row in query(db_url, "SELECT seq FROM events ORDER BY seq")]
    assert seqs == list(range(1, last + 1))
    assert stored_after == last - at_kill
    assert query(db_url, "SELECT device, state FROM devices") == [(DEVICE, "online")]


def test_a_wrong_password_is_said_in_words(rabbitmq: RabbitMQNode, tmp_path: Path) -> None:
    wrong = subprocess.run(
        [sys.executable, "-m", "edge.cli", "sink", "--broker", rabbitmq.url,
         *sink_login(tmp_path, "not-the-password")],
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert wrong.returncode == 1, wrong.stderr
    line = wrong.stderr.strip().splitlines()[-1]
    assert f"{rabbitmq.url} refused the connection: bad user name or password" in line

    # MQTT 5 (edge sink's default): RabbitMQ 3.10 closes the connection without a CONNACK
    settings = UplinkConfig(broker=rabbitmq.url, username="sink", allow_plaintext_password=True,
                            password_file=str(password_file(tmp_path, "sink")))  # fmt: skip
    with pytest.raises(UplinkError, match=r"without answering CONNECT.*try protocol 3\.1\.1"):
        Sink(rabbitmq.url, protocol="5", login=settings).start(timeout=20)


def test_retained_statuses_reach_exact_subscriptions_only_and_the_will_arrives(
    rabbitmq: RabbitMQNode, tmp_path: Path
) -> None:
    """What RabbitMQ 3.10 does differently: a retained message is handed to a new
    subscription whose filter names its topic exactly, never to a wildcard one; a will is
    published (retained, when set so) as on Mosquitto."""
    login = UplinkConfig(broker=rabbitmq.url, username="sink", allow_plaintext_password=True,
                         password_file=str(password_file(tmp_path, "sink")))  # fmt: skip
    status = "edgeline/rmq-02/status"
    birth = {"state": "online", "device": "rmq-02", "ts": "2026-01-01T00:00:01.000Z"}
    will = {"state": "offline", "device": "rmq-02", "ts": "2026-01-01T00:00:00.000Z"}
    publisher = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="rmq-02")
    publisher.username_pw_set(DEVICE, USERS[DEVICE])
    publisher.will_set(status, json.dumps(will), qos=1, retain=True)
    publisher.connect("127.0.0.1", rabbitmq.mqtt_port)
    publisher.loop_start()
    publisher.publish(status, json.dumps(birth), qos=1, retain=True).wait_for_publish(10)

    seen: dict[str, list[str]] = {"+": [], "rmq-02": []}

    def watching(device: str) -> Sink:
        def status(topic: str, body: dict[str, Any]) -> None:
            seen[device].append(body["state"])

        return Sink(rabbitmq.url, device=device, protocol="3.1.1", login=login, on_status=status)

    store_path = tmp_path / "events.db"
    with watching("+"), watching("rmq-02"):
        wait_until(lambda: seen["rmq-02"] == ["online"])  # the retained birth: exact filter
        publisher.loop_stop()
        connection = publisher.socket()
        assert connection is not None
        connection.close()  # a power cut: the broker publishes the will
        wait_until(lambda: seen["+"] == ["offline"] and seen["rmq-02"] == ["online", "offline"])
    assert seen["+"] == ["offline"]  # the wildcard subscription never got the retained birth

    # The will was retained: a sink subscribing to the device's topic finds it, and stores it.
    store = open_store(f"sqlite:///{store_path}")
    try:
        with Sink(rabbitmq.url, device="rmq-02", protocol="3.1.1", login=login, store=store):
            wait_until(lambda: query(f"sqlite:///{store_path}", "SELECT state FROM devices")
                       == [("offline",)])  # fmt: skip
    finally:
        store.close()
