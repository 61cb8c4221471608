"""The sink's database: events keyed (device, stream, seq), devices, statuses; SQLite or
PostgreSQL behind one small interface.

``open_store(url)`` opens ``sqlite:///path`` (or a bare path) with sqlite-utils, or
``postgresql://...`` with psycopg 3 (``edge.cloud.postgres``), and brings its schema up to
date (numbered migrations, the version in ``schema_version``). ``Store.write(batch)`` stores
a batch in one transaction: events with ``ON CONFLICT DO NOTHING`` (a duplicate delivery
leaves the row as it was), statuses likewise, and the devices table upserted from both.
``streams()``, ``holes()``, ``evictions()`` and ``lost()`` feed ``edge.cloud.gaps``;
``record_lost`` is what ``edge.cloud.refill`` learns from a device's replay answers.

Not thread-safe: one thread (the writer's) uses a store; open another for another thread.
"""

from __future__ import annotations

import contextlib
import json
import math
import sqlite3
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple, Protocol

from edge.errors import StoreError

# ---------------------------------------------------------------------------------------------
# rows


class EventRow(NamedTuple):
    """One event as the events table holds it (``payload``: the JSON text). A named
    tuple: the sink makes one per message."""

    device: str
    stream: str
    seq: int
    ts: str | None
    sensor: str | None
    kind: str | None
    severity: str | None
    value: str | None
    payload: str
    received_at: str

    def values(self) -> tuple[Any, ...]:
        return self


@dataclass(frozen=True)
class StatusRow:
    """One status message (birth ``online``, will or clean stop ``offline``)."""

    device: str
    ts: str  # "" when the status carried none
    state: str | None
    version: str | None
    stream: str | None
    payload: str
    received_at: str

    def values(self) -> tuple[Any, ...]:
        """The statuses table's row (a status without a state keys as '')."""
        return (self.device, self.ts, self.state or "", self.payload, self.received_at)

    def device_values(self) -> tuple[Any, ...]:
        """The devices table's columns it sets."""
        return (self.device, self.state, self.version, self.stream, self.ts or None,
                self.payload, self.received_at)  # fmt: skip


@dataclass
class Batch:
    """What one transaction stores; ``events`` and ``statuses`` in arrival order."""

    events: list[EventRow] = field(default_factory=list)
    statuses: list[StatusRow] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.events) + len(self.statuses)


@dataclass(frozen=True)
class Written:
    """What a batch changed: rows new to the database, and duplicates left alone."""

    events: int
    duplicates: int
    statuses: int


# ---------------------------------------------------------------------------------------------
# schema


@dataclass(frozen=True)
class Migration:
    version: int
    description: str
    sqlite: Sequence[str]
    postgres: Sequence[str]


def _tables(seq_type: str) -> list[str]:
    return [
        f"""CREATE TABLE events (
            device TEXT NOT NULL, stream TEXT NOT NULL, seq {seq_type} NOT NULL,
            ts TEXT, sensor TEXT, kind TEXT, severity TEXT, value TEXT,
            payload TEXT NOT NULL, received_at TEXT NOT NULL,
            PRIMARY KEY (device, stream, seq))""",
        """CREATE TABLE devices (
            device TEXT PRIMARY KEY, state TEXT, version TEXT, stream TEXT, status_ts TEXT,
            last_seen TEXT, received_at TEXT, status TEXT)""",
        """CREATE TABLE statuses (
            device TEXT NOT NULL, ts TEXT NOT NULL, state TEXT NOT NULL DEFAULT '',
            payload TEXT NOT NULL, received_at TEXT NOT NULL,
            PRIMARY KEY (device, ts, state))""",
    ]


def _forwarding(seq_type: str) -> list[str]:
    """What forwarding keeps: each target's cursor (the last event ``id`` it is done with)
    and the events that used up their attempts."""
    return [
        """CREATE TABLE forward_cursors (
            name TEXT PRIMARY KEY, last_id BIGINT NOT NULL, updated_at TEXT NOT NULL)""",
        f"""CREATE TABLE dead_letters (
            name TEXT NOT NULL, device TEXT NOT NULL, stream TEXT NOT NULL,
            seq {seq_type} NOT NULL, attempts INTEGER NOT NULL, last_error TEXT NOT NULL,
            failed_at TEXT NOT NULL, PRIMARY KEY (name, device, stream, seq))""",
    ]


