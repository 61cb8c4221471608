"""The ``replay`` downlink command through a real Mosquitto: a consumer that found a gap asks
the device for a seq range, and the running device publishes what its outbox still holds
of it once more, unchanged; what it no longer holds is named in the reply."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from edge.bench.mosquitto import Mosquitto
from edge.clock import VirtualClock
from edge.runtime.runtime import Runtime
from edge.sim.hardware import SimulatedHardware
from edge.sim.scenario import parse_scenario
from tests.brokers import publish
from tests.test_commands_mqtt import DEVICE, KEY_HEX, command
from tests.waiting import wait_until

SCENARIO = """
[device]
id = "cmd-01"
[storage]
state_dir = "{state}"
commit_window_ms = 0
[uplink]
broker = "{broker}"
backoff_min = 0.1
backoff_max = 0.5
[commands]
enabled = true
key_file = "{key}"

[[sensors]]
id = "probe"
type = "i2c.tmp102"
interval = 1.0
telemetry = true

[simulation]
duration = 60.0
"""


@pytest.fixture
def device(tmp_path: Path, mosquitto: Mosquitto) -> Iterator[Runtime]:
    (tmp_path / "key").write_text(KEY_HEX + "\n")
    (tmp_path / "key").chmod(0o600)
    text = SCENARIO.format(state=tmp_path / "state", broker=mosquitto.url, key=tmp_path / "key")
    scenario = parse_scenario(text, "replay.toml", overrides={})
    clock = VirtualClock()
    runtime = Runtime(scenario.config, hardware=SimulatedHardware(scenario, clock).hardware,
                      clock=clock)  # fmt: skip
    runtime.start()
    try:
        probe = runtime.sensors["probe"]
        for second in range(1, 21):  # twenty seconds of readings, each a telemetry event
            clock.advance(1.0)
            wait_until(lambda: probe.readings >= second)  # noqa: B023 - waited for at once
        wait_until(lambda: runtime.outbox.stats().pending == 0 and runtime.outbox.last_seq >= 20)
        yield runtime
    finally:
        runtime.close(timeout=2)


def ask(url: str, answers: Any, request_id: str, args: dict[str, Any]) -> dict[str, Any]:
    publish(url, f"edgeline/{DEVICE}/cmd/replay", command("replay", request_id, args))
    found = answers.wait_for(lambda ms: any(json.loads(m.payload)["id"] == request_id for m in ms))
    reply: dict[str, Any] = next(
        json.loads(m.payload) for m in found if json.loads(m.payload)["id"] == request_id
    )
    return reply


def seqs(messages: list[Any]) -> list[int]:
    return [json.loads(m.payload)["seq"] for m in messages if "/events/" in m.topic]


def test_a_gap_asked_back_is_published_again_unchanged(
    device: Runtime, mosquitto: Mosquitto, mqtt_subscriber: Any
) -> None:
    answers = mqtt_subscriber(mosquitto.url, f"edgeline/{DEVICE}/reply/#")
    for attempt in range(50):  # until the device has subscribed to its command topics
        publish(
            mosquitto.url, f"edgeline/{DEVICE}/cmd/ping", command("ping", f"hello-{attempt}", {})
        )
        with contextlib.suppress(AssertionError):
            answers.wait_for(lambda ms: len(ms) > 0, timeout=0.2)
            break
    cloud = mqtt_subscriber(mosquitto.url, f"edgeline/{DEVICE}/events/#")
    stream = device.outbox.stream
    stored = {e.seq: e.payload.encode() for e in device.outbox.stored(5, 9)}

    reply = ask(mosquitto.url, answers, "r1", {"from_seq": 5, "to_seq": 9, "stream": stream})
    assert reply["ok"], reply
    assert reply["result"] == {"stream": stream, "from_seq": 5, "to_seq": 9, "sent": 5,
                               "acked": 5, "missing": []}  # fmt: skip
    got = cloud.wait_for(lambda ms: len(seqs(ms)) >= 5)
    assert seqs(got) == [5, 6, 7, 8, 9]
    assert {json.loads(m.payload)["seq"]: m.payload for m in got} == stored  # byte for byte

    # Past the newest seq: clipped to it. Another stream, or no seq: refused, nothing sent.
    last = device.outbox.last_seq
    clipped = ask(mosquitto.url, answers, "r2", {"from_seq": last, "to_seq": last + 100})
    assert clipped["ok"] and clipped["result"]["to_seq"] == last
    for request_id, args, why in (
        ("r3", {"from_seq": 1, "stream": "0000000000000000"}, "is not this outbox's"),
        ("r4", {"from_seq": 0}, "from_seq must be a seq"),
        ("r5", {"from_seq": "5"}, "from_seq must be a seq"),
        ("r6", {"from_seq": 1, "to_seq": True}, "to_seq must be a seq"),
    ):
        refused = ask(mosquitto.url, answers, request_id, args)
        assert not refused["ok"] and why in refused["error"], refused
    cloud.wait_for(lambda ms: len(seqs(ms)) >= 6)
    assert seqs(cloud.messages)[5:] == [last]


def test_what_the_outbox_no_longer_holds_is_named(
    device: Runtime, mosquitto: Mosquitto, mqtt_subscriber: Any
) -> None:
    from edge.runtime.command_handlers import replay_handler

    with device.outbox._lock:  # as eviction would: seqs 3 and 4 are gone from the file
        device.outbox._conn.execute("DELETE FROM events WHERE seq IN (3, 4)")
        device.outbox._conn.commit()
    replay = replay_handler(device.outbox, device.config.uplink)
    result = replay({"from_seq": 2, "to_seq": 6})
    assert result["sent"] == 3 and result["acked"] == 3 and result["missing"] == [[3, 4]]
