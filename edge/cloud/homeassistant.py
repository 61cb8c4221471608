"""``edge homeassistant bridge``: Home Assistant's switches, sent to devices as signed commands.

Home Assistant publishes plain ``ON`` / ``OFF`` to a switch's ``command_topic``,
``{prefix}/{device}/ha/set/{output}``; a device with ``switches = "bridge"`` does not listen
there (a plain payload proves nothing about who sent it). The bridge does: it turns each
into an ``output`` command ``{"output": ..., "on": true|false}`` signed with the device's
key from ``keys/<device>.key`` (the layout ``edge flash --fleet`` writes) and publishes it on
``{prefix}/{device}/cmd/output``; the device checks it like any command and switches, and
its state document shows Home Assistant the result.

What the bridge adds is narrowing, not proof: whoever may publish on the ``ha/set`` topics
can switch outputs through it, so the broker's ACL must keep those topics to Home
Assistant's user. The key never reaches Home Assistant, and the bridge signs nothing but
``output`` commands: a captured Home Assistant login cannot replay, reload models or read
status. Retained messages on the ``ha/set`` topics are ignored (a command is meant now,
not at every reconnect), as are payloads other than ``ON`` and ``OFF``.

Threads: paho's network thread receives, signs and publishes (signing is one HMAC);
``start``, ``close`` and ``wait`` are the owner's. The client is disconnected in ``close``.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt

from edge.config.command_key import CommandKeyError, read_key_file
from edge.config.device import UplinkConfig
from edge.errors import BrokerRefused, UplinkError
from edge.uplink.client import paho_client, read_password
from edge.uplink.commands import shown
from edge.uplink.homeassistant import MAX_SWITCH_PAYLOAD, switch_command, switch_target
from edge.uplink.operator import build_command
from edge.uplink.refusal import refused

log = logging.getLogger(__name__)

COMMAND = "output"
INFLIGHT = 20  # signed commands awaiting the broker's PUBACK
PENDING = 1024  # requests remembered until their reply: the oldest are forgotten


@dataclass
class BridgeStats:
    """What the bridge did (paho's thread writes, anyone reads)."""

    sent: int = 0  # signed commands published
    ignored: int = 0  # not ON or OFF, retained, or not a switch topic
    answered: int = 0  # replies ok
    refused: int = 0  # replies not ok
    no_key: set[str] = field(default_factory=set)  # devices with no usable key file


class SwitchBridge:
    """Listens on ``{prefix}/+/ha/set/+`` and sends each ``ON``/``OFF`` on as a signed
    ``output`` command to the device; logs the devices' replies."""

    def __init__(
        self,
        settings: UplinkConfig,
        keys: Path,
        *,
        prefix: str = "edgeline",
        client_id: str | None = None,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.keys = keys
        self.prefix = prefix
        self.wall = wall
        self.stats = BridgeStats()
        self._client_id = client_id or f"edgeline-ha-bridge-{uuid.uuid4().hex[:8]}"
        self._client: mqtt.Client | None = None
        self._subscribed = threading.Event()
        self._failure: UplinkError | None = None
        self._changed = threading.Condition()
        self._pending: OrderedDict[str, str] = OrderedDict()  # request id -> device, sent

    # -- the owner's thread ---------------------------------------------------------------

    def start(self, timeout: float = 10.0) -> SwitchBridge:
        """Connect and subscribe; raises ``BrokerRefused`` or ``UplinkError`` when the
        broker cannot be reached or refuses the login within ``timeout``."""
        password = read_password(self.settings)
        client = paho_client(self.settings, self._client_id, inflight=INFLIGHT, password=password)
        client.on_connect = self._on_connect
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        client.reconnect_delay_set(min_delay=1, max_delay=30)
        self._client = client
        try:
            client.connect(self.settings.host, self.settings.port, keepalive=30)
        except (OSError, ValueError) as exc:
            raise UplinkError(f"cannot connect to {self.settings.url}: {exc}") from exc
        client.loop_start()  # reconnects by itself after a loss, and subscribes again
        with self._changed:
            self._changed.wait_for(lambda: self._subscribed.is_set() or self._failure, timeout)
        if self._failure is not None or not self._subscribed.is_set():
            failure = self._failure or UplinkError(
                f"no answer from the broker {self.settings.url} within {timeout:g} s"
            )
            self.close()
            raise failure
        return self

    def close(self) -> None:
        """Disconnect and stop paho's thread. Idempotent."""
        client, self._client = self._client, None
        if client is not None:
            client.disconnect()
            client.loop_stop()

    def __enter__(self) -> SwitchBridge:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- paho's thread --------------------------------------------------------------------

    def _on_connect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any
    ) -> None:
        if reason.is_failure:
            with self._changed:
                self._failure = BrokerRefused(refused(self.settings.url, reason))
                self._changed.notify_all()
            return
        client.subscribe(
            [(f"{self.prefix}/+/ha/set/+", 1), (f"{self.prefix}/+/reply/{COMMAND}", 1)]
        )

    def _on_subscribe(
        self, client: mqtt.Client, userdata: Any, mid: int, codes: Any, props: Any
    ) -> None:
        with self._changed:
            failed = [code for code in codes if code.is_failure]
            if failed:
                self._failure = UplinkError(
                    f"{self.settings.url} refused the subscription to {self.prefix}/+/ha/set/+"
                )
            else:
                self._subscribed.set()
            self._changed.notify_all()

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        try:
            topic = message.topic
        except UnicodeDecodeError:
            self.stats.ignored += 1
            return
        if topic.endswith(f"/reply/{COMMAND}"):
            self._reply(bytes(message.payload))
            return
        target = switch_target(self.prefix, topic)
        payload = message.payload
        on = switch_command(payload) if len(payload) <= MAX_SWITCH_PAYLOAD else None
        if target is None or on is None or message.retain:
            self.stats.ignored += 1
            log.warning("ignored %r on %s (expected ON or OFF, not retained)",
                        shown(bytes(payload[:MAX_SWITCH_PAYLOAD]), 20), shown(topic))  # fmt: skip
            return
        device, output = target
        key = self._key(device)
        if key is None:
            return
        request_id, command = build_command(
            key, device, COMMAND, {"output": output, "on": on}, wall=self.wall
        )
        with self._changed:
            self._pending[request_id] = device
            while len(self._pending) > PENDING:
                self._pending.popitem(last=False)
        client.publish(f"{self.prefix}/{device}/cmd/{COMMAND}", command, qos=1)
        self.stats.sent += 1
        log.info("%s %s: %s (%s)", device, output, "ON" if on else "OFF", request_id)
        with self._changed:
            self._changed.notify_all()

    def _key(self, device: str) -> bytes | None:
        """The device's command key, read each time (a rotated key is picked up at once)."""
        path = self.keys / f"{device}.key"
        try:
            return read_key_file(path)
        except (CommandKeyError, OSError) as exc:
            if device not in self.stats.no_key:
                log.warning("cannot switch %s's outputs: %s", shown(device), exc)
            self.stats.no_key.add(device)
            return None

    def _reply(self, payload: bytes) -> None:
        try:
            body = json.loads(payload)
        except ValueError:
            return
        request_id = body.get("id") if isinstance(body, dict) else None
        with self._changed:
            device = self._pending.pop(request_id, None) if isinstance(request_id, str) else None
        if device is None:
            return  # not one of ours (another operator's, or forgotten)
        if body.get("ok") is True:
            self.stats.answered += 1
        else:
            self.stats.refused += 1
            log.warning("%s refused %s: %s", shown(device), shown(body.get("id")),
                        shown(body.get("error")))  # fmt: skip
        with self._changed:
            self._changed.notify_all()

    def wait(self, predicate: Callable[[BridgeStats], bool], timeout: float) -> bool:
        """Wait (real time) until ``predicate(stats)`` holds; whether it did."""
        with self._changed:
            return self._changed.wait_for(lambda: predicate(self.stats), timeout)
