"""Where feedback lives on the device: ``<state_dir>/feedback.sqlite``, its own small file.

Three tables:

- ``alarms``: each alarm of a tunable detector once it is in the outbox (its ``stream`` and
  ``seq``), with the side and measure it was about, the threshold then, and its window of
  readings (``[[seconds before the alarm, value], ...]``). The newest :data:`KEEP_ALARMS`
  are kept: a verdict is given on a recent alarm.
- ``verdicts``: each verdict with its alarm's window copied in, kept for good: they are the
  labels ``edge model train --labels`` reads.
- ``tuning``: each moved threshold (detector, side): the configured value it moved from, the
  value now, and the lowest measure of a true alarm (the ceiling feedback stays under).

The file is separate from the outbox so that nothing here can slow or jam event delivery,
and opened in WAL mode with ``synchronous = NORMAL``: an alarm row costs no fsync (alarms
are rare, and one lost to a power cut only means a verdict on it is refused). Verdicts and
tuning are committed with ``FULL``. One lock serialises the threads that use it (the
recorder's, which adds alarms; the command worker's, which adds verdicts and tuning).
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge.statefile import private_dir, private_file

NAME = "feedback.sqlite"
KEEP_ALARMS = 2000
PRUNE_EVERY = 100  # alarms added between prunes

SCHEMA = """
CREATE TABLE IF NOT EXISTS alarms (
    stream TEXT NOT NULL, seq INTEGER NOT NULL, detector TEXT NOT NULL, sensor TEXT NOT NULL,
    quantity TEXT, ts TEXT NOT NULL, value REAL, side TEXT NOT NULL, measure REAL NOT NULL,
    threshold REAL, window TEXT NOT NULL, PRIMARY KEY (stream, seq));
CREATE TABLE IF NOT EXISTS verdicts (
    stream TEXT NOT NULL, seq INTEGER NOT NULL, verdict TEXT NOT NULL, note TEXT,
    detector TEXT NOT NULL, sensor TEXT, quantity TEXT, side TEXT, measure REAL, window TEXT,
    received TEXT NOT NULL, PRIMARY KEY (stream, seq));
CREATE TABLE IF NOT EXISTS tuning (
    detector TEXT NOT NULL, side TEXT NOT NULL, configured REAL NOT NULL,
    threshold REAL NOT NULL, ceiling REAL, PRIMARY KEY (detector, side));
