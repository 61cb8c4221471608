"""The test brokers really work: Mosquitto (edge.bench.mosquitto) and the embedded broker."""

from __future__ import annotations

import asyncio
import socket
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from edge.bench import mosquitto as mosquitto_module
from edge.bench.mosquitto import BrokerUnavailable, Mosquitto, port_accepts
from edge.errors import EdgelineError
from edge.sim import broker as broker_module
from edge.sim.broker import BrokerError, EmbeddedBroker
from tests.brokers import Received, Subscriber, need_mosquitto, publish, publish_many

MakeSubscriber = Callable[..., Subscriber]


def payloads(messages: list[Received]) -> list[bytes]:
    return [m.payload for m in messages]


def has_payload(payload: bytes) -> Callable[[list[Received]], bool]:
    return lambda messages: payload in payloads(messages)


# -- Mosquitto ---------------------------------------------------------------------------


def test_mosquitto_delivers_qos1(mosquitto: Mosquitto, mqtt_subscriber: MakeSubscriber) -> None:
    assert mosquitto.url == f"mqtt://127.0.0.1:{mosquitto.port}"
    subscriber = mqtt_subscriber(mosquitto.url, "t/#")

    publish(mosquitto.url, "t/a", b"hello", qos=1)

    messages = subscriber.wait_for(has_payload(b"hello"))
    assert messages == [Received("t/a", b"hello", retain=False, qos=1)]


def test_mosquitto_stop_refuses_connections(mosquitto: Mosquitto) -> None:
    assert port_accepts(mosquitto.host, mosquitto.port)

    mosquitto.stop()

    assert not mosquitto.running
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    with pytest.raises(ConnectionRefusedError):
        client.connect(mosquitto.host, mosquitto.port)
    mosquitto.stop()  # a second stop is a no-op


def test_mosquitto_restart_keeps_port_and_clients_reconnect(
    mosquitto: Mosquitto, mqtt_subscriber: MakeSubscriber
) -> None:
    port = mosquitto.port
    subscriber = mqtt_subscriber(mosquitto.url, "r/#")
    publish(mosquitto.url, "r/x", b"before")
    subscriber.wait_for(has_payload(b"before"))

    mosquitto.restart()

    assert mosquitto.port == port
    assert mosquitto.running
    # The same client reconnects to the same URL and subscribes again (clean session).
    subscriber.wait_subscribed(2, timeout=15)
    publish(mosquitto.url, "r/x", b"after")
    messages = subscriber.wait_for(has_payload(b"after"))
    assert payloads(messages) == [b"before", b"after"]


def test_mosquitto_queues_more_than_its_default_1000_qos1_messages(
    mosquitto: Mosquitto, mqtt_subscriber: MakeSubscriber
) -> None:
    # Mosquitto's default max_queued_messages (1000) would drop the 1001st message queued for
    # this offline persistent session; the test config lifts the limit.
    count = 1500
    options = {"client_id": "slow-consumer", "clean_session": False}
    mqtt_subscriber(mosquitto.url, "q/#", **options).close()

    publish_many(mosquitto.url, [("q/n", str(i)) for i in range(count)], qos=1)

    subscriber = mqtt_subscriber(mosquitto.url, "q/#", **options)
    messages = subscriber.wait_for_count(count, timeout=30)
    assert [int(m.payload) for m in messages] == list(range(count))


def test_mosquitto_kill_frees_the_port_and_a_start_takes_it_again(mosquitto: Mosquitto) -> None:
    port = mosquitto.port

    mosquitto.kill()

    assert not mosquitto.running and mosquitto.pid is None
    assert not port_accepts(mosquitto.host, port)
    mosquitto.kill()  # a second kill is a no-op
    mosquitto.start()
    assert mosquitto.port == port and port_accepts(mosquitto.host, port)


def test_mosquitto_with_persistence_keeps_a_session_across_a_stop(
    tmp_path: Path, mqtt_subscriber: MakeSubscriber
) -> None:
    options = {"client_id": "persistent-consumer", "clean_session": False}
    with Mosquitto(tmp_path / "m", executable=need_mosquitto(), persistence=True) as broker:
        mqtt_subscriber(broker.url, "p/#", **options).close()
        publish(broker.url, "p/a", b"queued")

        broker.restart()  # SIGTERM: mosquitto saves sessions and queued messages

        subscriber = mqtt_subscriber(broker.url, "p/#", **options)
        assert payloads(subscriber.wait_for(has_payload(b"queued"))) == [b"queued"]


