"""Downlink commands through a real Mosquitto: signed commands in, replies out, models driven.

The runtime runs on simulated hardware with a virtual clock nobody advances: the sampling
thread idles, and still takes the work a command posts to it (a model swap).
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from edge.bench.mosquitto import Mosquitto
from edge.clock import Clock, VirtualClock
from edge.runtime.runtime import Runtime
from edge.sim.hardware import SimulatedHardware
from edge.sim.scenario import parse_scenario
from edge.uplink.commands import sign
from tests.brokers import publish, split_url
from tests.models.test_onnx_reload import write_mean_model

KEY_HEX = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
KEY = bytes.fromhex(KEY_HEX)
DEVICE = "cmd-01"

SCENARIO = """
[device]
id = "cmd-01"
[storage]
state_dir = "{state}"
commit_window_ms = 0
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

[[detectors]]
id = "probe-model"
sensor = "probe"
type = "onnx"
model = "{model}"
backend = "onnxruntime"
window = 4
watch = 0

[simulation]
duration = 60.0
"""


def command(name: str, request_id: str, args: dict[str, Any], key: bytes = KEY) -> bytes:
    # A VirtualClock's wall time starts at 2026-01-01; it is what judges freshness here.
    ts = datetime(2026, 1, 1, tzinfo=UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    sig = sign(key, DEVICE, name, request_id, ts, args)
    return json.dumps({"id": request_id, "ts": ts, "args": args, "sig": sig}).encode()


class Device:
    def __init__(
        self,
        tmp_path: Path,
        broker: str,
        protocol: str,
        *,
        fresh: bool = True,
        clock: Clock | None = None,
    ) -> None:
        models = tmp_path / "models"
        models.mkdir(exist_ok=not fresh)
        live = write_mean_model(
            models / "live.onnx", gain=1.0, threshold=0.5, name="a", version="1"
        )
        write_mean_model(models / "b.onnx", gain=2.0, threshold=1.5, name="b", version="2")
        (tmp_path / "key").write_text(KEY_HEX + "\n")
        (tmp_path / "key").chmod(0o600)
        text = SCENARIO.format(state=tmp_path / "state", broker=broker, protocol=protocol,
                               key=tmp_path / "key", model=live)  # fmt: skip
        scenario = parse_scenario(text, "cmd.toml", overrides={})
        clock = clock or VirtualClock()
        hardware = SimulatedHardware(scenario, clock)
        self.runtime = Runtime(scenario.config, hardware=hardware.hardware, clock=clock)
        self.runtime.start()

    def close(self) -> None:
        self.runtime.close(timeout=2)


@pytest.fixture
def device(tmp_path: Path, mosquitto: Mosquitto) -> Iterator[Device]:
    running = Device(tmp_path, mosquitto.url, "3.1.1")
    try:
        yield running
    finally:
        running.close()


def not_hello(messages: list[Any]) -> list[Any]:
    return [m for m in messages if not json.loads(m.payload)["id"].startswith("hello-")]


def replies(messages: list[Any]) -> dict[str, dict[str, Any]]:
    return {json.loads(m.payload)["id"]: json.loads(m.payload) for m in messages}


def test_signed_commands_are_answered_and_drive_the_model(
    device: Device, mosquitto: Mosquitto, mqtt_subscriber: Any
) -> None:
    answers = mqtt_subscriber(mosquitto.url, f"edgeline/{DEVICE}/reply/#")
    base = f"edgeline/{DEVICE}/cmd"
    for attempt in range(50):  # until the device has subscribed to its command topics
        publish(mosquitto.url, f"{base}/ping", command("ping", f"hello-{attempt}", {}))
        with contextlib.suppress(AssertionError):
            answers.wait_for(lambda ms: len(ms) > 0, timeout=0.2)
            break
    publish(mosquitto.url, f"{base}/ping", command("ping", "p1", {"echo": "hi"}))
    publish(mosquitto.url, f"{base}/model", command("model", "m1", {
        "detector": "probe-model", "action": "shadow", "path": "b.onnx"}))  # fmt: skip
    publish(mosquitto.url, f"{base}/model", command("model", "m2", {
        "detector": "probe-model", "action": "promote"}))  # fmt: skip
    publish(mosquitto.url, f"{base}/status", command("status", "s1", {}))
    publish(mosquitto.url, f"{base}/ping", command("ping", "bad", {}, key=b"not the key"))
    publish(mosquitto.url, f"{base}/ping", command("ping", "p1", {"echo": "hi"}))  # a replay
    got = answers.wait_for(lambda ms: len(not_hello(ms)) >= 6)
    got = not_hello(got)
    by_id = replies(got[:5])
    assert by_id["p1"] == {"id": "p1", "ok": True, "result": {"pong": True, "echo": "hi"}}
    assert by_id["m1"]["ok"] and by_id["m1"]["result"]["accepted"] is True
    assert by_id["m2"]["ok"] and by_id["m2"]["result"]["candidate"] == "b"
    assert by_id["s1"]["result"]["sensors"]["probe"]["state"] == "ok"
    assert by_id["bad"] == {"id": "bad", "ok": False, "error": "refused: bad signature"}
    assert json.loads(got[5].payload)["error"].startswith("refused: replayed")
    assert [m.topic.rsplit("/", 1)[1] for m in got] == [
        "ping", "model", "model", "status", "ping", "ping"]  # fmt: skip
    detector = device.runtime._onnx["probe-model"]
    assert detector.model_version == "2"


def test_mqtt5_replies_go_to_the_response_topic_with_the_correlation_data(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    device = Device(tmp_path, mosquitto.url, "5")
    host, port = split_url(mosquitto.url)
    got: list[tuple[str, bytes | None, bytes]] = []
    ready, answered = threading.Event(), threading.Event()
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)

    def on_message(c: mqtt.Client, u: Any, msg: mqtt.MQTTMessage) -> None:
        got.append((msg.topic, getattr(msg.properties, "CorrelationData", None), msg.payload))
        answered.set()

    client.on_message = on_message
    client.on_subscribe = lambda *args: ready.set()
    client.connect(host, port)
    client.loop_start()
    try:
        client.subscribe("answers/me", qos=1)
        assert ready.wait(10)
        props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        props.ResponseTopic = "answers/me"
        props.CorrelationData = b"corr-42"
        for _ in range(50):  # until the device has subscribed to its command topic
            client.publish(f"edgeline/{DEVICE}/cmd/ping", command("ping", f"r{_}", {}), qos=1,
                           properties=props)  # fmt: skip
            if answered.wait(0.2):
                break
        assert answered.is_set()
        topic, correlation, payload = got[0]
        assert topic == "answers/me" and correlation == b"corr-42"
        assert json.loads(payload)["ok"] is True
    finally:
        client.loop_stop()
        client.disconnect()
        device.close()


# -- an attacker on the broker ----------------------------------------------------------------


def await_commands(url: str, answers: Any, name: str = "ping") -> None:
    """Ping until the device answers: it has subscribed to its command topics."""
    for attempt in range(50):
        publish(url, f"edgeline/{DEVICE}/cmd/{name}", command(name, f"hello-{attempt}", {}))
        with contextlib.suppress(AssertionError):
            answers.wait_for(lambda ms: len(ms) > 0, timeout=0.2)
            return
    raise AssertionError("the device never answered a ping")


HOSTILE = [
    b"[" * 2000 + b"]" * 2000,
    b'{"id": "\\ud800", "ts": "2026-01-01T00:00:00.000Z", "sig": "' + b"0" * 64 + b'"}',
    json.dumps(
        {"id": "s-1", "ts": "2026-01-01T00:00:00.000Z", "args": {}, "sig": "\u00e9" * 64}
    ).encode(),
    b'{"id": "c\\u0001", "ts": "2026-01-01T00:00:00.000Z", "sig": "' + b"0" * 64 + b'"}',
]


def test_hostile_payloads_through_the_broker_leave_the_worker_answering(
    device: Device, mosquitto: Mosquitto, mqtt_subscriber: Any
) -> None:
    answers = mqtt_subscriber(mosquitto.url, f"edgeline/{DEVICE}/reply/#")
    await_commands(mosquitto.url, answers)
    for body in HOSTILE:
        publish(mosquitto.url, f"edgeline/{DEVICE}/cmd/ping", body)
    publish(mosquitto.url, f"edgeline/{DEVICE}/cmd/ping", command("ping", "after", {}))
    got = answers.wait_for(lambda ms: "after" in replies(ms))
    assert replies(got)["after"]["ok"] is True
    got = [m for m in got if json.loads(m.payload)["id"] != "st"]
    worker = device.runtime.commands
    assert worker is not None and worker.alive and worker.restarts == 0
    assert worker.refused == len(HOSTILE)
    publish(mosquitto.url, f"edgeline/{DEVICE}/cmd/status", command("status", "st", {}))
    counted = replies(answers.wait_for(lambda ms: "st" in replies(ms)))["st"]["result"]
    assert counted["commands"]["refused"] == len(HOSTILE)
    assert counted["commands"]["unreadable"] == len(HOSTILE) - 1
    # Only the non-ASCII sig has an id to answer: the others have none that can be read.
    refused = replies(not_hello(got))
    assert sorted(refused) == ["after", "s-1"] and "bad signature" in refused["s-1"]["error"]


def test_a_captured_command_replayed_after_a_restart_is_refused(
    tmp_path: Path, mosquitto: Mosquitto, mqtt_subscriber: Any
) -> None:
    answers = mqtt_subscriber(mosquitto.url, f"edgeline/{DEVICE}/reply/#")
    captured = command("ping", "once-only", {"echo": 1})
    first = Device(tmp_path, mosquitto.url, "3.1.1")
    try:
        await_commands(mosquitto.url, answers)
        publish(mosquitto.url, f"edgeline/{DEVICE}/cmd/ping", captured)
        answers.wait_for(lambda ms: "once-only" in replies(ms))
    finally:
        first.close()
    assert replies(answers.messages)["once-only"]["ok"] is True
    second = Device(tmp_path, mosquitto.url, "3.1.1", fresh=False)
    try:
        publish(mosquitto.url, f"edgeline/{DEVICE}/cmd/ping", command("ping", "second", {}))
        answers.wait_for(lambda ms: "second" in replies(ms))
        publish(mosquitto.url, f"edgeline/{DEVICE}/cmd/ping", captured)
        got = answers.wait_for(lambda ms: [json.loads(m.payload)["id"] for m in ms]
                               .count("once-only") == 2)  # fmt: skip
    finally:
        second.close()
    last = [json.loads(m.payload) for m in got if json.loads(m.payload)["id"] == "once-only"][-1]
    assert last["ok"] is False and "replayed" in last["error"]


def test_an_unsigned_request_cannot_choose_where_the_device_publishes(
    tmp_path: Path, mosquitto: Mosquitto, mqtt_subscriber: Any
) -> None:
    everything = mqtt_subscriber(mosquitto.url, "#")
    device = Device(tmp_path, mosquitto.url, "5")
    host, port = split_url(mosquitto.url)
    attacker = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    attacker.connect(host, port)
    attacker.loop_start()
    try:
        answers = mqtt_subscriber(mosquitto.url, f"edgeline/{DEVICE}/reply/#")
        await_commands(mosquitto.url, answers)
        props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        props.ResponseTopic = "victim/inbox"
        props.CorrelationData = b"x"
        forged = command("ping", "forged", {}, key=b"not the key" * 3)
        attacker.publish(
            f"edgeline/{DEVICE}/cmd/ping", forged, qos=1, properties=props
        ).wait_for_publish(5)
        attacker.publish(
            f"edgeline/{DEVICE}/cmd/ping", command("ping", "real", {}), qos=1
        ).wait_for_publish(5)
        answers.wait_for(lambda ms: "real" in replies(ms))
    finally:
        attacker.loop_stop()
        attacker.disconnect()
        device.close()
    assert replies(answers.messages)["forged"]["error"] == "refused: bad signature"
    topics = {m.topic for m in everything.messages}
    assert "victim/inbox" not in topics
    assert {t for t in topics if not t.startswith(f"edgeline/{DEVICE}/")} == set()


@pytest.mark.parametrize("protocol", ["3.1.1", "5"])
def test_a_huge_message_is_never_queued_and_mqtt5_never_receives_it(
    tmp_path: Path, mosquitto: Mosquitto, mqtt_subscriber: Any, protocol: str
) -> None:
    device = Device(tmp_path, mosquitto.url, protocol)
    try:
        answers = mqtt_subscriber(mosquitto.url, f"edgeline/{DEVICE}/reply/#")
        await_commands(mosquitto.url, answers)
        huge = b'{"id": "big", "pad": "' + b"x" * 20_000_000 + b'"}'
        publish(mosquitto.url, f"edgeline/{DEVICE}/cmd/ping", huge, timeout=30)
        publish(mosquitto.url, f"edgeline/{DEVICE}/cmd/ping", command("ping", "after", {}))
        answers.wait_for(lambda ms: "after" in replies(ms), timeout=30)
        worker = device.runtime.commands
        assert worker is not None
        # MQTT 5: the broker honours the Maximum Packet Size and never sends it; 3.1.1 has
        # no such thing, so it arrives and is dropped unread.
        assert worker.oversized == (0 if protocol == "5" else 1)
        assert "big" not in replies(answers.messages)
    finally:
        device.close()


def test_a_dead_command_worker_is_reported_and_replaced(
    device: Device, mosquitto: Mosquitto, mqtt_subscriber: Any
) -> None:
    health = mqtt_subscriber(mosquitto.url, f"edgeline/{DEVICE}/events/health/runtime")
    answers = mqtt_subscriber(mosquitto.url, f"edgeline/{DEVICE}/reply/#")
    worker = device.runtime.commands
    assert worker is not None

    def fatal(args: Any) -> Any:
        raise SystemExit("a handler called exit")

    worker.handlers["exit"] = fatal
    await_commands(mosquitto.url, answers)
    publish(mosquitto.url, f"edgeline/{DEVICE}/cmd/exit", command("exit", "x-1", {}))
    publish(mosquitto.url, f"edgeline/{DEVICE}/cmd/ping", command("ping", "after", {}))
    answers.wait_for(lambda ms: "after" in replies(ms))
    event = json.loads(health.wait_for_count(1)[0].payload)
    assert event["kind"] == "health" and event["state"] == "restarted"
    assert event["component"] == "commands" and "SystemExit" in event["reason"]


def test_a_key_file_others_can_read_stops_the_runtime_with_a_config_error(
    tmp_path: Path,
) -> None:
    from edge.errors import ConfigError

    (tmp_path / "models").mkdir()
    live = write_mean_model(tmp_path / "models" / "live.onnx", gain=1.0, threshold=0.5,
                            name="a", version="1")  # fmt: skip
    (tmp_path / "key").write_text(KEY_HEX + "\n")
    (tmp_path / "key").chmod(0o644)
    text = SCENARIO.format(state=tmp_path / "state", broker="mqtt://127.0.0.1:1", protocol="5",
                           key=tmp_path / "key", model=live)  # fmt: skip
    scenario = parse_scenario(text, "cmd.toml", overrides={})
    clock = VirtualClock()
    hardware = SimulatedHardware(scenario, clock)
    with pytest.raises(ConfigError) as caught:
        Runtime(scenario.config, hardware=hardware.hardware, clock=clock)
    assert caught.value.problems == [
        f"cmd.toml: commands.key_file: {tmp_path / 'key'}: expected a file only its owner can"
        f" read or write (run: chmod 600 {tmp_path / 'key'}), found mode 0644"
    ]