def _lost(seq_type: str) -> str:
    return f"""CREATE TABLE lost (
        device TEXT NOT NULL, stream TEXT NOT NULL, first {seq_type} NOT NULL,
        last {seq_type} NOT NULL, reason TEXT NOT NULL, recorded_at TEXT NOT NULL,
        PRIMARY KEY (device, stream, first, last))"""


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "events, devices, statuses",
        sqlite=_tables("INTEGER"),
        postgres=_tables("BIGINT"),
    ),
    # events.id: the insert order, one total order over every sink of a database. SQLite's
    # rowid is not kept by VACUUM, so a column of its own (set on insert to the highest + 1,
    # under the write lock every SQLite writer takes). PostgreSQL: an identity column, its
    # values taken under an advisory lock held to commit (PostgresStore.write), so ids
    # become visible in their order and a forwarder's cursor never passes an uncommitted one.
    Migration(
        2,
        "events.id (insert order), forward_cursors, dead_letters",
        sqlite=[
            "ALTER TABLE events ADD COLUMN id INTEGER",
            "UPDATE events SET id = rowid",
            "CREATE UNIQUE INDEX events_by_id ON events (id)",
            *_forwarding("INTEGER"),
        ],
        postgres=[
            "ALTER TABLE events ADD COLUMN id BIGINT GENERATED ALWAYS AS IDENTITY",
            "CREATE UNIQUE INDEX events_by_id ON events (id)",
            *_forwarding("BIGINT"),
        ],
    ),
    # lost: seq ranges a device answered a replay request for as no longer held (its outbox
    # dropped them); ``edge sink gaps`` lists them apart from missing and evicted ones.
    Migration(
        3,
        "lost (ranges a device no longer holds)",
        sqlite=[_lost("INTEGER")],
        postgres=[_lost("BIGINT")],
    ),
)
SCHEMA_VERSION = MIGRATIONS[-1].version

VERSION_TABLE = """CREATE TABLE IF NOT EXISTS schema_version (
    version INTEGER PRIMARY KEY, description TEXT NOT NULL, applied_at TEXT NOT NULL)"""

EVENT_COLUMNS = "device, stream, seq, ts, sensor, kind, severity, value, payload, received_at"


class Store(Protocol):
    """What the writer and ``edge sink gaps`` need of a database."""

    url: str

    def write(self, batch: Batch) -> Written: ...

    def schema_version(self) -> int: ...

    def streams(self) -> list[tuple[str, str, int, int, int]]:
        """(device, stream, events, lowest seq, highest seq) of every stream."""
        ...

    def stream(self, device: str, stream: str) -> tuple[int, int]:
        """(events, highest seq) of one stream, (0, 0) when it has none."""
        ...

    def holes(self) -> Iterator[tuple[str, str, int, int]]:
        """(device, stream, first, last) of every run of seqs missing between two stored
        ones, ordered."""
        ...

    def evictions(self) -> Iterator[tuple[str, str, str]]:
        """(device, stream, payload) of every outbox health event (eviction reports)."""
        ...

    def lost(self) -> Iterator[tuple[str, str, int, int, str]]:
        """(device, stream, first, last, reason) of every range recorded lost."""
        ...

    def record_lost(self, device: str, stream: str, ranges: Sequence[tuple[int, int]],
                    reason: str, at: str) -> None:  # fmt: skip
        """Record ``ranges`` of a stream as lost (a range recorded before is left as it was)."""
        ...

    def close(self) -> None: ...