def test_missing_mosquitto_is_broker_unavailable_naming_the_package(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(mosquitto_module, "find_mosquitto", lambda: None)

    with pytest.raises(BrokerUnavailable, match="apt-get install mosquitto") as caught:
        Mosquitto(tmp_path)

    assert isinstance(caught.value, EdgelineError) and isinstance(caught.value, RuntimeError)


def test_mosquitto_that_will_not_start_says_why(tmp_path: Path) -> None:
    broker = Mosquitto(tmp_path, executable=need_mosquitto(), extra=["no_such_option 1"])

    with pytest.raises(BrokerUnavailable, match=r"(?s)exited with code \d+.*no_such_option"):
        broker.start()

    assert not broker.running


# -- EmbeddedBroker ----------------------------------------------------------------------


@pytest.fixture
def embedded() -> Iterator[EmbeddedBroker]:
    broker = EmbeddedBroker()
    broker.start()
    try:
        yield broker
    finally:
        broker.close()


def test_embedded_broker_listens_on_a_free_loopback_port(embedded: EmbeddedBroker) -> None:
    assert embedded.host == "127.0.0.1"
    assert embedded.port > 0
    assert embedded.url == f"mqtt://127.0.0.1:{embedded.port}"
    assert port_accepts(embedded.host, embedded.port)


def test_embedded_broker_delivers_qos1(
    embedded: EmbeddedBroker, mqtt_subscriber: MakeSubscriber
) -> None:
    subscriber = mqtt_subscriber(embedded.url, "edgeline/dev1/events/#")

    publish(embedded.url, "edgeline/dev1/events/threshold/t1", b'{"seq": 1}', qos=1)

    messages = subscriber.wait_for(has_payload(b'{"seq": 1}'))
    assert messages == [Received("edgeline/dev1/events/threshold/t1", b'{"seq": 1}', False, 1)]


def test_embedded_broker_gives_retained_message_once_to_late_subscriber(
    embedded: EmbeddedBroker, mqtt_subscriber: MakeSubscriber
) -> None:
    early = mqtt_subscriber(embedded.url, "edgeline/+/status")
    publish(embedded.url, "edgeline/dev1/status", b"online", qos=1, retain=True)
    early.wait_for(has_payload(b"online"))

    late = mqtt_subscriber(embedded.url, "edgeline/+/status")
    # A live message after the retained one: once it arrives, anything earlier has too.
    publish(embedded.url, "edgeline/dev2/status", b"marker", qos=1)
    messages = late.wait_for(has_payload(b"marker"))

    assert messages == [
        Received("edgeline/dev1/status", b"online", retain=True, qos=1),
        Received("edgeline/dev2/status", b"marker", retain=False, qos=1),
    ]


def test_embedded_broker_sends_no_retained_messages_for_other_clients_filters(
    embedded: EmbeddedBroker, mqtt_subscriber: MakeSubscriber
) -> None:
    # Unpatched amqtt 0.12 pushes to every new client the retained messages matching any
    # client's subscriptions, at QoS 0.
    mqtt_subscriber(embedded.url, "edgeline/#")
    publish(embedded.url, "edgeline/dev1/status", b"online", qos=1, retain=True)

    other = mqtt_subscriber(embedded.url, "elsewhere/topic")
    publish(embedded.url, "elsewhere/topic", b"marker", qos=1)
    messages = other.wait_for(has_payload(b"marker"))

    assert [m.topic for m in messages] == ["elsewhere/topic"]


def test_embedded_broker_close_is_idempotent_and_frees_the_port() -> None:
    broker = EmbeddedBroker().start()
    port = broker.port
    assert port_accepts(broker.host, port)

    broker.close()
    broker.close()

    assert not broker.running
    assert not port_accepts(broker.host, port)
    with pytest.raises(BrokerError, match="closed"):
        broker.start()


def test_embedded_broker_closes_quietly_with_clients_connected(
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
    mqtt_subscriber: MakeSubscriber,
) -> None:
    # On Python 3.11 amqtt's own shutdown often hangs after a QoS 1 delivery (see
    # edge.sim.broker._shutdown); a few rounds make sure that path is taken.
    for _ in range(3):
        broker = EmbeddedBroker(stop_timeout=5)
        with broker:
            subscriber = mqtt_subscriber(broker.url, "a/#")
            publish(broker.url, "a/b", b"x", qos=1)
            subscriber.wait_for(has_payload(b"x"))
            started = time.monotonic()
        elapsed = time.monotonic() - started

        assert elapsed < 2.0
        assert broker._thread is not None and not broker._thread.is_alive()
        assert not port_accepts(broker.host, broker.port)
        subscriber.close()
    out, err = capfd.readouterr()
    assert "Traceback" not in out + err
    assert [r for r in caplog.records if r.levelno >= 30 and r.name.startswith("amqtt")] == []


def test_embedded_broker_reports_a_busy_port(capfd: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        broker = EmbeddedBroker(port=port, start_timeout=5)
        with pytest.raises(BrokerError, match=f"127.0.0.1:{port}"):
            broker.start()
        broker.close()
    out, err = capfd.readouterr()
    assert "Traceback" not in out + err


def test_embedded_broker_start_times_out_clearly(monkeypatch: pytest.MonkeyPatch) -> None:
    class NeverListens:
        def __init__(self, config: object) -> None:
            pass

        async def start(self) -> None:
            await asyncio.Event().wait()

    monkeypatch.setattr(broker_module, "_import_amqtt_broker", lambda: NeverListens)
    broker = EmbeddedBroker(start_timeout=0.3, stop_timeout=2)
    started = time.monotonic()
    with pytest.raises(BrokerError, match=r"did not start within 0\.3 s"):
        broker.start()
    # close() (run by start) cancelled the hung startup instead of waiting out stop_timeout.
    assert time.monotonic() - started < 1.5
    assert broker._thread is not None and not broker._thread.is_alive()


def test_missing_amqtt_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "amqtt.broker", None)  # makes the import fail

    with pytest.raises(BrokerError, match=r"pip install 'edgeline\[sim\]'") as caught:
        EmbeddedBroker().start()

    assert isinstance(caught.value, EdgelineError)
    assert isinstance(caught.value, RuntimeError)
