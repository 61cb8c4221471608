"""The sink's writer: rows stored in batches, every message acknowledged after its commit and
in the order it came, a bounded hand-off that holds the network thread back while the
database is behind, and nothing acknowledged while the database refuses. Real SQLite files;
a second connection holding the write lock is the database refusing.
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path
from typing import Any

from edge.cloud.store import event_row, open_store
from edge.cloud.writer import Pending, Writer
from tests.waiting import wait_until


def _pending(seq: int) -> Pending:
    body = {"device": "d1", "stream": "s1", "seq": seq, "kind": "telemetry", "value": seq}
    return Pending(event_row(body, "2026-12-04T00:00:00.000Z"), seq)


def _stored(path: Path) -> int:
    with sqlite3.connect(path) as conn:
        return int(conn.execute("SELECT COUNT(*) FROM events").fetchone()[0])


class Acks:
    """What the writer acknowledged, each call's tokens, and the rows stored at that call."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.calls: list[list[Any]] = []
        self.stored_then: list[int] = []

    def __call__(self, tokens: list[Any]) -> None:
        self.stored_then.append(_stored(self.path))
        self.calls.append(tokens)

    @property
    def tokens(self) -> list[Any]:
        return [token for call in self.calls for token in call]


def test_batches_are_committed_before_their_acks_and_acks_keep_the_order(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    acks = Acks(path)
    writer = Writer(open_store(str(path)), acks, batch_rows=1000, batch_ms=50).start()
    try:
        for seq in range(1, 2501):
            writer.put(_pending(seq))
        wait_until(lambda: len(acks.tokens) == 2500, 30)
    finally:
        writer.close()
    assert acks.tokens == list(range(1, 2501))
    assert all(len(call) <= 1000 for call in acks.calls)
    assert all(  # each ack came after its batch was in the database
        stored >= max(call) for call, stored in zip(acks.calls, acks.stored_then, strict=True)
    )
    assert writer.stats.stored == 2500 and writer.stats.batches == len(acks.calls)


def test_close_stores_and_acks_what_was_put_without_waiting_out_the_batch(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    acks = Acks(path)
    writer = Writer(open_store(str(path)), acks, batch_rows=1000, batch_ms=60_000).start()
    for seq in range(1, 11):
        writer.put(_pending(seq))
    closing = threading.Thread(target=writer.close)
    closing.start()
    closing.join(10)  # a batch of 10 waiting a minute for more: close cuts the wait short
    assert not closing.is_alive()
    assert acks.tokens == list(range(1, 11)) and _stored(path) == 10


def test_a_locked_database_holds_the_network_thread_back_and_nothing_is_acked(
    tmp_path: Path,
) -> None:
    path = tmp_path / "events.db"
    store = open_store(str(path))
    store.conn.execute("PRAGMA busy_timeout = 20")  # give up on the lock at once, retry later
    acks = Acks(path)
    writer = Writer(store, acks, batch_rows=5, batch_ms=0, queue_size=10, retry_max=0.2)
    lock = sqlite3.connect(path, isolation_level=None)
    lock.execute("BEGIN IMMEDIATE")  # another writer holds the database
    writer.start()
    put_all = threading.Thread(target=lambda: [writer.put(_pending(s)) for s in range(1, 31)])
    try:
        put_all.start()
        wait_until(lambda: writer.stats.retries >= 3, 30)
        assert put_all.is_alive()  # 5 taken, 10 waiting: the 16th put waits for room
        assert acks.calls == [] and _stored(path) == 0
        lock.execute("ROLLBACK")
        put_all.join(30)
        wait_until(lambda: len(acks.tokens) == 30, 30)
    finally:
        lock.close()
        writer.close()
    assert acks.tokens == list(range(1, 31)) and _stored(path) == 30


def test_a_pause_in_arrivals_ends_the_batch_before_its_time(tmp_path: Path) -> None:
    """A broker with a small window (RabbitMQ lets 10 through unacknowledged by default)
    sends nothing more until the batch is acknowledged: a pause of ``idle_ms`` ends it."""
    path = tmp_path / "events.db"
    acks = Acks(path)
    writer = Writer(open_store(str(path)), acks, batch_rows=1000, batch_ms=60_000, idle_ms=10)
    writer.start()
    try:
        for seq in range(1, 11):
            writer.put(_pending(seq))
        wait_until(lambda: len(acks.tokens) == 10, 10)  # not a minute: the pause ended it
        for seq in range(11, 21):
            writer.put(_pending(seq))
        wait_until(lambda: len(acks.tokens) == 20, 10)
    finally:
        writer.close()
    assert acks.tokens == list(range(1, 21)) and len(acks.calls) >= 2
