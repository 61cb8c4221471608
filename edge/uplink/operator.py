"""The operator's side of downlink commands: sign one, send it, wait for the device's reply.

``send_command`` is what ``edge command`` does: it subscribes to
``{prefix}/{device}/reply/{name}`` first (so the reply cannot be missed), publishes the
signed command on ``{prefix}/{device}/cmd/{name}`` at QoS 1, and returns the reply whose
``id`` is the command's. paho-mqtt's thread hands the reply over through a condition; the
client is always disconnected in ``finally``.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any

import paho.mqtt.client as mqtt

from edge.config.device import UplinkConfig
from edge.errors import BrokerRefused, UplinkError
from edge.events import format_ts
from edge.uplink.client import paho_client
from edge.uplink.commands import sign
from edge.uplink.refusal import refused


class NoReply(UplinkError):
    """The device did not answer in time (offline, not subscribed, or the reply was lost)."""


def build_command(
    key: bytes,
    device: str,
    name: str,
    args: Mapping[str, Any],
    *,
    request_id: str | None = None,
    wall: Callable[[], float] = time.time,
) -> tuple[str, bytes]:
    """(id, payload) of a signed command, dated now."""
    request_id = request_id or f"op-{uuid.uuid4().hex[:16]}"
    ts = format_ts(wall())
    sig = sign(key, device, name, request_id, ts, args)
    body = {"id": request_id, "ts": ts, "args": dict(args), "sig": sig}
    return request_id, json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()


def send_command(
    broker: str,
    device: str,
    key: bytes,
    name: str,
    args: Mapping[str, Any] | None = None,
    *,
    prefix: str = "edgeline",
    timeout: float = 10.0,
    request_id: str | None = None,
    username: str | None = None,
    password: str | None = None,
    ca_file: str | None = None,
    cert_file: str | None = None,
    key_file: str | None = None,
    wall: Callable[[], float] = time.time,
) -> dict[str, Any]:
    """Send one signed command and return the device's reply (``{"id", "ok", ...}``).

    ``username`` and ``password`` log in to the broker (the operator's own broker user, which
    may publish to devices' ``cmd/`` topics and read their ``reply/`` topics); ``ca_file``
    verifies an ``mqtts://`` broker, ``cert_file`` and ``key_file`` are a client certificate
    for it. Raises ``BrokerRefused`` with the broker's reason when it refuses the login,
    ``UplinkError`` when it cannot be reached, ``NoReply`` when the device does not answer
    within ``timeout`` seconds. ``wall`` dates the command (the device's clock judges it)."""
    settings = UplinkConfig(
        broker=broker, username=username, ca_file=ca_file, cert_file=cert_file, key_file=key_file
    )
    request_id, payload = build_command(
        key, device, name, args or {}, request_id=request_id, wall=wall
    )
    reply_topic = f"{prefix}/{device}/reply/{name}"
    cond = threading.Condition()
    state: dict[str, Any] = {"subscribed": False, "reply": None, "failure": None}

    def on_connect(client: mqtt.Client, userdata: Any, flags: Any, reason: Any, p: Any) -> None:
        if reason.is_failure:
            with cond:
                state["failure"] = BrokerRefused(refused(broker, reason))
                cond.notify_all()
            return
        client.subscribe(reply_topic, qos=1)

    def on_subscribe(client: mqtt.Client, userdata: Any, mid: int, codes: Any, p: Any) -> None:
        with cond:
            failed = [code for code in codes if code.is_failure]
            if failed:
                state["failure"] = f"the broker refused the subscription to {reply_topic}"
            state["subscribed"] = True
            cond.notify_all()

    def on_message(client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        try:
            body = json.loads(message.payload)
        except ValueError:
            return  # not a reply of ours
        if isinstance(body, dict) and body.get("id") == request_id:
            with cond:
                state["reply"] = body
                cond.notify_all()

    client_id = f"edgeline-operator-{uuid.uuid4().hex[:8]}"
    client = paho_client(settings, client_id, inflight=1, password=password)
    client.on_connect = on_connect
    client.on_subscribe = on_subscribe
    client.on_message = on_message
    deadline = time.monotonic() + timeout
    try:
        client.connect(settings.host, settings.port, keepalive=30)
    except (OSError, ValueError) as exc:
        raise UplinkError(f"cannot connect to {settings.host}:{settings.port}: {exc}") from exc
    client.loop_start()
    try:
        with cond:
            cond.wait_for(
                lambda: state["subscribed"] or state["failure"],
                max(0.0, deadline - time.monotonic()),
            )
            failure = state["failure"]
            if isinstance(failure, UplinkError):
                raise failure
            if failure:
                raise UplinkError(str(failure))
            if not state["subscribed"]:
                raise NoReply(f"no answer from the broker {broker} within {timeout:g} s")
        client.publish(f"{prefix}/{device}/cmd/{name}", payload, qos=1)
        with cond:
            cond.wait_for(lambda: state["reply"] is not None, max(0.0, deadline - time.monotonic()))
            reply: dict[str, Any] | None = state["reply"]
        if reply is None:
            raise NoReply(f"no reply from device {device} to {name} within {timeout:g} s")
        return reply
    finally:
        client.disconnect()
        client.loop_stop()
