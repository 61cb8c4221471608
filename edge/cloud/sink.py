"""The reference consumer: subscribes to a broker, deduplicates and checks for loss.

A consumer deduplicates on (device, stream, seq) and sees loss as a gap in ``seq``; this is
that logic, used by ``edge sink`` and by ``edge simulate`` to show what arrived upstream.

Given a ``store`` (``edge.cloud.store``), the sink also stores every event and status: it
acknowledges each QoS 1 message to the broker only once its row is committed
(``edge.cloud.writer``), so with a persistent session (``client_id``) a sink killed at any
moment loses nothing: the broker sends what was not acknowledged again. ``share`` splits the
events among the sinks of an MQTT 5 shared subscription group.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeGuard

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from edge.cloud.bulk import BulkClient
from edge.cloud.store import Store, event_row, status_row, storable
from edge.cloud.writer import Pending, Writer
from edge.config.device import UplinkConfig, broker_problem
from edge.config.validation import topic_level
from edge.errors import BrokerRefused, UplinkError, UsageError
from edge.events import format_ts
from edge.uplink.client import paho_client, read_password
from edge.uplink.refusal import refused

log = logging.getLogger(__name__)


@dataclass
class StreamState:
    """What one (device, stream) has delivered so far."""

    seqs: set[int] = field(default_factory=set)
    duplicates: int = 0
    complete_to: int = 0  # every seq up to here has arrived

    def add(self, seq: int) -> bool:
        """Record ``seq``; True when it had arrived before (a duplicate)."""
        if seq in self.seqs:
            self.duplicates += 1
            return True
        self.seqs.add(seq)
        while self.complete_to + 1 in self.seqs:
            self.complete_to += 1
        return False

    def missing(self, upto: int | None = None, first: int = 1) -> list[int]:
        top = max(self.seqs, default=0) if upto is None else upto
        return [s for s in range(first, top + 1) if s not in self.seqs]


Arrival = Callable[[str, dict[str, Any], bool], None]  # topic, body, duplicate

SESSION_EXPIRY = 7 * 24 * 3600  # seconds a broker keeps a named sink's session (MQTT 5)
MAX_SEQ = 2**63 - 1  # what PostgreSQL's BIGINT holds


class Sink:
    """Subscribes to ``{prefix}/{device}/events/#`` and ``.../status``, keeps per-stream
    bookkeeping and, given a ``store``, stores what arrives.

    ``client_id``: a persistent session, so QoS 1 messages that arrive while the sink is down
    wait for it: MQTT 5 with clean start off, kept ``SESSION_EXPIRY`` seconds; MQTT 3.1.1
    with clean session off, kept as long as the broker keeps such sessions (Mosquitto: for
    ever unless ``persistent_client_expiration``). ``share`` (MQTT 5 only): the
    events through ``$share/{share}/...`` (MQTT 5 shared subscription: the group's sinks
    split them); status stays a plain subscription, so every sink sees each device's statuses
    in the broker's order. ``track`` False skips the in-memory per-stream sets (a
    long-running sink with a database asks the database instead).

    Threads: paho's network thread runs the callbacks and hands rows to the writer's thread,
    which acknowledges them; ``start`` and ``close`` belong to the owner's thread.

    ``login`` gives the user name, password and TLS files (an ``[uplink]``'s, the broker
    aside). After an outage paho's thread connects again within 5 s and subscribes anew.
    A refused login raises ``BrokerRefused`` from :meth:`start`, with the broker's reason; a
    broker that closes the connection without any CONNACK (what one that speaks only MQTT
    3.1.1 does to an MQTT 5 CONNECT) raises ``UplinkError`` saying so.
    """

    def __init__(
        self,
        broker: str,
        *,
        prefix: str = "edgeline",
        device: str = "+",
        on_event: Arrival | None = None,
        on_status: Callable[[str, dict[str, Any]], None] | None = None,
        protocol: str = "3.1.1",
        client_id: str | None = None,
        share: str | None = None,
        store: Store | None = None,
        track: bool = True,
        batch_rows: int = 1000,
        batch_ms: float = 50.0,
        login: UplinkConfig | None = None,
    ) -> None:
        problem = broker_problem(broker)
        if problem:
            raise UplinkError(problem)
        if protocol not in ("3.1.1", "5"):
            raise UsageError(f"protocol: expected 3.1.1 or 5, found {protocol!r}")
        if protocol != "5" and share:
            raise UsageError(
                "share: shared subscriptions are an MQTT 5 feature; MQTT 3.1.1 has none"
            )
        if share is not None and topic_level(share):
            raise UsageError(f"share: expected {topic_level(share)}, found {share!r}")
        # login: the user name, password and TLS files of an [uplink]; its broker is ignored
        version: Any = protocol
        settings = (
            dataclasses.replace(login, broker=broker, protocol=version)
            if login
            else UplinkConfig(broker=broker, protocol=version)
        )
        self.broker, self.host, self.port = broker, settings.host, settings.port
        self.tls = settings.tls
        self.prefix = prefix
        events = f"{prefix}/{device}/events/#"
        self.topics = [f"$share/{share}/{events}" if share else events, f"{prefix}/{device}/status"]
        self.on_event = on_event
        self.on_status = on_status
        self.streams: dict[tuple[str, str], StreamState] = {}
        self.malformed = 0
        self.track = track
        self.session_present: bool | None = None  # from the last CONNACK
        self._v5 = protocol == "5"
        self._persistent = bool(client_id)
        self._cond = threading.Condition()
        self._subscribed = threading.Event()
        self.refused: str | None = None  # the broker's reason for refusing the login
        self._log_refusals = False  # start() raises the first; later ones are logged
        self._answered = False  # a CONNACK came on the connection up now
        self.unanswered: str | None = None  # the broker closed before any CONNACK
        self._sub_refused: str | None = None  # a subscription the broker refused
        # Acknowledgements go out only on the connection their message came in on: a packet
        # id from an earlier connection may name another message by now.
        self._ack_lock = threading.Lock()
        self._connection = 0
        # A subscriber publishes nothing: the window matters not.
        password = read_password(settings)
        client = paho_client(
            settings,
            client_id or "",
            inflight=20,
            password=password,
            persistent=bool(client_id),
            kind=BulkClient,
        )
        assert isinstance(client, BulkClient)
        self._client = client
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_subscribe = self._on_subscribe
        self._client.on_message = self._on_message  # what paho reads itself (QoS 2, ...)
        self._client.on_arrival = self._arrived
        self.writer: Writer | None = None
        self._receive_maximum: int | None = None
        self._stamp = (-1, "")  # (millisecond, its text): received_at
        if store is not None:
            self.writer = Writer(store, self._ack, batch_rows=batch_rows, batch_ms=batch_ms)
            self._client.manual_ack_set(True)
            # Room for two batches in flight: the broker's window must not be what paces us.
            self._receive_maximum = min(65535, 2 * batch_rows)

    def _connect_options(self) -> dict[str, Any]:
        if not self._v5:
            return {}
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        if self._persistent:
            props.SessionExpiryInterval = SESSION_EXPIRY
        if self._receive_maximum is not None:
            props.ReceiveMaximum = self._receive_maximum
        options: dict[str, Any] = {"properties": props}
        if self._persistent:
            options["clean_start"] = False
        return options

    def start(self, timeout: float = 10.0, *, wait: bool = True) -> Sink:
        """Connect and subscribe, returning once the broker acknowledged the subscription.

        With ``wait`` False, return at once and keep trying in the background: a broker
        that is down now (a device booting during an outage) is subscribed to once it is up.
        """
        if self.writer is not None:
            self.writer.start()
        options = self._connect_options()
        self._client.reconnect_delay_set(min_delay=1, max_delay=5)
        if not wait:
            self._log_refusals = True
            self._client.connect_async(self.host, self.port, keepalive=30, **options)
            self._client.loop_start()
            return self
        try:
            self._client.connect(self.host, self.port, keepalive=30, **options)
        except OSError as exc:
            self.close()
            raise UplinkError(f"cannot connect to {self.host}:{self.port}: {exc}") from exc
        self._client.loop_start()
        with self._cond:
            self._cond.wait_for(
                lambda: self._subscribed.is_set() or self.refused or self.unanswered, timeout
            )
        if self.refused:
            self.close()
            raise BrokerRefused(self.refused)
        if self.unanswered and not self._subscribed.is_set():
            self.close()
            raise UplinkError(self.unanswered)
        if not self._subscribed.is_set():
            self.close()
            raise UplinkError(f"no SUBACK from {self.host}:{self.port} within {timeout} s")
        if self._sub_refused:
            self.close()
            raise UplinkError(
                f"{self.host}:{self.port} refused the subscription: {self._sub_refused}"
            )
        self._log_refusals = True
        return self

    def close(self) -> None:
        """Store and acknowledge what arrived, then disconnect. Idempotent."""
        if self.writer is not None:
            self.writer.close()
        self._client.disconnect()
        self._client.loop_stop()

    def __enter__(self) -> Sink:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def received(self, device: str, stream: str) -> StreamState:
        with self._cond:
            return self.streams.get((device, stream), StreamState())

    def wait_for(
        self, device: str, stream: str, last_seq: int, timeout: float, *, first: int = 1
    ) -> bool:
        """Wait until seqs first..last_seq of the stream have all arrived (``first`` > 1:
        a run resumed on an outbox whose earlier seqs went upstream before it subscribed)."""
        remaining: set[int] | None = None  # found once, then only re-checked

        def complete() -> bool:
            nonlocal remaining
            state = self.streams.get((device, stream))
            if state is None:
                return last_seq < first
            if state.complete_to >= last_seq:
                return True
            if remaining is None:
                remaining = set(state.missing(last_seq, first))
            else:
                remaining = {seq for seq in remaining if seq not in state.seqs}
            return not remaining

        with self._cond:
            return self._cond.wait_for(complete, timeout)

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, rc: Any, p: Any) -> None:
        self._answered = True
        if rc.is_failure:
            with self._cond:
                self.refused = refused(self.broker, rc)
                self._cond.notify_all()
            if self._log_refusals:
                log.warning("%s", self.refused)
            return
        self.session_present = bool(flags.session_present)
        client.subscribe([(topic, 1) for topic in self.topics])  # every time: resubscribe

    def _on_disconnect(
        self, client: mqtt.Client, userdata: Any, flags: Any, rc: Any, p: Any
    ) -> None:
        with self._ack_lock:
            self._connection += 1
        if not self._answered:  # closed with no CONNACK: the CONNECT itself was refused
            words = f"{self.broker} closed the connection without answering CONNECT"
            if self._v5:
                words += (
                    "; a broker that speaks only MQTT 3.1.1 does that to an MQTT 5 client"
                    " (RabbitMQ before 3.13, say): try protocol 3.1.1"
                )
            with self._cond:
                self.unanswered = words
                self._cond.notify_all()
            if self._log_refusals:
                log.warning("%s", words)
        self._answered = False

    def _on_subscribe(self, client: mqtt.Client, userdata: Any, mid: int, rcs: Any, p: Any) -> None:
        failed = [str(code) for code in rcs if code.is_failure]
        if failed:
            self._sub_refused = ", ".join(failed)
            log.error("the broker refused the subscription to %s: %s", self.topics, failed)
        with self._cond:
            self.refused = self.unanswered = None
            self._subscribed.set()
            self._cond.notify_all()

    def _ack(self, tokens: list[tuple[int, int, int]]) -> None:
        """The writer's thread: acknowledge committed messages (QoS 1 or 2) that came in on
        the connection still up. The others the broker sends again on the next connection
        of a persistent session, and they are stored (as duplicates) and acknowledged."""
        client = self._client
        with self._ack_lock:
            current = self._connection
            mids = [mid for connection, mid, qos in tokens if qos == 1 and connection == current]
            client.ack_many(mids)
            for connection, mid, qos in tokens:
                if qos == 2 and connection == current:
                    client.ack(mid, qos)

    def _hand_over(self, mid: int, qos: int, row: Any) -> None:
        """With a store: queue the row (None: nothing to store) for the writer."""
        if self.writer is not None:
            self.writer.put(Pending(row, (self._connection, mid, qos)))

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        self._arrived(msg.topic, msg.payload, msg.mid, msg.qos)

    def _arrived(self, topic: str, payload: bytes | bytearray, mid: int, qos: int) -> None:
        # Runs on paho's network thread: an exception here would end it, and the sink with
        # it, so a payload that cannot be read (too deeply nested for json, say) is counted
        # as malformed and the sink goes on.
        # With a store, every message goes to the writer, even one with nothing to store:
        # acknowledgements then keep the order the messages came in.
        body = _body(payload)
        if body is None:
            self.malformed += 1
            self._hand_over(mid, qos, None)
            return
        storing = self.writer is not None
        received_at = self._received_at() if storing else ""
        if topic.endswith("/status"):
            name = topic[len(self.prefix) + 1 : -len("/status")]
            status = _row(lambda: status_row(name, body, received_at)) if storing else True
            if status is None or not _key(name):
                self.malformed += 1
                self._hand_over(mid, qos, None)
                return
            self._hand_over(mid, qos, status)
            if self.on_status:
                self._tell(self.on_status, topic, body)
            return
        device, stream, seq = body.get("device"), body.get("stream"), body.get("seq")
        if not _key(device) or not _key(stream) or not _integer(seq) or abs(seq) > MAX_SEQ:
            self.malformed += 1
            self._hand_over(mid, qos, None)
            return
        text = payload.decode("ascii") if storing and payload.isascii() else None
        row = _row(lambda: event_row(body, received_at, text)) if storing else True
        if row is None:
            self.malformed += 1
            self._hand_over(mid, qos, None)
            return
        self._hand_over(mid, qos, row)
        duplicate = False
        if self.track:
            with self._cond:
                duplicate = self.streams.setdefault((device, stream), StreamState()).add(seq)
                self._cond.notify_all()
        if self.on_event:
            self._tell(self.on_event, topic, body, duplicate)

    def _received_at(self) -> str:
        """Now, as stored: the text made once per millisecond, not once per message."""
        now = time.time()
        millisecond = int(now * 1000)
        if millisecond != self._stamp[0]:
            self._stamp = (millisecond, format_ts(now))
        return self._stamp[1]

    def _tell(self, callback: Callable[..., None], *args: Any) -> None:
        """Call a consumer's callback; one that cannot handle a payload loses that one only."""
        try:
            callback(*args)
        except RecursionError:  # a payload nested just shallowly enough for json.loads
            self.malformed += 1
            log.warning("a payload on %s is nested too deeply to handle; skipped", args[0])


def _body(payload: bytes | bytearray) -> dict[str, Any] | None:
    """The JSON object of a payload, or None for anything else (nested too deeply included)."""
    try:
        body = json.loads(payload)
    except (ValueError, RecursionError):
        return None
    return body if isinstance(body, dict) else None


def _row(make: Callable[[], Any]) -> Any:
    """A table row made from a payload, or None when the payload is nested too deeply to
    write back out (json reads a little deeper than it writes)."""
    try:
        return make()
    except (RecursionError, ValueError, KeyError):
        return None


def _key(value: Any) -> TypeGuard[str]:
    return isinstance(value, str) and bool(value) and storable(value)


def _integer(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)
