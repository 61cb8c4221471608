"""``[uplink] max_rate``: a metered link drains no faster than it says; alarms do not wait."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from edge.bench.mosquitto import Mosquitto
from edge.clock import RealClock, VirtualClock
from edge.config.device import parse
from edge.events import Draft
from edge.outbox.store import Outbox
from edge.runtime.delivery import Delivery
from edge.uplink.pacing import RateLimit
from tests.waiting import wait_until


def test_the_bucket_allows_the_rate_on_average_in_short_bursts() -> None:
    clock = VirtualClock()
    limit = RateLimit(50.0, clock)  # bursts of 5 (a tenth of a second's worth)
    sent = 0
    for _ in range(1000):  # ten virtual seconds in 10 ms steps
        while limit.delay() == 0:
            limit.take()
            sent += 1
        clock.advance(0.01)
    assert 500 <= sent <= 505
    assert limit.delay() > 0
    assert RateLimit(0.5, clock).capacity == 1.0  # never less than one event


def test_a_backlog_drains_at_max_rate_while_critical_events_go_at_once(
    tmp_path: Path, mosquitto: Mosquitto, mqtt_subscriber: Any
) -> None:
    config = parse(
        f"""
        [device]
        id = "m-01"
        [uplink]
        broker = "{mosquitto.url}"
        max_rate = 200.0
        """,
        "metered.toml",
    )
    clock = RealClock(assume_synced=True)
    outbox = Outbox.open(tmp_path / "state", "m-01")
    delivery = Delivery(outbox, clock, config.uplink, device="m-01", window=0.02)
    recorder, uplink = delivery.recorder, delivery.uplink
    subscriber = mqtt_subscriber(mosquitto.url, "edgeline/m-01/events/#")
    now = clock.monotonic(), clock.wall()
    outbox.commit([Draft("s", "telemetry", "info", i, *now, True) for i in range(600)])
    recorder.start()
    try:
        began = time.monotonic()
        uplink.start()
        subscriber.wait_for_count(100, timeout=30)
        alarm = outbox.append(Draft("s", "threshold", "critical", 99, *now, True))
        delivery.stored([alarm], [])
        raised = time.monotonic()
        got = subscriber.wait_for(
            lambda ms: any(json.loads(m.payload)["seq"] == alarm.seq for m in ms), timeout=30
        )
        waited = time.monotonic() - raised
        assert len(got) < 600, "the alarm waited behind the metered backlog"
        assert waited < 0.5
        subscriber.wait_for_count(601, timeout=30)
        took = time.monotonic() - began
        # 600 events at 200/s: about 3 s (the bucket starts with 20), never much faster.
        assert took >= (600 - 20) / 200.0 * 0.95, took
        assert took < 15.0
        wait_until(lambda: uplink.stats.acked == 601)
    finally:
        uplink.close()
        recorder.close()
        outbox.close()
