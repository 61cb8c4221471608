"""The uplink against a real Mosquitto: window, order, priority, reconnects, backoff."""

from __future__ import annotations

import contextlib
import json
import os
import random
import resource
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge.bench.mosquitto import Mosquitto
from edge.clock import RealClock
from edge.config.device import parse
from edge.events import Draft
from edge.outbox.store import Outbox
from edge.runtime.delivery import Delivery
from edge.runtime.recorder import ACK_BATCH, Recorder
from edge.uplink.link import Uplink
from edge.uplink.pacing import Backoff
from models import Severity
from tests.brokers import Received
from tests.waiting import wait_until


class WindowCheck(Delivery):
    """The delivery loop, noting the in-flight count at every acknowledgement."""

    overflow: list[int]
    inflight: int

    def acknowledged(self, seqs: Collection[int]) -> None:
        if self.uplink.in_flight() > self.inflight:
            self.overflow.append(self.uplink.in_flight())
        super().acknowledged(seqs)


@dataclass
class Link:
    outbox: Outbox
    delivery: WindowCheck
    clock: RealClock

    @property
    def recorder(self) -> Recorder:
        return self.delivery.recorder

    @property
    def uplink(self) -> Uplink:
        return self.delivery.uplink

    @property
    def window_overflow(self) -> list[int]:
        return self.delivery.overflow

    def store(self, count: int, severity: Severity = "info", kind: str = "telemetry") -> None:
        now = self.clock.monotonic(), self.clock.wall()
        drafts = [Draft("s", kind, severity, float(i), *now, True) for i in range(count)]
        self.delivery.stored(self.outbox.commit(drafts), ())

    def close(self) -> None:
        self.uplink.close()
        self.recorder.close()
        self.outbox.close()


def open_link(
    tmp_path: Path,
    broker: str | list[str],
    inflight: int = 20,
    failback: float = 60.0,
    protocol: str = "3.1.1",
) -> Link:
    """A delivery loop on ``broker`` (a URL, or a list of them), its uplink not started."""
    config = parse(
        f"""
        [device]
        id = "u-01"
        [uplink]
        broker = {json.dumps(broker)}
        inflight = {inflight}
        backoff_min = 0.05
        backoff_max = 0.2
        failback = {failback}
        protocol = "{protocol}"
        """,
        "uplink.toml",
    )
    clock = RealClock(assume_synced=True)
    outbox = Outbox.open(tmp_path / "state", "u-01")
    delivery = WindowCheck(outbox, clock, config.uplink, device="u-01", window=0.05)
    delivery.overflow, delivery.inflight = [], inflight
    delivery.recorder.start()
    return Link(outbox, delivery, clock)


@pytest.fixture
def link(tmp_path: Path, mosquitto: Mosquitto) -> Iterator[Link]:
    link = open_link(tmp_path, mosquitto.url, inflight=8)
    try:
        yield link
    finally:
        link.close()


def all_seqs_up_to(last: int) -> Callable[[list[Received]], bool]:
    """A predicate that parses each message once, however often it is asked."""
    seen: set[int] = set()
    parsed = 0

    def complete(messages: list[Received]) -> bool:
        nonlocal parsed
        seen.update(seqs(messages[parsed:]))
        parsed = len(messages)
        return seen >= set(range(1, last + 1))

    return complete


def seqs(messages: list[Received]) -> list[int]:
    return [json.loads(m.payload)["seq"] for m in messages]


def test_a_backlog_drains_in_seq_order_within_the_window(
    link: Link, mosquitto: Mosquitto, mqtt_subscriber: Any
) -> None:
    subscriber = mqtt_subscriber(mosquitto.url, "edgeline/u-01/events/#")
    link.store(3000)
    link.uplink.start()
    subscriber.wait_for_count(3000, timeout=60)
    assert seqs(subscriber.messages) == list(range(1, 3001))
    assert link.window_overflow == []  # never more than 8 in flight
    wait_until(lambda: link.uplink.stats.acked == 3000)  # PUBACKs trail the deliveries
    assert link.recorder.flush()
    assert link.outbox.stats().pending == 0 and link.outbox.stats().delivered == 3000


def test_a_critical_event_jumps_a_draining_backlog(
    link: Link, mosquitto: Mosquitto, mqtt_subscriber: Any
) -> None:
    subscriber = mqtt_subscriber(mosquitto.url, "edgeline/u-01/events/#")
    link.store(20000)
    link.uplink.start()
    subscriber.wait_for(lambda ms: len(ms) >= 100, timeout=30)
    link.store(1, severity="critical", kind="threshold")  # seq 20001
    received = seqs(subscriber.wait_for_count(20001, timeout=120))
    position = received.index(20001)
    assert position < received.index(20000), "the alarm waited behind the whole backlog"
    telemetry = [s for s in received if s != 20001]
    assert telemetry == list(range(1, 20001))  # order kept within the priority


