"""The uplink: sends the outbox to an MQTT broker, QoS 1, within an in-flight window.

paho-mqtt's threads and callbacks are bridged here (its network loop in
:mod:`~edge.uplink.network`); no paho type leaves this module. Each connection gets a fresh
paho client, so nothing paho queued for a dead connection is ever re-sent behind our back:
after every (re)connect, sending resumes from the outbox, whose rows leave only when the
broker's PUBACK arrives. Two threads: the link thread connects (to the broker
:mod:`~edge.uplink.failover` says, when ``broker`` lists several), does the connection's
I/O on a selector (:mod:`~edge.uplink.network`, not paho's ``select()``-bound ``loop()``)
and backs off with jitter between attempts; the sender thread claims events from the
outbox while the window has room. Only the link thread touches the socket: publish() from
other threads queues the packet and wakes its loop (two writers on one TLS connection
corrupt it).

The uplink talks to the rest of the runtime through the delivery loop only
(:class:`Acknowledgements`): it is told what was stored (``stored``), it says what the
broker acknowledged, and it keeps the seqs it has claimed and not yet had acknowledged
(``holding``), which eviction spares. Those it published on a connection that died before
their PUBACK came are in doubt (the broker may have them): they stay held until a PUBACK
on a later connection settles them, so no eviction report names an event the broker got.
"""

from __future__ import annotations

import contextlib
import json
import logging
import random
import socket
import ssl
import threading
from collections import deque
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import paho.mqtt.client as mqtt
from paho.mqtt.enums import MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from edge.clock import Clock
from edge.config.device import UplinkConfig
from edge.events import PRIORITY_CRITICAL, Event, format_ts
from edge.outbox.eviction import evicted_seqs
from edge.outbox.store import Outbox
from edge.uplink.client import paho_client, read_password
from edge.uplink.event_client import EventClient, Message
from edge.uplink.expiry import expiry, expiry_seconds
from edge.uplink.failover import Failover
from edge.uplink.network import NetworkLoop
from edge.uplink.pacing import Backoff, RateLimit
from edge.uplink.refusal import refused

log = logging.getLogger(__name__)

PREFETCH = 512  # events claimed from the outbox at a time
# The sender claims again once fewer are buffered: the window never waits for SQLite.
LOW_WATER = PREFETCH // 2
# Events committed while the uplink has sent all else go to its buffer straight from the
# commit (no claim), up to this many buffered; past it, the sender claims them.
DIRECT_MAX = 2 * PREFETCH

LinkState = Literal["connecting", "online", "offline", "closed"]


@dataclass
class UplinkStats:
    state: LinkState = "connecting"
    broker: str = ""  # the URL connected to, or being tried
    connects: int = 0
    failovers: int = 0  # moves to another broker: to a fallback, or back to the first
    published: int = 0
    acked: int = 0
    rejected: int = 0
    last_error: str = ""


PACKET_HEADROOM = 4096  # bytes of topic and properties allowed beside a command's payload
LEAVE_WAIT = 2.0  # seconds a fallback's in-flight events may take to be acknowledged on leaving


class CommandSink(Protocol):
    """Where downlink commands go (:class:`edge.uplink.commands.Commands`)."""

    @property
    def max_size(self) -> int:
        """The largest payload accepted: bigger ones are dropped before anything is queued."""

    def received(
        self, name: str, payload: bytes, response_topic: str | None, correlation: bytes | None
    ) -> None:
        """A command arrived (link thread): queue it, never block."""

    def too_big(self, name: str, size: int) -> None:
        """A payload over ``max_size`` arrived and was dropped unread (link thread)."""


# Publishes one retained message (QoS 1); returns whether the broker has acknowledged it
# yet (ask later), or None when it was not sent (offline).
RetainedPublisher = Callable[[str, bytes], "Callable[[], bool] | None"]


class Companion(Protocol):
    """What rides on the device's connection beside its events and commands (Home
    Assistant discovery, :class:`edge.runtime.homeassistant.HomeAssistant`): retained
    messages to publish after each connect, and topics to listen to."""

    @property
    def subscriptions(self) -> Sequence[str]:
        """Topic filters subscribed to on each connect (QoS 1)."""

    @property
    def max_size(self) -> int:
        """The largest payload taken on those topics: bigger ones are dropped unread."""

    @property
    def burst(self) -> int:
        """How many messages it publishes at once after a connect, at most: paho's window
        makes room for them, so that they never hold events back."""

    def connected(self, publish: RetainedPublisher) -> None:
        """The device is online again, its birth published (link thread, outside paho's
        callbacks, so ``publish`` may be called here and from the companion's threads)."""

    def received(self, topic: str, payload: bytes) -> None:
        """A live (not retained) message on one of ``subscriptions`` (link thread, inside
        paho's callback): hand it on, never block, never wait for a lock held while
        publishing."""


