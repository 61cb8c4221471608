"""The link fault proxy: raw bytes on the wire, then paho and the uplink against Mosquitto."""

from __future__ import annotations

import json
import os
import random
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from edge.bench.mosquitto import Mosquitto
from edge.clock import RealClock
from edge.config.device import parse
from edge.events import Draft
from edge.outbox.store import Outbox
from edge.runtime.delivery import Delivery
from edge.runtime.recorder import Recorder
from edge.sim.linkproxy import LinkProxy
from edge.uplink.link import Uplink
from tests.brokers import Received
from tests.waiting import wait_until

TIMEOUT = 10.0


# -- a plain TCP peer standing in for the broker ---------------------------------------------


@pytest.fixture
def server() -> Iterator[socket.socket]:
    sock = socket.create_server(("127.0.0.1", 0))
    sock.settimeout(TIMEOUT)
    with sock:
        yield sock


def port_of(sock: socket.socket) -> int:
    return int(sock.getsockname()[1])


def dial(proxy: LinkProxy) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", proxy.port), timeout=TIMEOUT)
    return sock


def receive_exactly(sock: socket.socket, count: int) -> bytes:
    data = bytearray()
    while len(data) < count:
        chunk = sock.recv(count - len(data))
        assert chunk, f"peer closed after {len(data)} of {count} bytes"
        data += chunk
    return bytes(data)


def hung_up(sock: socket.socket) -> bool:
    """Whether the peer closed or reset ``sock`` (blocks up to its timeout for the news)."""
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True


def refused(proxy: LinkProxy) -> bool:
    """Whether a new connection is reset: the kernel completes the handshake before the
    proxy's accept, so the reset may reach connect() itself or the first read."""
    try:
        sock = dial(proxy)
    except ConnectionResetError:
        return True
    with sock:
        return hung_up(sock)


def test_counters_match_the_bytes_that_crossed_each_way(server: socket.socket) -> None:
    rng = random.Random(4)
    up, down = rng.randbytes(300_000), rng.randbytes(70_001)  # more than the backpressure mark
    with LinkProxy("127.0.0.1", port_of(server)) as proxy:
        assert proxy.url == f"mqtt://127.0.0.1:{proxy.port}"
        with dial(proxy) as client:
            peer, _ = server.accept()
            with peer:
                sender = threading.Thread(target=client.sendall, args=(up,))
                sender.start()
                assert receive_exactly(peer, len(up)) == up
                sender.join()
                peer.sendall(down)
                assert receive_exactly(client, len(down)) == down
    # close() joined the proxy's thread: the counters are final.
    assert (proxy.bytes_up, proxy.bytes_down) == (len(up), len(down))
    assert (proxy.connections, proxy.refused, proxy.bytes_dropped) == (1, 0, 0)


def test_cut_closes_both_sides_and_resets_new_connections_until_restored(
    server: socket.socket,
) -> None:
    with LinkProxy("127.0.0.1", port_of(server)) as proxy, dial(proxy) as client:
        peer, _ = server.accept()
        with peer:
            proxy.cut()
            assert proxy.open_connections == 0
            assert hung_up(client) and hung_up(peer)
        assert refused(proxy)
        assert proxy.refused == 1
        proxy.restore()
        with dial(proxy) as again:
            peer, _ = server.accept()
            with peer:
                again.sendall(b"ping")
                assert receive_exactly(peer, 4) == b"ping"
        assert proxy.connections == 2


def test_a_blackhole_drops_bytes_both_ways_but_keeps_the_connection(
    server: socket.socket,
) -> None:
    with LinkProxy("127.0.0.1", port_of(server)) as proxy, dial(proxy) as client:
        peer, _ = server.accept()
        with peer:
            proxy.blackhole()
            client.sendall(b"lost-up")
            peer.sendall(b"lost-down")
            wait_until(lambda: proxy.bytes_dropped == len(b"lost-up") + len(b"lost-down"))
            assert (proxy.bytes_up, proxy.bytes_down) == (0, 0)
            proxy.restore()
            # Same sockets: the link healed, and what was dropped stays dropped.
            client.sendall(b"kept-up")
            assert receive_exactly(peer, 7) == b"kept-up"
            peer.sendall(b"kept-down")
            assert receive_exactly(client, 9) == b"kept-down"


