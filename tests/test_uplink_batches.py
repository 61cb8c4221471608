"""The uplink's batches: event PUBLISHes encoded by ``EventClient``, PUBACKs booked per pass
of the network loop, and live events handed to the uplink straight from the commit.

``EventClient`` writes packets paho would otherwise write, so its encoder is checked
against paho's own on every message hypothesis can build, and the whole path runs against
a real Mosquitto (MQTT 3.1.1 and 5)."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from edge.bench.mosquitto import Mosquitto
from edge.events import Event
from edge.uplink.event_client import EventClient
from tests.test_uplink import Link, open_link, seqs
from tests.waiting import wait_until

topics = st.text(
    st.characters(exclude_categories=["Cs"], exclude_characters="+#\0"),
    min_size=1,
    max_size=40,
).map(lambda t: t.encode())


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    left, right = socket.socketpair()
    try:
        yield left, right
    finally:
        left.close()
        right.close()


def _client(v5: bool, sock: socket.socket) -> EventClient:
    """A client whose socket is one end of a socket pair, as if connected."""
    protocol = MQTTProtocolVersion.MQTTv5 if v5 else MQTTProtocolVersion.MQTTv311
    client = EventClient(CallbackAPIVersion.VERSION2, client_id="t", protocol=protocol)
    client.on_socket_register_write = lambda *_: None  # paho must only queue, not write
    client._sock = sock
    return client


def _queued(client: EventClient) -> bytes:
    packets = [bytes(p["packet"]) for p in client._out_packet]
    client._out_packet.clear()
    return b"".join(packets)


@given(
    v5=st.booleans(),
    messages=st.lists(
        st.tuples(topics, st.binary(max_size=300), st.none() | st.integers(1, 2**32 - 1)),
        min_size=1,
        max_size=8,
    ),
)
def test_event_publishes_are_the_bytes_paho_would_write(
    v5: bool, messages: list[tuple[bytes, bytes, int | None]]
) -> None:
    left, right = socket.socketpair()
    try:
        ours = _client(v5, left)
        mids = ours.send_events(messages if v5 else [(t, p, None) for t, p, _ in messages])
        assert mids is not None and len(set(mids)) == len(messages)
        batch = _queued(ours)
        paho = _client(v5, left)
        for mid, (topic, payload, expiry) in zip(mids, messages, strict=True):
            props = None
            if v5:
                props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
                if expiry is not None:
                    props.MessageExpiryInterval = expiry
            paho._send_publish(mid, topic, payload, 1, False, False, None, props)
        assert batch == _queued(paho)
    finally:
        left.close()
        right.close()


def test_no_event_shares_a_packet_id_with_one_paho_has_in_flight(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    client = _client(False, pair[0])
    client.max_inflight_messages_set(10)
    info = client.publish("edgeline/d/status", b"online", qos=1)  # paho's own, in flight
    for _ in range(3):  # around the 16-bit counter: the id in use is skipped each time
        mids = client.send_events([(b"t", b"x", None)] * 30_000)
        assert mids is not None and info.mid not in mids and len(set(mids)) == 30_000
        client._events.clear()


def test_without_a_connection_nothing_is_queued() -> None:
    client = EventClient(CallbackAPIVersion.VERSION2, client_id="t")
    assert client.send_events([(b"t", b"x", None)]) is None
    assert not client._out_packet


class Claims:
    """Counts the outbox's claims (the sender reading events back from SQLite)."""

    def __init__(self, link: Link) -> None:
        self.count = 0
        claim = link.outbox.claim

        def counted(*args: Any, **kwargs: Any) -> list[Event]:
            self.count += 1
            return claim(*args, **kwargs)

        link.outbox.claim = counted  # type: ignore[method-assign]


@pytest.mark.parametrize("protocol", ["3.1.1", "5"])
def test_live_events_go_from_the_commit_to_the_broker_without_a_claim(
    tmp_path: Path, mosquitto: Mosquitto, mqtt_subscriber: Any, protocol: str
) -> None:
    link = open_link(tmp_path, mosquitto.url, inflight=8, protocol=protocol)
    try:
        subscriber = mqtt_subscriber(mosquitto.url, "edgeline/u-01/events/#")
        claims = Claims(link)
        link.uplink.start()
        wait_until(lambda: link.uplink.online and claims.count >= 1)  # the first, empty
        wait_until(lambda: link.uplink._claimed == link.uplink._wanted)
        before = claims.count
        for round_ in range(40):
            link.store(5)
            subscriber.wait_for_count(5 * (round_ + 1), timeout=10)
        assert seqs(subscriber.messages) == list(range(1, 201))
        assert claims.count == before  # every one of them came straight from its commit
        wait_until(lambda: link.uplink.stats.acked == 200)
        assert link.uplink.in_flight() == 0 and not link.uplink.holding()
    finally:
        link.close()


def test_a_critical_event_overtakes_telemetry_taken_from_the_commit(
    tmp_path: Path, mosquitto: Mosquitto, mqtt_subscriber: Any
) -> None:
    link = open_link(tmp_path, mosquitto.url, inflight=2)
    try:
        subscriber = mqtt_subscriber(mosquitto.url, "edgeline/u-01/events/#")
        link.uplink.start()
        wait_until(lambda: link.uplink.online and link.uplink._claimed == link.uplink._wanted)
        link.store(500)  # seqs 1-500: in the buffer, two at a time in flight
        link.store(1, severity="critical", kind="threshold")  # seq 501
        received = seqs(subscriber.wait_for_count(501, timeout=60))
        assert received.index(501) < received.index(500), "the alarm waited behind telemetry"
        assert [s for s in received if s != 501] == list(range(1, 501))
        body = json.loads(subscriber.messages[received.index(501)].payload)
        assert body["severity"] == "critical"
    finally:
        link.close()
