"""A corrupt outbox: found at open, moved aside (never deleted), and salvaged.

SD cards lose power mid-write and wear out; SQLite's WAL makes a crash safe, but not a card
that returns garbage. At open, ``PRAGMA quick_check`` (every page's structure, without the
index-versus-table comparison of ``integrity_check``) decides. A file that fails it, or is
not a database at all, is renamed with its WAL and WAL index to
``outbox.sqlite3.corrupt-<UTC time>``; the rows that can still be read are read from it,
range by range (a range that fails is split until single rows), checked, and handed to the
new outbox, which keeps the old ``stream`` when both it and the seq counter could be read
(so ``seq`` is never reused) and otherwise starts a new stream numbered after the highest
salvaged seq.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import sqlite3
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from edge.outbox.schema import BUSY_TIMEOUT_MS, SIDE_FILES, configure, migrate
from edge.statefile import private_file

log = logging.getLogger(__name__)

SQLITE_CORRUPT, SQLITE_NOTADB = 11, 26
SPAN = 4096  # seqs read per query before splitting a failing range
COLUMNS = "seq, priority, sensor, kind, payload, synced, mono, epoch"


class Corrupt(Exception):
    """The outbox file is corrupt; ``reason`` says how SQLite found out."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def is_corruption(exc: sqlite3.Error) -> bool:
    """Corrupt or not a database; not a lock, a full disk or a permission problem."""
    code = getattr(exc, "sqlite_errorcode", None)
    return code is not None and code & 0xFF in (SQLITE_CORRUPT, SQLITE_NOTADB)


def quick_check(conn: sqlite3.Connection) -> str | None:
    """None when ``PRAGMA quick_check`` says ok, else its first findings."""
    rows = [str(row[0]) for row in conn.execute("PRAGMA quick_check(5)").fetchall()]
    return None if rows == ["ok"] else "; ".join(rows)


def read_only_uri(path: Path) -> str:
    """A read-only SQLite URI for ``path``: percent-encoded, so a ``#``, ``?`` or ``%`` in
    the state directory's name is part of the path, not a fragment, query or escape."""
    return f"{Path(path).absolute().as_uri()}?mode=ro"


def check(path: Path) -> None:
    """Raise ``Corrupt`` unless the file passes ``PRAGMA quick_check``; read-only, so a
    corrupt file and its WAL stay exactly as found."""
    try:
        timeout = BUSY_TIMEOUT_MS / 1000
        conn = sqlite3.connect(read_only_uri(path), uri=True, timeout=timeout)
    except sqlite3.Error as exc:
        if is_corruption(exc):
            raise Corrupt(str(exc)) from exc
        raise
    try:
        problem = quick_check(conn)
    except sqlite3.DatabaseError as exc:
        if not is_corruption(exc):
            raise
        problem = str(exc)
    finally:
        conn.close()
    if problem:
        raise Corrupt(problem)


def schema_version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


@dataclass(frozen=True)
class Row:
    seq: int
    priority: int
    sensor: str
    kind: str
    payload: str
    synced: int
    mono: float
    epoch: str
    pending: bool = True

    @property
    def values(self) -> tuple[Any, ...]:
        return (
            self.seq,
            self.priority,
            self.sensor,
            self.kind,
            self.payload,
            self.synced,
            self.mono,
            self.epoch,
        )


@dataclass
class Recovered:
    """What could be read from a corrupt file."""

    moved_to: Path
    reason: str
    meta: dict[str, str] = field(default_factory=dict)
    rows: list[Row] = field(default_factory=list)
    unreadable: int = 0  # rows or ranges that could not be read or made no sense


@dataclass(frozen=True)
class Salvage:
    """What happened, for the ``health`` event and the birth message."""

    moved_to: str
    reason: str
    pending: int
    kept: int
    stream_kept: bool
    previous_stream: str | None
    first_seq: int

    @property
    def salvaged(self) -> int:
        return self.pending + self.kept

    def fields(self) -> dict[str, Any]:
        return {
            "state": "salvaged",
            "moved_to": self.moved_to,
            "reason": self.reason[:300],
            "salvaged": self.salvaged,
            "pending": self.pending,
            "kept": self.kept,
            "stream_kept": self.stream_kept,
            "previous_stream": self.previous_stream,
            "first_seq": self.first_seq,
        }