class Acknowledgements(Protocol):
    """Where the broker's acknowledgements go: the delivery loop
    (:class:`edge.runtime.delivery.Delivery`)."""

    def acknowledged(self, seqs: Collection[int]) -> None:
        """The broker has these: delete them (link thread, the uplink's lock held)."""

    def undeleted(self) -> set[int]:
        """Acknowledged, deletion not yet committed: never claim them again (sender)."""


class _Session:
    """One connection: its broker, its paho client and the events it has in flight
    (mid -> seq)."""

    def __init__(self, url: str, client: EventClient) -> None:
        self.url = url
        self.client = client
        self.online = False  # CONNACK received and not yet lost
        self.announced = False  # the companion was told this session is online
        self.connected = False  # CONNACK was received at some point (backoff resets)
        self.lost = False
        self.inflight: dict[int, int] = {}
        self.early: set[int] = set()  # PUBACKs that beat publish() returning the mid
        self.control: set[int] = set()  # mids of status messages, not events
        self.cursor: dict[int, int] = {}  # priority -> last seq claimed in this session
        self.buffer: deque[Event] = deque()  # claimed, not yet published (sending order)
        self.preempt = False  # a more urgent event than the buffer's tail was stored
        self.refused = False  # the broker refused an event in this session
        self.leaving: float | None = None  # failing back: when to stop waiting for PUBACKs
        self.left = False  # disconnected on purpose, for the preferred broker