def test_a_connection_made_during_a_blackhole_is_closed_on_restore(
    server: socket.socket,
) -> None:
    with LinkProxy("127.0.0.1", port_of(server)) as proxy:
        proxy.blackhole()
        with dial(proxy) as client:
            client.sendall(b"CONNECT")
            wait_until(lambda: proxy.bytes_dropped == 7)
            proxy.restore()
            assert hung_up(client)  # so the client reconnects instead of waiting forever
        with dial(proxy) as client:
            peer, _ = server.accept()  # the first one never reached the server
            with peer:
                client.sendall(b"hello")
                assert receive_exactly(peer, 5) == b"hello"


def test_delay_holds_each_chunk_on_the_way(server: socket.socket) -> None:
    with LinkProxy("127.0.0.1", port_of(server)) as proxy, dial(proxy) as client:
        peer, _ = server.accept()
        with peer:
            proxy.delay(0.2)
            started = time.monotonic()
            client.sendall(b"ping")
            assert receive_exactly(peer, 4) == b"ping"
            peer.sendall(b"pong")
            assert receive_exactly(client, 4) == b"pong"
            assert time.monotonic() - started >= 0.4
            proxy.delay(0)
            client.sendall(b"fast")
            assert receive_exactly(peer, 4) == b"fast"
    with pytest.raises(ValueError, match="seconds"):
        proxy.delay(-1)


def test_a_delay_lowered_mid_stream_never_reorders_the_bytes(server: socket.socket) -> None:
    # TCP is a byte stream: a chunk read after the delay dropped must not overtake one
    # still held in the delay line (the broker would get MQTT packets out of order).
    with LinkProxy("127.0.0.1", port_of(server)) as proxy, dial(proxy) as client:
        peer, _ = server.accept()
        with peer:
            proxy.delay(0.5)
            client.sendall(b"first ")
            time.sleep(0.1)  # the proxy reads it into the delay line (it has 0.5 s to go)
            proxy.delay(0)
            client.sendall(b"second")
            assert receive_exactly(peer, 12) == b"first second"


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc")
def test_close_returns_threads_and_descriptors_to_baseline(server: socket.socket) -> None:
    threads, fds = threading.active_count(), open_fds()
    proxy = LinkProxy("127.0.0.1", port_of(server)).start()
    clients = [dial(proxy) for _ in range(3)]
    peers = [server.accept()[0] for _ in clients]
    proxy.blackhole()
    clients.append(dial(proxy))  # never connected upstream
    proxy.restore()
    proxy.delay(0.5)
    clients[0].sendall(b"in the delay line when closed")
    assert threading.active_count() == threads + 1
    proxy.close()
    proxy.close()  # idempotent
    for sock in clients + peers:
        sock.close()
    assert threading.active_count() == threads
    assert open_fds() == fds
    with pytest.raises(RuntimeError, match="closed"):
        proxy.start()


def test_a_broker_that_refuses_the_proxy_resets_the_client() -> None:
    with socket.create_server(("127.0.0.1", 0)) as placeholder:
        port = port_of(placeholder)  # closed below: nothing listens there any more
    with LinkProxy("127.0.0.1", port) as proxy:
        assert refused(proxy)
        wait_until(lambda: proxy.upstream_failures == 1)
        assert proxy.connections == 0


# -- paho through the proxy to a real Mosquitto ----------------------------------------------


class Device:
    """A paho client whose connects and disconnects can be waited on."""

    def __init__(self, url: str, *, keepalive: int = 30) -> None:
        host, port = url.removeprefix("mqtt://").split(":")
        self.connects = 0
        self.connected = threading.Event()
        self.disconnected = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="device-1")
        self.client.reconnect_delay_set(min_delay=1, max_delay=1)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.connect(host, int(port), keepalive=keepalive)
        self.client.loop_start()
        assert self.connected.wait(TIMEOUT), "no CONNACK through the proxy"

    def _on_connect(self, client: Any, userdata: Any, flags: Any, code: Any, props: Any) -> None:
        if not code.is_failure:
            self.connects += 1
            self.disconnected.clear()
            self.connected.set()

    def _on_disconnect(self, client: Any, userdata: Any, flags: Any, code: Any, props: Any) -> None:
        self.connected.clear()
        self.disconnected.set()

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def proxy(mosquitto: Mosquitto) -> Iterator[LinkProxy]:
    with LinkProxy(mosquitto.host, mosquitto.port) as proxy:
        yield proxy


@pytest.fixture
def device(proxy: LinkProxy) -> Iterator[Callable[..., Device]]:
    made: list[Device] = []

    def make(**options: Any) -> Device:
        made.append(Device(proxy.url, **options))
        return made[-1]

    yield make
    for device in made:
        device.close()


