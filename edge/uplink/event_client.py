"""paho-mqtt's client with a lean path for the uplink's events (QoS 1).

Per message, paho's ``publish`` makes an ``MQTTMessage`` with an ``MQTTMessageInfo`` (a
condition variable), takes two locks, logs, and has the packet written by a ``send`` of its
own after waking the network loop; per PUBACK it reads three times, builds a ``ReasonCode``
and a ``Properties`` object (on MQTT 3.1.1 too), calls back under two more locks and rescans
its queue. The uplink sends thousands of events a second, in batches, from the thread that
does the socket I/O, so :class:`EventClient`:

- ``send_events`` encodes a batch of PUBLISH packets itself (the bytes paho would write)
  and queues them as one write; packet ids come from paho's own counter, skipping any in
  flight, so an event never shares one with a status message or a reply;
- a PUBACK for one of those ids is booked in a list as (packet id, reason code) and nothing
  more: the uplink takes the list after each pass of the network loop (``take_acks``) and
  settles it under one lock. Other PUBACKs (a status message's, a reply's) go to paho;
- reads go through :class:`~edge.uplink.readahead.ReadAhead`: one ``recv`` for all the
  PUBACKs the kernel holds.

These events are not in paho's ``_out_messages``: paho never re-sends them (the uplink makes
a fresh client per connection and re-sends from the outbox) and its in-flight limit does not
count them (the uplink's window is the limit). QoS 2 events still go through ``publish``.
``send_events`` and ``take_acks`` run on the thread that does the client's network I/O.

It relies on paho's internals (``_out_packet``, ``_in_packet``, ``_packet_handle``,
``_mid_generate``, ``_pack_remaining_length``), which are not public API:
``tests/test_uplink_batches.py`` checks the packets against paho's own encoder and runs the
client against a real broker, so that a paho release that changes them fails there first.
"""

from __future__ import annotations

import contextlib
import socket
import struct
from collections.abc import Sequence
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import MQTTErrorCode

from edge.uplink.readahead import ReadAhead, read_buffered

PUBLISH = 0x30
PUBLISH_QOS1 = 0x32  # PUBLISH, QoS 1, neither DUP nor RETAIN
PUBACK = 0x40
_U16 = struct.Struct("!H")
_EXPIRY = struct.Struct("!BBI")  # properties length 5, MessageExpiryInterval (0x02), seconds
NO_PROPERTIES = b"\x00"

# (topic, payload, MQTT 5 message expiry in seconds or None)
Message = tuple[bytes, bytes, int | None]


class EventClient(mqtt.Client):
    """paho's client with batched event PUBLISHes and booked PUBACKs (see the module)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._acks: list[tuple[int, int]] = []  # (packet id, reason code), read, not taken
        self._events: set[int] = set()  # packet ids of events sent, PUBACK not yet read

    def _create_socket(self) -> Any:
        sock: Any = super()._create_socket()
        # The uplink writes whole batches: Nagle's algorithm would only hold a batch back
        # until the broker's delayed ACK (up to 40 ms) while the previous one is unacked.
        with contextlib.suppress(OSError, AttributeError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return ReadAhead(sock)

    def loop_read(self, max_packets: int = 1) -> MQTTErrorCode:
        return read_buffered(self, super().loop_read(max_packets))

    def send_events(self, messages: Sequence[Message]) -> list[int] | None:
        """Queue a QoS 1 PUBLISH for each message, as one write, and return their packet
        ids in order; None (nothing queued) without a connection. The caller writes it
        (``loop_write``) or lets the network loop do so."""
        if self._sock is None:
            return None
        v5 = self._protocol == mqtt.MQTTv5
        packet = bytearray()
        mids = []
        for topic, payload, expiry in messages:
            mid = self._free_mid()
            props = b""
            if v5:
                props = NO_PROPERTIES if expiry is None else _EXPIRY.pack(5, 2, expiry)
            packet.append(PUBLISH_QOS1)
            self._pack_remaining_length(packet, 4 + len(topic) + len(props) + len(payload))
            packet += _U16.pack(len(topic))
            packet += topic
            packet += _U16.pack(mid)
            packet += props
            packet += payload
            mids.append(mid)
        self._events.update(mids)
        self._out_packet.append(
            {
                "command": PUBLISH,
                "mid": 0,
                "qos": 1,
                "pos": 0,
                "to_process": len(packet),
                "packet": packet,
                "info": None,
            }
        )
        return mids

    def take_acks(self) -> list[tuple[int, int]]:
        """The events' PUBACKs read since the last call: (packet id, reason code), in the
        order they came (MQTT 3.1.1 has no reason code: 0, success)."""
        acks, self._acks = self._acks, []
        return acks

    def _free_mid(self) -> int:
        while True:
            mid = self._mid_generate()
            if mid not in self._events and mid not in self._out_messages:
                return mid

    def _packet_handle(self) -> MQTTErrorCode:
        packet = self._in_packet
        if packet["command"] & 0xF0 == PUBACK:
            body = packet["packet"]
            if len(body) >= 2:
                mid = (body[0] << 8) | body[1]
                if mid in self._events:
                    self._events.discard(mid)
                    self._acks.append((mid, body[2] if len(body) > 2 else 0))
                    return MQTTErrorCode.MQTT_ERR_SUCCESS
        return super()._packet_handle()
