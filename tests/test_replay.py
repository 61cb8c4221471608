"""``edge outbox replay``: a seq range published again, as it was, to a real Mosquitto."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from edge.bench.mosquitto import Mosquitto, free_port
from edge.clock import VirtualClock
from edge.config.device import UplinkConfig
from edge.errors import OutboxError, UplinkError
from edge.events import Draft, Event
from edge.outbox.store import Outbox, OutboxLimits
from edge.uplink.replay import replay

DEVICE = "rp-01"


def stored(state: Path, limits: OutboxLimits | None = None) -> list[Event]:
    """100 events: 1-60 delivered (kept), 61-100 pending; every tenth an alarm."""
    clock = VirtualClock()
    with Outbox.open(state, DEVICE, limits=limits, clock=clock) as box:
        drafts = [
            Draft("t", "threshold", "critical", i, clock.monotonic(), clock.wall(), True)
            if i % 10 == 0
            else Draft("t", "telemetry", "info", i, clock.monotonic(), clock.wall(), True)
            for i in range(100)
        ]
        events = box.commit(drafts)
        box.ack([e.seq for e in events[:60]])
        return events


def test_a_range_goes_again_with_the_same_topics_and_payloads(
    tmp_path: Path, mosquitto: Mosquitto, mqtt_subscriber: Any
) -> None:
    events = stored(tmp_path)
    subscriber = mqtt_subscriber(mosquitto.url, f"edgeline/{DEVICE}/#")
    result = replay(tmp_path, UplinkConfig(broker=mosquitto.url), first=50, last=70)
    assert (result.sent, result.acked, result.missing) == (21, 21, [])
    got = subscriber.wait_for_count(21, timeout=10)
    original = {e.seq: e for e in events}
    assert [json.loads(m.payload)["seq"] for m in got] == list(range(50, 71))  # seq order
    for message in got:
        event = original[json.loads(message.payload)["seq"]]
        assert message.payload == event.payload.encode()
        assert message.topic == event.topic("edgeline", DEVICE)
    assert not any(m.topic.endswith("/status") for m in subscriber.messages)  # no birth
    with Outbox.open_existing(tmp_path) as box:  # replay changes nothing stored
        assert box.stats().pending == 40 and box.stats().kept == 60
    assert "replayed 21 of 21 events" in result.summary()


def test_seqs_no_longer_held_are_listed(
    tmp_path: Path, mosquitto: Mosquitto, mqtt_subscriber: Any
) -> None:
    stored(tmp_path, OutboxLimits(keep_delivered=False))  # 1-60 were deleted when delivered
    subscriber = mqtt_subscriber(mosquitto.url, f"edgeline/{DEVICE}/events/#")
    result = replay(tmp_path, UplinkConfig(broker=mosquitto.url), first=55)
    assert (result.first, result.last) == (55, 100)
    assert (result.sent, result.acked, result.missing) == (40, 40, [[55, 60]])
    assert "not held (evicted or trimmed): 55-60" in result.summary()
    subscriber.wait_for_count(40, timeout=10)


def test_max_rate_paces_a_replay(tmp_path: Path, mosquitto: Mosquitto) -> None:
    stored(tmp_path)
    settings = UplinkConfig(broker=mosquitto.url, max_rate=200.0)
    began = time.monotonic()
    result = replay(tmp_path, settings, first=1, last=100)
    took = time.monotonic() - began
    assert result.acked == 100
    # 90 metered events at 200/s after a burst of 20 (the 10 alarms are not metered).
    assert took >= (90 - 20) / 200 * 0.9, took


def test_a_broker_that_is_down_is_an_uplink_error(tmp_path: Path) -> None:
    stored(tmp_path)
    with pytest.raises(UplinkError, match="cannot connect"):
        replay(tmp_path, UplinkConfig(broker=f"mqtt://127.0.0.1:{free_port()}"), first=1)


def test_a_range_past_the_last_seq_is_refused(tmp_path: Path) -> None:
    stored(tmp_path)
    with pytest.raises(OutboxError, match="beyond"):
        replay(tmp_path, UplinkConfig(broker="mqtt://127.0.0.1:1"), first=500)
