"""The chaos harness's independent witness: a subscriber that records what reached the
broker's consumers, and the check of the delivery guarantee (docs/mqtt-contract.md)
against it.

``Witness`` is a plain paho-mqtt client with a persistent session (clean_session False,
QoS 1): across broker restarts with persistence it loses nothing, and after a restart
without persistence it subscribes again on its own. It records every arrival in order,
with the broker's DUP flag, which tells a redelivery by the broker from a second
publication by the device.

``check_delivery`` compares the arrivals with what the device's outbox says it stored.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from edge.events import priority_of


@dataclass(frozen=True)
class Arrival:
    """One message as the witness got it; ``index`` counts arrivals from 0."""

    index: int
    at: float  # time.monotonic() on arrival
    topic: str
    payload: bytes
    dup: bool  # the broker's DUP flag: it delivered this message to us before
    retain: bool

    def body(self) -> dict[str, Any] | None:
        try:
            body = json.loads(self.payload)
        except ValueError:
            return None
        return body if isinstance(body, dict) else None


class Witness:
    """Subscribes to one device's events and status with a persistent session; records all."""

    def __init__(self, host: str, port: int, *, prefix: str, device: str, client_id: str) -> None:
        self.host, self.port = host, port
        self.topics = [f"{prefix}/{device}/events/#", f"{prefix}/{device}/status"]
        self._cond = threading.Condition()
        self._arrivals: list[Arrival] = []
        self._subacks = 0
        self._client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False
        )
        self._client.max_inflight_messages_set(20)
        self._client.reconnect_delay_set(min_delay=1, max_delay=2)
        self._client.on_connect = self._on_connect
        self._client.on_subscribe = self._on_subscribe
        self._client.on_message = self._on_message
        self._started = False

    def start(self, timeout: float = 10.0) -> Witness:
        self._client.connect(self.host, self.port, keepalive=10)
        self._client.loop_start()
        self._started = True
        self.wait_subscribed(1, timeout)
        return self

    def close(self) -> None:
        if self._started:
            self._started = False
            self._client.disconnect()
            self._client.loop_stop()

    @property
    def subscriptions(self) -> int:
        """SUBACKs so far: one per (re)connection."""
        with self._cond:
            return self._subacks

    def wait_subscribed(self, count: int, timeout: float) -> None:
        with self._cond:
            if not self._cond.wait_for(lambda: self._subacks >= count, timeout):
                raise TimeoutError(f"witness: {self._subacks} SUBACK(s), wanted {count}")

    def arrivals(self) -> list[Arrival]:
        with self._cond:
            return list(self._arrivals)

    def wait_until(self, condition: Callable[[list[Arrival]], bool], timeout: float) -> bool:
        """Wait (re-checking on each arrival) until ``condition(arrivals)``; False on timeout."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not condition(self._arrivals):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(min(left, 0.5))
            return True

    def seqs(self) -> set[int]:
        """The distinct event seqs received so far."""
        return {seq for _, seq in _event_seqs(self.arrivals())}

    # paho's network thread
    def _on_connect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any
    ) -> None:
        if not reason.is_failure:  # a restored session keeps its subscriptions; harmless again
            client.subscribe([(topic, 1) for topic in self.topics])

    def _on_subscribe(
        self, client: mqtt.Client, userdata: Any, mid: int, reasons: Any, props: Any
    ) -> None:
        with self._cond:
            self._subacks += 1
            self._cond.notify_all()

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        with self._cond:
            arrival = Arrival(
                len(self._arrivals),
                time.monotonic(),
                msg.topic,
                bytes(msg.payload),
                bool(msg.dup),
                bool(msg.retain),
            )
            self._arrivals.append(arrival)
            self._cond.notify_all()


def _seq_of(arrival: Arrival) -> int | None:
    if "/events/" not in arrival.topic:
        return None
    body = arrival.body()
    seq = body.get("seq") if body is not None else None
    return seq if isinstance(seq, int) else None


def _event_seqs(arrivals: list[Arrival]) -> list[tuple[Arrival, int]]:
    """(arrival, seq) for each event among the arrivals."""
    found = []
    for arrival in arrivals:
        seq = _seq_of(arrival)
        if seq is not None:
            found.append((arrival, seq))
    return found


def evictions(arrivals: list[Arrival]) -> tuple[set[int], int]:
    """The seqs the device reported evicted (``health`` events of sensor ``outbox``) and
    the total count those reports give."""
    evicted: set[int] = set()
    count = 0
    for arrival, _ in _event_seqs(arrivals):
        body = arrival.body() or {}
        if body.get("kind") != "health" or body.get("sensor") != "outbox":
            continue
        if not isinstance(body.get("evicted"), int):
            continue
        count += body["evicted"]
        for first, last in body.get("ranges") or []:
            evicted.update(range(int(first), int(last) + 1))
    return evicted, count


def _is_birth(arrival: Arrival) -> bool:
    """A live ``online`` status that is not a heartbeat (which carries ``health``): the
    device connected."""
    if not arrival.topic.endswith("/status") or arrival.retain:
        return False
    body = arrival.body() or {}
    return body.get("state") == "online" and "health" not in body


def edge_connections(arrivals: list[Arrival]) -> int:
    """How many times the device came online, as live (not retained) birth messages say."""
    return sum(1 for arrival in arrivals if _is_birth(arrival))


@dataclass
class Delivery:
    """What the witness got, measured against the outbox: the guarantee's figures."""

    last_seq: int
    distinct: int = 0
    resent: int = 0  # the device published a seq again (after a lost PUBACK or a crash)
    most_resent: int = 0  # the most re-sent within one device session
    redelivered: int = 0  # the broker delivered a message to the witness again (DUP set)
    connections: int = 0  # device sessions seen (live birth messages)
    evicted: int = 0  # seqs reported evicted
    lost_by_broker: int = 0  # allowed: acknowledged by a broker that then lost its state
    missing: list[int] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def as_json(self) -> dict[str, Any]:
        return {
            "events": self.last_seq,
            "distinct_received": self.distinct,
            "duplicates": self.resent + self.redelivered,
            "resent_by_device": self.resent,
            "most_resent_in_one_session": self.most_resent,
            "redelivered_by_broker": self.redelivered,
            "device_connections": self.connections,
            "evicted": self.evicted,
            "lost_by_broker": self.lost_by_broker,
            "loss": len(self.missing),
            "problems": self.problems,
        }


