"""Forwarding: each target's events from the sink's database to its HTTP endpoint.

``Forwarder(db_url, target)`` runs one thread for one target, with its own database
connection: it reads the events after the target's cursor in insert order, sends those its
filter lets through one at a time (a token bucket paces them), and moves the cursor past
each once it is done. Ingest never waits for it: a target that is down or throttling only
makes its own backlog grow.

Each request carries ``Idempotency-Key: device/stream/seq``. Delivery is at least once (a
request that timed out may have arrived; a forwarder killed before moving its cursor sends
that event again), so the receiver deduplicates on the key. An event waits for the one
before it, so a target sees each device's events in the order they were stored.

What an answer means: 2xx sent. 429, and 503 with ``Retry-After``, the target asks to wait
(``Retry-After`` in seconds or as an HTTP date, else the backoff): the event waits, using no
attempt. 5xx, 408, timeouts and connection errors use an attempt and retry after a backoff
(``backoff`` doubling to ``backoff_max``). Any other answer (a 4xx, a redirect) will not
change: the event goes to the dead letters at once, as it does after ``max_attempts``.

Threads: ``start`` and ``close`` from the owner's thread; everything else on the
forwarder's own.
"""

from __future__ import annotations

import http.client
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from urllib.parse import urlsplit

from edge.cloud.backlog import Backlog, DeadLetter
from edge.cloud.forward import IDEMPOTENCY_HEADER, Event, Target
from edge.errors import StoreError, one_line

log = logging.getLogger(__name__)

MAX_RETRY_AFTER = 3600.0  # seconds: a longer Retry-After is cut to this
POLL = 0.2  # seconds between looks at the database when the backlog is empty


class TokenBucket:
    """``rate`` tokens a second, at most ``burst`` saved up; ``take`` waits for one."""

    def __init__(self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic):
        self.rate, self.burst, self.clock = rate, burst, clock
        self.tokens = float(burst)
        self.at = clock()

    def wait_time(self) -> float:
        """Seconds until a token is there (0: one is)."""
        now = self.clock()
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now
        return 0.0 if self.tokens >= 1 else (1 - self.tokens) / self.rate

    def take(self, stop: threading.Event) -> bool:
        """Take a token, waiting for it; False when ``stop`` was set meanwhile."""
        while (delay := self.wait_time()) > 0:
            if stop.wait(delay):
                return False
        self.tokens -= 1
        return True


