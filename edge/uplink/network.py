"""paho-mqtt's network loop on a selector (epoll on Linux) instead of paho's ``loop()``.

paho's ``loop()`` waits in ``select()``, which refuses file descriptors from 1024 up: the
``ValueError`` comes back as "The connection was lost", at once and at every retry. A
process with many files open meets it (each outbox holds three: the database, its WAL
and the shared-memory index), and a simulated fleet of 1,000 devices in one process
could never connect more than the first hundred or so. This loop drives the same client
through paho's calls for an external loop (``loop_read``, ``loop_write``, ``loop_misc``
and the write-wanted callback) and waits on a selector, which has no such limit.

Threads: ``run_once`` and ``forget`` on the one thread that does the client's network
I/O (the uplink's link thread); ``wake`` from any (paho calls it from ``publish()``).
"""

from __future__ import annotations

import contextlib
import selectors
import socket
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import MQTTErrorCode


class NetworkLoop:
    """Waits for one client's socket at a time (a fresh one per connection), and for
    wake-ups from threads that queued a packet. ``close()`` is idempotent."""

    def __init__(self) -> None:
        self._selector = selectors.DefaultSelector()
        self._wake_reader, self._wake_writer = socket.socketpair()
        self._wake_reader.setblocking(False)
        self._wake_writer.setblocking(False)
        self._selector.register(self._wake_reader, selectors.EVENT_READ)
        self._sock: Any = None  # the client socket registered now
        self._events = 0
        self._closed = False

    def attach(self, client: mqtt.Client) -> None:
        """Wake this loop whenever paho queues a packet on another thread (``publish()``):
        paho then leaves the writing to the loop, so one thread alone touches the socket."""
        client.on_socket_register_write = self.wake

    def wake(self, *_: Any) -> None:
        """Interrupt the wait (any thread; a paho callback, hence the arguments)."""
        with contextlib.suppress(OSError):  # full: a wake-up is pending; closed: no loop
            self._wake_writer.send(b"\0")

    def run_once(self, client: mqtt.Client, timeout: float) -> MQTTErrorCode:
        """What paho's ``loop(timeout)`` does: wait up to ``timeout`` seconds for the socket
        (readable, or writable when a packet waits) or a wake-up, then read, write and run
        the keepalive. Returns paho's code: anything but success means the connection is
        gone (or never was)."""
        sock = client.socket()
        if sock is None:
            return MQTTErrorCode.MQTT_ERR_NO_CONN
        # Asked on every turn, not only when paho calls back: a packet queued while the
        # last write emptied the queue may have found paho's write flag still set.
        wanted = selectors.EVENT_READ | (selectors.EVENT_WRITE if client.want_write() else 0)
        self._watch(sock, wanted)
        pending = sock.pending() if hasattr(sock, "pending") else 0  # TLS: bytes decrypted
        readable = writable = woken = False
        for key, mask in self._selector.select(0.0 if pending else timeout):
            if key.fileobj is self._wake_reader:
                woken = True
            else:
                readable = bool(mask & selectors.EVENT_READ)
                writable = bool(mask & selectors.EVENT_WRITE)
        if woken:
            with contextlib.suppress(OSError):
                self._wake_reader.recv(4096)
        if readable or pending:
            rc = client.loop_read()
            if rc != MQTTErrorCode.MQTT_ERR_SUCCESS or client.socket() is None:
                return rc
        if writable or (woken and client.want_write()):
            rc = client.loop_write()  # a socket not writable yet: paho keeps the rest
            if rc != MQTTErrorCode.MQTT_ERR_SUCCESS or client.socket() is None:
                return rc
        return client.loop_misc()

    def _watch(self, sock: Any, events: int) -> None:
        if sock is not self._sock:
            self.forget()
            self._selector.register(sock, events)
            self._sock, self._events = sock, events
        elif events != self._events:
            self._selector.modify(sock, events)
            self._events = events

    def forget(self) -> None:
        """Stop watching the socket of a connection that ended (paho may have closed it:
        its descriptor number can come back for the next one)."""
        if self._sock is None:
            return
        with contextlib.suppress(KeyError, ValueError, OSError):
            self._selector.unregister(self._sock)
        self._sock = None
        self._events = 0

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.forget()
        self._selector.close()
        self._wake_reader.close()
        self._wake_writer.close()
