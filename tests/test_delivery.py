"""The delivery loop's hand-offs on a real outbox and recorder thread: what the broker
acknowledged is never claimed again and is deleted by the next commit; what a sender holds
or the broker acknowledged is never evicted. (The uplink against a broker: test_uplink.py.)"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from edge.clock import VirtualClock
from edge.config.device import UplinkConfig
from edge.events import Draft, Event
from edge.outbox.limits import OutboxLimits
from edge.outbox.store import Outbox
from edge.runtime.delivery import Delivery

DEVICE = "d-01"
UNUSED = UplinkConfig(broker="mqtt://127.0.0.1:9")  # never started: no broker needed


def telemetry(clock: VirtualClock, count: int, pad: int = 0) -> list[Draft]:
    fields = {"pad": "x" * pad} if pad else {}
    now = clock.monotonic(), clock.wall()
    return [Draft("s", "telemetry", "info", float(i), *now, True, fields) for i in range(count)]


def reported(events: list[Event]) -> set[int]:
    """Every seq named by the outbox's eviction reports among ``events``."""
    seqs: set[int] = set()
    for event in events:
        if event.sensor == "outbox" and event.kind == "health":
            for first, last in event.body().get("ranges", []):
                seqs.update(range(first, last + 1))
    return seqs


@pytest.fixture
def clock() -> VirtualClock:
    return VirtualClock(synced=True)


@pytest.fixture
def delivery(tmp_path: Path, clock: VirtualClock) -> Iterator[Delivery]:
    with Outbox.open(tmp_path, DEVICE, epoch=clock.epoch, clock=clock) as outbox:
        loop = Delivery(outbox, clock, UNUSED, device=DEVICE, window=0.0)
        loop.recorder.start()
        try:
            yield loop
        finally:
            loop.recorder.close()


def test_acknowledged_events_are_excluded_spared_and_deleted_by_the_next_commit(
    delivery: Delivery, clock: VirtualClock
) -> None:
    outbox = delivery.outbox
    for draft in telemetry(clock, 6):
        delivery.recorder.submit(draft)
    assert delivery.recorder.flush()
    delivery.acknowledged([2, 4])
    # Until the deletion commits, the broker's seqs are neither claimed again nor evicted.
    assert delivery.undeleted() == {2, 4} and {2, 4} <= delivery.spared()
    assert [e.seq for e in outbox.claim(10, exclude=delivery.undeleted())] == [1, 3, 5, 6]
    assert delivery.recorder.flush()  # the next commit deletes them, and says so
    assert delivery.undeleted() == set()
    stats = outbox.stats()
    assert (stats.pending, stats.delivered) == (4, 2)


def test_a_commit_tells_the_listeners_the_new_events_in_seq_order(
    tmp_path: Path, clock: VirtualClock
) -> None:
    with Outbox.open(tmp_path, DEVICE, epoch=clock.epoch, clock=clock) as outbox:
        loop = Delivery(outbox, clock, UNUSED, device=DEVICE, window=0.0)
        heard: list[Event] = []
        loop.listen(heard.extend)
        loop.recorder.start()
        try:
            for draft in telemetry(clock, 5):
                loop.recorder.submit(draft)
            assert loop.recorder.flush()
        finally:
            loop.recorder.close()
    assert [e.seq for e in heard] == [1, 2, 3, 4, 5]


def test_what_a_sender_holds_or_the_broker_acknowledged_is_never_evicted(
    tmp_path: Path, clock: VirtualClock
) -> None:
    limits = OutboxLimits(max_events=200)
    with Outbox.open(tmp_path, DEVICE, epoch=clock.epoch, clock=clock, limits=limits) as box:
        box.commit(telemetry(clock, 150))
        held: set[int] = set()
        claimed = box.claim(20, hold=held.update)  # the oldest: eviction's first choice
        assert held == {e.seq for e in claimed} == set(range(1, 21))
        acknowledged = {21, 22}
        events = []
        for _ in range(10):
            events += box.commit(telemetry(clock, 50), spare=lambda: held | acknowledged)
        evicted = reported(events)
        assert evicted, "the cap was never reached: the test proves nothing"
        assert not evicted & (held | acknowledged)
        pending = {e.seq for e in box.claim(-1)}
        assert held | acknowledged <= pending
        # Without holds, the oldest go first, as usual.
        events = box.commit(telemetry(clock, 100))
        assert set(range(1, 23)) & reported(events)
