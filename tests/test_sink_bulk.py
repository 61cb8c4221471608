"""The sink's MQTT client: read-ahead, the lean PUBLISH path and acknowledgements in bulk.

``BulkClient`` leans on paho internals, so these tests pin its behaviour two ways: the
PUBLISH reader agrees with paho's own decoder on every packet hypothesis can build, and
against a real Mosquitto every message arrives intact (MQTT 5 with properties and 3.1.1),
and a message is acknowledged exactly when the sink acknowledged it: what was acked is
gone from the session, what was not comes back on the next connection.
"""

from __future__ import annotations

import json
import socket
import struct
import threading
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from hypothesis import given
from hypothesis import strategies as st
from paho.mqtt import _packet
from paho.mqtt.enums import MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from edge.bench.mosquitto import Mosquitto
from edge.cloud.bulk import BulkClient, _publish
from edge.cloud.sink import Sink
from edge.cloud.store import open_store
from edge.config.device import UplinkConfig
from edge.uplink.client import paho_client
from edge.uplink.readahead import CHUNK, ReadAhead
from tests.test_sink_store import query
from tests.waiting import wait_until

# -- the PUBLISH reader against paho's decoder ------------------------------------------------


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _packet_body(topic: bytes, payload: bytes, mid: int, qos: int, props: bytes | None) -> bytes:
    """A PUBLISH's variable header and payload (after the fixed header), as a broker sends."""
    body = struct.pack("!H", len(topic)) + topic
    if qos:
        body += struct.pack("!H", mid)
    if props is not None:
        body += _varint(len(props)) + props
    return body + payload


def _properties(expiry: int | None, user: list[tuple[str, str]]) -> bytes:
    props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    if expiry is not None:
        props.MessageExpiryInterval = expiry
    if user:
        props.UserProperty = user
    packed: bytes = props.pack()  # type: ignore[no-untyped-call]
    return packed[len(_varint(len(packed) - 1)) :] if packed else b""  # without its length


_utf8 = st.text(max_size=8).filter(lambda t: "\x00" not in t)  # MQTT strings hold no NUL


@given(
    topic=st.text(min_size=1, max_size=40).filter(lambda t: "\x00" not in t),
    payload=st.binary(max_size=300),
    mid=st.integers(1, 65535),
    qos=st.sampled_from([0, 1]),
    v5=st.booleans(),
    expiry=st.none() | st.integers(0, 2**32 - 1),
    user=st.lists(st.tuples(_utf8, _utf8), max_size=3),
)
def test_the_publish_reader_agrees_with_paho(
    topic: str,
    payload: bytes,
    mid: int,
    qos: int,
    v5: bool,
    expiry: int | None,
    user: list[tuple[str, str]],
) -> None:
    props = _properties(expiry, user) if v5 else None
    body = _packet_body(topic.encode(), payload, mid, qos, props)
    protocol = MQTTProtocolVersion.MQTTv5 if v5 else MQTTProtocolVersion.MQTTv311
    header = 0x30 | (qos << 1)
    expected = _packet.decode_publish(header, body, protocol)
    got = _publish(body, qos, v5)
    assert got == (topic, expected.payload, expected.mid if qos else 0)


_garbage = st.builds(  # a plausible topic length first, so that some of it parses
    lambda length, rest: struct.pack("!H", length) + rest,
    st.integers(0, 24),
    st.binary(max_size=60),
)


@given(body=_garbage, qos=st.sampled_from([0, 1]), v5=st.booleans())
def test_the_publish_reader_never_takes_a_packet_paho_would_refuse(
    body: bytes, qos: int, v5: bool
) -> None:
    """Garbage is left to paho (None), or read exactly as paho reads it. The one
    difference: MQTT 5 properties are skipped unread, so a packet paho refuses for what
    is inside them may be taken."""
    got = _publish(body, qos, v5)
    if got is None:
        return
    protocol = MQTTProtocolVersion.MQTTv5 if v5 else MQTTProtocolVersion.MQTTv311
    try:
        expected = _packet.decode_publish(0x30 | (qos << 1), body, protocol)
    except _packet.MalformedPacket:
        assert v5, "a 3.1.1 packet paho refuses was taken"
        return
    assert got[0] == expected.topic.decode("utf-8")
    assert got[1] == expected.payload
    assert got[2] == (expected.mid if qos else 0)


# -- read-ahead ------------------------------------------------------------------------------