class SqlStore:
    """The SQL both databases share; subclasses give the connection and the dialect."""

    url: str
    mark = "?"  # the driver's placeholder
    conn: Any
    errors: tuple[type[Exception], ...]  # the driver's errors

    def atomic(self) -> contextlib.AbstractContextManager[None]:
        """A context manager: one transaction around the block."""
        raise NotImplementedError

    def _sql_events(self) -> str:
        """SQLite's: each row's id the highest so far + 1 (writers hold the write lock)."""
        marks = ", ".join([self.mark] * 10)
        return (
            f"INSERT INTO events ({EVENT_COLUMNS}, id) VALUES ({marks},"
            " (SELECT COALESCE(MAX(id), 0) + 1 FROM events))"
            " ON CONFLICT (device, stream, seq) DO NOTHING"
        )

    def _sql_statuses(self) -> str:
        marks = ", ".join([self.mark] * 5)
        return (
            f"INSERT INTO statuses (device, ts, state, payload, received_at) VALUES ({marks})"
            " ON CONFLICT (device, ts, state) DO NOTHING"
        )

    def _sql_seen(self) -> str:
        """A device's last_seen is the newest ts it sent (event or status)."""
        m = self.mark
        return (
            f"INSERT INTO devices (device, last_seen, received_at) VALUES ({m}, {m}, {m})"
            " ON CONFLICT (device) DO UPDATE SET received_at = excluded.received_at,"
            " last_seen = CASE WHEN devices.last_seen IS NULL"
            " OR excluded.last_seen > devices.last_seen"
            " THEN excluded.last_seen ELSE devices.last_seen END"
        )

    def _sql_status(self) -> str:
        """The latest status in arrival order wins (the broker keeps a topic's order; a
        device's will is dated before its own birth, so ts cannot order them)."""
        marks = ", ".join([self.mark] * 7)
        return (
            "INSERT INTO devices (device, state, version, stream, status_ts, status, received_at)"
            f" VALUES ({marks}) ON CONFLICT (device) DO UPDATE SET state = excluded.state,"
            " version = COALESCE(excluded.version, devices.version),"
            " stream = COALESCE(excluded.stream, devices.stream),"
            " status_ts = excluded.status_ts, status = excluded.status,"
            " received_at = excluded.received_at"
        )

    def streams(self) -> list[tuple[str, str, int, int, int]]:
        sql = (
            "SELECT device, stream, COUNT(*), MIN(seq), MAX(seq) FROM events"
            " GROUP BY device, stream ORDER BY device, stream"
        )
        return [tuple(row) for row in self.conn.execute(sql)]

    def stream(self, device: str, stream: str) -> tuple[int, int]:
        m = self.mark
        sql = f"SELECT COUNT(*), MAX(seq) FROM events WHERE device = {m} AND stream = {m}"
        count, high = self.conn.execute(sql, (device, stream)).fetchone()
        return int(count), int(high or 0)

    def holes(self) -> Iterator[tuple[str, str, int, int]]:
        yield from self.conn.execute(
            "SELECT device, stream, seq + 1, next_seq - 1 FROM (SELECT device, stream, seq,"
            " LEAD(seq) OVER (PARTITION BY device, stream ORDER BY seq) AS next_seq"
            " FROM events) AS runs WHERE next_seq > seq + 1 ORDER BY device, stream, seq"
        )

    def evictions(self) -> Iterator[tuple[str, str, str]]:
        yield from self.conn.execute(
            "SELECT device, stream, payload FROM events"
            " WHERE sensor = 'outbox' AND kind = 'health' ORDER BY device, stream, seq"
        )

    def lost(self) -> Iterator[tuple[str, str, int, int, str]]:
        yield from self.conn.execute(
            "SELECT device, stream, first, last, reason FROM lost ORDER BY device, stream, first"
        )

    def record_lost(self, device: str, stream: str, ranges: Sequence[tuple[int, int]],
                    reason: str, at: str) -> None:  # fmt: skip
        marks = ", ".join([self.mark] * 6)
        sql = (
            f"INSERT INTO lost (device, stream, first, last, reason, recorded_at) VALUES ({marks})"
            " ON CONFLICT (device, stream, first, last) DO NOTHING"
        )
        rows = [(device, stream, first, last, reason, at) for first, last in ranges]
        try:
            with self.atomic():
                for row in rows:
                    self.conn.execute(sql, row)
        except self.errors as exc:
            raise StoreError(f"cannot record lost seqs: {exc}") from exc

    def _statements(self, batch: Batch) -> list[tuple[str, list[tuple[Any, ...]]]]:
        """The statements a batch runs, each with its rows (in order: events, statuses,
        then each device's status and last_seen)."""
        status_rows, seen_rows = self._devices(batch)
        return [(self._sql_status(), status_rows), (self._sql_seen(), seen_rows)]

    @staticmethod
    def _devices(batch: Batch) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
        """The devices table's rows of a batch: each status in turn, then one last_seen per
        device (sorted: concurrent sinks lock rows in one order)."""
        seen: dict[str, tuple[str | None, str]] = {}
        for event in batch.events:
            _see(seen, event.device, event.ts, event.received_at)
        status_rows = []
        for status in batch.statuses:
            _see(seen, status.device, status.ts or None, status.received_at)
            status_rows.append(status.device_values())
        return status_rows, [(device, ts, at) for device, (ts, at) in sorted(seen.items())]


