"""What a user would write without edgeline, and the listener: the benchmark's paho-mqtt code.

The runtime bridges paho in ``edge.uplink.link`` alone; the benchmark's baselines use paho
directly, as a user would, and are kept here in one module:

- ``raw_publish``: publish every payload at QoS 1 with paho's in-flight window of 20, as
  fast as PUBACKs allow, with no storage at all;
- ``naive_loop``: for each event, insert and commit a row in SQLite (WAL, FULL), publish,
  wait for the PUBACK;
- ``listen`` (run as ``python -m edge.bench.mqtt URL TOPIC FILE``): a subscriber in its own
  process that writes each event's seq and its monotonic receipt time.
"""

from __future__ import annotations

import json
import sqlite3
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

INFLIGHT = 20  # the budget's reference window; far above ~20 paho gets slower, not faster
READY = "listening"


class BaselineError(RuntimeError):
    """A baseline could not connect or was not acknowledged in time."""


def _client(url: str, timeout: float = 10.0) -> mqtt.Client:
    """A connected paho client with its network loop on its own thread."""
    parts = urlsplit(url)
    client = mqtt.Client(CallbackAPIVersion.VERSION2)
    client.max_inflight_messages_set(INFLIGHT)
    client.max_queued_messages_set(0)
    connected = threading.Event()
    client.on_connect = lambda c, userdata, flags, reason, props: connected.set()
    client.connect(parts.hostname or "127.0.0.1", parts.port or 1883, keepalive=60)
    client.loop_start()
    if not connected.wait(timeout):
        client.loop_stop()
        raise BaselineError(f"no CONNACK from {url} within {timeout:g} s")
    return client


def _close(client: mqtt.Client) -> None:
    client.disconnect()
    client.loop_stop()


def raw_publish(url: str, messages: Sequence[tuple[str, str]], timeout: float = 120.0) -> float:
    """Publish (topic, payload) pairs at QoS 1, no storage; seconds until the last PUBACK."""
    client = _client(url)
    done = threading.Event()
    acked = 0

    def on_publish(c: mqtt.Client, userdata: Any, mid: int, reason: Any, props: Any) -> None:
        nonlocal acked
        acked += 1
        if acked == len(messages):
            done.set()

    client.on_publish = on_publish
    try:
        started = time.perf_counter()
        for topic, payload in messages:
            client.publish(topic, payload, qos=1)
        if not done.wait(timeout):
            raise BaselineError(f"{acked} of {len(messages)} PUBACKs within {timeout:g} s")
        return time.perf_counter() - started
    finally:
        _close(client)


def naive_loop(
    url: str, database: Path, messages: Sequence[tuple[str, str]], timeout: float = 10.0
) -> float:
    """One event at a time: insert and commit (WAL, FULL), publish, wait for the PUBACK.
    Seconds for all of them."""
    conn = sqlite3.connect(database, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("CREATE TABLE IF NOT EXISTS events (seq INTEGER PRIMARY KEY, topic, payload)")
    client = _client(url)
    try:
        started = time.perf_counter()
        for topic, payload in messages:
            conn.execute("BEGIN")
            conn.execute("INSERT INTO events (topic, payload) VALUES (?, ?)", (topic, payload))
            conn.execute("COMMIT")
            info = client.publish(topic, payload, qos=1)
            info.wait_for_publish(timeout)
            if not info.is_published():
                raise BaselineError(f"no PUBACK within {timeout:g} s")
        return time.perf_counter() - started
    finally:
        _close(client)
        conn.close()


def listen(url: str, topic: str, out: Path) -> int:
    """Subscribe; write a "seq receipt_time" line to ``out`` per event; print READY once
    subscribed; stop when standard input closes."""
    parts = urlsplit(url)
    client = mqtt.Client(CallbackAPIVersion.VERSION2)
    sink = out.open("w", encoding="ascii", buffering=1)  # line by line: the bench polls it
    subscribed = threading.Event()

    def on_connect(c: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        c.subscribe(topic, qos=1)

    def on_subscribe(c: mqtt.Client, userdata: Any, mid: int, codes: Any, props: Any) -> None:
        subscribed.set()

    def on_message(c: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        now = time.monotonic()  # CLOCK_MONOTONIC: the same clock as the runtime's process
        sink.write(f"{json.loads(message.payload)['seq']} {now!r}\n")

    client.on_connect = on_connect
    client.on_subscribe = on_subscribe
    client.on_message = on_message
    client.connect(parts.hostname or "127.0.0.1", parts.port or 1883, keepalive=60)
    client.loop_start()
    if not subscribed.wait(10.0):
        return 1
    print(READY, flush=True)
    sys.stdin.read()  # until the benchmark closes our standard input
    _close(client)
    sink.close()
    return 0


if __name__ == "__main__":
    sys.exit(listen(sys.argv[1], sys.argv[2], Path(sys.argv[3])))
