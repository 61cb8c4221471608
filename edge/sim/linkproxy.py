"""A TCP fault proxy between a device's uplink and its broker, for injecting network faults.

The simulator points a device at ``LinkProxy.url`` instead of the broker and plays "broker
unreachable from t1 to t2" on it; the chaos tests use it the same way. Three faults:

- ``cut()``: every open connection closes at once (both sides) and new ones are reset on
  accept, until ``restore()`` -- the broker is gone and the client knows it.
- ``blackhole()``: connections stay open but every byte is dropped both ways, until
  ``restore()`` -- a dead link TCP cannot see; only the client's keepalive can notice.
  A side that closes meanwhile is not told to the other (the link is dead); such
  half-dead connections are closed on ``restore()``, as a healed link would find them.
- ``delay(seconds)``: each chunk is forwarded ``seconds`` after it was read, both ways.

One thread runs a selector loop over every socket; it alone touches them. Fault controls
from other threads are queued to it and return once applied, so after ``cut()`` returns
the connections are closed. The loop blocks in ``select`` until a socket is ready, a
control arrives or a delayed chunk falls due: it never spins. Time here is the wall's
monotonic clock, not the runtime's clock: the proxy moves real bytes between real sockets.
"""

from __future__ import annotations

import contextlib
import errno
import selectors
import socket
import struct
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Literal

LinkMode = Literal["open", "cut", "blackhole"]

CHUNK = 65536
HIGH_WATER = 256 * 1024  # bytes queued toward one side before reading the other side pauses
CONTROL_TIMEOUT = 5.0  # seconds a fault control waits for the loop to apply it


@dataclass(eq=False)
class _End:
    """One socket of a proxied connection and the bytes waiting to be written to it."""

    sock: socket.socket
    upstream: bool  # True for the socket toward the broker
    connecting: bool = False
    closed: bool = False
    flush_then_close: bool = False  # the other side hung up; close once this one is flushed
    outgoing: bytearray = field(default_factory=bytearray)
    delayed: deque[tuple[float, bytes]] = field(default_factory=deque)  # (due, chunk)
    delayed_bytes: int = 0
    events: int = 0  # the selector events it is registered for (0 = not registered)
    owner: _Connection | None = None

    def backlog(self) -> int:
        return len(self.outgoing) + self.delayed_bytes

    def hold(self, due: float, chunk: bytes) -> None:
        self.delayed.append((due, chunk))
        self.delayed_bytes += len(chunk)

    def release(self, now: float) -> None:
        """Move the chunks due by ``now`` to the bytes to write."""
        while self.delayed and self.delayed[0][0] <= now:
            chunk = self.delayed.popleft()[1]
            self.delayed_bytes -= len(chunk)
            self.outgoing += chunk

    def discard(self) -> int:
        """Drop every byte waiting for this socket; return how many."""
        dropped = self.backlog()
        self.outgoing.clear()
        self.delayed.clear()
        self.delayed_bytes = 0
        return dropped


@dataclass(eq=False)
class _Connection:
    client: _End
    upstream: _End | None  # None: accepted while blackholed, never connected upstream

    def __post_init__(self) -> None:
        for end in self.ends():
            end.owner = self

    def ends(self) -> list[_End]:
        return [end for end in (self.client, self.upstream) if end is not None]

    def other(self, end: _End) -> _End | None:
        return self.upstream if end is self.client else self.client


