"""The broker ACL that docs/security.md gives, on a real Mosquitto with passwords: a device
and the operator do their jobs under it, and a device's user can read nothing else."""

from __future__ import annotations

import re
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from edge.bench.mosquitto import Mosquitto
from edge.cli import main
from edge.clock import RealClock
from edge.runtime.runtime import Runtime
from edge.sim.hardware import SimulatedHardware
from edge.sim.scenario import parse_scenario
from tests.brokers import need_mosquitto
from tests.test_commands_mqtt import KEY_HEX

DOCS = Path(__file__).resolve().parent.parent / "docs" / "security.md"
USERS = {"cmd-01": "device-pw", "cmd-02": "other-pw", "operator": "operator-pw", "sink": "sink-pw"}
TIMEOUT = 10.0

SCENARIO = """
[device]
id = "cmd-01"
[storage]
state_dir = "{state}"
[uplink]
broker = "{broker}"
username = "cmd-01"
password_file = "{password}"
allow_plaintext_password = true
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
duration = 3600.0
"""


def documented_acl() -> str:
    """The ACL block of docs/security.md, exactly as a user would copy it."""
    section = DOCS.read_text(encoding="utf-8").split("## Broker ACL", 1)[1]
    found = re.search(r"```\n(.*?)```", section, re.S)
    assert found, "docs/security.md has no ACL block"
    return found[1]


def private(path: Path, text: str) -> Path:
    path.write_text(text)
    path.chmod(0o600)
    return path


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    passwd = shutil.which("mosquitto_passwd")
    if passwd is None:
        pytest.skip("mosquitto_passwd is not installed (it comes with Debian's mosquitto)")
    passwords = tmp_path / "passwords"
    for user, password in USERS.items():
        create = [] if passwords.exists() else ["-c"]
        subprocess.run([passwd, *create, "-b", str(passwords), user, password], check=True)
    acl = private(tmp_path / "acl", documented_acl())
    extra = ["allow_anonymous false", f"password_file {passwords}", f"acl_file {acl}"]
    with Mosquitto(tmp_path / "mosquitto", executable=need_mosquitto(), extra=extra) as running:
        yield running


class Client:
    """A paho client logged in as ``user`` that keeps what it receives."""

    def __init__(self, broker: Mosquitto, user: str, *topics: str) -> None:
        self.messages: list[mqtt.MQTTMessage] = []
        self.changed = threading.Condition()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"t-{user}")
        self.client.username_pw_set(user, USERS[user])
        self.client.on_message = self._on_message
        subscribed = threading.Event()
        self.client.on_subscribe = lambda *args: subscribed.set()
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()
        if topics:
            self.client.subscribe([(topic, 1) for topic in topics])
            assert subscribed.wait(TIMEOUT), f"{user} never got a SUBACK"

    def _on_message(self, client: Any, userdata: Any, message: mqtt.MQTTMessage) -> None:
        with self.changed:
            self.messages.append(message)
            self.changed.notify_all()

    def wait_for(self, topic: str) -> None:
        with self.changed:
            seen = self.changed.wait_for(
                lambda: any(m.topic == topic for m in self.messages), TIMEOUT
            )
        assert seen, f"nothing on {topic}; got {[m.topic for m in self.messages]}"

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def test_the_documented_acl_lets_each_party_do_its_job_and_nothing_more(
    tmp_path: Path, broker: Mosquitto, capsys: pytest.CaptureFixture[str]
) -> None:
    key = private(tmp_path / "command.key", KEY_HEX + "\n")
    text = SCENARIO.format(
        state=tmp_path / "state", broker=broker.url, key=key,
        password=private(tmp_path / "device.pw", USERS["cmd-01"]),
    )  # fmt: skip
    scenario = parse_scenario(text, "acl.toml", overrides={})
    clock = RealClock(assume_synced=True)  # the operator dates commands by the real clock
    # Another device's user snoops on everything it can subscribe to.
    snoop = Client(broker, "cmd-02", "#")
    sink = Client(broker, "sink", "edgeline/+/status", "edgeline/+/events/#")
    runtime = Runtime(
        scenario.config, hardware=SimulatedHardware(scenario, clock).hardware, clock=clock
    )
    runtime.start()
    try:
        sink.wait_for("edgeline/cmd-01/status")  # the device logged in and published
        operator = [
            "command", "--broker", broker.url, "--device", "cmd-01", "--key-file", str(key),
            "--username", "operator", "--allow-plaintext-password",
            "--password-file", str(private(tmp_path / "operator.pw", USERS["operator"])),
        ]  # fmt: skip
        code = 1
        for _ in range(20):  # the device subscribes to its commands a moment after it starts
            code = main([*operator, "--timeout", "0.5", "ping"])
            if code == 0:
                break
        assert code == 0, capsys.readouterr().err
        assert '"pong": true' in capsys.readouterr().out
        # The snooper (a second device's user) saw none of it: not cmd-01's status, not its
        # command, not its reply. A message it may read, on its own cmd topic, still arrives.
        operator_client = Client(broker, "operator")
        operator_client.client.publish("edgeline/cmd-02/cmd/ping", b"{}", qos=1)
        snoop.wait_for("edgeline/cmd-02/cmd/ping")
        operator_client.close()
        assert {m.topic for m in snoop.messages} == {"edgeline/cmd-02/cmd/ping"}
    finally:
        runtime.close(timeout=2)
        snoop.close()
        sink.close()
