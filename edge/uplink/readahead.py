"""Socket reads for a paho-mqtt client that takes many small packets a second.

paho reads a packet with three ``recv`` calls (its first byte, its length, the rest) and a
``select`` before each packet. For a client that gets thousands of packets a second (the
uplink's PUBACKs, a sink's PUBLISHes) that is most of its time. :class:`ReadAhead` takes
what the kernel holds in one ``recv`` and hands paho its bytes from memory; it reports them
as ``pending()``, the hook paho already uses for TLS sockets, so that paho's loop does not
wait in ``select`` while a packet is already here. :func:`read_buffered` is ``loop_read``
going on through the packets already read, up to a bound, so that writes and keepalives
still get their turn under a steady stream.

It relies on paho's internals (``_create_socket``, ``_sock``), which are not public API:
``tests/test_sink_bulk.py`` and ``tests/test_uplink_batches.py`` run it against a real
broker so that a paho release that changes them fails there first.
"""

from __future__ import annotations

from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import MQTTErrorCode

CHUNK = 65536  # bytes read at once: a few hundred event messages, thousands of PUBACKs
PACKETS_PER_READ = 200  # packets handled per loop_read before writes get their turn


class ReadAhead:
    """A socket whose reads take everything the kernel has and serve it from memory."""

    def __init__(self, sock: Any) -> None:
        self.sock = sock
        self._data = b""
        self._at = 0

    def recv(self, size: int) -> bytes:
        if self._at < len(self._data):
            chunk = self._data[self._at : self._at + size]
            self._at += len(chunk)
            return chunk
        data: bytes = self.sock.recv(max(size, CHUNK))
        if len(data) <= size:
            return data
        self._data, self._at = data, size
        return data[:size]

    def pending(self) -> int:
        """Bytes read but not yet handed out (and a TLS socket's own)."""
        inner = getattr(self.sock, "pending", None)
        return len(self._data) - self._at + (inner() if inner is not None else 0)

    def fileno(self) -> int:
        return int(self.sock.fileno())

    def __getattr__(self, name: str) -> Any:  # send, close, setblocking, ... as the socket's
        return getattr(self.sock, name)


def read_buffered(client: mqtt.Client, first: MQTTErrorCode) -> MQTTErrorCode:
    """After one ``loop_read`` that returned ``first``: go on through the packets already
    read ahead (up to ``PACKETS_PER_READ``). Returns paho's code of the last read."""
    rc = first
    for _ in range(PACKETS_PER_READ):
        sock = client._sock  # paho's socket: a ReadAhead when our client made it
        if rc != MQTTErrorCode.MQTT_ERR_SUCCESS or not isinstance(sock, ReadAhead):
            break
        if not sock.pending():
            break
        rc = mqtt.Client.loop_read(client, 1)
    return rc