def check_delivery(
    arrivals: list[Arrival],
    *,
    device: str,
    stream: str,
    last_seq: int,
    pending: Collection[int] = (),
    broker_may_lose: Collection[int] = (),
    resend_bound: int | None = None,
) -> Delivery:
    """Check the delivery guarantee: every seq 1..last_seq arrived, except those reported
    evicted, those still pending in the outbox and those a non-persistent broker may have
    lost after acknowledging them (``broker_may_lose``); same device and stream throughout;
    a seq always with the same payload; first receipts in seq order within each priority;
    the device's re-sends at most ``resend_bound`` in any one of its sessions.

    Sessions are told apart by the device's live birth messages (``online`` on its status
    topic, not retained), which reach the witness in order with the events around them.
    """
    report = Delivery(last_seq)
    problems = report.problems
    first: dict[int, Arrival] = {}
    firsts_by_priority: dict[int, list[int]] = {}
    session_resent = 0
    for arrival in arrivals:
        if _is_birth(arrival):  # the device came online again: a new session
            session_resent = 0
            continue
        seq = _seq_of(arrival)
        if seq is None:
            continue
        body = arrival.body() or {}
        if body.get("device") != device or body.get("stream") != stream:
            problems.append(
                f"seq {seq} came as device {body.get('device')!r} stream {body.get('stream')!r},"
                f" expected {device!r} {stream!r}"
            )
            continue
        expected_topic = f"/{device}/events/{body.get('kind')}/{body.get('sensor')}"
        if not arrival.topic.endswith(expected_topic):
            problems.append(f"seq {seq} came on {arrival.topic}, expected ...{expected_topic}")
        seen = first.get(seq)
        if seen is not None:
            if seen.payload != arrival.payload:
                problems.append(f"seq {seq} came twice with different payloads")
            if arrival.dup:
                report.redelivered += 1
            else:
                report.resent += 1
                session_resent += 1
                report.most_resent = max(report.most_resent, session_resent)
            continue
        first[seq] = arrival
        priority = priority_of(str(body.get("kind")), body.get("severity", "info"))
        firsts_by_priority.setdefault(priority, []).append(seq)
    report.distinct = len(first)
    report.connections = edge_connections(arrivals)
    evicted, _ = evictions(arrivals)
    report.evicted = len(evicted)
    beyond = sorted(seq for seq in first if not 1 <= seq <= last_seq)
    if beyond:
        problems.append(f"seqs outside 1..{last_seq} arrived: {_ranges(beyond)}")
    excused = evicted | set(pending)
    missing = [s for s in range(1, last_seq + 1) if s not in first and s not in excused]
    may_lose = set(broker_may_lose)
    report.lost_by_broker = sum(1 for s in missing if s in may_lose)
    report.missing = [s for s in missing if s not in may_lose]
    if report.missing:
        problems.append(f"{len(report.missing)} seqs never arrived: {_ranges(report.missing)}")
    for priority, seqs in sorted(firsts_by_priority.items()):
        disorder = [(a, b) for a, b in itertools.pairwise(seqs) if b < a]
        if disorder:
            problems.append(
                f"priority {priority}: {len(disorder)} first receipts out of seq order,"
                f" e.g. {disorder[:3]}"
            )
    if resend_bound is not None and report.most_resent > resend_bound:
        problems.append(
            f"the device re-sent {report.most_resent} events in one session, more than the"
            f" bound {resend_bound}"
        )
    return report


def _ranges(seqs: list[int]) -> str:
    """[1, 2, 3, 7] -> '1-3, 7' (the first few ranges)."""
    parts: list[str] = []
    start = prev = seqs[0]
    for seq in [*seqs[1:], None]:
        if seq is not None and seq == prev + 1:
            prev = seq
            continue
        parts.append(f"{start}-{prev}" if prev != start else str(start))
        if seq is not None:
            start = prev = seq
    shown = ", ".join(parts[:8])
    return shown + (f", ... ({len(parts)} ranges)" if len(parts) > 8 else "")