@dataclass(frozen=True)
class Answer:
    """One request's outcome: ``status`` None for no answer (timeout, connection error)."""

    status: int | None
    retry_after: float | None = None
    error: str = ""

    @property
    def sent(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    @property
    def throttled(self) -> bool:
        """The target asks to wait: no attempt used."""
        return self.status == 429 or (self.status == 503 and self.retry_after is not None)

    @property
    def transient(self) -> bool:
        """A failure worth an attempt more."""
        return self.status is None or self.status >= 500 or self.status == 408


def retry_after(text: str | None, now: float | None = None) -> float | None:
    """A ``Retry-After`` header's wait in seconds (delta-seconds or an HTTP date), None
    when absent or unreadable; never negative, at most ``MAX_RETRY_AFTER``."""
    if text is None:
        return None
    text = text.strip()
    if text.isdigit():
        return min(float(text), MAX_RETRY_AFTER)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None
    wait = when.timestamp() - (time.time() if now is None else now)
    return min(max(wait, 0.0), MAX_RETRY_AFTER)


def send(target: Target, event: Event) -> Answer:
    """One request for ``event`` to ``target`` (http.client: no redirect followed)."""
    parts = urlsplit(target.url)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    kind = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    assert parts.hostname is not None  # checked with the config
    conn = kind(parts.hostname, parts.port, timeout=target.timeout)
    headers = {"Content-Type": "application/json", "User-Agent": "edgeline-sink",
               **target.headers, IDEMPOTENCY_HEADER: event.key}  # fmt: skip
    try:
        conn.request(target.method, path, body=target.body(event), headers=headers)
        response = conn.getresponse()
        response.read(65536)
        wait = retry_after(response.getheader("Retry-After"))
        reason = one_line(f"{response.status} {response.reason}")[:200]
        return Answer(response.status, wait, "" if 200 <= response.status < 300 else reason)
    except TimeoutError:
        return Answer(None, None, f"no answer within {target.timeout:g} s")
    except (OSError, http.client.HTTPException) as exc:
        return Answer(None, None, one_line(f"{type(exc).__name__}: {exc}")[:200])
    finally:
        conn.close()


@dataclass
class ForwardStats:
    sent: int = 0  # events the target accepted (2xx)
    skipped: int = 0  # events its filter left out
    dead: int = 0  # events given up on
    requests: int = 0
    throttled: int = 0  # 429s, and 503s with Retry-After


class Delivery:
    """Sends one event until it is sent or given up on (the retry policy above)."""

    def __init__(self, target: Target, stop: threading.Event, bucket: TokenBucket) -> None:
        self.target, self.stop, self.bucket = target, stop, bucket
        self.stats = ForwardStats()

    def deliver(self, event: Event) -> tuple[bool, int, str] | None:
        """(sent, attempts used, last error); None when stopped first."""
        failures = 0
        while True:
            if not self.bucket.take(self.stop):
                return None
            answer = send(self.target, event)
            self.stats.requests += 1
            if answer.sent:
                return True, failures + 1, ""
            if answer.throttled:
                self.stats.throttled += 1
                wait = answer.retry_after
            elif answer.transient:
                failures += 1
                if failures >= self.target.max_attempts:
                    return False, failures, answer.error
                wait = answer.retry_after
            else:
                return False, failures + 1, answer.error
            if wait is None:
                wait = min(self.target.backoff * 2 ** max(failures - 1, 0), self.target.backoff_max)
            log.info("forward %s: %s %s, again in %.1f s", self.target.name, event.key,
                     answer.error, wait)  # fmt: skip
            if self.stop.wait(wait):
                return None


class Forwarder:
    """One target's thread: the events after its cursor, to its endpoint."""

    def __init__(self, db_url: str, target: Target, *, poll: float = POLL) -> None:
        self.db_url, self.target, self.poll = db_url, target, poll
        self._stop = threading.Event()
        self.bucket = TokenBucket(target.rate, target.burst)
        self.delivery = Delivery(target, self._stop, self.bucket)
        self.stats = self.delivery.stats
        self._backlog: Backlog | None = None
        self._thread: threading.Thread | None = None
        self.failed: BaseException | None = None

    def start(self) -> Forwarder:
        """Open the database (errors raise here) and start the thread."""
        self._backlog = Backlog(self.db_url)
        self.cursor = self._backlog.cursor(self.target.name, self.target.start)
        self._thread = threading.Thread(
            target=self._run, name=f"forward-{self.target.name}", daemon=True
        )
        self._thread.start()
        return self

    def _run(self) -> None:
        assert self._backlog is not None
        backlog = self._backlog
        while not self._stop.is_set():
            try:
                if not self._round(backlog):
                    self._stop.wait(self.poll)
            except StoreError as exc:  # the database down: try again later, cursor unmoved
                log.warning("forward %s: %s", self.target.name, exc)
                self._stop.wait(min(self.target.backoff_max, 5.0))
            except BaseException as exc:  # pragma: no cover - a bug: say so, stop
                self.failed = exc
                log.exception("forward %s stopped", self.target.name)
                return

    def _round(self, backlog: Backlog) -> bool:
        """One batch of the backlog; False when there was none."""
        events = backlog.after(self.cursor)
        if not events:
            return False
        skipped_to = None
        for event in events:
            if not self.target.matches(event):
                self.stats.skipped += 1
                skipped_to = event.id
                continue
            outcome = self.delivery.deliver(event)
            if outcome is None:
                break
            sent, attempts, error = outcome
            if sent:
                backlog.advance(self.target.name, event.id)
                self.stats.sent += 1
            else:
                backlog.give_up(self.target.name, event, attempts, error)
                self.stats.dead += 1
            self.cursor, skipped_to = event.id, None
        if skipped_to is not None:
            backlog.advance(self.target.name, skipped_to)
            self.cursor = skipped_to
        return True

    def close(self) -> None:
        """Stop the thread (a request under way finishes or times out first); idempotent."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._backlog is not None:
            self._backlog.close()
            self._backlog = None

    def __enter__(self) -> Forwarder:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


def retry_dead_letters(db_url: str, target: Target) -> tuple[int, list[DeadLetter]]:
    """Send ``target``'s dead letters again, oldest first (the same policy, its attempts
    anew): (how many went through, those still failing, their records updated)."""
    stop = threading.Event()
    delivery = Delivery(target, stop, TokenBucket(target.rate, target.burst))
    sent = 0
    still: list[DeadLetter] = []
    with Backlog(db_url) as backlog:
        for letter in backlog.dead_letters(target.name):
            outcome = delivery.deliver(letter.event)
            assert outcome is not None  # nothing sets stop
            ok, attempts, error = outcome
            if ok:
                backlog.forget(letter)
                sent += 1
            else:
                backlog.record(letter, letter.attempts + attempts, error)
                still.append(letter)
    return sent, still