def test_a_qos1_publish_crosses_the_proxy(
    proxy: LinkProxy, device: Callable[..., Device], mosquitto: Mosquitto, mqtt_subscriber: Any
) -> None:
    subscriber = mqtt_subscriber(mosquitto.url, "t/#")
    info = device().client.publish("t/a", b"through", qos=1)
    info.wait_for_publish(TIMEOUT)
    assert info.is_published()
    assert subscriber.wait_for_count(1)[0] == Received("t/a", b"through", False, 1)
    assert proxy.connections == 1 and proxy.bytes_up > len(b"t/a" + b"through")


def test_cut_drops_the_client_and_refuses_it_until_restored(
    proxy: LinkProxy, device: Callable[..., Device]
) -> None:
    paho = device()
    proxy.cut()
    assert paho.disconnected.wait(TIMEOUT), "on_disconnect did not fire after cut()"
    wait_until(lambda: proxy.refused >= 2)  # paho retried, twice refused
    assert paho.connects == 1 and not paho.connected.is_set()
    proxy.restore()
    assert paho.connected.wait(TIMEOUT), "no reconnect after restore()"
    assert paho.connects == 2


def test_a_blackhole_is_found_by_keepalive_and_healed_by_restore(
    proxy: LinkProxy, device: Callable[..., Device], mosquitto: Mosquitto, mqtt_subscriber: Any
) -> None:
    subscriber = mqtt_subscriber(mosquitto.url, "t/#")
    paho = device(keepalive=2)
    proxy.blackhole()
    info = paho.client.publish("t/a", b"into the void", qos=1)
    # No PINGRESP comes back, so paho gives the link up after about 1.5 keepalives.
    assert paho.disconnected.wait(TIMEOUT), "keepalive did not notice the dead link"
    assert not info.is_published()  # no PUBACK crossed the blackhole
    assert subscriber.messages == []
    assert proxy.bytes_dropped > 0
    proxy.restore()
    assert paho.connected.wait(TIMEOUT), "no new connection after restore()"
    info.wait_for_publish(TIMEOUT)  # paho re-sends the unacknowledged message
    assert info.is_published()
    assert subscriber.wait_for_count(1)[0].payload == b"into the void"


# -- the edgeline uplink through the proxy ---------------------------------------------------


@dataclass
class Link:
    outbox: Outbox
    recorder: Recorder
    uplink: Uplink

    def close(self) -> None:
        self.uplink.close()
        self.recorder.close()
        self.outbox.close()


def open_link(tmp_path: Path, broker: str) -> Link:
    config = parse(
        f"""
        [device]
        id = "u-01"
        [uplink]
        broker = "{broker}"
        inflight = 20
        backoff_min = 0.05
        backoff_max = 0.2
        """,
        "uplink.toml",
    )
    clock = RealClock(assume_synced=True)
    outbox = Outbox.open(tmp_path / "state", "u-01")
    delivery = Delivery(outbox, clock, config.uplink, device="u-01", window=0.05)
    recorder, uplink = delivery.recorder, delivery.uplink
    recorder.start()
    now = clock.monotonic(), clock.wall()
    outbox.commit([Draft("s", "telemetry", "info", float(i), *now, True) for i in range(200)])
    return Link(outbox, recorder, uplink)


def seqs(messages: list[Received]) -> set[int]:
    return {json.loads(m.payload)["seq"] for m in messages}


def test_the_uplink_delivers_every_event_across_a_cut_mid_drain(
    tmp_path: Path, proxy: LinkProxy, mosquitto: Mosquitto, mqtt_subscriber: Any
) -> None:
    subscriber = mqtt_subscriber(
        mosquitto.url, "edgeline/u-01/events/#", client_id="proxy-sink", clean_session=False
    )
    link = open_link(tmp_path, proxy.url)
    try:
        proxy.delay(0.05)  # a slow link: the window lets 20 through per 0.1 s round trip
        link.uplink.start()
        subscriber.wait_for_count(1)
        proxy.cut()
        assert link.uplink.stats.acked < 200, "the drain finished before the cut"
        wait_until(lambda: proxy.refused >= 1)  # the uplink tried again and was refused
        proxy.delay(0)
        proxy.restore()
        wanted = set(range(1, 201))
        got = subscriber.wait_for(lambda ms: seqs(ms) >= wanted, timeout=30)
        assert seqs(got) == wanted
        assert link.uplink.stats.connects >= 2
    finally:
        link.close()