def test_a_broker_restart_mid_drain_loses_nothing(tmp_path: Path, mqtt_subscriber: Any) -> None:
    broker = Mosquitto(tmp_path / "broker", persistence=True).start()
    link = open_link(tmp_path, broker.url)
    try:
        subscriber = mqtt_subscriber(
            broker.url, "edgeline/u-01/events/#", client_id="drain-sink", clean_session=False
        )
        link.store(5000)
        link.uplink.start()
        subscriber.wait_for(lambda ms: len(ms) >= 500, timeout=30)
        broker.stop()
        broker.start()
        subscriber.wait_subscribed(count=2)
        got = subscriber.wait_for(all_seqs_up_to(5000), timeout=120)
        assert set(seqs(got)) == set(range(1, 5001))
        # The device re-sends at most its in-flight window (20) after the reconnect; the
        # subscriber may see more duplicates from the broker's own redelivery to it.
        assert 5000 <= link.uplink.stats.published <= 5000 + 20, link.uplink.stats
        assert link.uplink.stats.connects >= 2
    finally:
        link.close()
        broker.stop()


@contextlib.contextmanager
def files_open(count: int) -> Iterator[None]:
    """``count`` more files open: the next socket's descriptor comes after them."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = count + 256
    if soft != resource.RLIM_INFINITY and soft < wanted:
        if hard != resource.RLIM_INFINITY and hard < wanted:
            pytest.skip(f"the open-files limit ({hard}) is below {wanted}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    held = [os.open(os.devnull, os.O_RDONLY) for _ in range(count)]
    try:
        yield
    finally:
        for fd in held:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_the_link_works_on_a_socket_numbered_past_what_select_takes(
    link: Link, mosquitto: Mosquitto, mqtt_subscriber: Any
) -> None:
    # select() refuses descriptors from 1024 up; a fleet of simulated devices in one
    # process (three files per outbox) opens that many. The subscriber's own paho loop
    # uses select(): it connects first, on a low descriptor.
    subscriber = mqtt_subscriber(mosquitto.url, "edgeline/u-01/events/#")
    with files_open(1100):
        link.store(50)
        link.uplink.start()
        assert seqs(subscriber.wait_for_count(50, timeout=30)) == list(range(1, 51))
        wait_until(lambda: link.uplink.stats.acked == 50)
        assert link.uplink.stats.connects == 1, link.uplink.stats
        link.uplink.close()  # offline and DISCONNECT, written on that socket too


def test_events_wait_while_the_broker_is_unreachable(tmp_path: Path) -> None:
    link = open_link(tmp_path, "mqtt://127.0.0.1:1")  # nothing listens on port 1
    try:
        link.store(5)
        link.uplink.start()
        wait_until(lambda: "refused" in link.uplink.stats.last_error)
        assert link.uplink.stats.state in ("offline", "connecting")
        assert link.outbox.stats().pending == 5
    finally:
        link.close()


@given(
    first=st.floats(0.01, 5.0),
    ratio=st.floats(1.0, 100.0),
    attempts=st.integers(1, 40),
    seed=st.integers(0, 2**32),
)
def test_backoff_doubles_with_jitter_up_to_the_ceiling(
    first: float, ratio: float, attempts: int, seed: int
) -> None:
    longest = first * ratio
    backoff = Backoff(first, longest, random.Random(seed))
    for attempt in range(attempts):
        ceiling = min(longest, first * 2**attempt)
        delay = backoff.next_delay()
        assert ceiling / 2 <= delay <= ceiling
    backoff.reset()
    assert first / 2 <= backoff.next_delay() <= first


def test_backoff_jitter_spreads_a_fleet() -> None:
    delays = {round(Backoff(1.0, 60.0, random.Random(seed)).next_delay(), 6) for seed in range(50)}
    assert len(delays) == 50  # fifty devices do not reconnect in lockstep


def test_acked_events_awaiting_deletion_are_not_sent_again_after_a_reconnect(
    link: Link, mosquitto: Mosquitto
) -> None:
    # Deletions lag far behind the PUBACKs: long windows, and fewer acks than a full batch
    # (which the recorder commits at once).
    link.recorder.window = link.recorder.bulk_window = 30.0
    first = ACK_BATCH - 100
    link.store(first)
    link.uplink.start()
    wait_until(lambda: link.uplink.stats.acked == first)
    assert link.outbox.stats().pending == first  # acked, not yet deleted
    mosquitto.restart()
    link.store(300, severity="info", kind="state")  # more urgent than the telemetry
    wait_until(lambda: link.uplink.stats.acked == first + 300, timeout=60)
    # Only what was in flight at the cut (at most the window, 8) may go twice.
    assert link.uplink.stats.published <= first + 300 + 8, link.uplink.stats


def test_backoff_starts_over_after_every_healthy_session(link: Link, mosquitto: Mosquitto) -> None:
    link.uplink.start()
    for round_ in range(1, 5):
        wait_until(lambda: link.uplink.online)
        mosquitto.restart()
        wait_until(lambda r=round_: link.uplink.stats.connects > r, timeout=30)
        assert link.uplink.backoff.attempt <= 2, (round_, link.uplink.backoff.attempt)
