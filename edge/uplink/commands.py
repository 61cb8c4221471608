"""Downlink commands: ``{prefix}/{device}/cmd/{name}`` in, ``{prefix}/{device}/reply/{name}`` out.

A command is a JSON object::

    {"id": "r-17", "ts": "2026-11-27T10:00:00.000Z", "args": {...}, "sig": "<hex>"}

``sig`` is HMAC-SHA256, keyed with the device's command key, over :func:`signing_text`
(device, name, id, ts and the arguments as canonical JSON), so a command cannot be forged,
sent to another device, renamed or altered. A command older than ``max_age`` seconds (when
the device's clock is synchronised) or whose ``id`` was seen in that time is refused: a
recorded command cannot be replayed. Without a key, commands are refused unless the config
says ``allow_unsigned`` (a lab bench, never a fleet).

The reply, on ``{prefix}/{device}/reply/{name}`` (and, for an MQTT 5 request with a response
topic, there too with its correlation data), is ``{"id", "ok": true, "result": {...}}`` or
``{"id", "ok": false, "error": "..."}``. Every command gets exactly one reply, a refused one
too, unless it cannot be read at all (then it is logged and counted).

The broker's network thread only queues what arrives; one worker thread here checks and runs
each command; what must happen on the sampling thread (swapping a model) is posted there, and
a model file is read on the worker, never on the sampling thread.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import logging
import math
import queue
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from edge.errors import EdgelineError

log = logging.getLogger(__name__)

T = TypeVar("T")
QUEUE = 64  # commands waiting for the worker; beyond it they are refused as busy
SEEN = 4096  # command ids remembered against replay (bounded whatever the rate)
ON_SAMPLER_TIMEOUT = 10.0  # seconds to wait for the sampling thread to take a task
MAX_PAYLOAD = 16_384


class CommandRefused(EdgelineError, ValueError):
    """A command that is not run: malformed, unsigned, forged, stale, replayed, unknown."""


@dataclass(frozen=True)
class Request:
    name: str
    id: str
    ts: str | None
    args: Mapping[str, Any]
    response_topic: str | None = None
    correlation: bytes | None = None


@dataclass(frozen=True)
class Policy:
    """How commands are checked: the key (None: unsigned allowed), and their freshness."""

    key: bytes | None
    max_age: float = 300.0


def canonical(args: Mapping[str, Any]) -> str:
    return json.dumps(args, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def signing_text(
    device: str, name: str, request_id: str, ts: str, args: Mapping[str, Any]
) -> bytes:
    """What ``sig`` covers: one field per line, arguments as canonical JSON."""
    return "\n".join(["edgeline-cmd-v1", device, name, request_id, ts, canonical(args)]).encode()


def sign(
    key: bytes, device: str, name: str, request_id: str, ts: str, args: Mapping[str, Any]
) -> str:
    """The ``sig`` of a command: what a sender (``edge``-side tools, a cloud service) computes."""
    return hmac.new(
        key, signing_text(device, name, request_id, ts, args), hashlib.sha256
    ).hexdigest()


def parse_ts(text: str) -> float:
    """UTC ISO 8601 (``...Z`` or ``+00:00``) to epoch seconds; ValueError if it is not one."""
    stamp = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if stamp.tzinfo is None:
        raise ValueError("a timestamp needs a time zone (end it with Z)")
    return stamp.timestamp()


class Checker:
    """Turns a received payload into a :class:`Request`, or refuses it with the reason."""

    def __init__(self, device: str, policy: Policy) -> None:
        self.device = device
        self.policy = policy
        self._seen: OrderedDict[str, float] = OrderedDict()

    def check(
        self,
        name: str,
        payload: bytes,
        *,
        now: float,
        synced: bool,
        response_topic: str | None = None,
        correlation: bytes | None = None,
    ) -> Request:
        if len(payload) > MAX_PAYLOAD:
            raise CommandRefused(f"a command is at most {MAX_PAYLOAD} bytes, got {len(payload)}")
        try:
            body = json.loads(payload.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            raise CommandRefused(f"not a JSON object: {exc}") from None
        if not isinstance(body, dict):
            raise CommandRefused("not a JSON object")
        unknown = set(body) - {"id", "ts", "args", "sig"}
        if unknown:
            raise CommandRefused(f"unknown field(s) {', '.join(sorted(unknown))}")
        request_id = body.get("id")
        if not isinstance(request_id, str) or not 0 < len(request_id) <= 128:
            raise CommandRefused("id must be a string of 1 to 128 characters")
        args = body.get("args", {})
        if not isinstance(args, dict):
            raise CommandRefused("args must be a JSON object")
        ts = body.get("ts")
        if ts is not None and not isinstance(ts, str):
            raise CommandRefused("ts must be a UTC ISO 8601 string")
        self._authenticate(name, request_id, ts, args, body.get("sig"))
        self._fresh(request_id, ts, now=now, synced=synced)
        return Request(name, request_id, ts, args, response_topic, correlation)

    def _authenticate(
        self, name: str, request_id: str, ts: str | None, args: Mapping[str, Any], sig: Any
    ) -> None:
        key = self.policy.key
        if key is None:
            return  # allow_unsigned: the config chose a lab bench
        if not isinstance(sig, str) or ts is None:
            raise CommandRefused("unsigned: a command needs ts and sig (HMAC-SHA256)")
        expected = sign(key, self.device, name, request_id, ts, args)
        if not hmac.compare_digest(expected, sig.lower()):
            raise CommandRefused("bad signature")

    def _fresh(self, request_id: str, ts: str | None, *, now: float, synced: bool) -> None:
        max_age = self.policy.max_age
        # Ids are remembered until the command could no longer pass the age check.
        while self._seen and (len(self._seen) > SEEN or next(iter(self._seen.values())) < now):
            self._seen.popitem(last=False)
        expires = now + max_age
        if ts is not None:
            try:
                sent = parse_ts(ts)
            except ValueError as exc:
                raise CommandRefused(f"ts: {exc}") from None
            # An unsynchronised clock cannot judge age; the id check still stops replays
            # within the memory of recent ids.
            if synced and not (now - max_age <= sent <= now + max_age):
                raise CommandRefused(
                    f"stale: sent {ts}, more than {max_age:g} s from the device's clock"
                )
            if synced:
                expires = max(now, sent) + max_age  # a command dated ahead stays valid longer
        if request_id in self._seen:
            raise CommandRefused(f"replayed: id {request_id!r} was seen already")
        self._seen[request_id] = expires


Handler = Callable[[Mapping[str, Any]], Mapping[str, Any]]
Send = Callable[[str, bytes, "Request | None"], None]  # (name, reply payload, request)


class Commands:
    """Queues what the broker hands in; checks and runs each command on one worker thread."""

    def __init__(
        self,
        checker: Checker,
        handlers: Mapping[str, Handler],
        send: Send,
        *,
        wall: Callable[[], float] = time.time,
        synced: Callable[[], bool] = lambda: True,
    ) -> None:
        self.checker = checker
        self.handlers = dict(handlers)
        self.send = send
        self.wall = wall
        self.synced = synced
        self.unreadable = 0  # payloads that got no reply: not even an id could be read
        self.busy = 0
        self._queue: queue.Queue[tuple[str, bytes, str | None, bytes | None] | None] = queue.Queue(
            QUEUE
        )
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._work, name="edgeline-commands", daemon=True)
        self._thread.start()

    def received(
        self,
        name: str,
        payload: bytes,
        response_topic: str | None = None,
        correlation: bytes | None = None,
    ) -> None:
        """From the broker's network thread: queue, never block."""
        try:
            self._queue.put_nowait((name, payload, response_topic, correlation))
        except queue.Full:
            self.busy += 1
            request_id = _id_of(payload) if len(payload) <= MAX_PAYLOAD else None
            if request_id is not None:
                request = Request(name, request_id, None, {}, response_topic, correlation)
                self._reply(request, {"ok": False, "error": "busy: too many commands queued"})

    def close(self, timeout: float = 5.0) -> None:
        if self._thread is None:
            return
        with contextlib.suppress(queue.Full):
            self._queue.put(None, timeout=timeout)
        self._thread.join(timeout)
        self._thread = None

    def handle(
        self,
        name: str,
        payload: bytes,
        response_topic: str | None = None,
        correlation: bytes | None = None,
    ) -> dict[str, Any] | None:
        """Check and run one command now; return the reply sent (None: none could be)."""
        try:
            request = self.checker.check(
                name,
                payload,
                now=self.wall(),
                synced=self.synced(),
                response_topic=response_topic,
                correlation=correlation,
            )
        except CommandRefused as exc:
            request_id = _id_of(payload)
            log.warning("command %s refused: %s", name, exc)
            if request_id is None:
                self.unreadable += 1
                return None
            request = Request(name, request_id, None, {}, response_topic, correlation)
            return self._reply(request, {"ok": False, "error": f"refused: {exc}"})
        handler = self.handlers.get(name)
        if handler is None:
            known = ", ".join(sorted(self.handlers))
            return self._reply(
                request, {"ok": False, "error": f"unknown command {name!r} ({known})"}
            )
        try:
            result = dict(handler(request.args))
        except (ValueError, LookupError) as exc:
            return self._reply(request, {"ok": False, "error": str(exc).strip("'\"")})
        except Exception as exc:  # a handler bug: answer, and keep the worker alive
            log.exception("command %s failed", name)
            return self._reply(request, {"ok": False, "error": f"{type(exc).__name__}: {exc}"})
        return self._reply(request, {"ok": True, "result": result})

    def _reply(self, request: Request, outcome: dict[str, Any]) -> dict[str, Any]:
        body = {"id": request.id, **outcome}
        payload = json.dumps(body, separators=(",", ":"), default=_plain).encode()
        try:
            self.send(request.name, payload, request)
        except Exception:  # the link is down: the sender retries the command
            log.warning("reply to command %s (%s) not sent", request.name, request.id)
        return body

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            self.handle(*item)


def _id_of(payload: bytes) -> str | None:
    """The id of a payload that was refused, if one can be read, to address the reply."""
    try:
        body = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None
    request_id = body.get("id") if isinstance(body, dict) else None
    return request_id if isinstance(request_id, str) and 0 < len(request_id) <= 128 else None


def _plain(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return str(value)


def on_sampler(post: Callable[[Callable[[], None]], None], task: Callable[[], T]) -> T:
    """Run ``task`` on the sampling thread (through ``post``) and return its result here.

    A task the sampling loop has not started within ``ON_SAMPLER_TIMEOUT`` is cancelled (it
    will not run later, after its command was answered as refused)."""
    done: Future[T] = Future()

    def run() -> None:
        if not done.set_running_or_notify_cancel():
            return  # answered already: the command was refused
        try:
            done.set_result(task())
        except BaseException as exc:  # handed back to the worker, which answers with it
            done.set_exception(exc)

    post(run)
    try:
        return done.result(ON_SAMPLER_TIMEOUT)
    except FutureTimeout:
        if done.cancel():
            raise CommandRefused(
                "the sampling loop did not take the command (is it running?)"
            ) from None
        return done.result()  # it started just now: its answer is the one
