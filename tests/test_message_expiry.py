"""MQTT 5 message expiry from the outbox's TTLs: what is left of an event's lifetime goes
with it, live, after an outage, and in a replay; nothing for MQTT 3.1.1.

Real parts: a Mosquitto, a device (an in-process Runtime on a VirtualClock) whose link runs
through a LinkProxy the test cuts, a raw paho MQTT 5 subscriber reading the properties the
broker forwards.
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge.bench.mosquitto import Mosquitto
from edge.clock import VirtualClock
from edge.config.device import UplinkConfig
from edge.events import Event
from edge.runtime.runtime import Runtime
from edge.sim.hardware import SimulatedHardware
from edge.sim.linkproxy import LinkProxy
from edge.sim.scenario import parse_scenario
from edge.uplink.expiry import expiry
from edge.uplink.replay import replay_range
from tests.waiting import wait_until

TTL = 60
SCENARIO = """
[device]
id = "exp-01"
[storage]
state_dir = "{state}"
commit_window_ms = 0
ttl_telemetry = {ttl}
[uplink]
broker = "{broker}"
protocol = "5"
backoff_min = 0.1
backoff_max = 0.5

[[sensors]]
id = "probe"
type = "i2c.tmp102"
interval = 1.0
telemetry = true

[simulation]
duration = 600.0
"""


class Expiries:
    """seq -> the MessageExpiryInterval each telemetry event arrived with (None: none)."""

    def __init__(self, mosquitto: Mosquitto) -> None:
        self.seen: dict[int, list[int | None]] = {}
        self.lock = threading.Lock()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        subscribed = threading.Event()
        self.client.on_message = self._message
        self.client.on_subscribe = lambda *args: subscribed.set()
        self.client.on_connect = lambda c, *args: c.subscribe("edgeline/+/events/#", qos=1)
        self.client.connect(mosquitto.host, mosquitto.port)
        self.client.loop_start()
        assert subscribed.wait(10)

    def _message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        import json

        seq = json.loads(msg.payload)["seq"]
        interval = getattr(msg.properties, "MessageExpiryInterval", None)
        with self.lock:
            self.seen.setdefault(seq, []).append(interval)

    def last(self, seq: int) -> int | None:
        with self.lock:
            return self.seen[seq][-1]

    def count(self, seq: int) -> int:
        with self.lock:
            return len(self.seen.get(seq, []))

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def rig(
    tmp_path: Path, mosquitto: Mosquitto
) -> Iterator[tuple[Runtime, VirtualClock, LinkProxy, Expiries]]:
    proxy = LinkProxy(mosquitto.host, mosquitto.port).start()
    text = SCENARIO.format(state=tmp_path / "state", broker=proxy.url, ttl=TTL)
    scenario = parse_scenario(text, "expiry.toml", overrides={})
    clock = VirtualClock()
    runtime = Runtime(scenario.config, hardware=SimulatedHardware(scenario, clock).hardware,
                      clock=clock)  # fmt: skip
    watching = Expiries(mosquitto)
    runtime.start()
    try:
        yield runtime, clock, proxy, watching
    finally:
        runtime.close(timeout=2)
        watching.close()
        proxy.close()


def sample(runtime: Runtime, clock: VirtualClock, seconds: int) -> None:
    probe = runtime.sensors["probe"]
    start = probe.readings
    for second in range(1, seconds + 1):
        clock.advance(1.0)
        wait_until(lambda: probe.readings >= start + second)  # noqa: B023 - waited for at once


def reconnect(runtime: Runtime, clock: VirtualClock) -> None:
    """The link's reconnect backoff runs on the virtual clock: move it on in small steps
    (the events age by that much) until the link is back."""
    deadline = time.monotonic() + 30
    while not runtime.uplink.online:
        assert time.monotonic() < deadline, "the link did not come back"
        clock.advance(0.05)
        with contextlib.suppress(AssertionError):
            wait_until(lambda: runtime.uplink.online, 0.2)


def test_events_carry_what_is_left_of_their_ttl_live_after_an_outage_and_in_a_replay(
    rig: tuple[Runtime, VirtualClock, LinkProxy, Expiries], mosquitto: Mosquitto
) -> None:
    runtime, clock, proxy, expiries = rig
    sample(runtime, clock, 3)  # live: sent as soon as stored, nearly the whole TTL left
    live = runtime.outbox.last_seq
    wait_until(lambda: expiries.count(live) == 1)
    assert TTL - 1 <= (expiries.last(live) or 0) <= TTL

    proxy.cut()  # an outage of 40 virtual seconds: the events wait in the outbox
    wait_until(lambda: not runtime.uplink.online)
    first = runtime.outbox.last_seq + 1
    sample(runtime, clock, 40)
    last = runtime.outbox.last_seq
    proxy.restore()
    reconnect(runtime, clock)
    wait_until(lambda: all(expiries.count(s) >= 1 for s in range(first, last + 1)), 30)
    left = {seq: expiries.last(seq) for seq in range(first, last + 1)}
    # stored 40..1 s before the link came back: that much less of the 60 s is left
    assert all(value is not None and 1 <= value <= TTL for value in left.values())
    assert left[first] is not None and left[first] <= TTL - 39
    assert left[last] is not None and left[last] >= TTL - 3
    ordered = [left[seq] for seq in range(first, last + 1)]
    assert ordered == sorted(ordered, key=lambda v: v or 0)  # older events, less left

    clock.advance(30.0)  # the outage's first events are now past their TTL
    settings = UplinkConfig(broker=mosquitto.url, protocol="5")
    result = replay_range(runtime.outbox, settings, first=first, last=last, clock=clock)
    assert result.acked == last - first + 1
    wait_until(lambda: all(expiries.count(s) >= 2 for s in range(first, last + 1)), 30)
    replayed = {seq: expiries.last(seq) for seq in range(first, last + 1)}
    assert replayed[first] == 1  # past its TTL: online subscribers only
    assert all(
        r is not None and o is not None and r <= o
        for r, o in zip(replayed.values(), ordered, strict=True)
    )


@given(
    left=st.none() | st.floats(-1e6, 1e10, allow_nan=False),
    protocol=st.sampled_from(["5", "3.1.1"]),
)
def test_expiry_is_whole_seconds_of_what_is_left_at_least_one(
    left: float | None, protocol: str
) -> None:
    version: object = protocol
    settings = UplinkConfig(broker="mqtt://127.0.0.1:1883", protocol=version)  # type: ignore[arg-type]
    props = expiry(Event(1, 3, "probe", "telemetry", "{}", left), settings)
    if left is None or protocol != "5":
        assert props is None
        return
    assert props is not None
    interval = props.MessageExpiryInterval
    assert 1 <= interval <= 2**32 - 1
    if 1 <= left <= 2**32 - 1:
        assert interval == math.ceil(left)
