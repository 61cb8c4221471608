"""The reference consumer: subscribes to a broker, deduplicates and checks for loss.

A consumer deduplicates on (device, stream, seq) and sees loss as a gap in ``seq``; this is
that logic, used by ``edge sink`` and by ``edge simulate`` to show what arrived upstream.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeGuard

import paho.mqtt.client as mqtt

from edge.config.device import UplinkConfig, broker_problem
from edge.errors import BrokerRefused, UplinkError
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


class Sink:
    """Subscribes to ``{prefix}/{device}/#`` and keeps per-stream bookkeeping.

    ``login`` gives the user name, password and TLS files (an ``[uplink]``'s, the broker
    aside). After an outage paho's thread connects again within 5 s and subscribes anew.
    A refused login raises ``BrokerRefused`` from :meth:`start`, with the broker's reason."""

    def __init__(
        self,
        broker: str,
        *,
        prefix: str = "edgeline",
        device: str = "+",
        on_event: Arrival | None = None,
        on_status: Callable[[str, dict[str, Any]], None] | None = None,
        login: UplinkConfig | None = None,
    ) -> None:
        problem = broker_problem(broker)
        if problem:
            raise UplinkError(problem)
        # login: the user name, password and TLS files of an [uplink]; its broker is ignored
        settings = dataclasses.replace(login, broker=broker) if login else UplinkConfig(broker)
        self.broker, self.host, self.port = broker, settings.host, settings.port
        self.tls = settings.tls
        self.topics = [f"{prefix}/{device}/events/#", f"{prefix}/{device}/status"]
        self.on_event = on_event
        self.on_status = on_status
        self.streams: dict[tuple[str, str], StreamState] = {}
        self.malformed = 0
        self._cond = threading.Condition()
        self._subscribed = threading.Event()
        self.refused: str | None = None  # the broker's reason for refusing the login
        self._log_refusals = False  # start() raises the first; later ones are logged
        # A subscriber publishes nothing: the window matters not; its own client id.
        password = read_password(settings)
        self._client = paho_client(settings, "", inflight=20, password=password)
        self._client.reconnect_delay_set(min_delay=1, max_delay=5)  # back soon after an outage
        self._client.on_connect = self._on_connect
        self._client.on_subscribe = self._on_subscribe
        self._client.on_message = self._on_message

    def start(self, timeout: float = 10.0, *, wait: bool = True) -> Sink:
        """Connect and subscribe, returning once the broker acknowledged the subscription.

        With ``wait`` False, return at once and keep trying in the background: a broker
        that is down now (a device booting during an outage) is subscribed to once it is up.
        """
        if not wait:
            self._log_refusals = True
            self._client.connect_async(self.host, self.port, keepalive=30)
            self._client.loop_start()
            return self
        try:
            self._client.connect(self.host, self.port, keepalive=30)
        except OSError as exc:
            raise UplinkError(f"cannot connect to {self.host}:{self.port}: {exc}") from exc
        self._client.loop_start()
        with self._cond:
            self._cond.wait_for(lambda: self._subscribed.is_set() or self.refused, timeout)
        if self.refused:
            self.close()
            raise BrokerRefused(self.refused)
        if not self._subscribed.is_set():
            self.close()
            raise UplinkError(f"no SUBACK from {self.host}:{self.port} within {timeout} s")
        self._log_refusals = True
        return self

    def close(self) -> None:
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
        if rc.is_failure:
            with self._cond:
                self.refused = refused(self.broker, rc)
                self._cond.notify_all()
            if self._log_refusals:
                log.warning("%s", self.refused)
            return
        client.subscribe([(topic, 1) for topic in self.topics])  # every time: resubscribe

    def _on_subscribe(self, client: mqtt.Client, userdata: Any, mid: int, rcs: Any, p: Any) -> None:
        with self._cond:
            self.refused = None
            self._subscribed.set()
            self._cond.notify_all()

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        # Runs on paho's network thread: an exception here would end it, and the sink with
        # it, so a payload that cannot be read (too deeply nested for json, say) is counted
        # as malformed and the sink goes on.
        body = _body(msg.payload)
        if body is None:
            self.malformed += 1
            return
        if msg.topic.endswith("/status"):
            if self.on_status:
                self._tell(self.on_status, msg.topic, body)
            return
        device, stream, seq = body.get("device"), body.get("stream"), body.get("seq")
        if not isinstance(device, str) or not isinstance(stream, str) or not _integer(seq):
            self.malformed += 1
            return
        with self._cond:
            duplicate = self.streams.setdefault((device, stream), StreamState()).add(seq)
            self._cond.notify_all()
        if self.on_event:
            self._tell(self.on_event, msg.topic, body, duplicate)

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


def _integer(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)
