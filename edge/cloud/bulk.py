"""A paho-mqtt client for a subscriber that takes thousands of messages a second.

paho reads a packet with three ``recv`` calls (its first byte, its length, the rest) and a
``select`` before each packet, and writes each acknowledgement with a ``send`` of its own
after waking its network thread. For a sink draining a backlog that is most of its time.
:class:`BulkClient` changes only the socket work:

- reads go through :class:`~edge.uplink.readahead.ReadAhead`, one ``recv`` for all the
  kernel holds, and ``loop_read`` goes on through the packets already read
  (:mod:`edge.uplink.readahead`);
- :meth:`BulkClient.ack_many` acknowledges many QoS 1 messages in one write: the PUBACKs
  paho would send one by one (the same four bytes each, in MQTT 3.1.1 and 5), joined;
- with ``on_arrival`` set, a QoS 0 or 1 PUBLISH goes straight to it as (topic, payload,
  packet id, QoS): no ``MQTTMessage`` (with its condition variable), no MQTT 5
  ``Properties`` object (a sink reads none: they are skipped), no debug line. Anything
  else (QoS 2, a topic alias, a packet that does not parse) is left to paho, which calls
  ``on_message`` as usual.

It relies on paho's internals (``_create_socket``, ``_handle_publish``, ``_in_packet``,
``_packet_queue``), which are not public API: ``tests/test_sink_bulk.py`` runs it against
a real broker so that a paho release that changes them fails there first.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import MQTTErrorCode

from edge.uplink.readahead import ReadAhead, read_buffered

PUBACK = 0x40
_PUBACK = struct.Struct("!BBH")  # type, remaining length 2, packet id

Arrival = Callable[[str, bytes | bytearray, int, int], None]  # topic, payload, packet id, QoS


class BulkClient(mqtt.Client):
    """paho's client with read-ahead, a lean path for PUBLISH and acknowledgements in bulk
    (see the module)."""

    on_arrival: Arrival | None = None

    def _create_socket(self) -> Any:
        return ReadAhead(super()._create_socket())

    def loop_read(self, max_packets: int = 1) -> MQTTErrorCode:
        return read_buffered(self, super().loop_read(max_packets))

    def ack_many(self, mids: list[int]) -> None:
        """Acknowledge QoS 1 messages (manual acks) with one write for all of them."""
        if mids:
            packet = b"".join([_PUBACK.pack(PUBACK, 2, mid) for mid in mids])
            self._packet_queue(PUBACK, packet, 0, 1)

    def _handle_publish(self) -> MQTTErrorCode:
        arrival = self.on_arrival
        header: int = self._in_packet["command"]
        qos = (header & 0x06) >> 1
        if arrival is None or qos == 2:
            return super()._handle_publish()
        parsed = _publish(bytes(self._in_packet["packet"]), qos, self._protocol == mqtt.MQTTv5)
        if parsed is None:
            return super()._handle_publish()  # paho's own reading, and its errors
        topic, payload, mid = parsed
        with self._in_callback_mutex:
            arrival(topic, payload, mid, qos)
        if qos == 1 and not self._manual_ack:
            return self._send_puback(mid)
        return MQTTErrorCode.MQTT_ERR_SUCCESS


def _publish(packet: bytes, qos: int, v5: bool) -> tuple[str, bytes, int] | None:
    """(topic, payload, packet id) of a PUBLISH packet's variable header and payload; None
    for one this path does not take (an empty topic: a topic alias) or cannot read."""
    try:
        end = 2 + ((packet[0] << 8) | packet[1])
        topic = packet[2:end].decode("utf-8")
        mid = 0
        if qos:
            mid = (packet[end] << 8) | packet[end + 1]
            end += 2
        if v5:  # skip the properties: a variable byte integer length, then that many bytes
            length, shift = 0, 0
            while True:
                byte = packet[end]
                end += 1
                length |= (byte & 0x7F) << shift
                if byte < 0x80:
                    break
                shift += 7
                if shift > 21:
                    return None
            end += length
        if not topic or end > len(packet):
            return None
    except (IndexError, UnicodeDecodeError):
        return None
    return topic, packet[end:], mid
