"""``edge outbox replay``: publish a seq range of a device's outbox once more.

Replay sends what the outbox still holds in the range: events pending delivery and
delivered events kept for replay (``[storage] keep_delivered``), with their stored
payloads, topics and (device, stream, seq), so a consumer deduplicates them as usual.
It uses a one-shot MQTT client of its own (:func:`republish`): it does not go through the
running runtime, which keeps sending as before, and it acknowledges nothing in the outbox.
Seqs in the range the outbox no longer holds (evicted, or trimmed to make room) are listed
in the result.
"""

from __future__ import annotations

import ssl
import threading
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import MQTTErrorCode

from edge.clock import Clock, RealClock
from edge.config.device import UplinkConfig
from edge.errors import BrokerRefused, OutboxError, UplinkError
from edge.events import PRIORITY_CRITICAL, Event
from edge.outbox.eviction import runs
from edge.outbox.store import Outbox
from edge.uplink.client import paho_client, read_password
from edge.uplink.expiry import expiry
from edge.uplink.pacing import RateLimit
from edge.uplink.refusal import refused


@dataclass
class Replay:
    """What a replay sent."""

    device: str
    stream: str
    first: int
    last: int
    broker: str
    sent: int = 0
    acked: int = 0
    missing: list[list[int]] = field(default_factory=list)  # seq ranges not held

    def summary(self) -> str:
        text = (
            f"replayed {self.acked} of {self.sent} events of stream {self.stream}"
            f" (seq {self.first}-{self.last}) to {self.broker}"
        )
        if self.missing:
            shown = ", ".join(f"{a}-{b}" if a != b else str(a) for a, b in self.missing[:10])
            more = f", ... ({len(self.missing)} ranges)" if len(self.missing) > 10 else ""
            text += f"; not held (evicted or trimmed): {shown}{more}"
        return text


def replay(
    state_dir: str | Path,
    settings: UplinkConfig,
    *,
    first: int,
    last: int | None = None,
    clock: Clock | None = None,
) -> Replay:
    """Publish every stored event with ``first <= seq <= last`` (default: the newest) once
    more, in seq order, to ``settings.broker`` (the first, preferred, one of a list)."""
    with Outbox.open_existing(state_dir) as outbox:
        return replay_range(outbox, settings, first=first, last=last, clock=clock)


def replay_range(
    outbox: Outbox,
    settings: UplinkConfig,
    *,
    first: int,
    last: int | None = None,
    clock: Clock | None = None,
) -> Replay:
    """:func:`replay` from an open outbox: ``edge outbox replay``'s, or the running
    runtime's for the ``replay`` command (the outbox's reads take its lock)."""
    settings = settings.at(0)
    if first < 1:
        raise OutboxError(f"--from-seq must be at least 1, not {first}")
    top = outbox.last_seq if last is None else min(last, outbox.last_seq)
    if top < first:
        raise OutboxError(
            f"nothing to replay: seq {first} is beyond the outbox's last seq {outbox.last_seq}"
        )
    result = Replay(outbox.device, outbox.stream, first, top, settings.url)
    held: list[int] = []

    def events() -> Iterator[Event]:
        for event in outbox.stored(first, top):
            held.append(event.seq)
            result.sent += 1
            yield event

    result.acked = republish(
        settings, outbox.device, events(), clock=clock or RealClock(assume_synced=True)
    )
    present = set(held)
    result.missing = runs(s for s in range(first, top + 1) if s not in present)
    return result


def republish(
    settings: UplinkConfig,
    device: str,
    events: Iterable[Event],
    *,
    clock: Clock,
    timeout: float = 30.0,
) -> int:
    """Publish ``events`` once more, in the order given, for ``edge outbox replay``.

    A one-shot client of its own (client id ``<client id>-replay``, so the running
    runtime's session is left alone; no birth, no will, no status), the same topics and
    payloads, the configured QoS and in-flight window, paced by ``max_rate``. Returns how
    many the broker acknowledged; raises ``BrokerRefused`` with the broker's reason when it
    refuses the login, ``UplinkError`` when it cannot connect or the connection is lost.
    """
    s = settings.at(0)
    client_id = f"{s.client_id or f'edgeline-{device}'}-replay"
    client = paho_client(s, client_id, inflight=s.inflight, password=read_password(s))
    connected = threading.Event()
    turned_away: list[str] = []

    def on_connect(client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if reason.is_failure:
            turned_away.append(refused(s.url, reason))
        connected.set()

    client.on_connect = on_connect
    try:
        client.connect(s.host, s.port, s.keepalive)
    except (OSError, ssl.SSLError, ValueError) as exc:
        raise UplinkError(f"cannot connect to {s.broker}: {exc}") from exc
    client.loop_start()
    try:
        if not connected.wait(timeout):
            raise UplinkError(f"{s.broker} did not answer the connection within {timeout:g} s")
        if turned_away:
            raise BrokerRefused(turned_away[0])
        return _publish_all(client, settings, device, events, clock, timeout)
    finally:
        client.disconnect()
        client.loop_stop()


def _publish_all(
    client: mqtt.Client,
    settings: UplinkConfig,
    device: str,
    events: Iterable[Event],
    clock: Clock,
    timeout: float,
) -> int:
    window: deque[mqtt.MQTTMessageInfo] = deque()
    limit = RateLimit(settings.max_rate, clock) if settings.max_rate > 0 else None
    acked = 0

    def settle(info: mqtt.MQTTMessageInfo) -> int:
        try:
            info.wait_for_publish(timeout)
        except (RuntimeError, ValueError) as exc:
            raise UplinkError(f"connection to {settings.url} lost: {exc}") from exc
        if not info.is_published():
            raise UplinkError(f"{settings.url} did not acknowledge within {timeout:g} s")
        return 1

    wake = threading.Event()
    for event in events:
        while limit is not None and event.priority != PRIORITY_CRITICAL and limit.delay() > 0:
            clock.wait(wake, clock.monotonic() + limit.delay())
        if limit is not None and event.priority != PRIORITY_CRITICAL:
            limit.take()
        topic = event.topic(settings.topic_prefix, device)
        info = client.publish(
            topic, event.payload, qos=settings.qos, properties=expiry(event, settings)
        )
        if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            raise UplinkError(f"cannot publish to {settings.url}: {mqtt.error_string(info.rc)}")
        window.append(info)
        if len(window) >= settings.inflight:
            acked += settle(window.popleft())
    while window:
        acked += settle(window.popleft())
    return acked
