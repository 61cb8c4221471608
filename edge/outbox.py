"""The outbox: a SQLite (WAL) file that holds every event until the broker acknowledges it.

A few verbs over explicit transactions: ``commit`` appends drafts and deletes acknowledged
events in one transaction (``append`` and ``ack`` are its two halves), ``claim`` reads what
to send next in (priority, seq) order, ``correct_timestamps`` fixes events stamped before
the wall clock was synchronised. ``seq`` comes from a counter kept in the same transaction,
so it strictly increases and is never reused, even when the newest rows were deleted.
The ``stream`` id is drawn once, when the file is created.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
import threading
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from sqlite_utils import Database

from .errors import OutboxError
from .events import PRIORITIES, Draft, Event, format_ts

FILENAME = "outbox.sqlite3"

# Numbered schema migrations; PRAGMA user_version counts how many have run.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE events (
        seq INTEGER PRIMARY KEY,
        priority INTEGER NOT NULL,
        sensor TEXT NOT NULL,
        kind TEXT NOT NULL,
        payload TEXT NOT NULL,
        synced INTEGER NOT NULL,
        mono REAL NOT NULL,
        epoch TEXT NOT NULL
    );
    CREATE INDEX events_by_priority ON events (priority, seq);
    CREATE INDEX events_unsynced ON events (epoch) WHERE synced = 0;
    """,
)

# What each durability level asks of SQLite (see README, "Durability").
SYNCHRONOUS = {"full": "FULL", "normal": "NORMAL"}


@dataclass(frozen=True)
class OutboxStats:
    stream: str
    device: str
    last_seq: int
    pending: int
    pending_by_priority: dict[int, int]
    delivered: int
    evicted: int

    def as_json(self) -> dict[str, Any]:
        return {
            "stream": self.stream,
            "device": self.device,
            "last_seq": self.last_seq,
            "pending": self.pending,
            "pending_by_priority": {str(k): v for k, v in self.pending_by_priority.items()},
            "delivered": self.delivered,
            "evicted": self.evicted,
        }