def _see(seen: dict[str, tuple[str | None, str]], device: str, ts: str | None, at: str) -> None:
    old = seen.get(device)
    if old is None or (ts is not None and (old[0] is None or ts > old[0])):
        seen[device] = (ts, at)
    else:
        seen[device] = (old[0], at)


# ---------------------------------------------------------------------------------------------
# SQLite


class SqliteStore(SqlStore):
    """An SQLite file (WAL, a busy timeout so that several sinks may share it)."""

    errors: tuple[type[Exception], ...] = (sqlite3.Error,)

    def __init__(self, path: Path, url: str) -> None:
        import sqlite_utils

        self.url = url
        self.path = path
        try:
            # isolation_level None: transactions are ours (BEGIN IMMEDIATE ... COMMIT); opened
            # here, then used by the writer's thread alone.
            conn = sqlite3.connect(
                path, timeout=30.0, isolation_level=None, check_same_thread=False
            )
            self.db = sqlite_utils.Database(conn)
            self.db.execute("PRAGMA journal_mode = WAL")
            self.db.execute("PRAGMA synchronous = FULL")
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open {path}: {exc}") from exc
        self.conn = conn
        self._migrate()

    def _migrate(self) -> None:
        try:
            self.conn.execute("BEGIN IMMEDIATE")  # one migrating sink at a time
            try:
                self.conn.execute(VERSION_TABLE)
                current = self._version()
                check_version(current, self.url)
                for migration in MIGRATIONS:
                    if migration.version > current:
                        for statement in migration.sqlite:
                            self.conn.execute(statement)
                        self.conn.execute(
                            "INSERT INTO schema_version VALUES (?, ?, datetime('now'))",
                            (migration.version, migration.description),
                        )
                self.conn.execute("COMMIT")
            except BaseException:
                self.conn.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            raise StoreError(f"cannot set up the schema of {self.path}: {exc}") from exc

    def _version(self) -> int:
        row = self.conn.execute("SELECT MAX(version) FROM schema_version").fetchone()
        return int(row[0] or 0)

    def schema_version(self) -> int:
        return self._version()

    def write(self, batch: Batch) -> Written:
        try:
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                before = self.conn.total_changes
                self.conn.executemany(self._sql_events(), [e.values() for e in batch.events])
                new_events = self.conn.total_changes - before
                before = self.conn.total_changes
                self.conn.executemany(
                    self._sql_statuses(),
                    [s.values() for s in batch.statuses],
                )
                new_statuses = self.conn.total_changes - before
                for sql, rows in self._statements(batch):
                    self.conn.executemany(sql, rows)
                self.conn.execute("COMMIT")
            except BaseException:
                if self.conn.in_transaction:
                    self.conn.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            raise StoreError(f"cannot store into {self.path}: {exc}") from exc
        return Written(new_events, len(batch.events) - new_events, new_statuses)

    @contextlib.contextmanager
    def atomic(self) -> Iterator[None]:
        """One write transaction (``BEGIN IMMEDIATE``) around the block."""
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield
            self.conn.execute("COMMIT")
        except BaseException:
            if self.conn.in_transaction:
                self.conn.execute("ROLLBACK")
            raise

    def close(self) -> None:
        self.conn.close()


