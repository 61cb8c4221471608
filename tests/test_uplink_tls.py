"""mqtts:// against a real Mosquitto TLS listener, with certificates from trustme."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import trustme

from edge.bench.mosquitto import Mosquitto, free_port
from edge.clock import VirtualClock
from edge.config.device import parse
from edge.events import Draft
from edge.outbox.store import Outbox
from edge.runtime.delivery import Delivery
from edge.runtime.recorder import Recorder
from edge.uplink.link import Uplink
from tests.brokers import need_mosquitto


@pytest.fixture
def tls_broker(tmp_path: Path) -> Iterator[tuple[Mosquitto, int, trustme.CA]]:
    executable = need_mosquitto()
    ca = trustme.CA()
    server = ca.issue_cert("127.0.0.1", "localhost")
    certs = tmp_path / "certs"
    certs.mkdir()
    server.private_key_pem.write_to_path(str(certs / "server.key"))
    server.cert_chain_pems[0].write_to_path(str(certs / "server.pem"))
    ca.cert_pem.write_to_path(str(certs / "ca.pem"))
    port = free_port()
    broker = Mosquitto(
        tmp_path / "broker",
        executable=executable,
        extra=[
            f"listener {port} 127.0.0.1",
            f"certfile {certs / 'server.pem'}",
            f"keyfile {certs / 'server.key'}",
            f"cafile {certs / 'ca.pem'}",
            "require_certificate true",  # mutual TLS: the device shows a client certificate
        ],
    ).start()
    try:
        yield broker, port, ca
    finally:
        broker.stop()


@dataclass
class Link:
    uplink: Uplink
    recorder: Recorder
    outbox: Outbox
    clock: VirtualClock

    def close(self) -> None:
        self.uplink.close()
        self.recorder.close()
        self.outbox.close()


def start_uplink(tmp_path: Path, port: int, ca_file: Path, client: trustme.LeafCert) -> Link:
    client.private_key_pem.write_to_path(str(tmp_path / "device.key"))
    client.cert_chain_pems[0].write_to_path(str(tmp_path / "device.pem"))
    config = parse(
        f"""
        [device]
        id = "tls-01"
        [uplink]
        broker = "mqtts://127.0.0.1:{port}"
        ca_file = "{ca_file}"
        cert_file = "{tmp_path / "device.pem"}"
        key_file = "{tmp_path / "device.key"}"
        backoff_min = 0.05
        backoff_max = 0.1
        """,
        "tls.toml",
    )
    clock = VirtualClock()
    outbox = Outbox.open(tmp_path / "state", "tls-01")
    delivery = Delivery(outbox, clock, config.uplink, device="tls-01", window=0.0)
    recorder, uplink = delivery.recorder, delivery.uplink
    recorder.start()
    uplink.start()
    recorder.submit(Draft("door", "state", "warning", True, clock.monotonic(), clock.wall(), True))
    return Link(uplink, recorder, outbox, clock)


def test_events_cross_a_mutual_tls_link(
    tmp_path: Path, tls_broker: tuple[Mosquitto, int, trustme.CA], mqtt_subscriber: Any
) -> None:
    broker, port, ca = tls_broker
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    subscriber = mqtt_subscriber(broker.url, "edgeline/tls-01/events/#")  # plain listener
    link = start_uplink(tmp_path, port, tmp_path / "ca.pem", ca.issue_cert("tls-01"))
    try:
        message = subscriber.wait_for(lambda ms: len(ms) >= 1)[0]
        assert message.topic == "edgeline/tls-01/events/state/door"
        assert json.loads(message.payload)["seq"] == 1
    finally:
        link.close()


def test_a_broker_certificate_from_another_ca_is_refused(
    tmp_path: Path, tls_broker: tuple[Mosquitto, int, trustme.CA]
) -> None:
    _, port, ca = tls_broker
    trustme.CA().cert_pem.write_to_path(str(tmp_path / "other-ca.pem"))
    link = start_uplink(tmp_path, port, tmp_path / "other-ca.pem", ca.issue_cert("tls-01"))
    uplink = link.uplink
    try:
        deadline = threading.Event()
        timer = threading.Timer(10.0, deadline.set)
        timer.start()
        while "CERTIFICATE_VERIFY_FAILED" not in uplink.stats.last_error:
            assert not deadline.wait(0.02), uplink.stats.last_error
            link.clock.advance(1.0)  # let the backoff run out
        timer.cancel()
        assert not uplink.online and uplink.stats.acked == 0
        assert link.outbox.stats().pending == 1  # the event waits, nothing lost
    finally:
        link.close()