class LinkProxy:
    """Forwards TCP connections from ``listen_host:port`` to the broker, faults on demand.

    Counters (written by the proxy's thread, read anywhere): ``connections`` accepted and
    forwarded, ``refused`` (reset on accept while cut), ``upstream_failures`` (the broker
    refused the proxy), ``bytes_up`` and ``bytes_down`` delivered to the broker and to the
    client, ``bytes_dropped`` by the blackhole.
    """

    def __init__(
        self,
        upstream_host: str,
        upstream_port: int,
        *,
        listen_host: str = "127.0.0.1",
        listen_port: int = 0,
    ) -> None:
        self.upstream_address = (upstream_host, upstream_port)
        self.listen_host = listen_host
        self._listen_port = listen_port
        self._mode: LinkMode = "open"
        self._delay = 0.0
        self.connections = 0
        self.refused = 0
        self.upstream_failures = 0
        self.bytes_up = 0
        self.bytes_down = 0
        self.bytes_dropped = 0
        self._live: list[_Connection] = []
        self._lock = threading.Lock()  # guards _controls, _thread and _closing
        self._controls: deque[tuple[Callable[[], None], threading.Event]] = deque()
        self._thread: threading.Thread | None = None
        self._closing = False
        self._selector: selectors.BaseSelector | None = None
        self._listener: socket.socket | None = None
        self._wake_reader: socket.socket | None = None
        self._wake_writer: socket.socket | None = None

    # -- lifecycle -----------------------------------------------------------------------

    def start(self) -> LinkProxy:
        """Listen and start forwarding; returns once the port accepts connections."""
        with self._lock:
            if self._closing:
                raise RuntimeError(f"{self!r} is closed; make a new LinkProxy")
            if self._thread is not None:
                return self
            listener = socket.create_server((self.listen_host, self._listen_port))
            listener.setblocking(False)
            self._listen_port = listener.getsockname()[1]
            self._wake_reader, self._wake_writer = socket.socketpair()
            self._wake_reader.setblocking(False)
            self._wake_writer.setblocking(False)
            self._selector = selectors.DefaultSelector()
            self._selector.register(listener, selectors.EVENT_READ, "listener")
            self._selector.register(self._wake_reader, selectors.EVENT_READ, "wake")
            self._listener = listener
            self._thread = threading.Thread(
                target=self._run, name=f"linkproxy-{self.port}", daemon=True
            )
            self._thread.start()
        return self

    def close(self) -> None:
        """Close every connection and the listener and join the thread. Idempotent."""
        with self._lock:
            if self._closing:
                return
            self._closing = True
            thread = self._thread
        if thread is None:
            return
        self._wake()
        thread.join()

    def __enter__(self) -> LinkProxy:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def port(self) -> int:
        """The listening port (the OS's choice when ``listen_port`` was 0), once started."""
        if self._listener is None and self._listen_port == 0:
            raise RuntimeError("LinkProxy.port is known only after start()")
        return self._listen_port

    @property
    def url(self) -> str:
        return f"mqtt://{self.listen_host}:{self.port}"

    @property
    def mode(self) -> LinkMode:
        return self._mode

    @property
    def open_connections(self) -> int:
        return len(self._live)

    def __repr__(self) -> str:
        host, port = self.upstream_address
        return f"<LinkProxy {self.listen_host}:{self._listen_port} -> {host}:{port} {self._mode}>"

    # -- fault controls ------------------------------------------------------------------

    def cut(self) -> None:
        """Close every open connection now and reset new ones until ``restore()``."""
        self._control(self._apply_cut)

    def blackhole(self) -> None:
        """Keep connections open but drop every byte both ways until ``restore()``."""
        self._control(self._apply_blackhole)

    def restore(self) -> None:
        """End a cut or a blackhole; new connections reach the broker again."""
        self._control(self._apply_restore)

    def delay(self, seconds: float) -> None:
        """Forward each chunk read from now on ``seconds`` late (0 forwards at once), and
        never ahead of a chunk still held from before: the stream keeps its order."""
        if not seconds >= 0:
            raise ValueError(f"LinkProxy.delay: seconds must be >= 0, got {seconds!r}")

        def apply() -> None:
            self._delay = float(seconds)

        self._control(apply)

    def _control(self, apply: Callable[[], None]) -> None:
        """Run ``apply`` on the loop thread and wait for it (directly when not running)."""
        done = threading.Event()
        with self._lock:
            running = self._thread is not None and not self._closing
            if running:
                self._controls.append((apply, done))
        if not running:
            apply()  # no loop, so no sockets: only the settings change
            return
        self._wake()
        if not done.wait(CONTROL_TIMEOUT):
            raise RuntimeError(f"{self!r}: its thread did not apply a control within 5 s")

    def _wake(self) -> None:
        if self._wake_writer is not None:
            # Full: a wake-up is already pending. Closed: the loop has ended.
            with contextlib.suppress(BlockingIOError, OSError):
                self._wake_writer.send(b"\0")

    def _apply_cut(self) -> None:
        self._mode = "cut"
        for connection in list(self._live):
            self._drop(connection)

    def _apply_blackhole(self) -> None:
        self._mode = "blackhole"
        for connection in self._live:
            for end in connection.ends():
                self.bytes_dropped += end.discard()
                self._refresh(end)

    def _apply_restore(self) -> None:
        self._mode = "open"
        for connection in list(self._live):  # half-dead after a blackhole: say so now
            if connection.upstream is None or any(end.closed for end in connection.ends()):
                self._drop(connection)

    # -- the loop (its own thread) -------------------------------------------------------

    def _run(self) -> None:
        selector = self._selector
        assert selector is not None
        try:
            while not self._closing:
                for key, mask in selector.select(self._until_next_due()):
                    if key.data == "wake":
                        self._take_controls()
                    elif key.data == "listener":
                        self._accept()
                    elif isinstance(key.data, _End):
                        self._service(key.data, mask)
                self._release_due()
            self._take_controls()  # nobody waits forever on a control sent during close()
        finally:
            self._shut_down()

    def _take_controls(self) -> None:
        assert self._wake_reader is not None
        with contextlib.suppress(BlockingIOError):
            while self._wake_reader.recv(CHUNK):
                pass
        while True:
            with self._lock:
                if not self._controls:
                    return
                apply, done = self._controls.popleft()
            try:
                apply()
            finally:
                done.set()

    def _accept(self) -> None:
        assert self._listener is not None
        try:
            sock, _ = self._listener.accept()
        except (BlockingIOError, ConnectionAbortedError):
            return
        sock.setblocking(False)
        if self._mode == "cut":
            self.refused += 1
            _reset(sock)
            return
        self.connections += 1
        client = _End(sock, upstream=False)
        if self._mode == "blackhole":  # a dead link: the broker never hears of it
            self._live.append(_Connection(client, None))
            self._refresh(client)
            return
        upstream = _End(socket.socket(socket.AF_INET, socket.SOCK_STREAM), upstream=True)
        upstream.sock.setblocking(False)
        code = upstream.sock.connect_ex(self.upstream_address)
        connection = _Connection(client, upstream)
        self._live.append(connection)
        if code not in (0, errno.EINPROGRESS):
            self._upstream_failed(connection)
            return
        upstream.connecting = code != 0
        self._refresh_all(connection)

    def _upstream_failed(self, connection: _Connection) -> None:
        self.connections -= 1
        self.upstream_failures += 1
        self._unregister(connection.client)
        connection.client.closed = True
        _reset(connection.client.sock)  # as if the broker itself refused
        self._drop(connection)

    def _service(self, end: _End, mask: int) -> None:
        connection = end.owner
        if connection is None or end.closed:
            return  # closed earlier in this round of events
        if end.connecting:
            if mask & selectors.EVENT_WRITE:
                self._connected(connection, end)
            return
        if mask & selectors.EVENT_READ:
            self._receive(connection, end)
        if mask & selectors.EVENT_WRITE and not end.closed:
            self._flush(connection, end)

    def _connected(self, connection: _Connection, upstream: _End) -> None:
        if upstream.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
            self._upstream_failed(connection)
            return
        upstream.connecting = False
        self._refresh_all(connection)

    def _receive(self, connection: _Connection, end: _End) -> None:
        try:
            data = end.sock.recv(CHUNK)
        except BlockingIOError:
            return
        except OSError:
            self._hang_up(connection, end, clean=False)
            return
        if not data:
            self._hang_up(connection, end, clean=True)
            return
        other = connection.other(end)
        if self._mode == "blackhole" or other is None or other.closed:
            self.bytes_dropped += len(data)
            return
        if self._delay > 0 or other.delayed:
            # A byte stream: no chunk overtakes one still held (the delay may have dropped).
            due = time.monotonic() + self._delay
            other.hold(max(due, other.delayed[-1][0]) if other.delayed else due, data)
        else:
            other.outgoing += data
            self._flush(connection, other)
        self._refresh_all(connection)

    def _flush(self, connection: _Connection, end: _End) -> None:
        if end.outgoing and not end.connecting:
            try:
                sent = end.sock.send(end.outgoing)
            except BlockingIOError:
                sent = 0
            except OSError:
                self._hang_up(connection, end, clean=False)
                return
            del end.outgoing[:sent]
            if end.upstream:
                self.bytes_up += sent
            else:
                self.bytes_down += sent
        if end.flush_then_close and not end.backlog():
            self._drop(connection)
            return
        self._refresh_all(connection)

    def _hang_up(self, connection: _Connection, end: _End, *, clean: bool) -> None:
        """``end`` closed (cleanly) or failed; tell the other side unless the link is dead."""
        other = connection.other(end)
        if self._mode == "blackhole":
            self._close_end(end)
            if other is None or other.closed:
                self._drop(connection)
            return
        if clean and other is not None and not other.closed and other.backlog():
            self._close_end(end)  # deliver what it sent last (an MQTT DISCONNECT) first
            other.flush_then_close = True
            self._refresh(other)
            return
        self._drop(connection)

    def _until_next_due(self) -> float | None:
        dues = [end.delayed[0][0] for c in self._live for end in c.ends() if end.delayed]
        return max(0.0, min(dues) - time.monotonic()) if dues else None

    def _release_due(self) -> None:
        now = time.monotonic()
        for connection in list(self._live):
            for end in connection.ends():
                if end.closed or not end.delayed or end.delayed[0][0] > now:
                    continue
                end.release(now)
                self._flush(connection, end)
                if connection not in self._live:
                    break

    # -- bookkeeping ---------------------------------------------------------------------

    def _refresh_all(self, connection: _Connection) -> None:
        for end in connection.ends():
            self._refresh(end)

    def _refresh(self, end: _End) -> None:
        """Register ``end`` for what it can do now: read unless the other side is full."""
        if end.closed:
            return
        other = end.owner.other(end) if end.owner is not None else None
        wanted = 0
        if end.connecting:
            wanted = selectors.EVENT_WRITE
        else:
            room = other is None or other.closed or other.backlog() < HIGH_WATER
            if room and not end.flush_then_close and not (other is not None and other.connecting):
                wanted |= selectors.EVENT_READ
            if end.outgoing:
                wanted |= selectors.EVENT_WRITE
        if wanted == end.events:
            return
        assert self._selector is not None
        if end.events == 0:
            self._selector.register(end.sock, wanted, end)
        elif wanted == 0:
            self._selector.unregister(end.sock)
        else:
            self._selector.modify(end.sock, wanted, end)
        end.events = wanted

    def _unregister(self, end: _End) -> None:
        if end.events and self._selector is not None:
            self._selector.unregister(end.sock)
        end.events = 0

    def _close_end(self, end: _End) -> None:
        if end.closed:
            return
        self._unregister(end)
        end.closed = True
        end.sock.close()

    def _drop(self, connection: _Connection) -> None:
        for end in connection.ends():
            self._close_end(end)
        if connection in self._live:
            self._live.remove(connection)

    def _shut_down(self) -> None:
        for connection in list(self._live):
            self._drop(connection)
        if self._selector is not None:
            self._selector.close()
        for sock in (self._listener, self._wake_reader, self._wake_writer):
            if sock is not None:
                sock.close()
        self._listener = self._wake_reader = self._wake_writer = None


def _reset(sock: socket.socket) -> None:
    """Close with RST rather than FIN: the peer sees 'connection reset', as from a refusal."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()
