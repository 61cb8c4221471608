"""Every client logs in to a password-protected Mosquitto (``allow_anonymous false``) with
the options the device's ``[uplink]`` has, and a refused login is said in the broker's
words, on one line, exit 1: ``edge sink``, ``edge simulate`` (its devices and its
subscriber), ``edge outbox replay``, ``edge command`` and the device's uplink."""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from hypothesis import given
from hypothesis import strategies as st
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.reasoncodes import ReasonCode

from edge.bench.mosquitto import Mosquitto
from edge.cli import main
from edge.cli.common import add_login_options, broker_login
from edge.clock import RealClock
from edge.cloud.sink import Sink
from edge.config.device import UplinkConfig
from edge.errors import BrokerRefused, OutboxError
from edge.outbox.inspect import read_stats
from edge.runtime.runtime import Runtime
from edge.sim.hardware import SimulatedHardware
from edge.sim.scenario import parse_scenario
from edge.uplink.client import paho_client
from edge.uplink.refusal import CONNACK_WORDS, MQTT311_WORDS, refusal
from tests.brokers import need_mosquitto
from tests.test_commands_mqtt import KEY_HEX
from tests.test_replay import stored
from tests.test_simulate_cli import summary
from tests.test_uplink_tls import tls_broker as tls_broker_fixture  # noqa: F401 - a fixture
from tests.waiting import wait_until

EDGE = [sys.executable, "-m", "edge.cli"]
USERS = {"sim-01": "device-pw", "rp-01": "replay-pw", "sink": "sink-pw", "operator": "op-pw"}
TIMEOUT = 10.0
REFUSED = ("bad user name or password", "not authorised")

DEVICE_SCENARIO = """
[device]
id = "sim-01"
[storage]
state_dir = "{state}"
[uplink]
broker = "{broker}"
username = "sim-01"
password_file = "{password}"
allow_plaintext_password = true
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
duration = 3600.0
"""


def private(path: Path, text: str) -> Path:
    path.write_text(text)
    path.chmod(0o600)
    return path


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    """Mosquitto with a password file and no anonymous access (no ACL: each user may read
    what it publishes, as the simulator's subscriber must)."""
    passwd = shutil.which("mosquitto_passwd")
    if passwd is None:
        pytest.skip("mosquitto_passwd is not installed (it comes with Debian's mosquitto)")
    passwords = tmp_path / "passwords"
    for user, password in USERS.items():
        create = [] if passwords.exists() else ["-c"]
        subprocess.run([passwd, *create, "-b", str(passwords), user, password], check=True)
    extra = ["allow_anonymous false", f"password_file {passwords}"]
    with Mosquitto(tmp_path / "mosquitto", executable=need_mosquitto(), extra=extra) as running:
        yield running


def login(tmp_path: Path, user: str, password: str | None = None) -> list[str]:
    """The login options for ``user`` (its own password unless another is given)."""
    file = private(tmp_path / f"{user}.pw", password or USERS[user])
    return ["--username", user, "--password-file", str(file), "--allow-plaintext-password"]


def one_refusal(err: str) -> str:
    """The one line a refused client prints; fails on a traceback or more lines."""
    lines = err.strip().splitlines()
    assert "Traceback" not in err and len(lines) == 1, err
    assert lines[0].startswith("error: ") and "refused the connection" in lines[0], err
    assert any(words in lines[0] for words in REFUSED), err
    return lines[0]


# -- the words ------------------------------------------------------------------------


def test_paho_reason_codes_read_as_the_mqtt_spec_words() -> None:
    assert refusal(ReasonCode(PacketTypes.CONNACK, identifier=0x86)) == "bad user name or password"
    assert refusal(ReasonCode(PacketTypes.CONNACK, identifier=0x87)) == "not authorised"
    assert refusal(ReasonCode(PacketTypes.CONNACK, identifier=0x88)) == "server unavailable"
    assert refusal(4) == "bad user name or password" and refusal(5) == "not authorised"
    # paho turns an MQTT 3.1.1 return code into its MQTT 5 reason code: same words
    for code in (1, 2, 3, 4, 5):
        assert refusal(mqtt.convert_connack_rc_to_reason_code(code)) == MQTT311_WORDS[code]
    # every MQTT 5 CONNACK refusal paho knows is in the table, in paho's own words (and
    # 0x99, payload format invalid, which the spec allows in a CONNACK and paho does not)
    paho = {
        value: name
        for value, names in ReasonCode.names.items()
        for name, packets in names.items()
        if value >= 0x80 and PacketTypes.CONNACK in packets
    }
    assert set(CONNACK_WORDS) == {*paho, 0x99}
    for value, name in paho.items():
        assert CONNACK_WORDS[value].lower() == name.lower().replace("authorized", "authorised")


