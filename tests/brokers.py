"""MQTT helpers for tests: a collecting subscriber, a publisher that waits for the broker's
acknowledgement, and the skip rule for tests that need Mosquitto.

The broker itself is ``edge.bench.mosquitto.Mosquitto`` (one launcher for the tests, the
benchmark and the chaos tools); ``need_mosquitto`` skips a test when it is not installed.
``Subscriber`` is a paho-mqtt client that records every message it receives; ``publish``
sends one message and returns once the broker has acknowledged it.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

import paho.mqtt.client as mqtt
import pytest

from edge.bench.mosquitto import INSTALL_HINT, find_mosquitto


def need_mosquitto() -> str:
    """The mosquitto executable; without one, skip the test (fail it when CI is set: CI
    must run every broker test)."""
    executable = find_mosquitto()
    if executable is None:
        message = f"mosquitto is not installed ({INSTALL_HINT})"
        if os.environ.get("CI"):
            pytest.fail(f"{message}: required when CI is set")
        pytest.skip(message)
    return executable


def split_url(url: str) -> tuple[str, int]:
    """``mqtt://host:port`` -> (host, port); the port defaults to 1883."""
    parts = urlsplit(url)
    if parts.scheme not in ("mqtt", "tcp") or not parts.hostname:
        raise ValueError(f"expected mqtt://host:port, got {url!r}")
    return parts.hostname, parts.port or 1883


@dataclass(frozen=True)
class Received:
    """One message as a subscriber got it."""

    topic: str
    payload: bytes
    retain: bool
    qos: int


Predicate = Callable[[list[Received]], bool]


class Subscriber:
    """A paho-mqtt client that subscribes to ``topic`` and records every message it receives.

    Entering the context returns once the broker has acknowledged the subscription. The
    client reconnects (and subscribes again) by itself if the broker restarts. Every message
    is recorded, whatever its topic, so unsolicited deliveries show up too.
    """

    def __init__(
        self,
        url: str,
        topic: str,
        *,
        qos: int = 1,
        timeout: float = 10.0,
        client_id: str = "",
        clean_session: bool = True,
    ) -> None:
        self.url = url
        self.topic = topic
        self.qos = qos
        self.timeout = timeout
        self._host, self._port = split_url(url)
        self._cond = threading.Condition()
        self._messages: list[Received] = []
        self._subacks = 0
        self._failure: str | None = None
        self._client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=clean_session
        )
        self._client.reconnect_delay_set(min_delay=1, max_delay=2)
        self._client.on_connect = self._on_connect
        self._client.on_subscribe = self._on_subscribe
        self._client.on_message = self._on_message
        self._started = False

    # paho callbacks run on paho's network thread.
    def _on_connect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason_code: Any, properties: Any
    ) -> None:
        if reason_code.is_failure:
            with self._cond:
                self._failure = f"CONNACK {reason_code}"
                self._cond.notify_all()
            return
        client.subscribe(self.topic, qos=self.qos)

    def _on_subscribe(
        self, client: mqtt.Client, userdata: Any, mid: int, reason_codes: Any, properties: Any
    ) -> None:
        with self._cond:
            failed = [rc for rc in reason_codes if rc.is_failure]
            if failed:
                self._failure = f"SUBACK {failed[0]} for {self.topic!r}"
            else:
                self._subacks += 1
            self._cond.notify_all()

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        received = Received(msg.topic, bytes(msg.payload), bool(msg.retain), int(msg.qos))
        with self._cond:
            self._messages.append(received)
            self._cond.notify_all()

    def start(self) -> Subscriber:
        if self._started:
            return self
        self._client.connect(self._host, self._port, keepalive=30)
        self._client.loop_start()
        self._started = True
        try:
            self.wait_subscribed(1)
        except BaseException:
            self.close()
            raise
        return self

    def wait_subscribed(self, count: int = 1, timeout: float | None = None) -> None:
        """Wait until the broker has acknowledged ``count`` subscriptions (one per connect)."""
        limit = self.timeout if timeout is None else timeout
        with self._cond:
            ok = self._cond.wait_for(
                lambda: self._subacks >= count or self._failure is not None, limit
            )
            if self._failure is not None:
                raise AssertionError(f"subscriber on {self.url}: {self._failure}")
            if not ok:
                raise AssertionError(
                    f"subscriber on {self.url}: {self._subacks} SUBACK(s) for {self.topic!r} "
                    f"within {limit:g} s, wanted {count}"
                )

    @property
    def messages(self) -> list[Received]:
        with self._cond:
            return list(self._messages)

    def wait_for(self, predicate: Predicate, timeout: float | None = None) -> list[Received]:
        """Wait until ``predicate(messages)`` holds and return the messages so far.

        Raises AssertionError listing what did arrive when ``timeout`` passes first.
        """
        limit = self.timeout if timeout is None else timeout
        with self._cond:
            if not self._cond.wait_for(lambda: predicate(list(self._messages)), limit):
                got = "\n  ".join(repr(m) for m in self._messages) or "(nothing)"
                raise AssertionError(
                    f"condition not met within {limit:g} s on {self.url} {self.topic!r}; "
                    f"received {len(self._messages)}:\n  {got}"
                )
            return list(self._messages)

    def wait_for_count(self, count: int, timeout: float | None = None) -> list[Received]:
        return self.wait_for(lambda messages: len(messages) >= count, timeout)

    def close(self) -> None:
        if not self._started:
            return
        self._started = False
        self._client.disconnect()
        self._client.loop_stop()

    def __enter__(self) -> Subscriber:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def publish(
    url: str,
    topic: str,
    payload: bytes | str,
    *,
    qos: int = 1,
    retain: bool = False,
    timeout: float = 10.0,
) -> None:
    """Publish one message and return once the broker acknowledged it (for QoS >= 1)."""
    publish_many(url, [(topic, payload)], qos=qos, retain=retain, timeout=timeout)


def publish_many(
    url: str,
    messages: list[tuple[str, bytes | str]],
    *,
    qos: int = 1,
    retain: bool = False,
    timeout: float = 10.0,
) -> None:
    """Publish (topic, payload) pairs in order; return once the broker acknowledged all."""
    host, port = split_url(url)
    connected = threading.Event()
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    client.on_connect = lambda client, userdata, flags, reason_code, properties: (
        None if reason_code.is_failure else connected.set()
    )
    client.connect(host, port, keepalive=30)
    client.loop_start()
    try:
        if not connected.wait(timeout):
            raise AssertionError(f"no CONNACK from {url} within {timeout:g} s")
        infos = [
            client.publish(topic, payload, qos=qos, retain=retain) for topic, payload in messages
        ]
        deadline = time.monotonic() + timeout
        for info in infos:
            info.wait_for_publish(max(0.0, deadline - time.monotonic()))
        unacked = sum(not info.is_published() for info in infos)
        if unacked:
            raise AssertionError(f"{url} did not acknowledge {unacked} of {len(infos)} messages")
    finally:
        client.disconnect()
        client.loop_stop()