"""


@dataclass(frozen=True)
class AlarmRecord:
    stream: str
    seq: int
    detector: str
    sensor: str
    quantity: str | None
    ts: str
    value: float | None
    side: str
    measure: float
    threshold: float | None
    window: Sequence[Sequence[float]]


@dataclass(frozen=True)
class VerdictRecord:
    stream: str
    seq: int
    verdict: str
    note: str | None
    detector: str
    sensor: str | None
    quantity: str | None
    side: str | None
    measure: float | None
    window: Sequence[Sequence[float]] | None
    received: str


@dataclass(frozen=True)
class Tuning:
    detector: str
    side: str
    configured: float
    threshold: float
    ceiling: float | None


class FeedbackStore:
    """The feedback file; any thread (one lock). A context manager; ``close`` is idempotent."""

    def __init__(self, state_dir: str | Path) -> None:
        private_dir(state_dir)
        self.path = Path(state_dir) / NAME
        private_file(self.path)  # 0600 before SQLite writes into it (its -wal takes the mode)
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._lock = threading.Lock()
        self._added = 0
        self._db.execute("PRAGMA journal_mode = WAL")
        self._db.execute("PRAGMA synchronous = NORMAL")
        self._db.executescript(SCHEMA)

    @contextmanager
    def _atomic(self, *, durable: bool = False) -> Iterator[sqlite3.Connection]:
        with self._lock:
            db = self._db
            if durable:
                db.execute("PRAGMA synchronous = FULL")
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            else:
                db.execute("COMMIT")
            finally:
                if durable:
                    db.execute("PRAGMA synchronous = NORMAL")

    # -- alarms (recorder thread) ------------------------------------------------------------

    def add_alarm(self, alarm: AlarmRecord) -> None:
        with self._atomic() as db:
            db.execute(
                "INSERT OR REPLACE INTO alarms VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (alarm.stream, alarm.seq, alarm.detector, alarm.sensor, alarm.quantity, alarm.ts,
                 alarm.value, alarm.side, alarm.measure, alarm.threshold,
                 json.dumps(alarm.window)),
            )  # fmt: skip
            self._added += 1
            if self._added % PRUNE_EVERY == 0:
                db.execute(
                    "DELETE FROM alarms WHERE rowid NOT IN "
                    "(SELECT rowid FROM alarms ORDER BY rowid DESC LIMIT ?)",
                    (KEEP_ALARMS,),
                )

    def alarm(self, stream: str, seq: int) -> AlarmRecord | None:
        with self._lock:
            row = self._db.execute(
                "SELECT * FROM alarms WHERE stream = ? AND seq = ?", (stream, seq)
            ).fetchone()
        return None if row is None else _alarm(row)

    # -- verdicts and tuning (command worker) ------------------------------------------------

    def verdict(self, stream: str, seq: int) -> VerdictRecord | None:
        with self._lock:
            row = self._db.execute(
                "SELECT * FROM verdicts WHERE stream = ? AND seq = ?", (stream, seq)
            ).fetchone()
        return None if row is None else _verdict(row)

    def verdicts(self) -> list[VerdictRecord]:
        """Every verdict stored, oldest first."""
        with self._lock:
            rows = self._db.execute("SELECT * FROM verdicts ORDER BY rowid").fetchall()
        return [_verdict(row) for row in rows]

    def add_verdict(self, verdict: VerdictRecord, tuning: Tuning | None) -> None:
        """Store a verdict, and the tuning it led to, in one durable commit."""
        window = None if verdict.window is None else json.dumps(verdict.window)
        with self._atomic(durable=True) as db:
            db.execute(
                "INSERT INTO verdicts VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (verdict.stream, verdict.seq, verdict.verdict, verdict.note, verdict.detector,
                 verdict.sensor, verdict.quantity, verdict.side, verdict.measure, window,
                 verdict.received),
            )  # fmt: skip
            if tuning is not None:
                _put_tuning(db, tuning)

    def tunings(self) -> list[Tuning]:
        with self._lock:
            rows = self._db.execute("SELECT * FROM tuning ORDER BY detector, side").fetchall()
        return [Tuning(*row) for row in rows]

    def forget_tuning(self, detector: str | None = None) -> None:
        """Drop the tuning of ``detector`` (all when None): back to the configured values."""
        with self._atomic(durable=True) as db:
            if detector is None:
                db.execute("DELETE FROM tuning")
            else:
                db.execute("DELETE FROM tuning WHERE detector = ?", (detector,))

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> FeedbackStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _put_tuning(db: sqlite3.Connection, tuning: Tuning) -> None:
    db.execute(
        "INSERT OR REPLACE INTO tuning VALUES (?, ?, ?, ?, ?)",
        (tuning.detector, tuning.side, tuning.configured, tuning.threshold, tuning.ceiling),
    )


def _alarm(row: Sequence[Any]) -> AlarmRecord:
    stream, seq, detector, sensor, quantity, ts, value, side, measure, threshold, window = row
    return AlarmRecord(stream, seq, detector, sensor, quantity, ts, value, side, measure,
                       threshold, json.loads(window))  # fmt: skip


def _verdict(row: Sequence[Any]) -> VerdictRecord:
    stream, seq, verdict, note, detector, sensor, quantity, side, measure, window, received = row
    window = None if window is None else json.loads(window)
    return VerdictRecord(stream, seq, verdict, note, detector, sensor, quantity, side, measure,
                         window, received)  # fmt: skip


def read_verdicts(path: str | Path) -> list[VerdictRecord]:
    """The verdicts of a feedback file (a copy from a device), read-only, oldest first.

    Raises ``sqlite3.Error`` when it is no feedback file."""
    db = sqlite3.connect(f"{Path(path).resolve().as_uri()}?mode=ro", uri=True)
    try:
        rows = db.execute("SELECT * FROM verdicts ORDER BY rowid").fetchall()
    finally:
        db.close()
    return [_verdict(row) for row in rows]