@given(st.integers(min_value=0, max_value=255), st.booleans())
def test_any_code_reads_as_one_line_of_words(value: int, v311: bool) -> None:
    reason: object = value
    if not v311:
        reason = argparse.Namespace(value=value)  # what refusal reads of a ReasonCode
    text = refusal(reason)
    assert text and text.isprintable()
    assert str(value) in text or f"{value:#04x}" in text or text in (
        *MQTT311_WORDS.values(), *CONNACK_WORDS.values()
    )  # fmt: skip


# -- the options, checked by [uplink]'s rules -------------------------------------------


def parse_login(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_login_options(parser, "user")
    return parser.parse_args(argv)


@given(
    tls=st.booleans(),
    username=st.none() | st.just("u"),
    password=st.booleans(),
    allow=st.booleans(),
    ca=st.booleans(),
    cert=st.booleans(),
    key=st.booleans(),
)
def test_login_options_follow_the_uplink_rules_and_name_their_option(
    tmp_path_factory: pytest.TempPathFactory,
    tls: bool,
    username: str | None,
    password: bool,
    allow: bool,
    ca: bool,
    cert: bool,
    key: bool,
) -> None:
    folder = tmp_path_factory.mktemp("login")
    argv = ["--username", username] if username else []
    if password:
        argv += ["--password-file", str(private(folder / "pw", "hush"))]
    argv += ["--allow-plaintext-password"] if allow else []
    argv += ["--ca-file", "ca.pem"] if ca else []
    argv += ["--cert-file", "c.pem"] if cert else []
    argv += ["--cert-key-file", "k.pem"] if key else []
    broker = "mqtts://h:8883" if tls else "mqtt://h:1883"
    found: list[str] = []
    settings = broker_login(parse_login(argv), broker, found)
    expected = []
    if not tls:
        expected += [o for o, on in (("--ca-file", ca), ("--cert-file", cert)) if on]
        expected += ["--cert-key-file"] if key else []
        expected += ["--password-file"] if password and not allow else []
    if cert != key:
        assert settings is None and found == ["--cert-file and --cert-key-file go together"]
        return
    assert [line.split(":")[0] for line in found] == expected
    assert all("\n" not in line and "hush" not in line for line in found)
    if not expected:
        assert settings is not None and settings.username == username
        assert settings.password() == ("hush" if password else None)
        assert settings.key_file == ("k.pem" if key else None)


def test_sink_login_problems_exit_2_one_line_each(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    password = private(tmp_path / "pw", "hush")
    code = main(["sink", "--broker", "mqtt://127.0.0.1:1", "--password-file", str(password),
                 "--cert-file", "c.pem", "--cert-key-file", "k.pem"])  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and [line.split(":")[1].strip() for line in err] == [
        "--cert-file", "--cert-key-file", "--password-file"]  # fmt: skip
    code = main(["simulate", "--username", "u", "--speed", "max"])
    assert code == 2 and "need --broker" in capsys.readouterr().err


# -- every client against the password-protected broker -----------------------------------


def test_edge_sink_logs_in_and_a_wrong_password_is_said_in_words(
    tmp_path: Path, broker: Mosquitto
) -> None:
    process = subprocess.Popen(
        [*EDGE, "sink", "--broker", broker.url, *login(tmp_path, "sink")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        device = UplinkConfig(
            broker=broker.url, username="sim-01", allow_plaintext_password=True,
            password_file=str(private(tmp_path / "device.pw", USERS["sim-01"])),
        )  # fmt: skip
        event = {"device": "sim-01", "stream": "s1", "seq": 1, "kind": "telemetry"}
        publisher = paho_client(device, "t-pub", inflight=1, password=device.password())
        publisher.connect(device.host, device.port)
        publisher.loop_start()
        # retained: the sink gets it whenever its subscription lands
        publisher.publish("edgeline/sim-01/status", '{"state":"online"}', 1, True)
        assert process.stdout is not None
        line = json.loads(process.stdout.readline())
        assert line["topic"] == "edgeline/sim-01/status"
        publisher.publish("edgeline/sim-01/events/telemetry/t", json.dumps(event), 1)
        line = json.loads(process.stdout.readline())
        assert line["seq"] == 1 and line["duplicate"] is False
        publisher.publish("edgeline/sim-01/status", b"", 1, True).wait_for_publish(TIMEOUT)
        publisher.disconnect()
        publisher.loop_stop()
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=TIMEOUT)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, err
    wrong = subprocess.run(
        [*EDGE, "sink", "--broker", broker.url, *login(tmp_path, "sink", "nope")],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert wrong.returncode == 1
    assert broker.url in one_refusal(wrong.stderr)


def test_edge_simulate_logs_in_its_devices_and_its_subscriber(
    tmp_path: Path, broker: Mosquitto
) -> None:
    common = ["simulate", "--speed", "max", "--duration", "30", "--quiet", "--broker", broker.url]
    result = subprocess.run(
        [*EDGE, *common, *login(tmp_path, "sim-01"), "--state-dir", str(tmp_path / "state")],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    figures = summary(result.stdout)
    assert figures["seq"] > 0 and figures["got"] == figures["seq"] and figures["missing"] == 0
    assert "sent again" not in result.stdout  # the subscriber saw every event as it came
    wrong = subprocess.run(
        [*EDGE, *common, *login(tmp_path, "sim-01", "nope")],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert wrong.returncode == 1
    one_refusal(wrong.stderr)


def test_edge_outbox_replay_logs_in_and_a_wrong_password_is_said_in_words(
    tmp_path: Path, broker: Mosquitto
) -> None:
    stored(tmp_path / "state")
    device = UplinkConfig(
        broker=broker.url, username="rp-01", allow_plaintext_password=True,
        password_file=str(private(tmp_path / "witness.pw", USERS["rp-01"])),
    )  # fmt: skip
    with Sink(broker.url, device="rp-01", login=device) as sink:
        replay = [*EDGE, "outbox", "replay", "--state-dir", str(tmp_path / "state"),
                  "--broker", broker.url, "--from-seq", "1", "--to-seq", "10"]  # fmt: skip
        result = subprocess.run(
            [*replay, *login(tmp_path, "rp-01")], capture_output=True, text=True, timeout=60
        )
        assert result.returncode == 0, result.stderr
        assert "replayed 10 of 10 events" in result.stdout
        streams = list(sink.streams)
        assert len(streams) == 1 and sink.wait_for(*streams[0], 10, TIMEOUT)
    wrong = subprocess.run(
        [*replay, *login(tmp_path, "rp-01", "nope")], capture_output=True, text=True, timeout=60
    )
    assert wrong.returncode == 1
    one_refusal(wrong.stderr)


@pytest.mark.parametrize("protocol", ["3.1.1", "5"])
def test_the_device_and_edge_command_log_in_and_refusals_are_said_in_words(
    tmp_path: Path, broker: Mosquitto, capsys: pytest.CaptureFixture[str], protocol: str
) -> None:
    key = private(tmp_path / "command.key", KEY_HEX + "\n")

    def device(password: str) -> Runtime:
        text = DEVICE_SCENARIO.format(
            state=tmp_path / f"state-{password}", broker=broker.url, key=key, protocol=protocol,
            password=private(tmp_path / f"device-{password}.pw", password),
        )  # fmt: skip
        scenario = parse_scenario(text, "login.toml", overrides={})
        clock = RealClock(assume_synced=True)  # the operator dates commands by the real clock
        hardware = SimulatedHardware(scenario, clock).hardware
        return Runtime(scenario.config, hardware=hardware, clock=clock)

    # A device with a wrong password says why it is offline, in the broker's words.
    refused = device("nope")
    refused.start()
    try:
        wait_until(lambda: bool(refused.status_report()["link"]["last_error"]), TIMEOUT)
        error = refused.status_report()["link"]["last_error"]
        assert "refused the connection" in error and any(w in error for w in REFUSED), error
    finally:
        refused.close(timeout=2)

    runtime = device(USERS["sim-01"])
    runtime.start()
    try:
        operator = ["command", "--broker", broker.url, "--device", "sim-01",
                    "--key-file", str(key)]  # fmt: skip
        code = 1
        for _ in range(20):  # the device subscribes to its commands a moment after it starts
            code = main([*operator, *login(tmp_path, "operator"), "--timeout", "0.5", "ping"])
            if code == 0:
                break
        assert code == 0, capsys.readouterr().err
        assert '"pong": true' in capsys.readouterr().out
        code = main([*operator, *login(tmp_path, "operator", "nope"), "ping"])
        assert code == 1
        one_refusal(capsys.readouterr().err)
    finally:
        runtime.close(timeout=2)


def test_a_refused_sink_raises_broker_refused_with_the_reason(
    tmp_path: Path, broker: Mosquitto
) -> None:
    anonymous = Sink(broker.url)
    with pytest.raises(BrokerRefused, match="refused the connection: not authorised"):
        anonymous.start(timeout=TIMEOUT)


# -- the simulator's subscriber across a broker restart -------------------------------------


def test_a_broker_restart_mid_simulate_leaves_a_true_summary(tmp_path: Path) -> None:
    # Mosquitto without persistence forgets its subscriptions and what it had acknowledged
    # but not delivered; the device and the subscriber reconnect on their own, in either
    # order. Whatever the broker lost is sent again from the outbox: nothing is missing.
    with Mosquitto(tmp_path / "mosquitto", executable=need_mosquitto()) as mosquitto:
        process = subprocess.Popen(
            [*EDGE, "simulate", "--speed", "20", "--duration", "200", "--quiet",
             "--broker", mosquitto.url, "--state-dir", str(tmp_path / "state")],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            witness = Witness(mosquitto.url)
            witness.wait_for_events(5)
            mosquitto.stop()  # the device stores what it makes meanwhile
            wait_until(lambda: pending(tmp_path / "state") > 0, 30)
            mosquitto.start()
            out, err = process.communicate(timeout=120)
        finally:
            if process.poll() is None:
                process.kill()
            witness.close()
    assert process.returncode == 0, err
    assert "Traceback" not in err and "connection lost" in err
    figures = summary(out)
    assert figures["got"] == figures["seq"] and figures["missing"] == 0, out


def pending(state: Path) -> int:
    """Events stored and not yet acknowledged (0 until the outbox exists)."""
    try:
        return int(read_stats(state).as_json()["pending"])
    except OutboxError:
        return 0


class Witness:
    """Counts event messages on an anonymous broker (until it goes down)."""

    def __init__(self, url: str) -> None:
        self.count = 0
        self.changed = threading.Condition()
        settings = UplinkConfig(broker=url)
        self.client = paho_client(settings, "t-witness", inflight=1)
        self.client.on_connect = lambda c, *a: c.subscribe("edgeline/+/events/#", 1)
        self.client.on_message = self._on_message
        self.client.connect(settings.host, settings.port)
        self.client.loop_start()

    def _on_message(self, client: Any, userdata: Any, message: mqtt.MQTTMessage) -> None:
        with self.changed:
            self.count += 1
            self.changed.notify_all()

    def wait_for_events(self, count: int) -> None:
        with self.changed:
            assert self.changed.wait_for(lambda: self.count >= count, TIMEOUT * 3)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def test_edge_sink_shows_a_client_certificate_to_a_mutual_tls_broker(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    broker, port, ca = request.getfixturevalue("tls_broker_fixture")  # test_uplink_tls's
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    leaf = ca.issue_cert("sink")
    leaf.private_key_pem.write_to_path(str(tmp_path / "sink.key"))
    leaf.cert_chain_pems[0].write_to_path(str(tmp_path / "sink.pem"))
    status = UplinkConfig(broker=broker.url)  # the plain listener: a retained birth to see
    publisher = paho_client(status, "t-pub", inflight=1)
    publisher.connect(status.host, status.port)
    publisher.loop_start()
    publisher.publish("edgeline/tls-01/status", '{"state":"online"}', 1, True).wait_for_publish(
        TIMEOUT
    )
    process = subprocess.Popen(
        [*EDGE, "sink", "--broker", f"mqtts://127.0.0.1:{port}", "--ca-file",
         str(tmp_path / "ca.pem"), "--cert-file", str(tmp_path / "sink.pem"),
         "--cert-key-file", str(tmp_path / "sink.key")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        assert json.loads(process.stdout.readline())["topic"] == "edgeline/tls-01/status"
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=TIMEOUT)
    finally:
        if process.poll() is None:
            process.kill()
        publisher.loop_stop()
        publisher.disconnect()
    assert process.returncode == 0, err
