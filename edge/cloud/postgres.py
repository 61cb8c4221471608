"""The sink's database in PostgreSQL, over psycopg 3 (``edge.cloud.store`` opens it for a
``postgresql://`` URL): the same tables as SQLite, a batch as one statement per table.

Not thread-safe beyond psycopg's own connection lock: one thread (the writer's) writes.
"""

from __future__ import annotations

import contextlib
from typing import Any

from edge.cloud.store import (
    EVENT_COLUMNS,
    MIGRATIONS,
    VERSION_TABLE,
    Batch,
    SqlStore,
    Written,
    check_version,
)
from edge.config.secrets import hide_password
from edge.errors import StoreError


class PostgresStore(SqlStore):
    """A PostgreSQL database over psycopg 3 (executemany runs in pipeline mode)."""

    mark = "%s"
    LOCK = 0x6564_6765  # "edge": pg_advisory_xact_lock's key, one migrating sink at a time
    # Held from a batch's first insert to its commit: events.id values are taken and become
    # visible in one order across sinks (a forwarder reading "id > cursor" skips none).
    WRITE_LOCK = 0x6564_6766
    EVENTS = (
        f"INSERT INTO events ({EVENT_COLUMNS}) SELECT * FROM unnest(%b::text[], %b::text[],"
        " %b::bigint[], %b::text[], %b::text[], %b::text[], %b::text[], %b::text[],"
        " %b::text[], %b::text[]) ON CONFLICT (device, stream, seq) DO NOTHING"
    )
    STATUSES = (
        "INSERT INTO statuses (device, ts, state, payload, received_at) SELECT * FROM"
        " unnest(%b::text[], %b::text[], %b::text[], %b::text[], %b::text[])"
        " ON CONFLICT (device, ts, state) DO NOTHING"
    )
    # A fleet's batch names hundreds of devices: their last_seen in one statement, too.
    SEEN = (
        "INSERT INTO devices (device, last_seen, received_at) SELECT * FROM"
        " unnest(%b::text[], %b::text[], %b::text[]) ON CONFLICT (device) DO UPDATE SET"
        " received_at = excluded.received_at, last_seen = CASE WHEN devices.last_seen IS NULL"
        " OR excluded.last_seen > devices.last_seen"
        " THEN excluded.last_seen ELSE devices.last_seen END"
    )

    def __init__(self, url: str) -> None:
        try:
            import psycopg
        except ImportError as exc:
            raise StoreError("PostgreSQL needs psycopg: pip install 'edgeline[cloud]'") from exc
        self._errors = psycopg.Error
        self.errors = (psycopg.Error,)
        self.url = url
        try:
            # autocommit: a read outside `transaction()` must not leave one open.
            self.conn = psycopg.connect(url, connect_timeout=10, autocommit=True)
        except psycopg.Error as exc:
            raise StoreError(f"cannot connect to {hide_password(url)}: {exc}") from exc
        self._migrate()

    def _migrate(self) -> None:
        try:
            with self.conn.transaction():
                self.conn.execute("SELECT pg_advisory_xact_lock(%s)", (self.LOCK,))
                self.conn.execute(VERSION_TABLE)
                current = self._version()
                check_version(current, hide_password(self.url))
                for migration in MIGRATIONS:
                    if migration.version > current:
                        for statement in migration.postgres:
                            self.conn.execute(statement)
                        self.conn.execute(
                            "INSERT INTO schema_version VALUES (%s, %s, now()::text)",
                            (migration.version, migration.description),
                        )
        except self._errors as exc:
            where = hide_password(self.url)
            raise StoreError(f"cannot set up the schema of {where}: {exc}") from exc

    def _version(self) -> int:
        row = self.conn.execute("SELECT MAX(version) FROM schema_version").fetchone()
        return int(row[0] or 0) if row else 0

    def schema_version(self) -> int:
        return self._version()

    def write(self, batch: Batch) -> Written:
        try:
            with self.conn.transaction(), self.conn.cursor() as cur:
                # One statement per table and batch: the rows as arrays, unnested (several
                # times faster than a statement per row, even pipelined).
                new_events = new_statuses = 0
                if batch.events:
                    cur.execute("SELECT pg_advisory_xact_lock(%s)", (self.WRITE_LOCK,))
                    cur.execute(self.EVENTS, _columns([e.values() for e in batch.events], 10))
                    new_events = max(cur.rowcount, 0)
                if batch.statuses:
                    cur.execute(
                        self.STATUSES,
                        _columns([s.values() for s in batch.statuses], 5),
                    )
                    new_statuses = max(cur.rowcount, 0)
                status_rows, seen_rows = self._devices(batch)
                if status_rows:  # few: a device's statuses in the order they came
                    cur.executemany(self._sql_status(), status_rows)
                if seen_rows:
                    cur.execute(self.SEEN, _columns(seen_rows, 3))
        except self._errors as exc:
            raise StoreError(f"cannot store into {hide_password(self.url)}: {exc}") from exc
        return Written(new_events, len(batch.events) - new_events, new_statuses)

    def atomic(self) -> contextlib.AbstractContextManager[Any]:
        """One transaction around the block."""
        return self.conn.transaction()  # type: ignore[no-any-return]

    def close(self) -> None:
        self.conn.close()


def _columns(rows: list[tuple[Any, ...]], width: int) -> list[list[Any]]:
    """Rows turned into one list per column."""
    return [list(column) for column in zip(*rows, strict=True)] if rows else [[]] * width