def move_aside(path: Path) -> Path:
    """Rename the file and its WAL and WAL index to ``<name>.corrupt-<UTC time>``."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    target = path.with_name(f"{path.name}.corrupt-{stamp}")
    number = 1
    while any(Path(f"{target}{s}").exists() for s in ("", *SIDE_FILES)):
        number += 1
        target = path.with_name(f"{path.name}.corrupt-{stamp}-{number}")
    for suffix in ("", *SIDE_FILES):
        source = Path(f"{path}{suffix}")
        if source.exists():
            os.replace(source, f"{target}{suffix}")
    try:  # the renames themselves must survive a power cut
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:
        pass
    return target


def recover(path: Path, reason: str) -> Recovered:
    """Move the corrupt file aside and read what can be read from it.

    Reading happens on a scratch copy (deleted afterwards) whose header no longer states
    the database's size, so SQLite sizes it from the file: a file cut short is then read
    up to where it ends instead of refused whole. The moved file is never written.
    """
    moved = move_aside(path)
    recovered = Recovered(moved, reason)
    scratch = _scratch_copy(moved)
    target = Path(scratch).absolute().as_uri() if scratch else read_only_uri(moved)
    try:
        try:
            conn = sqlite3.connect(target, uri=True, isolation_level=None)
        except sqlite3.Error as exc:
            log.error("cannot open the corrupt outbox %s at all: %s", moved, exc)
            return recovered
        try:
            _read_into(conn, recovered)
        finally:
            conn.close()
    finally:
        if scratch is not None:
            for suffix in ("", *SIDE_FILES):
                with contextlib.suppress(OSError):
                    os.remove(f"{scratch}{suffix}")
    log.error(
        "moved the corrupt outbox to %s; %d rows readable, %d unreadable",
        moved,
        len(recovered.rows),
        recovered.unreadable,
    )
    return recovered


HEADER_SIZE_FIELD = slice(28, 32)  # "in-header database size": 0 means "ask the file"


def _scratch_copy(moved: Path) -> Path | None:
    """A copy of the moved file (and its WAL) to read from; None if there is no room."""
    scratch = moved.with_name(f"{moved.name}.salvage")
    try:
        shutil.copyfile(moved, scratch)
        if Path(f"{moved}-wal").exists():
            shutil.copyfile(f"{moved}-wal", f"{scratch}-wal")
        with scratch.open("r+b") as f:
            header = f.read(100)
            if len(header) == 100 and header.startswith(b"SQLite format 3\0"):
                f.seek(HEADER_SIZE_FIELD.start)
                f.write(b"\0\0\0\0")
    except OSError as exc:
        log.warning("cannot copy %s to salvage from (%s): reading it in place", moved, exc)
        for suffix in ("", *SIDE_FILES):
            with contextlib.suppress(OSError):
                os.remove(f"{scratch}{suffix}")
        return None
    return scratch


def _read_into(conn: sqlite3.Connection, recovered: Recovered) -> None:
    recovered.meta = _read_meta(conn)
    pending = _read_pending(conn)
    upper = _upper(conn, recovered.meta)
    raw, failed = _read_rows(conn, upper)
    recovered.unreadable = failed
    for values in raw:
        row = _valid(values, pending)
        if row is None:
            recovered.unreadable += 1
        else:
            recovered.rows.append(row)


def _read_meta(conn: sqlite3.Connection) -> dict[str, str]:
    try:
        return {str(k): str(v) for k, v in conn.execute("SELECT key, value FROM meta")}
    except sqlite3.Error:
        pass
    meta = {}
    for key in ("stream", "device", "last_seq", "delivered", "evicted", "usage"):
        try:
            row = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        except sqlite3.Error:
            continue
        if row is not None:
            meta[key] = str(row[0])
    return meta


def _read_pending(conn: sqlite3.Connection) -> set[int] | None:
    """The pending seqs; None when unknown (then every salvaged row is sent again:
    duplicates are allowed, losses are not)."""
    try:
        return {int(seq) for (seq,) in conn.execute("SELECT seq FROM pending")}
    except sqlite3.Error:
        return None


def _upper(conn: sqlite3.Connection, meta: dict[str, str]) -> int:
    upper = _int(meta.get("last_seq")) or 0
    try:
        top = conn.execute("SELECT max(seq) FROM events").fetchone()[0]
        upper = max(upper, int(top or 0))
    except (sqlite3.Error, TypeError, ValueError):
        pass
    return upper


def _read_rows(conn: sqlite3.Connection, upper: int) -> tuple[list[tuple[Any, ...]], int]:
    """Every readable row with seq in [1, upper], and how many single seqs failed."""
    rows: list[tuple[Any, ...]] = []
    failed = 0
    if upper <= 0:  # no idea how far the table goes: one scan, as far as it reads
        try:
            for row in conn.execute(f"SELECT {COLUMNS} FROM events ORDER BY seq"):
                rows.append(row)
        except sqlite3.Error:
            failed += 1
        return rows, failed

    def span(low: int, high: int) -> None:
        nonlocal failed
        try:
            found = conn.execute(
                f"SELECT {COLUMNS} FROM events WHERE seq BETWEEN ? AND ? ORDER BY seq",
                (low, high),
            ).fetchall()
        except sqlite3.Error:
            if low == high:
                failed += 1
                return
            middle = (low + high) // 2
            span(low, middle)
            span(middle + 1, high)
            return
        rows.extend(found)

    for low in range(1, upper + 1, SPAN):
        span(low, min(upper, low + SPAN - 1))
    return rows, failed


def _valid(values: tuple[Any, ...], pending: set[int] | None) -> Row | None:
    """A row whose columns have their types and whose payload is its own event."""
    try:
        seq, priority, sensor, kind, payload, synced, mono, epoch = values
        if not (isinstance(seq, int) and isinstance(priority, int) and 0 <= priority <= 3):
            return None
        if not all(isinstance(text, str) for text in (sensor, kind, payload, epoch)):
            return None
        body = json.loads(payload)
        if not isinstance(body, dict) or body.get("seq") != seq:
            return None
        return Row(
            seq,
            priority,
            sensor,
            kind,
            payload,
            1 if synced else 0,
            float(mono),
            epoch,
            pending is None or seq in pending,
        )
    except (ValueError, TypeError):
        return None


@dataclass
class Plan:
    """How the new outbox takes the salvaged rows in."""

    stream: str
    stream_kept: bool
    previous_stream: str | None
    last_seq: int
    delivered: int
    evicted: int
    evicted_by_priority: list[int]
    rows: list[Row]

    def result(self, recovered: Recovered, *, first_seq: int) -> Salvage:
        pending = sum(1 for r in self.rows if r.pending)
        return Salvage(
            moved_to=str(recovered.moved_to),
            reason=recovered.reason,
            pending=pending,
            kept=len(self.rows) - pending,
            stream_kept=self.stream_kept,
            previous_stream=self.previous_stream,
            first_seq=first_seq,
        )


def plan(recovered: Recovered, device: str, fresh_stream: str, *, keep: bool) -> Plan:
    meta = recovered.meta
    first_body = _first_body(recovered.rows)
    old_device = meta.get("device") or first_body.get("device")
    previous = meta.get("stream") or first_body.get("stream")
    rows = [
        r
        for r in recovered.rows
        if (keep or r.pending) and json.loads(r.payload).get("stream") == previous
    ]
    if old_device not in (None, device):
        log.error("the corrupt outbox belonged to device %s: its rows stay aside", old_device)
        rows = []
    top = max((r.seq for r in rows), default=0)
    counter = _int(meta.get("last_seq"))
    kept_stream = bool(previous) and counter is not None and old_device in (None, device)
    usage = _usage(meta.get("usage"))
    return Plan(
        stream=str(previous) if kept_stream else fresh_stream,
        stream_kept=kept_stream,
        previous_stream=str(previous) if previous else None,
        last_seq=max(counter or 0, top) if kept_stream else top,
        delivered=_int(meta.get("delivered")) or 0,
        evicted=_int(meta.get("evicted")) or 0,
        evicted_by_priority=usage,
        rows=rows,
    )


def _first_body(rows: list[Row]) -> dict[str, Any]:
    for row in rows:
        body: dict[str, Any] = json.loads(row.payload)
        if isinstance(body.get("stream"), str):
            return body
    return {}


def _int(text: str | None) -> int | None:
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


def _usage(text: str | None) -> list[int]:
    try:
        evicted = json.loads(text or "")["evicted"]
        if isinstance(evicted, list) and len(evicted) == 4:
            return [int(n) for n in evicted]
    except (ValueError, KeyError, TypeError):
        pass
    return [0, 0, 0, 0]


def connect(path: Path) -> sqlite3.Connection:
    """Autocommit (transactions are explicit), shared by the recorder and uplink threads
    behind the outbox's lock."""
    timeout = BUSY_TIMEOUT_MS / 1000
    return sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=timeout)


def connect_checked(path: Path, device: str, durability: str, max_bytes: int) -> sqlite3.Connection:
    """Check, connect, configure and migrate; ``Corrupt`` if the file is corrupt.

    The check runs on a read-only connection: closing a writable one would checkpoint
    the WAL into a corrupt file (and delete the WAL) before it could be moved aside.
    """
    if path.exists():
        check(path)
    # 0600 before SQLite opens it: SQLite gives the WAL and WAL index the database's mode.
    for suffix in ("", *SIDE_FILES):
        if not suffix or os.path.exists(f"{path}{suffix}"):
            private_file(f"{path}{suffix}")
    conn = connect(path)
    try:
        configure(conn, durability, max_bytes)
        migrate(conn, device)
    except sqlite3.DatabaseError as exc:
        conn.close()
        if is_corruption(exc):
            raise Corrupt(str(exc)) from exc
        raise
    except BaseException:
        conn.close()
        raise
    return conn
