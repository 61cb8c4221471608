"""The outbox file: its numbered schema migrations and the SQLite settings behind it.

``PRAGMA user_version`` counts the migrations a file has run; opening an older file runs
the missing ones in place, each in its own transaction, so an outbox written by any earlier
edgeline upgrades without losing an event. A migration is never edited once released: a
change is a new entry at the end.

Schema (version 2):
- ``events``: every stored event, pending or delivered-and-kept, keyed by ``seq`` (the
  rowid). A row is written once and never rewritten on delivery (flash wear).
- ``pending``: ``(priority, seq)`` of the events not yet acknowledged, a WITHOUT ROWID
  b-tree: the sending order, the eviction order and "anything to send?" are index range
  scans whatever the depth. Acknowledging an event deletes its small entry here.
- ``meta``: stream, device, the seq counter and the running counters (bytes and rows per
  priority, delivered, evicted), updated in the same transaction as the rows they count;
  and ``limits``, the caps the outbox was last opened to run with (JSON, written by
  ``Outbox.open``), which inspection from another process shows.

A meta key that readers treat as optional needs no migration: ``limits`` came that way, and
a file without it (older, or never opened to run since) reads as "caps unknown".
"""

from __future__ import annotations

import contextlib
import itertools
import secrets
import sqlite3
from collections.abc import Callable, Iterator

from edge.errors import OutboxError

_savepoints = itertools.count()


@contextlib.contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """One transaction (a savepoint when nested): committed on success, rolled back on any
    exception. The semantics of sqlite-utils' ``Database.atomic()``, without importing
    sqlite-utils on the device: it imports numpy (and tries pandas) at import, 19 MB of the
    runtime's 40 MB budget (docs/performance.md)."""
    if conn.in_transaction:
        name = f"edgeline_{next(_savepoints)}"
        conn.execute(f"SAVEPOINT {name}")
        try:
            yield conn
        except BaseException:
            if conn.in_transaction:  # an error may have ended the whole transaction
                conn.execute(f"ROLLBACK TO SAVEPOINT {name}")
                conn.execute(f"RELEASE SAVEPOINT {name}")
            raise
        conn.execute(f"RELEASE SAVEPOINT {name}")
        return
    conn.execute("BEGIN")
    try:
        yield conn
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


FILENAME = "outbox.sqlite3"
SIDE_FILES = ("-wal", "-shm")  # SQLite's companions of a WAL-mode database file

# What each durability level asks of SQLite (docs/outbox.md): the journal is always a
# WAL; only when it is fsynced differs.
SYNCHRONOUS = {"full": "FULL", "normal": "NORMAL"}

BUSY_TIMEOUT_MS = 10_000  # how long a statement waits for another process's lock
PAGE_SIZE = 4096  # SQLite's default, and the block size of ext4 and of most SD cards' pages
SHM_BYTES = 32 * 1024  # the -shm file: the WAL index, 32 KiB for any WAL we allow
FIXED_PAGES = 8  # page 1 (header and schema), the tables' and indexes' roots, a few interior
# 1 MiB of WAL. A checkpoint runs inside the commit that crosses it: at SQLite's default
# of 1,000 pages that commit took ~5 ms more here (a critical event's p99), at 250 ~1.5 ms,
# for 2 % more bytes written (docs/outbox.md).
MAX_WAL_PAGES = 250
MIN_WAL_PAGES = 8


def wal_pages(max_bytes: int) -> int:
    """Checkpoint threshold in pages: a sixteenth of the cap, within SQLite's default.

    A longer WAL rewrites hot pages (the table's tail, the counters) fewer times into the
    database file; a small cap cannot afford one, so it checkpoints sooner.
    """
    if max_bytes <= 0:
        return MAX_WAL_PAGES
    return max(MIN_WAL_PAGES, min(MAX_WAL_PAGES, max_bytes // 16 // PAGE_SIZE))


def configure(conn: sqlite3.Connection, durability: str, max_bytes: int) -> None:
    """The per-connection settings. ``page_size`` only takes on a new, empty file."""
    pages = wal_pages(max_bytes)
    conn.execute(f"PRAGMA page_size={PAGE_SIZE}")
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={SYNCHRONOUS[durability]}")
    conn.execute(f"PRAGMA wal_autocheckpoint={pages}")
    # After a checkpoint resets the WAL, truncate it back if a long transaction or a
    # reader holding a snapshot let it grow past its usual size.
    conn.execute(f"PRAGMA journal_size_limit={pages * (PAGE_SIZE + 24) + 32}")


_V1 = """
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
"""

# Bytes a row costs beyond its payload, sensor, kind and epoch texts: the other columns,
# the record and cell headers, its share of interior pages and its `pending` entry.
ROW_OVERHEAD = 48

# Version 2: delivered events are kept (for replay) instead of deleted; `pending` says which
# still wait; each row records the bytes it counts against the cap.
_V2 = f"""
CREATE TABLE pending (
    priority INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    PRIMARY KEY (priority, seq)
) WITHOUT ROWID;
INSERT INTO pending (priority, seq) SELECT priority, seq FROM events;
DROP INDEX events_by_priority;
ALTER TABLE events ADD COLUMN size INTEGER NOT NULL DEFAULT 0;
UPDATE events SET size = length(payload) + length(sensor) + length(kind) + length(epoch)
    + {ROW_OVERHEAD};
INSERT INTO meta VALUES ('usage', '')
"""

MIGRATIONS: tuple[str, ...] = (_V1, _V2)
VERSION = len(MIGRATIONS)


def row_size(payload: str, sensor: str, kind: str, epoch: str) -> int:
    """The bytes a row counts against the cap (the same formula as migration 2)."""
    return len(payload) + len(sensor) + len(kind) + len(epoch) + ROW_OVERHEAD


def _first_meta(conn: sqlite3.Connection, device: str) -> None:
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


# Python steps run after a migration's SQL, in its transaction.
_AFTER: dict[int, Callable[[sqlite3.Connection, str], None]] = {0: _first_meta}


def version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def migrate(conn: sqlite3.Connection, device: str) -> int:
    """Bring the file's schema up to date in place; return the version it had."""
    found = version(conn)
    if found > VERSION:
        raise OutboxError(
            f"the outbox has schema version {found}, newer than this edgeline knows"
            f" ({VERSION}); upgrade edgeline"
        )
    for number in range(found, VERSION):
        conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in MIGRATIONS[number].split(";"):
                if statement.strip():
                    conn.execute(statement)
            step = _AFTER.get(number)
            if step is not None:
                step(conn, device)
            conn.execute(f"PRAGMA user_version = {number + 1}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    return found