class Uplink:
    """Sends what the outbox holds, in priority then seq order, within the in-flight window.

    Threads: ``edgeline-link`` connects, runs the network loop (every socket write and
    every paho callback: CONNACK, a downlink command) and backs off between attempts;
    after each pass of the loop it books the PUBACKs that pass read and refills the
    window from the buffer, in one batch each (one lock round, one ``acknowledged`` call,
    one write). ``edgeline-sender`` claims events from the outbox into the buffer ahead of
    the window. ``stored`` runs on the recorder's thread: when everything else has been
    claimed it puts the new events in the buffer itself, so a live event is never read
    back from SQLite. ``holding`` runs on the recorder's thread too (with the outbox
    locked), ``reply`` on the command worker, ``publish_retained`` on any thread (a
    companion's: Home Assistant discovery); ``start``, ``close`` and ``abort`` on the
    runtime's. One condition (``_lock``) guards the session state; the uplink never calls
    the outbox while holding it (the outbox calls in, under its own lock: lock order
    outbox, then uplink).
    """

    def __init__(
        self,
        settings: UplinkConfig,
        *,
        device: str,
        outbox: Outbox,
        clock: Clock,
        delivery: Acknowledgements,
        birth: Mapping[str, Any] | None = None,
        rng: random.Random | None = None,
        commands: CommandSink | None = None,
    ) -> None:
        self.settings = settings
        self.commands = commands  # where downlink commands go
        self.companion: Companion | None = None  # what else rides on the connection
        self.device = device
        self.outbox = outbox
        self.clock = clock
        self.delivery = delivery
        self.birth = dict(birth or {})
        self.prefix = f"{settings.topic_prefix}/{device}"
        self.status_topic = f"{self.prefix}/status"
        self.stats = UplinkStats()
        self.backoff = Backoff(settings.backoff_min, settings.backoff_max, rng)
        self.failover = Failover(settings, clock)  # the link thread's alone
        self._password = read_password(settings)
        self._lock = threading.Condition()
        self._session: _Session | None = None
        # Claimed in this session, not yet acknowledged: buffered or in flight. Eviction
        # spares them (``holding``); a session's end frees them.
        self._holding: set[int] = set()
        # Published on a connection that died before their PUBACK: the broker may have
        # them, so eviction spares them too, until a later PUBACK settles them. At most a
        # window's worth per connection lost; they are the first claimed on the next one.
        self._in_doubt: set[int] = set()
        # Bumped whenever the outbox may hold unclaimed events (commit, reconnect); the
        # sender sleeps only when a claim came up short at the current generation.
        self._wanted = 1
        self._claimed = 0
        self._urgent: int | None = None  # most urgent priority committed since a claim began
        self._evicted: set[int] | None = None  # evicted while a claim ran (None: no claim)
        self._stop = threading.Event()
        self._closing = False
        self._refused = False  # the broker refused this connection (its reason in last_error)
        self._aborting = False
        self._threads: list[threading.Thread] = []
        self._network: NetworkLoop | None = None  # the link thread's: woken to publish
        self._topics: dict[tuple[str, str], bytes] = {}  # (kind, sensor) -> topic
        # [uplink] max_rate: a metered link's pace; critical events do not wait for it.
        self._limit = RateLimit(settings.max_rate, clock) if settings.max_rate > 0 else None

    # -- lifecycle ---------------------------------------------------------------------

    def carry(self, companion: Companion) -> None:
        """Carry ``companion``'s messages and subscriptions too (before ``start``)."""
        self.companion = companion

    def start(self) -> None:
        for name, target in (("link", self._link), ("sender", self._send)):
            thread = threading.Thread(target=target, name=f"edgeline-{name}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def close(self, timeout: float = 5.0) -> None:
        """Publish ``offline`` (retained) if connected, disconnect cleanly, stop. Idempotent."""
        with self._lock:
            if self._closing:
                return
            self._closing = True
            session = self._session
            self._lock.notify_all()
        try:
            if session is not None and session.online:
                info = session.client.publish(
                    self.status_topic, self._status("offline"), qos=1, retain=True
                )
                info.wait_for_publish(timeout)
                session.client.disconnect()  # the link thread writes it and ends the session
                self._threads[0].join(timeout)
        except (RuntimeError, ValueError) as exc:  # the connection died under us
            log.warning("could not publish offline on close: %s", exc)
        finally:
            self._stop.set()
            for thread in self._threads:
                thread.join(timeout)
            self._threads.clear()
            self.stats.state = "closed"

    def abort(self) -> None:
        """Drop the connection without DISCONNECT (a power cut): the broker publishes the
        last will. Idempotent."""
        with self._lock:
            self._closing = True
            self._aborting = True
            session = self._session
            self._lock.notify_all()
        if session is not None:
            sock: Any = session.client.socket()
            if isinstance(sock, socket.socket | ssl.SSLSocket):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)  # the link thread sees the loss at once
        self._stop.set()
        for thread in self._threads:
            thread.join(5.0)
        self._threads.clear()
        self.stats.state = "closed"

    @property
    def online(self) -> bool:
        session = self._session
        return session is not None and session.online

    def stored(self, events: Sequence[Event], deleted: bool = False) -> None:
        """New events are in the outbox, and/or acknowledged ones were ``deleted``: the
        sender claims again (recorder thread, through the delivery loop)."""
        with self._lock:
            if deleted:
                self._lock.notify_all()  # no longer excluded from claims: the sender goes on
            if events:
                self._wanted += 1
                urgent = min(event.priority for event in events)
                self._urgent = urgent if self._urgent is None else min(self._urgent, urgent)
                session = self._session
                # Claimed (or being claimed), then evicted: do not send them.
                gone = evicted_seqs(events) if urgent <= 1 else set()
                if self._evicted is not None:
                    self._evicted |= gone
                if session and session.buffer and gone:
                    session.buffer = deque(e for e in session.buffer if e.seq not in gone)
                if session and self._take_direct(session, events, gone):
                    self._wake()
                    return
                if session and session.buffer:
                    session.preempt |= urgent < session.buffer[-1].priority
                self._lock.notify_all()

    def _take_direct(self, session: _Session, events: Sequence[Event], gone: set[int]) -> bool:
        """Put a commit's events straight into the buffer, in sending order, when the
        outbox holds nothing else unclaimed (lock held; True when taken). Otherwise the
        sender claims them from the outbox, as after a reconnect or under a backlog."""
        if (
            not session.online
            or session.preempt
            or self._evicted is not None  # a claim is running: it may return them too
            or self._wanted != self._claimed + 1  # this commit's bump is the only news
            or len(session.buffer) + len(events) > DIRECT_MAX
        ):
            return False
        fresh = sorted((e for e in events if e.seq not in gone), key=_sending_order)
        for event in fresh:
            session.cursor[event.priority] = max(session.cursor.get(event.priority, 0), event.seq)
        self._enqueue(session, fresh)
        self._holding.update(e.seq for e in fresh)
        self._claimed = self._wanted
        return True

    @staticmethod
    def _enqueue(session: _Session, fresh: list[Event]) -> None:
        """Add events (in sending order) to the buffer, keeping it in sending order: behind
        it, or merged in when one is more urgent than its tail (lock held)."""
        buffer = session.buffer
        if buffer and fresh and _sending_order(fresh[0]) < _sending_order(buffer[-1]):
            session.buffer = deque(sorted((*buffer, *fresh), key=_sending_order))
        else:
            buffer.extend(fresh)

    def in_flight(self) -> int:
        session = self._session
        return len(session.inflight) if session else 0

    def holding(self) -> set[int]:
        """Seqs claimed and not yet acknowledged, and those in doubt (published on a lost
        connection, not acknowledged since): eviction must spare them."""
        with self._lock:
            return self._holding | self._in_doubt

    def _hold(self, session: _Session, seqs: Sequence[int]) -> None:
        """A claim's seqs, told by the outbox before it unlocks (no eviction in between)."""
        with self._lock:
            if self._session is session:  # else the session ended: nothing is held for it
                self._holding.update(seqs)

    # -- link thread -------------------------------------------------------------------

    def _link(self) -> None:
        network = NetworkLoop()  # this thread's: it alone does the connections' I/O
        self._network = network
        try:
            self._connect_until_stopped(network)
        finally:
            self._network = None
            network.close()

    def _connect_until_stopped(self, network: NetworkLoop) -> None:
        failover = self.failover
        while not self._stop.is_set() and not self._closing:
            session: _Session | None = None
            try:
                session = self._connection(failover.current, network)
            except Exception as exc:  # e.g. unreadable TLS files at a reconnect
                log.exception("uplink connection failed")
                self.stats.last_error = f"{type(exc).__name__}: {exc}"
            if self._stop.is_set() or self._closing:
                break
            error = self.stats.last_error or "closed"
            # A refused login says why in words; anything else is a connection lost.
            reason = error if self._refused else f"connection lost: {error}"
            if session is not None and session.left:  # for the preferred broker, at once
                failover.go_back()
                self.stats.failovers += 1
                log.info("left %s: %s is back", session.url, failover.current.url)
            elif session is not None and session.connected:
                self._offline(reason)  # the same broker again, after the backoff
            else:  # never came online: the next broker
                tried = failover.current
                round_failed = failover.failed()
                if failover.current is not tried:
                    self.stats.failovers += 1
                    reason = f"{reason}; next: {failover.current.url}"
                if round_failed:
                    self._offline(reason)  # every broker failed in a row: back off
                else:
                    log.warning("%s, at once", reason)

    def _connection(self, target: UplinkConfig, network: NetworkLoop) -> _Session:
        """One connection to ``target``'s broker, from connect to loss (or close)."""
        session = _Session(target.url, self._client(target, network))
        self.stats.state = "connecting"
        self._refused = False
        self.stats.broker = target.url
        try:
            session.client.connect(
                target.host,
                target.port,
                self.settings.keepalive,
                properties=self._connect_properties(),
            )
        except (OSError, ssl.SSLError, ValueError) as exc:
            self.stats.last_error = f"cannot connect to {target.url}: {exc}"
            return session
        with self._lock:
            self._session = session
        try:
            while not session.lost and not self._stop.is_set():  # close() disconnects
                rc = network.run_once(session.client, timeout=self._pause(session))
                if rc == MQTTErrorCode.MQTT_ERR_SUCCESS:
                    self._book(session)
                    rc = self._pump(session)
                if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                    session.lost = True
                    if not self._closing and not self._refused:  # else: the reason given
                        self.stats.last_error = mqtt.error_string(rc)
                elif session.online and not session.announced:
                    session.announced = True
                    self._announce()
                elif self.failover.on_fallback and session.connected:
                    self._fail_back(session)
        finally:
            with self._lock:
                self._session = None
                self._wanted += 1  # whatever was in flight is claimed again next time
                self._in_doubt.update(session.inflight.values())  # the broker may have them
                self._holding.clear()  # unsent claims may be evicted again
            if not session.lost:  # stopped mid-connection: do not leak the socket
                if self._aborting:  # a power cut says nothing: the broker sends the will
                    sock: Any = session.client.socket()
                    if isinstance(sock, socket.socket | ssl.SSLSocket):
                        with contextlib.suppress(OSError):
                            sock.close()
                else:
                    session.client.disconnect()
                    network.run_once(session.client, timeout=0.1)
            network.forget()
        if session.connected and not session.refused:
            self.backoff.reset()
        return session

    def _fail_back(self, session: _Session) -> None:
        """On a fallback broker (link thread, each turn of the loop): once the preferred
        broker accepts a probe, stop sending here, wait a little for the PUBACKs of what is
        in flight, publish ``offline`` (retained: this broker's subscribers must not think
        the device is still here) and disconnect. What is still unacknowledged then goes to
        the preferred broker, claimed again from the outbox."""
        if session.left:
            return
        if session.leaving is None:
            if self._closing or not self.failover.preferred_back():
                return
            with self._lock:
                session.online = False  # the sender stops; PUBACKs are still booked
                session.leaving = self.clock.monotonic() + LEAVE_WAIT
            log.info("%s accepts connections again: leaving %s", self.settings.url, session.url)
        with self._lock:
            if session.inflight and self.clock.monotonic() < session.leaving:
                return
            session.left = True
        info = session.client.publish(
            self.status_topic, self._status("offline"), qos=1, retain=True
        )
        with self._lock:  # its PUBACK is no event's
            if info.mid in session.early:
                session.early.discard(info.mid)
            else:
                session.control.add(info.mid)
        session.client.disconnect()  # written by the next loop(); on_disconnect ends it

    def _announce(self) -> None:
        """Tell the companion the device is online (link thread, between two turns of
        paho's loop: no paho lock is held, so it may publish and take its own locks)."""
        if self.companion is None:
            return
        try:
            self.companion.connected(self.publish_retained)
        except Exception:  # its bug must not take the link down
            log.exception("publishing the retained messages of %s failed", self.companion)

    def publish_retained(self, topic: str, payload: bytes) -> Callable[[], bool] | None:
        """Publish a retained message at QoS 1, from any thread (paho queues it, the link
        thread writes it). Returns a function that says whether the broker has acknowledged
        it yet, or None when offline (the next connect's ``connected`` sends it again)."""
        with self._lock:
            session = self._session
        if session is None or not session.online:
            return None
        info = session.client.publish(topic, payload, qos=1, retain=True)
        if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            return None
        self._control(session, info.mid)
        return info.is_published

    def _control(self, session: _Session, mid: int) -> None:
        """Book a message that is no event (a reply, a retained message): its PUBACK must
        not be taken for an event's."""
        with self._lock:
            if mid in session.early:
                session.early.discard(mid)
            else:
                session.control.add(mid)

    def _offline(self, reason: str) -> None:
        self.stats.state = "offline"
        delay = self.backoff.next_delay()
        log.warning("%s; retrying in %.1f s", reason, delay)
        self.clock.wait(self._stop, self.clock.monotonic() + delay)

    def _client(self, target: UplinkConfig, network: NetworkLoop) -> EventClient:
        """A fresh paho client for one connection to ``target``'s broker: paho binds a
        client to its host (``reconnect()`` goes back to the last one), TLS is set once per
        client, and a new client re-sends nothing paho queued for a dead connection."""
        s = self.settings
        client_id = s.client_id or f"edgeline-{self.device}"
        # Our window is the limit; paho must never hold messages back on its own.
        inflight = s.inflight + 2  # + status messages
        if self.companion is not None:  # + what it publishes after each connect
            inflight += self.companion.burst
        client = paho_client(
            target, client_id, inflight=inflight, password=self._password, kind=EventClient
        )
        assert isinstance(client, EventClient)
        client.will_set(self.status_topic, self._status("offline"), qos=1, retain=True)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        if self.commands is not None or self.companion is not None:
            client.on_message = self._on_message
        # publish() on another thread only queues the packet and wakes the link thread's
        # loop, which does all the writing.
        network.attach(client)
        client.suppress_exceptions = True  # a callback bug is logged, not a dead link thread
        return client

    def _connect_properties(self) -> Properties | None:
        """MQTT 5: ask the broker never to send a packet bigger than a command may be (it
        discards one instead), so a flood of huge messages never reaches this process."""
        if self.settings.protocol != "5" or self.commands is None:
            return None
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.MaximumPacketSize = self.commands.max_size + PACKET_HEADROOM
        return props

    def _status(self, state: str, extra: Mapping[str, Any] | None = None) -> str:
        body = {"state": state, "device": self.device, "ts": format_ts(self.clock.wall())}
        if state == "online":
            body.update(self.birth)
            body.update(extra or {})
        return json.dumps(body, separators=(",", ":"))

    def publish_status(self, extra: Mapping[str, Any]) -> bool:
        """Publish the retained ``online`` status again, the birth's fields and ``extra``
        (the heartbeat's ``health``): it replaces the birth as the retained status, so it
        carries all of it. QoS 1, not stored: a lost one is superseded by the next.

        Safe from any thread (paho queues the packet, the link thread writes it); published
        outside the lock, as ``publish_retained`` does, since paho's thread takes the lock in
        its callbacks while holding its own. False when offline or failing back."""
        with self._lock:
            session = self._session
            if session is None or not session.online or self._closing:
                return False
        info = session.client.publish(
            self.status_topic, self._status("online", extra), qos=1, retain=True
        )
        if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            return False
        self._control(session, info.mid)
        return True

    # -- paho callbacks (run on the link thread) ----------------------------------------

    def _on_connect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any
    ) -> None:
        with self._lock:
            session = self._session
            if session is None or session.client is not client or self._closing:
                return
            if reason.is_failure:
                session.lost = True
                self._refused = True
                self.stats.last_error = refused(session.url, reason)
                return
            info = client.publish(self.status_topic, self._status("online"), qos=1, retain=True)
            session.control.add(info.mid)
            if self.commands is not None:
                client.subscribe(f"{self.prefix}/cmd/+", qos=1)
            for topic in self.companion.subscriptions if self.companion is not None else ():
                client.subscribe(topic, qos=1)
            session.online = session.connected = True
            self.stats.connects += 1
            self.stats.state = "online"
            self._wanted += 1
            self._lock.notify_all()
        self.failover.online()
        log.info("connected to %s", session.url)

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        """A downlink command: hand it over at once (the handler only queues it). Its size
        is checked first, before anything is copied or queued."""
        payload = message.payload
        companion = self.companion
        if companion is not None and companion.subscriptions:
            try:
                topic = message.topic
            except UnicodeDecodeError:  # not one of the companion's: the commands' rules
                topic = ""
            if topic and any(mqtt.topic_matches_sub(s, topic) for s in companion.subscriptions):
                # Too big: dropped unread. Retained: it would act again on every reconnect.
                if len(payload) <= companion.max_size and not message.retain:
                    companion.received(topic, bytes(payload))
                return
        commands = self.commands
        if commands is None:
            return
        try:
            name = message.topic.rsplit("/", 1)[-1]
        except UnicodeDecodeError:  # brokers refuse such topics; should one not: refused
            name = "?"  # not a command name: counted, never answered
        if len(payload) > commands.max_size:
            commands.too_big(name, len(payload))  # dropped unread: counted, logged
            return
        props = message.properties
        response = getattr(props, "ResponseTopic", None) if props is not None else None
        correlation = getattr(props, "CorrelationData", None) if props is not None else None
        commands.received(name, bytes(payload), response, correlation)

    def reply(
        self, name: str, payload: bytes, response_topic: str | None, correlation: bytes | None
    ) -> bool:
        """Publish a command's reply (QoS 1, not stored: a lost reply is asked for again).

        Safe from any thread: paho queues the packet, the link thread writes it. Goes to
        ``{prefix}/reply/{name}``, and to an MQTT 5 request's response topic with its
        correlation data. False when offline."""
        with self._lock:
            session = self._session
        if session is None or not session.online:
            return False
        sends: list[tuple[str, Properties | None]] = [(f"{self.prefix}/reply/{name}", None)]
        if response_topic and self.settings.protocol == "5":
            response = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
            if correlation is not None:
                response.CorrelationData = correlation
            sends.append((response_topic, response))
        sent = True
        for topic, props in sends:
            info = session.client.publish(topic, payload, qos=1, properties=props)
            if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                sent = False
                continue
            self._control(session, info.mid)  # its PUBACK is no event's
        return sent

    def _on_disconnect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any
    ) -> None:
        with self._lock:
            session = self._session
            if session is not None and session.client is client:
                session.online = False
                session.lost = True
                quiet = self._stop.is_set() or self._closing or session.left or self._refused
                if not quiet:
                    self.stats.last_error = f"disconnected: {reason}"

    def _on_publish(
        self, client: mqtt.Client, userdata: Any, mid: int, reason: Any, props: Any
    ) -> None:
        """paho's PUBACK (or PUBCOMP): a status message's or a reply's, or a QoS 2 event's
        (QoS 1 events' PUBACKs are booked in batches, by ``_book``)."""
        with self._lock:
            session = self._session
            if session is None or session.client is not client:
                return
            if mid in session.control:
                session.control.discard(mid)
                return
            seq = session.inflight.pop(mid, None)
            if seq is None:
                session.early.add(mid)
                return
            if reason is not None and reason.is_failure:
                self._settle(session, [], [(seq, str(reason))])
            else:
                self._settle(session, [seq], [])

    def _book(self, session: _Session) -> None:
        """Settle the events' PUBACKs read in this pass of the network loop, all at once
        (link thread)."""
        acks = session.client.take_acks()
        if not acks:
            return
        with self._lock:
            if self._session is not session:
                return
            acked: list[int] = []
            refused: list[tuple[int, str]] = []
            for mid, reason in acks:
                seq = session.inflight.pop(mid, None)
                if seq is None:  # cannot be: booked in flight before it was written
                    continue
                if reason >= 0x80:
                    refused.append((seq, str(ReasonCode(PacketTypes.PUBACK, identifier=reason))))
                else:
                    acked.append(seq)
            self._settle(session, acked, refused)

    def _settle(self, session: _Session, acked: list[int], refused: list[tuple[int, str]]) -> None:
        """Book PUBACKs (lock held): ``acked`` go to the delivery loop; ``refused`` (seq,
        the broker's reason) stay in the outbox, held until the session ends."""
        for seq, reason in refused:
            # An MQTT 5 broker refused it (quota, authorisation): the event stays in the
            # outbox and goes again on the next connection; the others carry on meanwhile.
            self.stats.rejected += 1
            self.stats.last_error = f"broker refused event {seq}: {reason}"
            log.warning("%s; it stays in the outbox", self.stats.last_error)
            session.refused = True  # brokers often drop the link too: back off, not hammer
        if acked:
            # Acknowledged before it stops being held: eviction's ``spared`` reads
            # ``holding`` first, then the acknowledged set, so a seq is never in neither.
            self.delivery.acknowledged(acked)
            self._holding.difference_update(acked)
            self._in_doubt.difference_update(acked)
            self.stats.acked += len(acked)
        if self._sender_wanted(session) or self._closing:
            self._lock.notify_all()  # the sender refills or rewinds; close() waits

    # -- sender thread -----------------------------------------------------------------

    def _send(self) -> None:
        while not self._stop.is_set() and not self._closing:
            try:
                self._claim_some()
            except Exception as exc:  # e.g. an I/O error reading the outbox
                log.exception("uplink sender failed; retrying")
                self.stats.last_error = f"{type(exc).__name__}: {exc}"
                self._stop.wait(1.0)

    def _claim_some(self) -> None:
        """Claim the next events from the outbox into the buffer, then wake the link
        thread to publish them."""
        with self._lock:
            self._lock.wait_for(self._ready, timeout=1.0)
            session = self._session
            if self._stop.is_set() or self._closing or not self._ready() or session is None:
                return
            if session.preempt:
                self._rewind(session)
            # Acked but not yet deleted: never send again (the set is one commit's worth).
            exclude = self.delivery.undeleted()
            generation = self._wanted
            self._urgent = None
            self._evicted = set()
        batch: list[Event] | None = None
        try:
            # Claiming ahead of the window keeps SQLite off the per-event path.
            batch = self.outbox.claim(
                PREFETCH, exclude, after=session.cursor, hold=lambda s: self._hold(session, s)
            )
        finally:
            with self._lock:  # one lock round: no commit's direct hand-off comes in between
                gone, self._evicted = self._evicted or set(), None
                if batch is not None:
                    self._buffer_claim(session, batch, gone, generation)
        self._wake()

    def _buffer_claim(
        self, session: _Session, batch: list[Event], gone: set[int], generation: int
    ) -> None:
        """Put a claim's events in the buffer (lock held)."""
        for event in batch:
            session.cursor[event.priority] = event.seq
        self._enqueue(session, [e for e in batch if e.seq not in gone])
        if len(batch) < PREFETCH:
            self._claimed = generation  # all claimed, as of that generation
        # Something more urgent was stored while claiming: it goes first.
        if self._urgent is not None and batch and self._urgent < batch[-1].priority:
            session.preempt = True

    def _ready(self) -> bool:
        """The sender has work (lock held)."""
        if self._stop.is_set() or self._closing:
            return True
        session = self._session
        return session is not None and session.online and self._sender_wanted(session)

    def _sender_wanted(self, session: _Session) -> bool:
        """A rewind is due, or the buffer runs low while the outbox holds more (lock held)."""
        return session.preempt or (
            self._wanted != self._claimed and len(session.buffer) < LOW_WATER
        )

    @staticmethod
    def _rewind(session: _Session) -> None:
        """Put buffered events back (lock held), so a more urgent one goes first."""
        for event in session.buffer:
            if session.cursor.get(event.priority, 0) >= event.seq:
                session.cursor[event.priority] = event.seq - 1
        session.buffer.clear()
        session.preempt = False

    def _wake(self) -> None:
        """Have the link thread publish what the buffer holds (any thread)."""
        network = self._network
        if network is not None:
            network.wake()

    # -- publishing (link thread) -------------------------------------------------------

    def _pump(self, session: _Session) -> MQTTErrorCode:
        """Publish buffered events while the window has room, as one write (link thread,
        after each pass of the network loop, outside paho's callbacks)."""
        batch: list[Event] = []
        with self._lock:
            room = self.settings.inflight - len(session.inflight)
            while (
                room > 0
                and session.buffer
                and session.online
                and not session.preempt
                and not self._closing
                and not self._throttled(session)
            ):
                event = session.buffer.popleft()
                if self._limit is not None and event.priority != PRIORITY_CRITICAL:
                    self._limit.take()
                batch.append(event)
                room -= 1
            if self._sender_wanted(session):
                self._lock.notify_all()
        if not batch:
            return MQTTErrorCode.MQTT_ERR_SUCCESS
        if self.settings.qos != 1:
            for event in batch:  # QoS 2: paho's own exchange (PUBREC, PUBREL, PUBCOMP)
                if not self._publish_one(session, event):
                    break
            return MQTTErrorCode.MQTT_ERR_SUCCESS
        mids = session.client.send_events([self._message(e) for e in batch])
        if mids is None:
            # Connection gone: the events stay in the outbox and go again after reconnect.
            return MQTTErrorCode.MQTT_ERR_SUCCESS
        with self._lock:
            self.stats.published += len(batch)
            session.inflight.update(zip(mids, (e.seq for e in batch), strict=True))
        return session.client.loop_write()  # a socket not writable yet: paho keeps the rest

    def _message(self, event: Event) -> Message:
        key = (event.kind, event.sensor)
        topic = self._topics.get(key)
        if topic is None:
            topic = event.topic(self.settings.topic_prefix, self.device).encode()
            self._topics[key] = topic
        return topic, event.payload.encode(), expiry_seconds(event, self.settings)

    def _throttled(self, session: _Session) -> bool:
        """The next buffered event must wait for ``max_rate`` (lock held)."""
        return (
            self._limit is not None
            and bool(session.buffer)
            and not session.preempt
            and session.buffer[0].priority != PRIORITY_CRITICAL
            and self._limit.delay() > 0
        )

    def _pause(self, session: _Session) -> float:
        """How long the network loop may wait (real seconds): a second, or until the rate
        limit lets the next event go (re-checked often: the clock may be virtual)."""
        with self._lock:
            if self._limit is None or not self._throttled(session):
                return 1.0
            return min(0.02, max(0.001, self._limit.delay()))

    def _publish_one(self, session: _Session, event: Event) -> bool:
        topic = event.topic(self.settings.topic_prefix, self.device)
        props = expiry(event, self.settings)
        info = session.client.publish(topic, event.payload, qos=self.settings.qos, properties=props)
        if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            # Connection gone: the event stays in the outbox and goes again after reconnect.
            return False
        with self._lock:
            self.stats.published += 1
            if info.mid in session.early:
                session.early.discard(info.mid)
                self._settle(session, [event.seq], [])
            else:
                session.inflight[info.mid] = event.seq
        return True


def _sending_order(event: Event) -> tuple[int, int]:
    return event.priority, event.seq
