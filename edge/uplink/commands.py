"""Downlink commands: ``{prefix}/{device}/cmd/{name}`` in, ``{prefix}/{device}/reply/{name}`` out.

A command is a JSON object::

    {"id": "r-17", "ts": "2026-11-27T10:00:00.000Z", "args": {...}, "sig": "<hex>"}

``sig`` is HMAC-SHA256, keyed with the device's command key, over :func:`signing_text`
(version 2: device, name, id, ts and the arguments as canonical JSON, each prefixed with
its length in bytes), so a command cannot be forged, sent to another device, renamed or
altered. A command older than ``max_age`` seconds (when the device's clock is
synchronised), one whose ``id`` was accepted before, or, with the clock unsynchronised, one
not newer than the last accepted, is refused: the replay guard
(:mod:`edge.uplink.command_guard`) lives in the state directory, so a restart does not
reopen old commands. Without a key, commands are refused unless the config says
``allow_unsigned`` (a lab bench, never a fleet).

The reply, on ``{prefix}/{device}/reply/{name}`` (and, for an authenticated MQTT 5 request
with a response topic, there too with its correlation data), is ``{"id", "ok": true,
"result": {...}}`` or ``{"id", "ok": false, "error": "..."}``. A refusal is answered only on
the device's own reply topic, and refusals (their replies and log lines) are rate-limited;
a payload whose id cannot be read gets no reply. Anything that goes wrong while checking a
payload is a refusal: bytes from the broker can never stop the worker.

The broker's network thread only checks the size and queues what arrives; one worker thread
here checks and runs each command; what must happen on the sampling thread (swapping a
model) is posted there, and a model file is read on the worker, never on the sampling
thread.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import logging
import math
import queue
import re
import threading
import time
import unicodedata
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from edge.errors import EdgelineError
from edge.uplink.command_guard import Replayed, ReplayGuard

log = logging.getLogger(__name__)

T = TypeVar("T")
QUEUE = 64  # commands waiting for the worker; beyond it they are refused as busy
ON_SAMPLER_TIMEOUT = 10.0  # seconds to wait for the sampling thread to take a task
MAX_PAYLOAD = 16_384  # bytes, unless the config says otherwise ([commands] max_size)
MAX_ID = 128  # characters
SIGNING = "edgeline-cmd-v2"
NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")  # a command name, as the topic's last level
REFUSALS_PER_S = 1.0  # refusals answered and logged, on average ...
REFUSAL_BURST = 10.0  # ... in bursts of at most this many; the rest are counted
SHOWN = 80  # characters of attacker-chosen text a log line or a reason shows at most
HEX64 = re.compile(r"[0-9a-fA-F]{64}")


class CommandRefused(EdgelineError, ValueError):
    """A command that is not run: malformed, unsigned, forged, stale, replayed, unknown."""


class Deferred(EdgelineError):
    """Raised by a handler whose answer comes later, from another thread (a new config is
    applied by the owner of the runtime, which the worker belongs to): the worker sends no
    reply and hands the request to ``hand_over``, which answers it when the work is done."""

    def __init__(self, hand_over: Callable[[Request], None]) -> None:
        super().__init__("answered later")
        self.hand_over = hand_over


@dataclass(frozen=True)
class Request:
    name: str
    id: str
    ts: str | None
    args: Mapping[str, Any]
    response_topic: str | None = None  # kept only for an authenticated request
    correlation: bytes | None = None
    authenticated: bool = False  # its signature was checked (False: allow_unsigned, refusals)


@dataclass(frozen=True)
class Policy:
    """How commands are checked: the key (None: unsigned allowed), their freshness, size."""

    key: bytes | None
    max_age: float = 300.0
    max_size: int = MAX_PAYLOAD


def canonical(args: Mapping[str, Any]) -> str:
    return json.dumps(args, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def signing_text(
    device: str, name: str, request_id: str, ts: str, args: Mapping[str, Any]
) -> bytes:
    """What ``sig`` covers (version 2): ``edgeline-cmd-v2``, then each field as its UTF-8
    length in bytes, ``:``, the bytes and a newline, so no field can spill into the next."""
    fields = [device, name, request_id, ts, canonical(args)]
    text = bytearray(SIGNING.encode() + b"\n")
    for value in fields:
        data = value.encode("utf-8")
        text += b"%d:%s\n" % (len(data), data)
    return bytes(text)


def signing_text_v1(
    device: str, name: str, request_id: str, ts: str, args: Mapping[str, Any]
) -> bytes:
    """Version 1, no longer accepted: fields joined by newlines, which a field containing a
    newline could shift into the next one."""
    return "\n".join(["edgeline-cmd-v1", device, name, request_id, ts, canonical(args)]).encode()


def sign(
    key: bytes, device: str, name: str, request_id: str, ts: str, args: Mapping[str, Any]
) -> str:
    """The ``sig`` of a command: what a sender (``edge command``, a cloud service) computes."""
    return hmac.new(
        key, signing_text(device, name, request_id, ts, args), hashlib.sha256
    ).hexdigest()


def parse_ts(text: str) -> float:
    """UTC ISO 8601 (``...Z`` or ``+00:00``) to epoch seconds; ValueError if it is not one."""
    if len(text) > 40:
        raise ValueError("too long for a timestamp")
    stamp = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if stamp.tzinfo is None:
        raise ValueError("a timestamp needs a time zone (end it with Z)")
    return stamp.timestamp()


def id_problem(text: str) -> str | None:
    """Why ``text`` cannot be a command id (None: it can): 1 to 128 characters, none of them
    a control, format or separator character, a surrogate or a Unicode non-character."""
    if not 0 < len(text) <= MAX_ID:
        return f"id must be a string of 1 to {MAX_ID} characters"
    return char_problem(text, "id")


def char_problem(text: str, what: str) -> str | None:
    """Why ``text`` cannot be sent as ``what``: a control, format or separator character, a
    surrogate or a Unicode non-character in it (None: none)."""
    for char in text:
        code = ord(char)
        if unicodedata.category(char) in ("Cc", "Cf", "Cs", "Zl", "Zp") or (
            0xFDD0 <= code <= 0xFDEF or code & 0xFFFE == 0xFFFE
        ):
            return f"{what} must not contain U+{code:04X} (control or non-character)"
    return None


def shown(text: object, limit: int = SHOWN) -> str:
    """Attacker-chosen text made safe for one log line: escaped and bounded."""
    value = str(text)
    cut = value[:limit]
    return ascii(cut)[1:-1] + ("..." if len(value) > limit else "")


def response_topic_problem(topic: str) -> str | None:
    """Why an MQTT 5 response topic is not used (None: it may be)."""
    if not 0 < len(topic) <= 512 or topic.startswith("$") or any(c in topic for c in "+#"):
        return "not a topic a reply can be published on"
    if any(unicodedata.category(c) in ("Cc", "Cs") for c in topic):
        return "control characters"
    return None


class Checker:
    """Turns a received payload into a :class:`Request`, or refuses it with the reason.

    Any failure while checking is a refusal, whatever the payload. An accepted command is
    recorded by the replay guard before ``check`` returns."""

    def __init__(self, device: str, policy: Policy, guard: ReplayGuard | None = None) -> None:
        self.device = device
        self.policy = policy
        self.guard = guard or ReplayGuard(None)

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
        try:
            return self._check(name, payload, now, synced, response_topic, correlation)
        except CommandRefused:
            raise
        except Exception as exc:  # deep nesting, surrogates, huge numbers...: a refusal
            raise CommandRefused(f"unreadable ({type(exc).__name__})") from None

    def _check(
        self,
        name: str,
        payload: bytes,
        now: float,
        synced: bool,
        response_topic: str | None,
        correlation: bytes | None,
    ) -> Request:
        limit = self.policy.max_size
        if len(payload) > limit:
            raise CommandRefused(f"a command is at most {limit} bytes, got {len(payload)}")
        if not NAME.fullmatch(name):
            raise CommandRefused("the command name must be 1 to 64 of A-Z a-z 0-9 _ . -")
        try:
            body = json.loads(payload.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            raise CommandRefused(f"not a JSON object: {shown(exc)}") from None
        if not isinstance(body, dict):
            raise CommandRefused("not a JSON object")
        unknown = set(body) - {"id", "ts", "args", "sig"}
        if unknown:
            raise CommandRefused(f"unknown field(s) {shown(', '.join(sorted(unknown)))}")
        request_id = body.get("id")
        if not isinstance(request_id, str):
            raise CommandRefused(f"id must be a string of 1 to {MAX_ID} characters")
        problem = id_problem(request_id)
        if problem is not None:
            raise CommandRefused(problem)
        args = body.get("args", {})
        if not isinstance(args, dict):
            raise CommandRefused("args must be a JSON object")
        ts = body.get("ts")
        if ts is not None and not isinstance(ts, str):
            raise CommandRefused("ts must be a UTC ISO 8601 string")
        authenticated = self._authenticate(name, request_id, ts, args, body.get("sig"))
        sent = self._fresh(ts, now=now, synced=synced)
        try:
            self.guard.check(request_id, sent, synced=synced, now=now, max_age=self.policy.max_age)
            self.guard.accept(request_id, sent)
        except Replayed as exc:
            raise CommandRefused(str(exc)) from None
        except OSError as exc:
            raise CommandRefused(f"cannot record it against replay: {exc.strerror}") from None
        if not authenticated or not response_topic or response_topic_problem(response_topic):
            response_topic, correlation = None, None
        return Request(name, request_id, ts, args, response_topic, correlation, authenticated)

    def _authenticate(
        self, name: str, request_id: str, ts: str | None, args: Mapping[str, Any], sig: Any
    ) -> bool:
        key = self.policy.key
        if key is None:
            return False  # allow_unsigned: the config chose a lab bench
        if not isinstance(sig, str) or ts is None:
            raise CommandRefused("unsigned: a command needs ts and sig (HMAC-SHA256)")
        if not HEX64.fullmatch(sig):
            raise CommandRefused("bad signature: sig must be 64 hex digits")
        expected = sign(key, self.device, name, request_id, ts, args)
        if not hmac.compare_digest(expected.encode(), sig.lower().encode()):
            raise CommandRefused("bad signature")
        return True

    def _fresh(self, ts: str | None, *, now: float, synced: bool) -> float:
        """When the command was sent (epoch seconds; ``now`` for an unsigned one without
        ``ts``), refused when the synchronised clock says it is stale."""
        if ts is None:
            return now
        try:
            sent = parse_ts(ts)
        except ValueError as exc:
            raise CommandRefused(f"ts: {shown(exc)}") from None
        max_age = self.policy.max_age
        if synced and not (now - max_age <= sent <= now + max_age):
            raise CommandRefused(
                f"stale: sent {shown(ts)}, more than {max_age:g} s from the device's clock"
            )
        return sent


class Bucket:
    """A token bucket on a monotonic clock: ``take()`` is True at most ``rate`` times a
    second on average, in bursts of at most ``burst``."""

    def __init__(self, rate: float, burst: float, monotonic: Callable[[], float]) -> None:
        self.rate, self.burst, self.monotonic = rate, burst, monotonic
        self.tokens = burst
        self._last = monotonic()

    def take(self) -> bool:
        now = self.monotonic()
        self.tokens = min(self.burst, self.tokens + max(0.0, now - self._last) * self.rate)
        self._last = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True


Handler = Callable[[Mapping[str, Any]], Mapping[str, Any]]
Send = Callable[[str, bytes, "Request | None"], None]  # (name, reply payload, request)
Died = Callable[[str], None]  # the worker died of this (and was restarted)


class Commands:
    """Queues what the broker hands in; checks and runs each command on one worker thread.

    Threads: ``received`` on the broker's network thread (size check, queue, never blocks);
    ``handle`` on the worker (``edgeline-commands``); ``start`` and ``close`` on the owner's.
    The worker survives anything a command does; should it end anyway, ``died`` is told
    (the runtime reports it as a ``health`` event) and a new worker takes over.
    """

    def __init__(
        self,
        checker: Checker,
        handlers: Mapping[str, Handler],
        send: Send,
        *,
        wall: Callable[[], float] = time.time,
        synced: Callable[[], bool] = lambda: True,
        monotonic: Callable[[], float] = time.monotonic,
        died: Died | None = None,
    ) -> None:
        self.checker = checker
        self.handlers = dict(handlers)
        self.send = send
        self.wall = wall
        self.synced = synced
        self.died = died
        self.unreadable = 0  # payloads that got no reply: not even an id could be read
        self.busy = 0
        self.oversized = 0  # dropped unread: bigger than max_size
        self.refused = 0
        self.suppressed = 0  # refusals neither answered nor logged (rate limit)
        self.restarts = 0  # workers that died and were replaced
        self._shown_suppressed = 0
        self._refusals = Bucket(REFUSALS_PER_S, REFUSAL_BURST, monotonic)
        self._refusal_lock = threading.Lock()  # the network thread and the worker refuse
        self._queue: queue.Queue[tuple[str, bytes, str | None, bytes | None] | None] = queue.Queue(
            QUEUE
        )
        self._thread: threading.Thread | None = None
        self._closing = False

    @property
    def max_size(self) -> int:
        return self.checker.policy.max_size

    def start(self) -> None:
        self._thread = threading.Thread(target=self._work, name="edgeline-commands", daemon=True)
        self._thread.start()

    def counters(self) -> dict[str, int]:
        """What was turned away, for the ``status`` command and the logs."""
        return {
            "refused": self.refused,
            "not_shown": self.suppressed,
            "unreadable": self.unreadable,
            "oversized": self.oversized,
            "busy": self.busy,
            "worker_restarts": self.restarts,
        }

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def received(
        self,
        name: str,
        payload: bytes,
        response_topic: str | None = None,
        correlation: bytes | None = None,
    ) -> None:
        """From the broker's network thread: drop what is too big, queue, never block."""
        if len(payload) > self.max_size:
            self.too_big(name, len(payload))
            return
        try:
            self._queue.put_nowait((name, payload, response_topic, correlation))
        except queue.Full:
            self.busy += 1
            self._refuse(name, _id_of(payload), "busy: too many commands queued")

    def too_big(self, name: str, size: int) -> None:
        """A payload over ``max_size``, dropped unread: counted, logged within the limit."""
        self.oversized += 1
        self._refuse(name, None, f"{size} bytes, more than max_size {self.max_size}")

    def close(self, timeout: float = 5.0) -> None:
        self._closing = True
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
        """Check and run one command now; return the reply sent (None: none was)."""
        try:
            request = self.checker.check(
                name,
                payload,
                now=self.wall(),
                synced=self.synced(),
                response_topic=response_topic,
                correlation=correlation,
            )
        except Exception as exc:  # CommandRefused, or anything the clock hooks raise
            reason = str(exc) if isinstance(exc, CommandRefused) else type(exc).__name__
            return self._refuse(name, _id_of(payload), reason)
        handler = self.handlers.get(name)
        if handler is None:
            known = ", ".join(sorted(self.handlers))
            return self._reply(
                request, {"ok": False, "error": f"unknown command {name!r} ({known})"}
            )
        try:
            result = dict(handler(request.args))
        except Deferred as later:
            later.hand_over(request)
            return None
        except (ValueError, LookupError) as exc:
            outcome: dict[str, Any] = {"ok": False, "error": str(exc).strip("'\"")}
            problems = getattr(exc, "problems", None)
            if isinstance(problems, list):  # a refused config: every problem, one a line
                outcome["problems"] = problems
            return self._reply(request, outcome)
        except Exception as exc:  # a handler bug: answer, and keep the worker alive
            log.exception("command %s failed", name)
            return self._reply(request, {"ok": False, "error": f"{type(exc).__name__}: {exc}"})
        return self._reply(request, {"ok": True, "result": result})

    def _refuse(self, name: str, request_id: str | None, reason: str) -> dict[str, Any] | None:
        """Log and answer a refusal, within the rate limit; the rest are only counted.

        The answer goes to the device's own reply topic only, never to a response topic
        the unauthenticated sender chose; without a readable id there is none."""
        with self._refusal_lock:
            self.refused += 1
            if request_id is None:
                self.unreadable += 1
            if not self._refusals.take():
                self.suppressed += 1
                return None
            hidden = self.suppressed - self._shown_suppressed
            self._shown_suppressed = self.suppressed
        more = f" ({hidden} more refusals not shown)" if hidden else ""
        log.warning("command %s refused: %s%s", shown(name, 64), shown(reason, 200), more)
        if request_id is None or not NAME.fullmatch(name):
            return None
        request = Request(name, request_id, None, {})
        return self._reply(request, {"ok": False, "error": f"refused: {reason}"})

    def _reply(self, request: Request, outcome: dict[str, Any]) -> dict[str, Any]:
        body = {"id": request.id, **outcome}
        try:
            payload = json.dumps(body, separators=(",", ":"), default=_plain).encode()
            self.send(request.name, payload, request)
        except Exception:  # the link is down: the sender retries the command
            log.warning("reply to command %s (%s) not sent", request.name, shown(request.id))
        return body

    def _work(self) -> None:
        try:
            while True:
                item = self._queue.get()
                if item is None:
                    return
                try:
                    self.handle(*item)
                except Exception:  # handle() answers every failure: this is the last net
                    log.exception("command worker: a command failed unanswered")
        except BaseException as exc:  # e.g. SystemExit from a handler: replace the worker
            self._replace(f"{type(exc).__name__}: {shown(exc)}")

    def _replace(self, reason: str) -> None:
        if self._closing:
            return
        self.restarts += 1
        log.error("the command worker died (%s); starting a new one", reason)
        self.start()
        if self.died is not None:
            try:
                self.died(reason)
            except Exception:
                log.exception("reporting the command worker's death failed")


def _id_of(payload: bytes) -> str | None:
    """The id of a payload that was refused, if one can be read, to address the reply."""
    try:
        body = json.loads(payload.decode("utf-8"))
        request_id = body.get("id") if isinstance(body, dict) else None
    except Exception:  # whatever the bytes are, there is no id to answer
        return None
    if isinstance(request_id, str) and id_problem(request_id) is None:
        return request_id
    return None


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