def check_version(found: int, where: str) -> None:
    if found > SCHEMA_VERSION:
        raise StoreError(
            f"{where} has schema version {found}, newer than this edgeline's"
            f" {SCHEMA_VERSION}: upgrade edgeline"
        )


# ---------------------------------------------------------------------------------------------
# URLs


def db_problem(url: str) -> str | None:
    """What is wrong with a ``--db`` value, as one line, or None."""
    if url.startswith(("postgresql://", "postgres://")):
        return None
    if url.startswith("sqlite://"):
        return (
            None
            if url.startswith("sqlite:///") and len(url) > 10
            else (f"sqlite:///PATH (a file), found {url!r}")
        )
    if "://" in url:
        scheme = url.split("://", 1)[0]
        return f"sqlite:///PATH, a file path or postgresql://..., found scheme {scheme!r}"
    return None if url else "sqlite:///PATH, a file path or postgresql://..."


def open_store(url: str) -> Store:
    """The database at ``url``, its schema brought up to date. ``sqlite:///events.db``
    (relative) and ``sqlite:////var/lib/sink/events.db`` (absolute) as SQLAlchemy spells
    them, a bare path, or a libpq URL ``postgresql://user@host:port/db``."""
    problem = db_problem(url)
    if problem:
        raise StoreError(f"expected {problem}")
    if url.startswith(("postgresql://", "postgres://")):
        from edge.cloud.postgres import PostgresStore

        return PostgresStore(url)
    path = Path(url.removeprefix("sqlite:///"))
    return SqliteStore(path, url)


def event_row(body: dict[str, Any], received_at: str, payload: str | None = None) -> EventRow:
    """The events table's row for a payload whose device, stream and seq were checked;
    ``payload``: its JSON text as it came, when that is ASCII (else written anew)."""
    return EventRow(
        device=body["device"],
        stream=body["stream"],
        seq=body["seq"],
        ts=_text(body.get("ts")),
        sensor=_text(body.get("sensor")),
        kind=_text(body.get("kind")),
        severity=_text(body.get("severity")),
        value=None if "value" not in body else _json(body["value"]),
        payload=_json(body) if payload is None else payload,
        received_at=received_at,
    )


def status_row(device: str, body: dict[str, Any], received_at: str) -> StatusRow:
    version = body.get("version")
    return StatusRow(
        device=device,
        ts=_text(body.get("ts")) or "",
        state=_text(body.get("state")),
        version=_text(version) if isinstance(version, str) else None,
        stream=_text(body.get("stream")) if isinstance(body.get("stream"), str) else None,
        payload=_json(body),
        received_at=received_at,
    )


def storable(text: str) -> bool:
    """Whether a key (device, stream) goes into both databases unchanged: PostgreSQL text
    holds no NUL, and neither driver encodes a lone surrogate."""
    return "\x00" not in text and _text(text) == text


def _text(value: Any) -> str | None:
    """A text column: strings as themselves, made storable (NUL and lone surrogates
    replaced); anything else as its JSON."""
    if value is None:
        return None
    if not isinstance(value, str):
        return _json(value)
    if value.isascii() and "\x00" not in value:  # nearly always: nothing to replace
        return value
    clean = value.encode("utf-8", "replace").decode("utf-8").replace("\x00", "\ufffd")
    return clean


def _json(value: Any) -> str:
    """JSON text that both databases store: ASCII only (escapes for the rest, NUL included)."""
    kind = type(value)
    if (kind is float and math.isfinite(value)) or kind is int:  # a reading: as json writes it
        return repr(value)
    return json.dumps(value, separators=(",", ":"), ensure_ascii=True)
