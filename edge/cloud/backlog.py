"""Forwarding's side of the sink's database: each target's cursor, the events after it, and
the dead letters.

A target's cursor is the last ``events.id`` it is done with (sent, dead-lettered or not
matching its filter); ``events.id`` is the insert order over every sink of the database
(migration 2 in ``edge.cloud.store``). The cursor moves only after the event is done, so a
forwarder killed mid-request sends that event again when it restarts: at least once.

Not thread-safe: a ``Backlog`` (and its store) belongs to one thread, a forwarder's.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from edge.cloud.forward import Event
from edge.cloud.store import SqlStore, Store, open_store
from edge.config.secrets import hide_password
from edge.errors import StoreError
from edge.events import format_ts

_EVENT = "id, device, stream, seq, ts, sensor, kind, severity, value, payload, received_at"


@dataclass(frozen=True)
class DeadLetter:
    """An event a target gave up on, and why."""

    name: str
    event: Event
    attempts: int
    last_error: str
    failed_at: str


class Backlog:
    """Cursors and dead letters in the database at ``url`` (its own connection)."""

    def __init__(self, url: str) -> None:
        store: Store = open_store(url)
        if not isinstance(store, SqlStore):  # pragma: no cover - both stores are
            raise StoreError(f"{hide_password(url)}: not an SQL store")
        self.store = store
        self.m = store.mark

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> Backlog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _rows(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        try:
            return [tuple(row) for row in self.store.conn.execute(sql, args).fetchall()]
        except self.store.errors as exc:
            raise StoreError(f"cannot read {hide_password(self.store.url)}: {exc}") from exc

    def _write(self, statements: list[tuple[str, tuple[Any, ...]]]) -> None:
        try:
            with self.store.atomic():
                for sql, args in statements:
                    self.store.conn.execute(sql, args)
        except self.store.errors as exc:
            raise StoreError(f"cannot write {hide_password(self.store.url)}: {exc}") from exc

    def cursor(self, name: str, start: str = "latest") -> int:
        """The last event id ``name`` is done with; a new target starts at the newest event
        (``start="latest"``) or before the first (``"earliest"``)."""
        m = self.m
        rows = self._rows(f"SELECT last_id FROM forward_cursors WHERE name = {m}", (name,))
        if rows:
            return int(rows[0][0])
        newest = self._rows("SELECT COALESCE(MAX(id), 0) FROM events")[0][0]
        first = int(newest) if start == "latest" else 0
        self._write([(
            f"INSERT INTO forward_cursors (name, last_id, updated_at) VALUES ({m}, {m}, {m})"
            " ON CONFLICT (name) DO NOTHING",
            (name, first, format_ts(_now())),
        )])  # fmt: skip
        return self.cursor(name, start)

    def _sql_cursor(self) -> str:
        m = self.m
        return (
            f"INSERT INTO forward_cursors (name, last_id, updated_at) VALUES ({m}, {m}, {m})"
            " ON CONFLICT (name) DO UPDATE SET last_id = excluded.last_id,"
            " updated_at = excluded.updated_at"
        )

    def after(self, last_id: int, limit: int = 200) -> list[Event]:
        """Up to ``limit`` events after ``last_id``, in insert order."""
        m = self.m
        rows = self._rows(
            f"SELECT {_EVENT} FROM events WHERE id > {m} ORDER BY id LIMIT {m}", (last_id, limit)
        )
        return [_event(row) for row in rows]

    def advance(self, name: str, last_id: int) -> None:
        self._write([(self._sql_cursor(), (name, last_id, format_ts(_now())))])

    def give_up(self, name: str, event: Event, attempts: int, error: str) -> None:
        """``event`` into the dead letters and the cursor past it, in one transaction."""
        m = self.m
        now = format_ts(_now())
        self._write([
            (
                "INSERT INTO dead_letters (name, device, stream, seq, attempts, last_error,"
                f" failed_at) VALUES ({m}, {m}, {m}, {m}, {m}, {m}, {m}) ON CONFLICT"
                " (name, device, stream, seq) DO UPDATE SET attempts = excluded.attempts,"
                " last_error = excluded.last_error, failed_at = excluded.failed_at",
                (name, event.device, event.stream, event.seq, attempts, error[:500], now),
            ),
            (self._sql_cursor(), (name, event.id, now)),
        ])  # fmt: skip

    def dead_letters(self, name: str | None = None) -> list[DeadLetter]:
        """The dead letters (of one target), oldest event first."""
        m = self.m
        where = f"WHERE d.name = {m}" if name is not None else ""
        columns = ", ".join(f"e.{c.strip()}" for c in _EVENT.split(","))
        rows = self._rows(
            f"SELECT d.name, d.attempts, d.last_error, d.failed_at, {columns} FROM dead_letters d"
            " JOIN events e ON e.device = d.device AND e.stream = d.stream AND e.seq = d.seq"
            f" {where} ORDER BY d.name, e.id",
            (name,) if name is not None else (),
        )
        return [DeadLetter(row[0], _event(row[4:]), int(row[1]), row[2], row[3]) for row in rows]

    def record(self, letter: DeadLetter, attempts: int, error: str) -> None:
        """A dead letter sent again in vain: its attempts and error now (cursor unmoved)."""
        m = self.m
        event = letter.event
        self._write([(
            f"UPDATE dead_letters SET attempts = {m}, last_error = {m}, failed_at = {m}"
            f" WHERE name = {m} AND device = {m} AND stream = {m} AND seq = {m}",
            (attempts, error[:500], format_ts(_now()), letter.name, event.device,
             event.stream, event.seq),
        )])  # fmt: skip

    def forget(self, letter: DeadLetter) -> None:
        """A dead letter that went through at last."""
        m = self.m
        event = letter.event
        self._write([(
            f"DELETE FROM dead_letters WHERE name = {m} AND device = {m} AND stream = {m}"
            f" AND seq = {m}",
            (letter.name, event.device, event.stream, event.seq),
        )])  # fmt: skip

    def names(self) -> Iterator[str]:
        yield from (row[0] for row in self._rows("SELECT name FROM forward_cursors ORDER BY name"))


def _event(row: tuple[Any, ...]) -> Event:
    return Event(int(row[0]), row[1], row[2], int(row[3]), *row[4:])


def _now() -> float:
    return time.time()