class Outbox:
    """Durable, ordered store of events. Thread-safe: one connection behind one lock."""

    def __init__(self, path: Path, conn: sqlite3.Connection, epoch: str = "") -> None:
        self.path = path
        # The clock epoch stamped on new rows: which ones a later clock sync may correct.
        self.epoch = epoch
        self._conn = conn
        self._db = Database(conn)
        self._lock = threading.Lock()
        self.stream = self._meta("stream")
        self.device = self._meta("device")
        self._last_seq = int(self._meta("last_seq"))
        self._closed = False

    @classmethod
    def open(
        cls, state_dir: str | Path, device: str, *, durability: str = "full", epoch: str = ""
    ) -> Outbox:
        """Open (creating if needed) the outbox of ``device`` in ``state_dir``."""
        directory = Path(state_dir)
        try:
            directory.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(
                directory / FILENAME, isolation_level=None, check_same_thread=False, timeout=10
            )
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(f"PRAGMA synchronous={SYNCHRONOUS[durability]}")
            _migrate(conn, device)
        except sqlite3.DatabaseError as exc:
            raise OutboxError(f"cannot open the outbox in {directory}: {exc}") from exc
        except OSError as exc:
            raise OutboxError(f"cannot create the state directory {directory}: {exc}") from exc
        outbox = cls(directory / FILENAME, conn, epoch)
        if outbox.device != device:
            outbox.close()
            raise OutboxError(
                f"the outbox in {directory} belongs to device '{outbox.device}', not '{device}';"
                " give each device its own state directory"
            )
        return outbox

    @classmethod
    def open_existing(cls, state_dir: str | Path) -> Outbox:
        """Open an outbox for inspection, whatever its device; never creates one."""
        path = Path(state_dir) / FILENAME
        if not path.exists():
            raise OutboxError(f"no outbox in {state_dir} (expected {path})")
        try:
            conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA query_only=ON")
            return cls(path, conn)
        except sqlite3.DatabaseError as exc:
            raise OutboxError(f"cannot read the outbox {path}: {exc}") from exc

    @property
    def last_seq(self) -> int:
        return self._last_seq

    def append(self, draft: Draft) -> Event:
        return self.commit([draft])[0]

    def ack(self, seqs: Collection[int]) -> None:
        self.commit((), acked=seqs)

    def commit(self, drafts: Sequence[Draft], acked: Collection[int] = ()) -> list[Event]:
        """Append ``drafts`` and delete ``acked`` in one transaction; return the new events."""
        events: list[Event] = []
        with self._lock:
            seq = self._write(drafts, acked, events)
            self._last_seq = seq  # only once the transaction committed
        return events

    def _write(self, drafts: Sequence[Draft], acked: Collection[int], events: list[Event]) -> int:
        with self._db.atomic():
            seq = self._last_seq
            rows = []
            for draft in drafts:
                seq += 1
                payload = draft.payload(self.device, self.stream, seq)
                events.append(Event(seq, draft.priority, draft.sensor, draft.kind, payload))
                rows.append(
                    (seq, draft.priority, draft.sensor, draft.kind, payload, draft.synced,
                     draft.mono, self.epoch)
                )  # fmt: skip
            if rows:
                self._conn.executemany("INSERT INTO events VALUES (?,?,?,?,?,?,?,?)", rows)
                self._set_meta("last_seq", seq)
            if acked:
                marks = ",".join("?" * len(acked))
                cur = self._conn.execute(f"DELETE FROM events WHERE seq IN ({marks})", list(acked))
                if cur.rowcount:
                    self._conn.execute(
                        "UPDATE meta SET value = value + ? WHERE key = 'delivered'", (cur.rowcount,)
                    )
        return seq

    def claim(
        self,
        limit: int,
        exclude: Collection[int] = (),
        after: Mapping[int, int] | None = None,
    ) -> list[Event]:
        """The next ``limit`` events to send, by priority then seq.

        ``after`` maps a priority to the last seq already claimed at that priority, so a
        sender walks each priority with an index range scan: the cost does not grow with
        the backlog. ``exclude`` skips seqs (acknowledged, deletion not yet committed).
        """
        cursors = after or {}
        take = limit + len(exclude) if limit >= 0 else -1
        scans = " UNION ALL ".join(
            "SELECT * FROM (SELECT seq, priority, sensor, kind, payload FROM events"
            " WHERE priority = ? AND seq > ? ORDER BY seq LIMIT ?)"
            for _ in PRIORITIES
        )
        params: list[Any] = []
        for priority in PRIORITIES:
            params += [priority, cursors.get(priority, 0), take]
        with self._lock:
            rows = self._conn.execute(f"{scans} ORDER BY priority, seq", params).fetchall()
        skip = set(exclude)
        events = [Event(*row) for row in rows if row[0] not in skip]
        return events if limit < 0 else events[:limit]

    def correct_timestamps(self, mono_now: float, wall_now: float) -> int:
        """Re-stamp events taken before the clock synced, from the monotonic clock.

        Only events of this clock epoch (this boot) can be corrected: monotonic readings
        from an earlier boot say nothing about today's wall time.
        """
        offset = wall_now - mono_now
        with self._lock, self._db.atomic():
            rows = self._conn.execute(
                "SELECT seq, payload, mono FROM events WHERE synced = 0 AND epoch = ?",
                (self.epoch,),
            ).fetchall()
            for seq, payload, mono in rows:
                body = json.loads(payload)
                body["ts"] = format_ts(mono + offset)
                body["synced"] = True
                body["ts_corrected"] = True
                self._conn.execute(
                    "UPDATE events SET payload = ?, synced = 1 WHERE seq = ?",
                    (json.dumps(body, separators=(",", ":")), seq),
                )
        return len(rows)

    def has_pending(self) -> bool:
        """Whether any event awaits delivery: one index probe, whatever the depth."""
        with self._lock:
            return self._conn.execute("SELECT 1 FROM events LIMIT 1").fetchone() is not None

    def tail(self, count: int) -> list[Event]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT seq, priority, sensor, kind, payload FROM events ORDER BY seq DESC LIMIT ?",
                (count,),
            ).fetchall()
        return [Event(*row) for row in reversed(rows)]

    def __iter__(self) -> Iterator[Event]:
        """Every pending event in sending order (for inspection; not for the hot path)."""
        return iter(self.claim(limit=-1))

    def stats(self) -> OutboxStats:
        with self._lock:
            by_priority = dict(
                self._conn.execute(
                    "SELECT priority, count(*) FROM events GROUP BY priority"
                ).fetchall()
            )
            delivered = int(self._meta("delivered"))
            evicted = int(self._meta("evicted"))
            last_seq = int(self._meta("last_seq"))
        return OutboxStats(
            stream=self.stream,
            device=self.device,
            last_seq=last_seq,
            pending=sum(by_priority.values()),
            pending_by_priority=by_priority,
            delivered=delivered,
            evicted=evicted,
        )

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        with self._lock:
            self._conn.close()

    def __enter__(self) -> Outbox:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _meta(self, key: str) -> str:
        row = self._conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        if row is None:
            raise OutboxError(f"{self.path}: outbox metadata '{key}' is missing")
        return str(row[0])

    def _set_meta(self, key: str, value: object) -> None:
        self._conn.execute("UPDATE meta SET value = ? WHERE key = ?", (str(value), key))


def _migrate(conn: sqlite3.Connection, device: str) -> None:
    """Bring the file's schema up to date in place, one numbered migration at a time."""
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version > len(MIGRATIONS):
        raise OutboxError(
            f"the outbox has schema version {version}, newer than this edgeline knows"
            f" ({len(MIGRATIONS)}); upgrade edgeline"
        )
    for number in range(version, len(MIGRATIONS)):
        conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in MIGRATIONS[number].split(";"):
                if statement.strip():
                    conn.execute(statement)
            if number == 0:
                conn.executemany(
                    "INSERT INTO meta VALUES (?, ?)",
                    [
                        ("stream", secrets.token_hex(8)),
                        ("device", device),
                        ("last_seq", "0"),
                        ("delivered", "0"),
                        ("evicted", "0"),
                    ],
                )
            conn.execute(f"PRAGMA user_version = {number + 1}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