@given(
    writes=st.lists(st.binary(min_size=1, max_size=3 * CHUNK // 2), min_size=1, max_size=4),
    sizes=st.lists(st.integers(1, 5000), min_size=1, max_size=50),
)
def test_read_ahead_hands_out_the_bytes_in_order_and_counts_what_it_holds(
    writes: list[bytes], sizes: list[int]
) -> None:
    sent = b"".join(writes)
    left, right = socket.socketpair()
    try:
        right.sendall(sent)
        right.close()
        reader = ReadAhead(left)
        got = bytearray()
        for size in sizes * (len(sent) // len(sizes) + 2):
            held = reader.pending()
            chunk = reader.recv(size)
            if not chunk:
                break
            assert len(chunk) <= size
            assert held == 0 or len(chunk) == min(size, held)  # from memory first
            got += chunk
        assert bytes(got) == sent
        assert reader.pending() == 0
    finally:
        left.close()


# -- against Mosquitto -----------------------------------------------------------------------


def _sink_settings(url: str, protocol: str) -> UplinkConfig:
    version: Any = protocol
    return UplinkConfig(broker=url, protocol=version)


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
def test_every_message_arrives_intact_through_the_lean_path(
    mosquitto: Mosquitto, protocol: str
) -> None:
    """3,000 QoS 1 messages, with MQTT 5 properties on some, into a BulkClient: each one
    once, topic and payload as published, in order."""
    got: list[tuple[str, bytes, int]] = []
    done = threading.Event()
    count = 3000

    client = paho_client(_sink_settings(mosquitto.url, protocol), "", inflight=20, kind=BulkClient)
    assert isinstance(client, BulkClient)

    def arrived(topic: str, payload: bytes | bytearray, mid: int, qos: int) -> None:
        got.append((topic, bytes(payload), qos))
        if len(got) == count:
            done.set()

    client.on_arrival = arrived
    subscribed = threading.Event()
    client.on_subscribe = lambda *args: subscribed.set()
    client.on_connect = lambda c, *args: c.subscribe("bulk/#", qos=1)
    client.connect(mosquitto.host, mosquitto.port)
    client.loop_start()
    publisher = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    try:
        assert subscribed.wait(10)
        publisher.connect(mosquitto.host, mosquitto.port)
        publisher.loop_start()
        props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        props.MessageExpiryInterval = 3600
        props.UserProperty = [("origin", "test")]
        infos = []
        for i in range(count):
            payload = json.dumps({"seq": i, "pad": "x" * (i % 700)}).encode()
            extra = {"properties": props} if i % 3 == 0 else {}
            infos.append(publisher.publish(f"bulk/{i % 7}", payload, qos=1, **extra))
        for info in infos:
            info.wait_for_publish(10)
        assert done.wait(30), f"{len(got)} of {count} arrived"
    finally:
        publisher.disconnect()
        publisher.loop_stop()
        client.disconnect()
        client.loop_stop()
    assert [json.loads(p)["seq"] for _, p, _ in got] == list(range(count))
    assert all(t == f"bulk/{json.loads(p)['seq'] % 7}" and q == 1 for t, p, q in got)


def test_bulk_acks_clear_the_session_and_unacked_messages_come_back(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    """A persistent session: the first connection acknowledges the first 500 of 800 in one
    write and drops the line; the second gets exactly the other 300 again."""
    settings = _sink_settings(mosquitto.url, "5")
    seen: list[list[int]] = [[], []]
    mids: list[int] = []
    subscribed = [threading.Event(), threading.Event()]

    def connect(round_: int) -> BulkClient:
        client = paho_client(settings, "bulk-session", inflight=20, kind=BulkClient)
        assert isinstance(client, BulkClient)
        client.manual_ack_set(True)

        def arrived(topic: str, payload: bytes | bytearray, mid: int, qos: int) -> None:
            seen[round_].append(json.loads(payload)["seq"])
            mids.append(mid)

        client.on_arrival = arrived
        client.on_subscribe = lambda *args: subscribed[round_].set()
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = 600
        props.ReceiveMaximum = 1000
        client.on_connect = lambda c, *args: c.subscribe("acks/#", qos=1)
        client.connect(mosquitto.host, mosquitto.port, clean_start=False, properties=props)
        client.loop_start()
        return client

    first = connect(0)
    assert subscribed[0].wait(10)
    publisher = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    publisher.connect(mosquitto.host, mosquitto.port)
    publisher.loop_start()
    try:
        infos = [publisher.publish("acks/x", json.dumps({"seq": i}), qos=1) for i in range(800)]
        for info in infos:
            info.wait_for_publish(10)
        wait_until(lambda: len(seen[0]) == 800, 30)
        first.ack_many(mids[:500])
        # A round trip after the acks: by its answer the broker has read them (in order).
        subscribed[0].clear()
        first.subscribe("acks/ping", qos=1)
        assert subscribed[0].wait(10)
        first.loop_stop()
        first.socket().close()  # the line drops without a DISCONNECT: the session stays
        second = connect(1)
        wait_until(lambda: len(seen[1]) >= 300, 30)
        second.disconnect()
        second.loop_stop()
    finally:
        publisher.disconnect()
        publisher.loop_stop()
    assert seen[0] == list(range(800))
    assert sorted(seen[1]) == list(range(500, 800))


def test_a_sink_stores_messages_carrying_properties(mosquitto: Mosquitto, tmp_path: Path) -> None:
    """Events published with MQTT 5 properties (message expiry, as a device may send them)
    are stored like any other."""
    db = f"sqlite:///{tmp_path / 'events.db'}"
    sink = Sink(mosquitto.url, protocol="5", store=open_store(db)).start()
    publisher = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    publisher.connect(mosquitto.host, mosquitto.port)
    publisher.loop_start()
    try:
        props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        props.MessageExpiryInterval = 60
        for seq in range(1, 201):
            body = {"device": "d1", "stream": "s1", "seq": seq, "kind": "telemetry", "value": seq}
            publisher.publish("edgeline/d1/events/telemetry", json.dumps(body), 1, properties=props)
        wait_until(lambda: query(db, "SELECT COUNT(*) FROM events")[0][0] == 200, 30)
    finally:
        publisher.disconnect()
        publisher.loop_stop()
        sink.close()
    assert query(db, "SELECT MIN(seq), MAX(seq), SUM(CAST(value AS INTEGER)) FROM events") == [
        (1, 200, sum(range(1, 201)))
    ]
