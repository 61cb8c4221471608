"""The sink's batching writer: rows into the database in batches, each message acknowledged
only after its row is committed.

``Writer(store, ack)`` runs one thread. ``put`` hands it a ``Pending`` (a row, or nothing
to store, and the token that acknowledges the message); the thread gathers up to
``batch_rows`` of them, or what arrived within ``batch_ms`` of the first (and no more than
``idle_ms`` apart: a broker that lets few messages through unacknowledged, as RabbitMQ does
by default, sends nothing more until the batch is acknowledged), stores them in one
transaction, then calls ``ack(tokens)`` once with the batch's tokens, in the order they were
put. A batch that
cannot be stored (the database down, locked, full) is retried with a growing delay and never
acknowledged meanwhile: the broker keeps those messages for the session, and the bounded
queue stops the network thread until there is room.

Threads: ``put`` from any one thread (paho's network thread); ``close`` from the owner's.
The store is used only by the writer's thread once it has started.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

from edge.cloud.store import Batch, EventRow, StatusRow, Store, Written
from edge.errors import StoreError

log = logging.getLogger(__name__)


class Pending(NamedTuple):
    """A message waiting for its commit: ``row`` None for one with nothing to store (it is
    acknowledged in its turn, so acknowledgements keep the order messages came in)."""

    row: EventRow | StatusRow | None
    token: Any


@dataclass
class WriterStats:
    stored: int = 0  # events new to the database
    duplicates: int = 0  # events already there (a redelivery, a device's resend)
    statuses: int = 0  # status messages new to the database
    batches: int = 0
    retries: int = 0  # failed attempts to store a batch


class Writer:
    """Stores ``Pending`` rows in batches on its own thread, acknowledging after commit."""

    def __init__(
        self,
        store: Store,
        ack: Callable[[list[Any]], None],
        *,
        batch_rows: int = 1000,
        batch_ms: float = 50.0,
        idle_ms: float = 5.0,
        queue_size: int = 20_000,
        retry_max: float = 10.0,
    ) -> None:
        if batch_rows < 1 or batch_ms < 0:
            raise ValueError("batch_rows must be at least 1 and batch_ms not negative")
        self.store = store
        self.batch_rows = batch_rows
        self.batch_ms = batch_ms
        self.idle_ms = idle_ms
        self._last_put = 0.0  # monotonic time of the latest put
        self.retry_max = retry_max
        self.stats = WriterStats()
        # Called on the writer's thread after each commit, with the batch, what it changed
        # and the seconds its transaction took (``edge sink``'s figures and metrics).
        self.on_commit: Callable[[Batch, Written, float], None] | None = None
        self.committed = threading.Condition()  # notified after each commit (tests, waits)
        self._ack = ack
        # The hand-over: a list the network thread appends to and the writer takes from,
        # under one condition (a queue.Queue costs a lock round per message each side).
        self.queue_size = queue_size
        self._ready = threading.Condition()
        self._waiting: list[Pending] = []
        self._stopping = False  # close() asked: store what is waiting, then stop
        self._closing = threading.Event()
        self._thread = threading.Thread(target=self._run, name="edge-sink-writer", daemon=True)
        self._started = False

    def start(self) -> Writer:
        if not self._started:
            self._started = True
            self._thread.start()
        return self

    def put(self, pending: Pending) -> None:
        """Queue a message; blocks while the queue is full (the database is behind)."""
        with self._ready:
            while len(self._waiting) >= self.queue_size:
                if self._closing.is_set():
                    return
                self._ready.wait(0.5)
            self._waiting.append(pending)
            self._last_put = time.monotonic()
            if len(self._waiting) in (1, self.batch_rows):  # the writer may be waiting
                self._ready.notify_all()

    def close(self, timeout: float = 30.0) -> None:
        """Store and acknowledge what was put so far, then stop. Idempotent. A batch the
        database still refuses at ``timeout`` stays unacknowledged (the broker keeps it)."""
        if not self._started or self._closing.is_set():
            return
        with self._ready:
            self._stopping = True
            self._ready.notify_all()
        self._thread.join(timeout)
        self._closing.set()
        with self._ready:
            self._ready.notify_all()
        self._thread.join(1.0)

    # -- the writer's thread ---------------------------------------------------------------

    def _run(self) -> None:
        stopping = False
        while not stopping:
            items, stopping = self._take()
            if items and not self._store(items):
                return  # closed while the database refused: nothing more is acknowledged
            if items:
                self._ack([item.token for item in items])

    def _take(self) -> tuple[list[Pending], bool]:
        """Up to ``batch_rows`` messages, waiting ``batch_ms`` after the first for more
        while they keep coming (``idle_ms`` apart at most); True once closing and nothing
        is left."""
        with self._ready:
            self._ready.wait_for(lambda: self._waiting or self._stopping)
            if self._waiting:
                deadline = time.monotonic() + self.batch_ms / 1000
                while len(self._waiting) < self.batch_rows and not self._stopping:
                    now = time.monotonic()
                    left = min(deadline, self._last_put + self.idle_ms / 1000) - now
                    if left <= 0:
                        break
                    self._ready.wait(left)
            items = self._waiting[: self.batch_rows]
            del self._waiting[: self.batch_rows]
            self._ready.notify_all()  # room for the network thread
            return items, self._stopping and not self._waiting

    def _store(self, items: list[Pending]) -> bool:
        batch = Batch()
        for item in items:
            if isinstance(item.row, EventRow):
                batch.events.append(item.row)
            elif isinstance(item.row, StatusRow):
                batch.statuses.append(item.row)
        if not len(batch):
            return True
        delay = 0.2
        while True:
            try:
                began = time.monotonic()
                written = self.store.write(batch)
                took = time.monotonic() - began
                break
            except StoreError as exc:
                self.stats.retries += 1
                log.warning("%s; retrying in %.1f s (nothing acknowledged meanwhile)", exc, delay)
                if self._closing.wait(delay):
                    return False
                delay = min(delay * 2, self.retry_max)
        with self.committed:
            self.stats.stored += written.events
            self.stats.duplicates += written.duplicates
            self.stats.statuses += written.statuses
            self.stats.batches += 1
            self.committed.notify_all()
        if self.on_commit is not None:
            try:
                self.on_commit(batch, written, took)
            except Exception:  # figures only: storing and acknowledging go on regardless
                log.exception("the sink's figures could not follow a commit")
        return True
